"""Medication and appointment reminders: the service calls a resident to remind them.

A `Reminder` is a text the voice reads (slowly) at a local time: a medication reminder
on its weekdays, an appointment reminder the day before (at the appointment's time) and
an hour before the appointment. No reminder rings in the quiet hours: a time in them is
refused, and an hour-before call that falls in them waits for their end (or is dropped
when that end is not before the appointment). The call (purpose `reminder`, flow
`reminder`): 1 confirms (`reminder.confirmed`), 2 puts the resident in the operators'
queue (a routine call, not an emergency: `reminder.help`), 9 hears it again. No answer,
busy, failed or no key: one more try after `RETRY_S`, then `reminder.missed`. Every step
is a `reminder.*` event on the resident's timeline (never the reminder's text: it may say
what a resident is treated for).

A booked visit's reminder (kind `visit`, `dispatch.booking`) is an appointment reminder
whose row names its ticket: written when a merchant accepts the slot, it reads the slot
(not a text) and rings only while the ticket is still accepted for that slot; each of its
steps is also a `booking.reminder_*` event on the ticket's timeline. Its merchant has one
too (`merchant_id` set; the day before only): 1 confirms, 2 cancels the visit
(`reminder.cancelled`; `on_cancelled` re-opens the cascade, `dispatch.booking`).

Restart safety: the occurrence under way and its call ref are on the reminder's row,
written in the unit of work that records the call (placed once); the one timer per
reminder (`reminder:<id>`) is idempotent (it looks at the row and does what is due), and
the reconciler asks `wanted_timers` for every reminder with something still to do.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from dispatch.booking_slot import Window, slot_context
from dispatch.core import Core, quiet_until
from dispatch.effects import CancelTimer, Command, Hangup, PlayFlow, ScheduleTimer
from dispatch.errors import Invalid
from dispatch.machines import call as cm
from dispatch.machines import ticket as tm
from dispatch.models import Call, Reminder, Ticket
from dispatch.outbound import Outbound, Purpose
from dispatch.queue import Queue
from dispatch.timer_keys import TimerKey
from eventlog.clock import LOCAL_TZ
from eventlog.store import Tx
from ivr.prompts import pick_lang
from providers.base import OriginateFailure
from registry import repository as repo
from registry.models import Merchant, Resident, ResidentPhone, ServiceCategory

log = logging.getLogger(__name__)

PURPOSE = FLOW = "reminder"
MEDICATION, APPOINTMENT, VISIT = "medication", "appointment", "visit"
#: tries of one reminder call, and the pause after one nobody answered
TRIES, RETRY_S = 2, 300.0
#: how often a reminder with a call under way is looked at (a lost report of its end)
WATCHDOG_S = 600.0
#: a visit's merchant is reminded this long before the resident's day-before call
MERCHANT_AHEAD_S = 2 * 3600.0
#: an occurrence this late (the service was down) is skipped, not called
STALE_S = 2 * 3600.0


def ref_of(reminder_id: int | None, due: datetime, attempt: int) -> str:
    """A reminder call's ref: `rm-<id>-<local due YYYYmmddHHMM>-<try>`."""
    return f"rm-{reminder_id}-{due.astimezone(LOCAL_TZ):%Y%m%d%H%M}-{attempt}"


def reminder_id_of(ref: str) -> int | None:
    """The reminder id in a reminder call's ref, else None."""
    parts = ref.split(".", 1)[0].split("-")
    return int(parts[1]) if len(parts) == 4 and parts[0] == "rm" and parts[1].isdigit() else None


