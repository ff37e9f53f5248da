"""Telling the resident who is coming: once a merchant's acceptance is committed, the
resident gets a short call (purpose `told`, flow `resident_told`) with the shop's name,
the time it is expected by and the code word the merchant will say at the door, read
slowly; 9 hears it again, 0 asks for an operator (a call-back task). This is what the
keypad menu promises ("商家接单后会给您回电话").

Quiet hours: an acceptance in the quiet hours of the night is told when they end, and
only if the merchant has not arrived by then (the visit is under way: nothing to tell);
an emergency ticket's resident is called at once, night or not. A call nobody answers
is tried again after `tell_resident_retry_s`, `tell_resident_tries` calls in all per
acceptance. The ticket's timeline says what was told (`resident.told`) and whether it
was heard (`resident.heard`, `resident.hung_up`, `resident.not_reached`).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select
from sqlmodel import col

from dispatch.core import Core, quiet_until
from dispatch.effects import Command, PlayFlow, ScheduleTimer
from dispatch.machines import ticket as tm
from dispatch.models import Call, Ticket
from dispatch.outbound import Outbound, Purpose, ticket_parts
from dispatch.prices import spoken_price
from dispatch.queue import Queue
from dispatch.timer_keys import TimerKey
from eventlog.clock import LOCAL_TZ
from eventlog.models import Event
from eventlog.store import Tx
from ivr.prompts import pick_lang
from providers.base import OriginateFailure
from registry.models import Merchant, ResidentPhone

log = logging.getLogger(__name__)

#: the purpose of the call that tells the resident
PURPOSE = "told"
#: what the resident is told on that call (the timeline's `resident.told`)
TOLD = ("merchant", "deadline", "code_word")


class Notify:
    """Calls the resident once a merchant accepted: who, by when, the code word."""

    def __init__(self, core: Core, outbound: Outbound, queue: Queue) -> None:
        self.core = core
        self.outbound = outbound
        self.queue = queue
        outbound.serve(
            PURPOSE,
            Purpose(
                answered=self._answered,
                wanted=self._wanted,
                ended=self._ended,
                failed=self._failed,
                quiet_hours=True,
            ),
        )

    async def accepted(self, tx: Tx, ticket: Ticket) -> None:
        """The follow-up of an accept: call the resident now, or when the night is over."""
        core = self.core
        if not core.config.tell_resident or ticket.resident_id is None:
            return
        quiet = None if ticket.urgency == "emergency" else quiet_until(core.config, core.now())
        if quiet is not None:
            tx.emit("resident.told_later", "ticket", ticket.id, at=quiet.isoformat())
            core.fx.after_commit(tx, ScheduleTimer(TimerKey.told(ticket.id), quiet))
            return
        await self._place(tx, ticket)

    async def start(self, ticket_id: int) -> None:
        """The `told:` timer: the morning's call, or another try of an unanswered one."""
        core = self.core
        async with core.store.tx() as tx:
            ticket = await tx.session.get(Ticket, ticket_id, populate_existing=True)
            if ticket is None:
                return
            if ticket.state != tm.TicketState.ACCEPTED:
                tx.emit("resident.not_told", "ticket", ticket.id, reason=ticket.state.value)
                return
            await self._place(tx, ticket)

    async def _place(self, tx: Tx, ticket: Ticket) -> None:
        phone = (
            (
                await tx.session.execute(
                    select(col(ResidentPhone.number))
                    .where(col(ResidentPhone.resident_id) == ticket.resident_id)
                    .order_by(col(ResidentPhone.id))
                    .limit(1)
                )
            )
            .scalars()
            .first()
        )
        if phone is None:
            tx.emit("resident.not_told", "ticket", ticket.id, reason="no phone")
            return
        made, this_accept = await self._attempts(tx, ticket)
        if this_accept >= max(1, self.core.config.tell_resident_tries):
            return
        call = self.outbound.record(
            tx,
            ref=f"told-{ticket.id}-{made + 1}",
            number=phone,
            purpose=PURPOSE,
            ticket_id=ticket.id,
            resident_id=ticket.resident_id,
            registered=True,
        )
        await tx.session.flush()
        tx.emit("resident.calling", "ticket", ticket.id, call_id=call.id, attempt=this_accept + 1)
        self.outbound.place(tx, call)

    async def _attempts(self, tx: Tx, ticket: Ticket) -> tuple[int, int]:
        """The told calls of a ticket so far, and those since its (latest) acceptance."""
        rows = (
            await tx.session.execute(
                select(col(Call.started_at)).where(
                    col(Call.ticket_id) == ticket.id, col(Call.purpose) == PURPOSE
                )
            )
        ).scalars()
        started = list(rows)
        since = ticket.accepted_at
        return len(started), sum(1 for s in started if since is None or s >= since)

    async def finished(self, ref: str, outcome: str) -> None:
        """The told flow ended: heard to the end, or heard and asked for an operator."""
        core = self.core
        async with core.store.tx() as tx:
            call = await core.call_by_ref(tx, ref)
            if call is None or call.ticket_id is None:
                return
            tx.emit("resident.heard", "ticket", call.ticket_id, call_id=call.id, outcome=outcome)
        if outcome == "operator":
            await self.queue.callback_once(call, "resident asked for an operator when told")

    # -- the call (purpose "told") ---------------------------------------------------------
    async def _answered(self, tx: Tx, call: Call) -> list[Command]:
        if call.ticket_id is None:
            return []
        ticket, category, resident = await ticket_parts(tx, call.ticket_id)
        merchant_id = ticket.merchant_id
        merchant = await tx.session.get(Merchant, merchant_id) if merchant_id else None
        if ticket.state != tm.TicketState.ACCEPTED or merchant is None:
            return []  # the merchant came already, or the order moved on: nothing to tell
        lang = pick_lang(resident.language if resident else None)
        context = {
            "merchant": merchant.name,
            "category": category.name_en if lang == "en" else category.name_zh,
            "deadline": ticket.deadline_at or "",
            "today": self.core.now().astimezone(LOCAL_TZ).date(),
            "code_word": ticket.code_word,
            **await spoken_price(tx.session, merchant.id or 0, category.code),
        }
        tx.emit(
            "resident.told",
            "ticket",
            ticket.id,
            call_id=call.id,
            told=list(TOLD),
            merchant_id=merchant.id,
            merchant=merchant.name,
            deadline=ticket.deadline_at.isoformat() if ticket.deadline_at else None,
            price=context["price"] or None,
        )
        return [PlayFlow(call.ref, "resident_told", context, lang)]

    async def _ended(self, tx: Tx, call: Call) -> None:
        if call.ticket_id is None:
            return
        if call.answered_at is None:
            await self._unanswered(tx, call, "no answer")
        elif not await self._heard(tx, call):
            tx.emit("resident.hung_up", "ticket", call.ticket_id, call_id=call.id)

    async def _failed(self, tx: Tx, call: Call, reason: OriginateFailure) -> None:
        if call.ticket_id is not None:
            await self._unanswered(tx, call, reason.value)

    async def _unanswered(self, tx: Tx, call: Call, reason: str) -> None:
        """Nobody took the call: one more try later (never in the night), or give up."""
        assert call.ticket_id is not None
        core = self.core
        ticket = await tx.session.get(Ticket, call.ticket_id, populate_existing=True)
        if ticket is None or ticket.state != tm.TicketState.ACCEPTED:
            return
        _, this_accept = await self._attempts(tx, ticket)
        if this_accept >= max(1, core.config.tell_resident_tries):
            tx.emit("resident.not_reached", "ticket", ticket.id, call_id=call.id, reason=reason)
            return
        at = core.now() + timedelta(seconds=core.config.tell_resident_retry_s)
        at = quiet_until(core.config, at) or at
        tx.emit(
            "resident.told_retry",
            "ticket",
            ticket.id,
            call_id=call.id,
            reason=reason,
            at=at.isoformat(),
        )
        core.fx.after_commit(tx, ScheduleTimer(TimerKey.told(ticket.id), at))

    async def _heard(self, tx: Tx, call: Call) -> bool:
        """Whether the resident heard the told flow to its end on this call."""
        events = (
            await tx.session.execute(
                select(Event).where(
                    col(Event.name) == "resident.heard",
                    col(Event.subject) == "ticket",
                    col(Event.subject_id) == str(call.ticket_id),
                )
            )
        ).scalars()
        return any(e.data.get("call_id") == call.id for e in events)

    async def _wanted(self, tx: Tx, call: Call) -> bool:
        if call.ticket_id is None:
            return False
        ticket = await tx.session.get(Ticket, call.ticket_id, populate_existing=True)
        return ticket is not None and ticket.state == tm.TicketState.ACCEPTED
