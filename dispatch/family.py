"""Telling the family: each emergency contact of a resident hears about the events they
chose (`EmergencyContact.notify_events`: accepted, arrived, completed, late, no_show,
emergency), by a text or a short call (`notify_by`), and not at night (`notify_quiet`).

A notice is decided in the unit of work of the event itself (a ticket command
`TellFamily`, or an emergency flagged on a call): one `family.due` event per contact on
the subject's timeline, or `family.deferred` with the end of the quiet hours; then a
typed timer (`family:<ticket>`, `family_em:<call>`) delivers what is due. Emergencies
(and emergency tickets) never wait for the morning. A no-show is also a late order: a
contact who chose either hears it once.

Delivery claims each notice first (`family.texting` or `family.calling`, committed
before anything goes out), so a restart or a timer that fires twice never tells a
contact twice about one event; then the text is sent (`family.told`) or the call placed
(flow `family_told`: `family.told` when answered, `family.heard` at its end). A text the
carrier refuses, or a backend that cannot text (Asterisk), becomes a call; a call nobody
answers is `family.not_reached` (no retry). The timer fires on the process that owns the
telephony, which is where texts can be sent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from dispatch.core import Core, quiet_until
from dispatch.effects import Command, Hangup, PlayFlow, ScheduleTimer
from dispatch.machines import ticket as tm
from dispatch.models import Call, Ticket
from dispatch.outbound import Outbound, Purpose
from dispatch.timer_keys import Kind, TimerKey
from eventlog.clock import LOCAL_TZ
from eventlog.models import Event
from eventlog.store import Tx
from ivr.prompts import pick_lang
from providers.base import Messaging, OriginateFailure, TelephonyError
from registry import repository as repo
from registry.models import EmergencyContact, Merchant, Resident

log = logging.getLogger(__name__)

#: the purpose of the calls that tell a contact
PURPOSE = "family"
#: how far back the reconciler looks for notices not delivered yet
LOOK_BACK = timedelta(days=2)
#: who hears an event besides those who chose it: a no-show is a late order too
AUDIENCE = {"no_show": frozenset({"no_show", "late"})}
#: a notice is open until one of these names it
CLAIMED = frozenset({"family.texting", "family.calling", "family.not_reached", "family.not_told"})
#: a ticket whose visit is over: a late notice kept for the morning is not sent
DONE = frozenset({tm.TicketState.COMPLETED, tm.TicketState.RATED, tm.TicketState.CLOSED} | tm.FINAL)
#: the call ref of a notice: fam-<t|c><subject id>-<contact id>-<event>-<n>
REF = re.compile(r"^fam-([tc])(\d+)-(\d+)-([a-z_]+)-(\d+)$")

#: the text a contact gets (zh-CN; English for residents who speak it)
TEXTS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "accepted": "【医敬】{resident}的{category}订单已由{merchant}接单，预计{deadline}前上门。",
        "arrived": "【医敬】{resident}的{category}订单：{merchant}已于{at}上门。",
        "completed": "【医敬】{resident}的{category}订单：{merchant}已于{at}完成服务。",
        "late": "【医敬】{resident}的{category}订单已超时（应于{deadline}前），话务员正在跟进。",
        "no_show": "【医敬】{resident}的{category}订单：商家未按时上门，正在另找商家。",
        "emergency": "【医敬】{resident}于{at}拨打了紧急求助电话，话务员正在处理。",
    },
    "en": {
        "accepted": "Yijing: {resident}'s {category} order was accepted by {merchant}, "
        "expected by {deadline}.",
        "arrived": "Yijing: {merchant} arrived for {resident}'s {category} order at {at}.",
        "completed": "Yijing: {merchant} completed {resident}'s {category} order at {at}.",
        "late": "Yijing: {resident}'s {category} order is late (due by {deadline}); "
        "an operator is following it up.",
        "no_show": "Yijing: the shop did not come for {resident}'s {category} order; "
        "we are finding another.",
        "emergency": "Yijing: {resident} called for emergency help at {at}; an operator is on it.",
    },
}


def _base(notice: Mapping[str, Any]) -> dict[str, Any]:
    """What every step of a notice says on the timeline: which notice, to whom, about what."""
    return {k: notice.get(k) for k in ("notice", "contact_id", "who", "about")}


def _clock(moment: datetime | None) -> str:
    return moment.astimezone(LOCAL_TZ).strftime("%H:%M") if moment is not None else ""


class Family:
    """Tells each contact what they chose to hear, by text or call, not at night."""

    def __init__(self, core: Core, outbound: Outbound, messaging: Messaging | None) -> None:
        self.core = core
        self.outbound = outbound
        self.messaging = messaging
        outbound.serve(
            PURPOSE,
            Purpose(
                answered=self._answered,
                wanted=self._wanted,
                ended=self._ended,
                failed=self._failed,
                replace_when_lost=False,
            ),
        )

    # -- deciding, in the event's unit of work -------------------------------------------
    async def ticket_event(self, tx: Tx, ticket: Ticket, event: str) -> None:
        """The follow-up of a ticket's `TellFamily`: note who is told, when."""
        if not self.core.config.tell_family or ticket.resident_id is None:
            return
        urgent = ticket.urgency == "emergency"
        await self._decide(
            tx, "ticket", ticket.id, ticket.resident_id, event, urgent, ticket.merchant_id
        )

    async def emergency(self, tx: Tx, call: Call) -> None:
        """An emergency was flagged on a resident's call: tell who chose it, at once."""
        if not self.core.config.tell_family or call.resident_id is None:
            return
        await self._decide(tx, "call", call.id, call.resident_id, "emergency", True, None)

    async def _decide(
        self,
        tx: Tx,
        subject: str,
        subject_id: int | None,
        resident_id: int,
        event: str,
        urgent: bool,
        merchant_id: int | None,
    ) -> None:
        assert subject_id is not None
        audience = AUDIENCE.get(event, frozenset({event}))
        contacts = (
            await tx.session.execute(
                select(EmergencyContact)
                .where(col(EmergencyContact.resident_id) == resident_id)
                .order_by(col(EmergencyContact.position), col(EmergencyContact.id))
            )
        ).scalars()
        earlier = await self._events(tx, subject, subject_id)
        now = self.core.now()
        quiet = None if urgent or event == "emergency" else quiet_until(self.core.config, now)
        # the timer is moved, never pushed later than a notice still waiting for it
        claimed = {e.data.get("notice") for e in earlier if e.name in CLAIMED}
        times = [
            datetime.fromisoformat(e.data["until"]) if e.data.get("until") else now
            for e in earlier
            if e.name in ("family.due", "family.deferred") and e.data.get("notice") not in claimed
        ]
        added = False
        for c in contacts:
            if not audience & set(c.notify_events or ()):
                continue
            n = 1 + sum(
                1
                for e in earlier
                if e.name in ("family.due", "family.deferred")
                and e.data.get("contact_id") == c.id
                and e.data.get("about") == event
            )
            letter = "t" if subject == "ticket" else "c"
            data: dict[str, Any] = {
                "notice": f"fam-{letter}{subject_id}-{c.id}-{event}-{n}",
                "contact_id": c.id,
                "who": c.relation or c.kind,
                "about": event,
                "by": c.notify_by,
                "merchant_id": merchant_id,
            }
            if quiet is not None and c.notify_quiet:
                tx.emit("family.deferred", subject, subject_id, until=quiet.isoformat(), **data)
                times.append(quiet)
            else:
                tx.emit("family.due", subject, subject_id, **data)
                times.append(now)
            added = True
        if added:
            self.core.fx.after_commit(tx, ScheduleTimer(self._key(subject, subject_id), min(times)))

    @staticmethod
    def _key(subject: str, subject_id: int) -> TimerKey:
        if subject == "ticket":
            return TimerKey.family(subject_id)
        return TimerKey.family_emergency(subject_id)

    # -- delivering, when the timer fires ---------------------------------------------------
    async def deliver(self, key: TimerKey) -> None:
        """The `family:` / `family_em:` timer: claim and send what is due, in order."""
        subject = "ticket" if key.kind == Kind.FAMILY else "call"
        texts: list[tuple[str, str, str]] = []
        async with self.core.store.tx() as tx:
            events = await self._events(tx, subject, key.id)
            done = {e.data.get("notice") for e in events if e.name in CLAIMED}
            now, later = self.core.now(), []
            for notice in events:
                if notice.name not in ("family.due", "family.deferred"):
                    continue
                if notice.data.get("notice") in done:
                    continue
                until = notice.data.get("until")
                if until and datetime.fromisoformat(until) > now:
                    later.append(datetime.fromisoformat(until))
                    continue
                sent = await self._claim(tx, subject, key.id, notice)
                if sent is not None:
                    texts.append(sent)
            if later:
                self.core.fx.after_commit(tx, ScheduleTimer(key, min(later)))
        for ref, number, text in texts:
            await self._text(subject, key.id, ref, number, text)

    async def _claim(
        self, tx: Tx, subject: str, subject_id: int, notice: Event
    ) -> tuple[str, str, str] | None:
        """Claim one notice: a call recorded and placed, or a text to send after commit."""
        data = notice.data
        base = _base(data)
        contact = await tx.session.get(EmergencyContact, data.get("contact_id"))
        if contact is None:
            tx.emit("family.not_reached", subject, subject_id, reason="contact removed", **base)
            return None
        if data.get("until") and data.get("about") in ("late", "no_show"):
            ticket = await tx.session.get(Ticket, subject_id, populate_existing=True)
            if ticket is not None and ticket.state in DONE:
                # the night's bad news is old news by the morning: the visit is over
                tx.emit("family.not_told", subject, subject_id, state=ticket.state.value, **base)
                return None
        if data.get("by") == "text" and self.messaging is not None:
            tx.emit("family.texting", subject, subject_id, by="text", **base)
            text = await self._message(tx, subject, subject_id, notice)
            return str(data["notice"]), contact.phone, text
        await self._call(tx, subject, subject_id, str(data["notice"]), contact, base)
        return None

    async def _call(
        self,
        tx: Tx,
        subject: str,
        subject_id: int,
        ref: str,
        contact: EmergencyContact,
        base: dict[str, Any],
    ) -> None:
        call = self.outbound.record(
            tx,
            ref=ref,
            number=contact.phone,
            purpose=PURPOSE,
            ticket_id=subject_id if subject == "ticket" else None,
            resident_id=contact.resident_id,
        )
        await tx.session.flush()
        tx.emit("family.calling", subject, subject_id, by="call", call_id=call.id, **base)
        self.outbound.place(tx, call)

    async def _text(self, subject: str, subject_id: int, ref: str, number: str, text: str) -> None:
        """Send a claimed text; a refusal becomes a call (the notice keeps its ref)."""
        assert self.messaging is not None
        try:
            await self.messaging.send_text(ref=ref, number=number, text=text)
        except TelephonyError as exc:
            log.warning("family notice %s: text refused (%s); calling", ref, type(exc).__name__)
            async with self.core.store.tx() as tx:
                notice = await self._notice(tx, subject, subject_id, ref)
                contact = await tx.session.get(EmergencyContact, notice.get("contact_id"))
                base = _base(notice)
                if contact is None:
                    tx.emit(
                        "family.not_reached", subject, subject_id, reason="text refused", **base
                    )
                    return
                await self._call(tx, subject, subject_id, f"{ref}v", contact, base)
            return
        log.info("family notice %s: text sent", ref)
        async with self.core.store.tx() as tx:
            notice = await self._notice(tx, subject, subject_id, ref)
            base = _base(notice)
            tx.emit("family.told", subject, subject_id, by="text", **base)

    # -- what they are told ------------------------------------------------------------------
    async def _parts(
        self, tx: Tx, subject: str, subject_id: int, notice: Event
    ) -> tuple[dict[str, Any], str]:
        """What a notice says (resident, shop, need, times) and in which language."""
        ticket = await tx.session.get(Ticket, subject_id) if subject == "ticket" else None
        call = await tx.session.get(Call, subject_id) if subject == "call" else None
        resident_id = ticket.resident_id if ticket else call.resident_id if call else None
        resident = await tx.session.get(Resident, resident_id) if resident_id else None
        merchant_id = notice.data.get("merchant_id")
        merchant = await tx.session.get(Merchant, merchant_id) if merchant_id else None
        lang = pick_lang(resident.language if resident else None)
        category = ""
        if ticket is not None:
            cat = await repo.get_category(tx.session, code=ticket.category_code)
            category = cat.name_en if lang == "en" else cat.name_zh
        parts = {
            "about": notice.data.get("about"),
            "resident": resident.name if resident else "",
            "merchant": merchant.name if merchant else "",
            "category": category,
            "deadline": ticket.deadline_at if ticket else None,
            "at": notice.occurred_at,
        }
        return parts, lang

    async def _message(self, tx: Tx, subject: str, subject_id: int, notice: Event) -> str:
        parts, lang = await self._parts(tx, subject, subject_id, notice)
        template = TEXTS[lang][str(parts["about"])]
        return template.format(
            **{**parts, "deadline": _clock(parts["deadline"]), "at": _clock(parts["at"])}
        )

    # -- the call (purpose "family") ---------------------------------------------------------
    async def _of_call(self, tx: Tx, call: Call) -> tuple[str, int, Event] | None:
        match = REF.match(call.ref.removesuffix("v"))
        if match is None:
            return None
        subject = "ticket" if match.group(1) == "t" else "call"
        subject_id = int(match.group(2))
        ref = call.ref.removesuffix("v")
        for e in await self._events(tx, subject, subject_id):
            if e.name in ("family.due", "family.deferred") and e.data.get("notice") == ref:
                return subject, subject_id, e
        return None

    async def _answered(self, tx: Tx, call: Call) -> Sequence[Command]:
        found = await self._of_call(tx, call)
        if found is None:
            return [Hangup(call.ref)]
        subject, subject_id, notice = found
        parts, lang = await self._parts(tx, subject, subject_id, notice)
        parts["today"] = self.core.now().astimezone(LOCAL_TZ).date()
        base = _base(notice.data)
        tx.emit("family.told", subject, subject_id, by="call", call_id=call.id, **base)
        return [PlayFlow(call.ref, "family_told", parts, lang)]

    async def finished(self, ref: str, outcome: str) -> None:
        """The family_told flow ended: the contact heard it to the end."""
        async with self.core.store.tx() as tx:
            call = await self.core.call_by_ref(tx, ref)
            found = await self._of_call(tx, call) if call is not None else None
            if call is not None and found is not None:
                subject, subject_id, notice = found
                tx.emit(
                    "family.heard",
                    subject,
                    subject_id,
                    call_id=call.id,
                    notice=notice.data.get("notice"),
                    contact_id=notice.data.get("contact_id"),
                    outcome=outcome,
                )

    async def _ended(self, tx: Tx, call: Call) -> None:
        if call.answered_at is None:
            await self._not_reached(tx, call, "no answer")

    async def _failed(self, tx: Tx, call: Call, reason: OriginateFailure) -> None:
        await self._not_reached(tx, call, reason.value)

    async def _not_reached(self, tx: Tx, call: Call, reason: str) -> None:
        found = await self._of_call(tx, call)
        if found is not None:
            subject, subject_id, notice = found
            base = _base(notice.data)
            tx.emit(
                "family.not_reached", subject, subject_id, call_id=call.id, reason=reason, **base
            )

    async def _wanted(self, tx: Tx, call: Call) -> bool:
        return True  # what happened stays true while the line was down

    async def wanted_timers(self) -> dict[TimerKey, datetime]:
        """The reconciler's view: every subject with a notice not claimed yet (of the last
        `LOOK_BACK`; a night is shorter) has its timer, at its earliest notice."""
        since = self.core.now() - LOOK_BACK
        async with self.core.store.read() as session:
            rows = await session.execute(
                select(Event)
                .where(
                    col(Event.name).in_(["family.due", "family.deferred", *CLAIMED]),
                    col(Event.occurred_at) >= since,
                )
                .order_by(col(Event.seq))
            )
            events = list(rows.scalars())
        claimed = {e.data.get("notice") for e in events if e.name in CLAIMED}
        wanted: dict[TimerKey, datetime] = {}
        for e in events:
            if e.name in CLAIMED or e.data.get("notice") in claimed or e.subject_id == "None":
                continue
            until = e.data.get("until")
            at = datetime.fromisoformat(until) if until else e.occurred_at
            key = self._key(e.subject, int(e.subject_id))
            wanted[key] = min(at, wanted.get(key, at))
        return wanted

    # -- reads -----------------------------------------------------------------------------------
    async def _events(self, tx: Tx, subject: str, subject_id: int) -> list[Event]:
        rows = await tx.session.execute(
            select(Event)
            .where(
                col(Event.subject) == subject,
                col(Event.subject_id) == str(subject_id),
                col(Event.name).startswith("family."),
            )
            .order_by(col(Event.seq))
        )
        return list(rows.scalars())

    async def _notice(self, tx: Tx, subject: str, subject_id: int, ref: str) -> dict[str, Any]:
        for e in await self._events(tx, subject, subject_id):
            if e.name in ("family.due", "family.deferred") and e.data.get("notice") == ref:
                return dict(e.data)
        return {"notice": ref}