class Reminders:
    """A resident's reminders, their calls and retries."""

    def __init__(self, core: Core, *, outbound: Outbound, queue: Queue) -> None:
        self.core = core
        self.outbound = outbound
        self.queue = queue
        #: a merchant's 2 on a visit's reminder, in its unit of work (`dispatch.booking`)
        self.on_cancelled: list[Callable[[Tx, Reminder], Awaitable[None]]] = []
        outbound.serve(
            PURPOSE,
            Purpose(
                answered=self._answered,
                wanted=self._wanted,
                ended=self._ended,
                failed=self._failed,
                lost=self._ended,
                replace_when_lost=False,
                quiet_hours=True,
                wraps_up=lambda call: call.operator_id is not None,
            ),
        )

    # -- when ----------------------------------------------------------------------------
    def next_due(self, rem: Reminder, after: datetime) -> datetime | None:
        """The reminder's first call time after `after` (out of the quiet hours), if any."""
        if not rem.enabled:
            return None
        config = self.core.config
        appointment: datetime | None = None
        if rem.kind in (APPOINTMENT, VISIT):
            if rem.on_date is None:
                return None
            appointment = datetime.combine(rem.on_date, rem.at, tzinfo=LOCAL_TZ)
            times = [appointment - timedelta(days=1), appointment - timedelta(hours=1)]
            if rem.merchant_id is not None:
                # the merchant hears it the day before, ahead of the resident: time to re-offer
                times = [appointment - timedelta(days=1, seconds=MERCHANT_AHEAD_S)]
        else:
            first = after.astimezone(LOCAL_TZ).date()
            days = (first + timedelta(days=i) for i in range(9))
            times = [datetime.combine(d, rem.at, tzinfo=LOCAL_TZ) for d in days
                     if d.isoweekday() in rem.days]  # fmt: skip
        for at in times:
            at = quiet_until(config, at) or at
            if appointment is not None and at >= appointment:
                continue
            if at > after:
                return at
        return None

    def _next_at(self, rem: Reminder) -> datetime | None:
        """When the reminder's timer must fire next: a look at a call under way, a retry,
        else its next occurrence."""
        if rem.call_ref is not None:
            return self.core.now() + timedelta(seconds=WATCHDOG_S)
        if rem.retry_at is not None:
            return rem.retry_at
        return self.next_due(rem, rem.done_through or self.core.now())

    def _schedule(self, tx: Tx, rem: Reminder) -> None:
        key = TimerKey.reminder(rem.id)
        at = self._next_at(rem)
        self.core.fx.after_commit(tx, ScheduleTimer(key, at) if at else CancelTimer(key))

    # -- the reminders -------------------------------------------------------------------
    async def of_resident(self, resident_id: int) -> list[Reminder]:
        """A resident's reminders, in the order they were added (`NotFound`: no resident)."""
        async with self.core.store.read() as session:
            if await session.get(Resident, resident_id) is None:
                raise repo.NotFound("resident", resident_id)
            rows = await session.execute(
                select(Reminder)
                .where(
                    col(Reminder.resident_id) == resident_id, col(Reminder.merchant_id).is_(None)
                )
                .order_by(col(Reminder.id))
            )
            return list(rows.scalars())

    def _check(self, rem: Reminder) -> None:
        """Refuse what would never ring, or ring at night (`Invalid`)."""
        if rem.kind == VISIT:
            raise Invalid("a booked visit's reminder follows its ticket's booking")
        config = self.core.config
        now = self.core.now().astimezone(LOCAL_TZ)
        if quiet_until(config, datetime.combine(now.date(), rem.at, tzinfo=LOCAL_TZ)):
            quiet = f"{config.quiet_start:%H:%M}-{config.quiet_end:%H:%M}"
            raise Invalid(f"at falls in the quiet hours ({quiet}): no call then")
        if rem.kind == APPOINTMENT:
            if rem.on_date is None or rem.days:
                raise Invalid("an appointment reminder needs on_date and no days")
            if datetime.combine(rem.on_date, rem.at, tzinfo=LOCAL_TZ) <= now:
                raise Invalid("the appointment is in the past")
        elif rem.on_date is not None or not rem.days:
            raise Invalid("a medication reminder needs days (ISO weekdays) and no on_date")

    async def add(self, resident_id: int, *, actor: str, **values: Any) -> Reminder:
        """A new reminder; its first call is scheduled."""
        core = self.core
        async with core.store.tx() as tx:
            await core.get(tx, Resident, resident_id, "resident")
            rem = Reminder(resident_id=resident_id, **values)
            self._check(rem)
            rem.updated_by, rem.updated_at, rem.done_through = actor, core.now(), core.now()
            tx.session.add(rem)
            await tx.session.flush()
            self._emit_set(tx, rem, "reminder.added", actor)
            self._schedule(tx, rem)
        return rem

    async def get(self, reminder_id: int) -> Reminder:
        """One reminder (`NotFound` when there is none)."""
        async with self.core.store.read() as session:
            rem = await session.get(Reminder, reminder_id)
        if rem is None:
            raise repo.NotFound("reminder", reminder_id)
        return rem

    async def update(self, reminder_id: int, *, actor: str, **values: Any) -> Reminder:
        """Change a reminder; what it said before is never called again (a call under way
        goes on); the next call is scheduled from now."""
        core = self.core
        async with core.store.tx() as tx:
            rem = await core.get(tx, Reminder, reminder_id, "reminder")
            for name, value in values.items():
                setattr(rem, name, value)
            self._check(rem)
            if not rem.enabled and rem.call_ref is None and rem.due_at is not None:
                # switched off between two tries: no retry follows
                tx.emit("reminder.unanswered", "resident", rem.resident_id, reminder_id=rem.id,
                        attempt=rem.attempts, outcome="switched_off")  # fmt: skip
                rem.due_at, rem.retry_at, rem.attempts = None, None, 0
            if rem.due_at is None:
                rem.done_through = max(rem.done_through or core.now(), core.now())
            rem.updated_by, rem.updated_at = actor, core.now()
            rem.version += 1
            await tx.session.flush()
            self._emit_set(tx, rem, "reminder.changed", actor)
            self._schedule(tx, rem)
        return rem

    async def delete(self, reminder_id: int, *, actor: str) -> None:
        """Remove a reminder and its timer (a call under way just ends)."""
        core = self.core
        async with core.store.tx() as tx:
            rem = await core.get(tx, Reminder, reminder_id, "reminder")
            tx.emit("reminder.deleted", "resident", rem.resident_id, reminder_id=rem.id,
                    actor=actor)  # fmt: skip
            await tx.session.delete(rem)
            core.fx.after_commit(tx, CancelTimer(TimerKey.reminder(reminder_id)))

    def _emit_set(self, tx: Tx, rem: Reminder, name: str, actor: str) -> None:
        tx.emit(
            name, "resident", rem.resident_id, reminder_id=rem.id, actor=actor, kind=rem.kind,
            at=rem.at.strftime("%H:%M"), days=rem.days, enabled=rem.enabled,
            on_date=rem.on_date.isoformat() if rem.on_date else None,
        )  # fmt: skip

    # -- the timer (`reminder:<id>`) -----------------------------------------------------
    async def tick(self, reminder_id: int) -> None:
        """The reminder's timer: start the occurrence that is due, place its retry, or
        look at a call whose end was never reported; then the timer for what is next."""
        core = self.core
        now = core.now()
        async with core.store.tx() as tx:
            rem = await tx.session.get(Reminder, reminder_id, populate_existing=True)
            if rem is None:
                return
            quiet = quiet_until(core.config, now)
            if rem.call_ref is not None:
                call = await core.call_by_ref(tx, rem.call_ref)
                if call is None or call.state in cm.FINAL:
                    log.info("reminder %s: call %s ended unheard", rem.id, rem.call_ref)
                    await self._gone(tx, rem, rem.call_ref, "lost")
            elif rem.enabled and rem.retry_at is not None and rem.retry_at <= now:
                if quiet is not None:
                    rem.retry_at = quiet
                else:
                    rem.retry_at = None
                    await self._call(tx, rem)
            elif rem.due_at is None and rem.enabled:
                due = self.next_due(rem, rem.done_through or now)
                while due is not None and due <= now:
                    later = self.next_due(rem, due)
                    if later is None or later > now:
                        break
                    due = later
                if due is not None and due <= now:
                    if not await self._visit_holds(tx, rem):
                        rem.done_through = due
                        tx.emit("reminder.skipped", "resident", rem.resident_id,
                                reminder_id=rem.id, due_at=due.isoformat(),
                                why="not_booked")  # fmt: skip
                    elif (now - due).total_seconds() > STALE_S or quiet is not None:
                        rem.done_through = due
                        tx.emit("reminder.skipped", "resident", rem.resident_id,
                                reminder_id=rem.id, due_at=due.isoformat())  # fmt: skip
                    else:
                        rem.due_at, rem.attempts = due, 0
                        tx.emit("reminder.due", "resident", rem.resident_id, reminder_id=rem.id,
                                kind=rem.kind, due_at=due.isoformat())  # fmt: skip
                        await self._call(tx, rem)
            self._schedule(tx, rem)

    async def _call(self, tx: Tx, rem: Reminder) -> None:
        """Record the occurrence's next try and place it after the commit (its ref on the
        reminder in the same unit of work: placed once)."""
        assert rem.due_at is not None
        number = await self._number(tx, rem)
        rem.attempts += 1
        if number is None:
            tx.emit("reminder.no_phone", "resident", rem.resident_id, reminder_id=rem.id)
            self._settle(tx, rem, "reminder.missed", why="no_phone")
            return
        ref = ref_of(rem.id, rem.due_at, rem.attempts)
        to_resident = rem.merchant_id is None
        call = self.outbound.record(
            tx, ref=ref, number=number, purpose=PURPOSE, ticket_id=rem.ticket_id,
            resident_id=rem.resident_id if to_resident else None, registered=to_resident,
        )  # fmt: skip
        rem.call_ref = ref
        rem.version += 1
        await tx.session.flush()
        self.outbound.place(tx, call)
        tx.emit("reminder.calling", "resident", rem.resident_id, reminder_id=rem.id,
                attempt=rem.attempts, call_id=call.id)  # fmt: skip
        self._on_ticket(tx, rem, "reminder.calling", attempt=rem.attempts, call_id=call.id)

    async def _number(self, tx: Tx, rem: Reminder) -> str | None:
        """Whom a reminder rings: the resident's first phone, or its merchant's."""
        if rem.merchant_id is not None:
            merchant = await tx.session.get(Merchant, rem.merchant_id)
            return merchant.phones[0] if merchant is not None and merchant.phones else None
        found = await tx.session.execute(
            select(col(ResidentPhone.number))
            .where(col(ResidentPhone.resident_id) == rem.resident_id)
            .order_by(col(ResidentPhone.id))
            .limit(1)
        )
        return found.scalar()

    def _settle(self, tx: Tx, rem: Reminder, name: str, **data: Any) -> None:
        """The occurrence is over (confirmed, to an operator, missed): the next one."""
        tx.emit(name, "resident", rem.resident_id, reminder_id=rem.id, attempts=rem.attempts,
                **data)  # fmt: skip
        self._on_ticket(tx, rem, name, attempts=rem.attempts, **data)
        rem.done_through = max(rem.done_through or rem.due_at or self.core.now(),
                               rem.due_at or self.core.now())  # fmt: skip
        rem.due_at, rem.call_ref, rem.retry_at, rem.attempts = None, None, None, 0
        rem.version += 1
        self._schedule(tx, rem)

    async def _gone(self, tx: Tx, rem: Reminder, ref: str, why: str) -> None:
        """A try got no key: one more later, or missed."""
        rem.call_ref = None
        tx.emit("reminder.unanswered", "resident", rem.resident_id, reminder_id=rem.id,
                attempt=rem.attempts, outcome=why, ref=ref)  # fmt: skip
        self._on_ticket(tx, rem, "reminder.unanswered", attempt=rem.attempts, outcome=why)
        if rem.attempts < TRIES:
            rem.retry_at = self.core.now() + timedelta(seconds=RETRY_S)
            rem.version += 1
            tx.emit("reminder.retry", "resident", rem.resident_id, reminder_id=rem.id,
                    at=rem.retry_at.isoformat())  # fmt: skip
            self._schedule(tx, rem)
            return
        self._settle(tx, rem, "reminder.missed", why=why)

    # -- the call (purpose "reminder") ---------------------------------------------------
    async def _current(self, tx: Tx, call: Call) -> Reminder | None:
        """The reminder whose current call this is (None: a late report of another)."""
        rid = reminder_id_of(call.ref)
        rem = await tx.session.get(Reminder, rid, populate_existing=True) if rid else None
        now = rem.call_ref if rem is not None else None
        if rem is None or now is None or not (call.ref == now or call.ref.startswith(now + ".")):
            return None
        return rem

    async def finished(self, ref: str, outcome: str) -> None:
        """The flow ended: confirmed; help (the operators' queue); or no key."""
        core = self.core
        async with core.store.tx() as tx:
            call = await core.call_by_ref(tx, ref)
            rem = await self._current(tx, call) if call is not None else None
            if call is None or rem is None:
                return
            if outcome == "confirmed":
                self._settle(tx, rem, "reminder.confirmed", call_id=call.id)
                return
            if outcome == "cancel" and rem.merchant_id is not None:
                self._settle(tx, rem, "reminder.cancelled", call_id=call.id)
                for hook in self.on_cancelled:
                    await hook(tx, rem)
                return
            if outcome != "help":
                await self._gone(tx, rem, ref, "no_key")
                return
            self._settle(tx, rem, "reminder.help", call_id=call.id)
        # a routine call for an operator: it waits in the queue like a caller
        await self.queue.enqueue(ref, PURPOSE, None)

    async def _answered(self, tx: Tx, call: Call) -> Sequence[Command]:
        rem = await self._current(tx, call)
        if rem is None:
            return [Hangup(call.ref)]
        resident = await self.core.get(tx, Resident, rem.resident_id, "resident")
        lang = pick_lang(rem.language or resident.language)
        context: dict[str, Any] = {"name": resident.name, "sex": resident.sex,
                                   "text": rem.text, "kind": rem.kind}  # fmt: skip
        if rem.kind == VISIT and rem.ticket_id is not None:
            ticket = await self.core.get(tx, Ticket, rem.ticket_id, "ticket")
            if rem.merchant_id is not None:
                # the merchant hears where to go, never the resident's name or number
                lang, context = "zh-CN", {"who": "merchant", "address": resident.address}
            category = await tx.session.get(ServiceCategory, ticket.category_code)
            name = category.name_zh if category else ticket.category_code
            if lang == "en" and category is not None and category.name_en:
                name = category.name_en
            today = self.core.now().astimezone(LOCAL_TZ).date()
            context |= {**slot_context(ticket), "category": name, "today": today}
        return [PlayFlow(call.ref, FLOW, context, lang)]

    async def _ended(self, tx: Tx, call: Call) -> None:
        rem = await self._current(tx, call)
        if rem is None:
            return
        why = "lost" if call.cause == "lost" else "no_key" if call.answered_at else "unanswered"
        await self._gone(tx, rem, call.ref, why)

    async def _failed(self, tx: Tx, call: Call, reason: OriginateFailure) -> None:
        rem = await self._current(tx, call)
        if rem is not None:
            await self._gone(tx, rem, call.ref, reason.value)

    async def _wanted(self, tx: Tx, call: Call) -> bool:
        return await self._current(tx, call) is not None

    # -- booked visits (dispatch.booking) ------------------------------------------------
    async def _visit_holds(self, tx: Tx, rem: Reminder) -> bool:
        """Whether a reminder is due to ring: a visit's only while its ticket is accepted
        for the slot the reminder was written for."""
        if rem.kind != VISIT or rem.ticket_id is None:
            return True
        ticket = await tx.session.get(Ticket, rem.ticket_id, populate_existing=True)
        return (
            ticket is not None
            and ticket.state == tm.TicketState.ACCEPTED
            and (rem.merchant_id is None or rem.merchant_id == ticket.merchant_id)
            and ticket.booked_on == rem.on_date
            and ticket.booked_from == rem.at
        )

    def _on_ticket(self, tx: Tx, rem: Reminder, name: str, **data: Any) -> None:
        """A visit's reminder step on the ticket's timeline too (`booking.reminder_*`, the
        merchant's `booking.merchant_reminder_*`)."""
        if rem.ticket_id is not None:
            who = "merchant_reminder" if rem.merchant_id is not None else "reminder"
            step = name.removeprefix("reminder.")
            tx.emit(f"booking.{who}_{step}", "ticket", rem.ticket_id, reminder_id=rem.id,
                    **data)  # fmt: skip

    async def visit_of(self, tx: Tx, ticket_id: int | None, *, merchant: bool) -> Reminder | None:
        """A ticket's visit reminder row (the resident's, or its merchant's), if any."""
        to = col(Reminder.merchant_id)
        found = await tx.session.execute(
            select(Reminder)
            .where(
                col(Reminder.ticket_id) == ticket_id, to.is_not(None) if merchant else to.is_(None)
            )
            .limit(1)
        )
        return found.scalars().first()

    async def book_visit(self, tx: Tx, ticket: Ticket, slot: Window | None, *, actor: str) -> None:
        """A ticket's visit reminders follow its booking: the slot accepted (the resident
        called the day before and an hour before, the merchant the day before), or none
        (`slot` None: a call under way just ends)."""
        if ticket.resident_id is None:
            return
        for merchant in (False, True):
            await self._book(tx, ticket, slot, actor=actor, merchant=merchant)

    async def _book(
        self, tx: Tx, ticket: Ticket, slot: Window | None, *, actor: str, merchant: bool
    ) -> None:
        assert ticket.resident_id is not None
        rem = await self.visit_of(tx, ticket.id, merchant=merchant)
        if slot is None:
            if rem is not None and rem.enabled:
                rem.enabled, rem.due_at, rem.retry_at, rem.attempts = False, None, None, 0
                rem.call_ref = None
                rem.updated_by, rem.updated_at, rem.version = (
                    actor,
                    self.core.now(),
                    rem.version + 1,
                )
                self._emit_set(tx, rem, "reminder.changed", actor)
                self._schedule(tx, rem)
            return
        start = slot.start.astimezone(LOCAL_TZ)
        if rem is None:
            rem = Reminder(resident_id=ticket.resident_id, ticket_id=ticket.id, kind=VISIT,
                           text="", at=start.time())  # fmt: skip
            tx.session.add(rem)
        rem.merchant_id = ticket.merchant_id if merchant else None
        rem.on_date, rem.at, rem.enabled, rem.days = start.date(), start.time(), True, []
        rem.due_at, rem.retry_at, rem.attempts, rem.call_ref = None, None, 0, None
        rem.done_through = self.core.now()
        rem.updated_by, rem.updated_at, rem.version = actor, self.core.now(), rem.version + 1
        await tx.session.flush()
        self._emit_set(tx, rem, "reminder.added", actor)
        self._schedule(tx, rem)

    # -- restarts ------------------------------------------------------------------------
    async def wanted_timers(self) -> dict[TimerKey, datetime]:
        """For the reconciler: every reminder with a call under way, a retry or a next
        occurrence has its `reminder:` timer (the tick is idempotent)."""
        async with self.core.store.read() as session:
            rows = (await session.execute(select(Reminder))).scalars().all()
        wanted: dict[TimerKey, datetime] = {}
        for rem in rows:
            at = self.core.now() if rem.call_ref is not None else self._next_at(rem)
            if at is not None:
                wanted[TimerKey.reminder(rem.id)] = at
        return wanted


def parse_time(value: time) -> time:
    """A time of day to the minute."""
    return value.replace(second=0, microsecond=0, tzinfo=None)
