"""Restart safety: the reconciler that repairs what a stop or crash left behind.

At start, and every `reconcile_every_s`, open tickets, offers, calls and operator states
are compared with the scheduled timers and the gaps are repaired. At start only, it also
ends calls the telephony backend no longer knows (the port's `LiveCalls` capability),
closes wrap-ups nobody can finish (`closed_at_start`), frees operators left reserved or
on a finished call, and dispatches keypad tickets a crash caught before their dispatch.

Each row is repaired on its own: one that cannot be is logged, recorded as
`system.reconcile_skipped` and left as it is; the service always starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import String, cast, or_, select
from sqlmodel import col

from dispatch import deadlines as dl
from dispatch.calls import Calls
from dispatch.campaigns import Campaigns
from dispatch.core import SURVEY_PURPOSES, Core, undialed
from dispatch.desk import CLOSED_AT_START, Desk
from dispatch.effects import CancelTimer, ScheduleTimer
from dispatch.emergency import Emergency
from dispatch.errors import Conflict
from dispatch.family import Family
from dispatch.incident_callbacks import IncidentCallbacks
from dispatch.line import PhoneLine
from dispatch.machines import IllegalTransition
from dispatch.machines import call as cm
from dispatch.machines import offer as om
from dispatch.machines import operator as opm
from dispatch.machines import ticket as tm
from dispatch.models import Call, Offer, OperatorStatus, Ticket
from dispatch.offers import Offers
from dispatch.operators import Operators
from dispatch.outbound_engine import OutboundEngine
from dispatch.queue import Queue
from dispatch.reminders import Reminders
from dispatch.surveys import Surveys
from dispatch.timer_keys import RECONCILE_PERIODIC, Kind, TimerKey
from dispatch.timers import Timers
from dispatch.wellbeing import Wellbeing
from providers.base import LiveCalls, TelephonyError
from registry.catalog import OPERATOR_TASKS

log = logging.getLogger(__name__)

#: timer kinds the reconciler owns: it schedules the missing ones and cancels the orphans
RECONCILED_KINDS = frozenset(
    {
        Kind.OFFER,
        Kind.DEADLINE,
        Kind.ESCALATE,
        Kind.CLOSE,
        Kind.SURVEY,
        Kind.WRAPUP,
        Kind.RING,
        Kind.INCIDENT,
        Kind.EMERGENCY,
        Kind.WELLBEING,
        Kind.FAMILY,
        Kind.FAMILY_EMERGENCY,
        Kind.REMINDER,
    }
)


class Reconciler:
    """Start-up and periodic repair of timers, calls and desks."""

    def __init__(
        self,
        core: Core,
        *,
        timers: Timers,
        live_calls: LiveCalls | None,
        calls: Calls,
        desk: Desk,
        emergency: Emergency,
        operators: Operators,
        offers: Offers,
        queue: Queue,
        surveys: Surveys,
        line: PhoneLine,
        incidents: IncidentCallbacks,
        campaigns: Campaigns,
        wellbeing: Wellbeing,
        family: Family | None = None,
        reminders: Reminders | None = None,
        engine: OutboundEngine | None = None,
    ) -> None:
        self.core = core
        self.engine = engine
        self.family = family
        self.reminders = reminders
        self.incidents = incidents
        self.campaigns = campaigns
        self.wellbeing = wellbeing
        #: read for the keys scheduled now; changes go through `core.fx`
        self.timers = timers
        self.live_calls = live_calls
        self.calls = calls
        self.desk = desk
        self.emergency = emergency
        self.operators = operators
        self.offers = offers
        self.queue = queue
        self.surveys = surveys
        self.line = line
        #: the start-up check and a reconnect's may run at once: one at a time
        self._lost_lock = asyncio.Lock()

    async def start(self) -> dict[str, int]:
        """At process start: repair what a crash left behind, then reconcile periodically.

        Never raises: a process that cannot start cannot answer an emergency. Whatever
        the reconciler could not repair is in the log and in `system.reconcile_skipped`.
        """
        try:
            report = await self.reconcile(startup=True)
        except Exception as exc:
            log.exception("start-up reconciliation failed; serving anyway")
            await self._record_skip("dispatch", "reconcile", exc)
            report = {}
        # calls that waited for the phone line when the last process stopped
        if self.core.health().up:
            await self._guarded("dispatch", "resume_outbound", self.line.resume_outbound)
        return report

    async def after_reconnect(self) -> dict[str, int]:
        """The backend is (back) up and has resynced: end the calls it no longer has.

        Calls that ended while nobody watched (Yijing down, the link down, the PBX
        restarted) are otherwise never closed: a caller who hung up in the menu would stay
        `ivr`, a queued one would be offered to an operator. Run on every
        `BackendStatus(up=True)`, not only at start.
        """
        closed, skipped = await self._lost_calls()
        report = {"lost_calls": closed, "skipped": skipped}
        if closed or skipped:
            async with self.core.store.tx() as tx:
                tx.emit("system.reconciled", "system", "dispatch", startup=False, counts=report)
        return report

    async def _record_skip(self, subject: str, subject_id: object, exc: BaseException) -> None:
        """Say what the reconciler had to leave as it found it (no personal data)."""
        try:
            async with self.core.store.tx() as tx:
                tx.emit(
                    "system.reconcile_skipped",
                    "system",
                    "dispatch",
                    kind=subject,
                    id=str(subject_id),
                    error=type(exc).__name__,
                )
        except Exception:
            log.exception("reconciler: could not record the skipped %s %s", subject, subject_id)

    async def _guarded(
        self, subject: str, subject_id: object, repair: Callable[[], Awaitable[object]]
    ) -> tuple[bool, object]:
        """Run one repair: (True, its result), or (False, None) when the row could not be
        repaired; that one is logged, recorded and skipped."""
        try:
            return True, await repair()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("reconciler: %s %s skipped", subject, subject_id)
            await self._record_skip(subject, subject_id, exc)
            return False, None

    async def reconcile(self, *, startup: bool = False) -> dict[str, int]:
        """Compare open tickets, offers and calls with the scheduled timers; repair the gaps.

        - every live offer has its `offer:` timer, every unfinished ticket its `deadline:`
          (or `escalate:`) timer, every completed ticket its survey and `close:` timers,
          every operator wrapping up their `wrapup:` timer and every operator a call is
          offered to their `ring:` timer; overdue ones are scheduled in the past and so
          fire once, now;
        - timers about finished subjects are cancelled;
        - at start, calls the backend does not know were lost with the old process: their
          offers expire and the cascade moves on (a ref is never placed again), lost survey
          calls count as unanswered, lost callers get a call back; wrap-ups and operator
          states that nobody can finish any more are closed with the reason
          "closed_at_start"; keypad tickets that never got dispatched are dispatched;
        - a fixed incident with callers not called back yet has its `incident:` timer;
        - every resident with wellbeing calls on has their `wellbeing:` timer;
        - every reminder with something still to do has its `reminder:` timer;
        - a ticket or emergency call with a family notice not delivered yet has its
          `family:` / `family_em:` timer.
        """
        report = {
            "scheduled": 0,
            "cancelled": 0,
            "lost_calls": 0,
            "closed": 0,
            "dispatched": 0,
            "skipped": 0,
        }
        if startup:
            phases = (
                ("lost_calls", self._lost_calls),
                ("closed", self._stale_desks),
                ("dispatched", self._undispatched),
                ("emergencies", self._emergencies),
            )
            for count, phase in phases:
                done, skipped = await phase()
                if done or count in report:  # "emergencies" only when some moved on
                    report[count] = report.get(count, 0) + done
                report["skipped"] += skipped
        else:
            # a responder's call the backend lost (no report of its end) must not stall an
            # escalation that has no deadline left (the contacts): checked every round
            moved, skipped = await self._emergencies()
            if moved:
                report["emergencies"] = moved
            report["skipped"] += skipped
            # a call that waited while the line stayed up (a standby's command no owner
            # took in time) gets no `telephony.up` to place it: this round does (each
            # backend dedupes by ref, so a call placed meanwhile is not placed twice)
            if self.core.health().up:
                ok, placed = await self._guarded(
                    "dispatch", "resume_outbound", self.line.resume_outbound
                )
                if isinstance(placed, int) and placed:
                    report["redialed"] = placed
                report["skipped"] += 0 if ok else 1
        fx = self.core.fx
        keys = await self.timers.keys()
        wanted, skipped = await self._wanted_timers()
        report["skipped"] += skipped
        for key, at in wanted.items():
            if str(key) not in keys:
                log.info("reconciler: timer %s was missing; scheduled for %s", key, at)
                ok, _ = await self._guarded("timer", key, partial(fx.run, ScheduleTimer(key, at)))
                report["scheduled" if ok else "skipped"] += 1
        for raw in keys:
            parsed = TimerKey.parse(raw)
            if parsed is not None and parsed.kind in RECONCILED_KINDS and parsed not in wanted:
                ok, _ = await self._guarded("timer", raw, partial(fx.run, CancelTimer(parsed)))
                report["cancelled" if ok else "skipped"] += 1
        every = timedelta(seconds=self.core.config.reconcile_every_s)
        await fx.run(ScheduleTimer(RECONCILE_PERIODIC, self.core.now() + every))
        if any(report.values()):
            async with self.core.store.tx() as tx:
                tx.emit("system.reconciled", "system", "dispatch", startup=startup, counts=report)
        return report

    async def _wanted_timers(self) -> tuple[dict[TimerKey, datetime], int]:
        """Every timer the open subjects need, and how many rows could not be read.

        Columns are read as plain text and parsed row by row, so one row with a state this
        version does not know is skipped instead of failing the whole read.
        """
        config = self.core.config
        now = self.core.now()
        wanted: dict[TimerKey, datetime] = {}
        bad: list[tuple[str, object, Exception]] = []
        async with self.core.store.read() as session:
            offer_rows = await session.execute(
                select(col(Offer.id), col(Offer.expires_at)).where(
                    col(Offer.state).in_(list(om.LIVE))
                )
            )
            for offer_id, expires_at in offer_rows:
                wanted[TimerKey.offer(offer_id)] = expires_at or now
            ticket_rows = (
                await session.execute(
                    select(
                        col(Ticket.id),
                        cast(col(Ticket.state), String),
                        col(Ticket.deadline_at),
                        col(Ticket.escalation_level),
                        col(Ticket.created_at),
                        col(Ticket.completed_at),
                        col(Ticket.survey_attempts),
                    ).where(cast(col(Ticket.state), String).not_in([s.value for s in tm.FINAL]))
                )
            ).all()
            surveying = set(
                (
                    await session.execute(
                        select(col(Call.ticket_id)).where(
                            col(Call.purpose).in_(SURVEY_PURPOSES),
                            col(Call.state).not_in(list(cm.FINAL)),
                        )
                    )
                ).scalars()
            )
            desk_rows = (
                await session.execute(
                    select(
                        col(OperatorStatus.user_id),
                        cast(col(OperatorStatus.state), String),
                        col(OperatorStatus.since),
                    ).where(
                        cast(col(OperatorStatus.state), String).in_(
                            [opm.OperatorState.WRAP_UP.value, opm.OperatorState.RESERVED.value]
                        )
                    )
                )
            ).all()
        for tid, raw_state, deadline_at, level, created_at, completed_at, attempts in ticket_rows:
            try:
                state = tm.TicketState(raw_state)
                escalation = dl.Level(level)
            except ValueError as exc:
                bad.append(("ticket", tid, exc))
                continue
            if state in dl.PENDING and deadline_at is not None:
                if escalation == dl.Level.NONE:
                    wanted[TimerKey.deadline(tid)] = deadline_at
                elif escalation == dl.Level.OPERATOR:
                    wanted[TimerKey.escalate(tid)] = dl.supervisor_at(created_at, deadline_at)
            if state == tm.TicketState.COMPLETED:
                done = completed_at or now
                wanted[TimerKey.close(tid)] = done + timedelta(seconds=config.survey_window_s)
                if tid not in surveying:
                    wanted[TimerKey.survey(tid)] = self.surveys.survey_time(attempts)
        for user_id, raw_state, since in desk_rows:
            if raw_state == opm.OperatorState.WRAP_UP.value:
                wanted[TimerKey.wrapup(user_id)] = since + timedelta(seconds=config.wrap_up_s)
            else:
                at = since + timedelta(seconds=config.ring_operator_s)
                wanted[TimerKey.ring(user_id)] = at
        # fixed incidents whose callers are not all called back yet
        wanted.update(await self.incidents.wanted_timers())
        # running campaigns with recipients not called yet
        wanted.update(await self.campaigns.wanted_timers())
        wanted.update(await self.emergency.wanted_timers())
        # every resident with wellbeing calls on has their one timer
        wanted.update(await self.wellbeing.wanted_timers())
        # reminders with a call under way, a retry or a next occurrence
        if self.reminders is not None:
            wanted.update(await self.reminders.wanted_timers())
        # calls waiting in the outbound engine's queue: its timer at the first due one
        if self.engine is not None:
            wanted.update(await self.engine.wanted_timers())
        # family notices decided but not delivered yet (a timer lost with a process)
        if self.family is not None:
            wanted.update(await self.family.wanted_timers())
        for subject, ident, error in bad:
            log.warning("reconciler: %s %s has an unreadable row (%s)", subject, ident, error)
            await self._record_skip(subject, ident, error)
        return wanted, len(bad)

    async def _emergencies(self) -> tuple[int, int]:
        """Escalations whose responder's call ended while no process listened: the next
        step (the step's own call is never placed again)."""
        moved = skipped = 0
        for row in await self.emergency.open_escalations():
            ok, done = await self._guarded(
                "emergency", row.call_id, partial(self.emergency.resume, row.call_id)
            )
            moved += bool(done)
            skipped += not ok
        return moved, skipped

    async def _unfinished_calls(self) -> list[tuple[int, str, str]]:
        """(id, ref, state as stored) of every call not ended, read as plain text."""
        async with self.core.store.read() as session:
            rows = await session.execute(
                select(col(Call.id), col(Call.ref), cast(col(Call.state), String)).where(
                    cast(col(Call.state), String).not_in([s.value for s in cm.FINAL])
                )
            )
            return [(int(i or 0), str(r), str(st)) for i, r, st in rows]

    async def _lost_calls(self) -> tuple[int, int]:
        """Calls the backend no longer knows: (closed, skipped).

        Asks the backend's `LiveCalls` capability; a backend that cannot tell right now (the
        link is down, a resync is under way) skips the check: its calls may well be live.
        A call in wrap-up is not on the PBX by nature (the caller has hung up): the desk
        repair (`_stale_desks`) sees to it.
        """
        if self.live_calls is None:
            return 0, 0
        async with self._lost_lock:
            return await self._lost_calls_now(self.live_calls)

    async def _lost_calls_now(self, live_calls: LiveCalls) -> tuple[int, int]:
        try:
            live = await live_calls.live_calls()
        except TelephonyError as exc:
            log.warning("reconciler: the backend cannot tell its live calls (%s); skipped", exc)
            return 0, 0
        closed = skipped = 0
        for call_id, ref, state in await self._unfinished_calls():
            if ref in live or state == cm.CallState.WRAP_UP.value:
                continue
            ok, was_lost = await self._guarded("call", call_id, partial(self._close_lost, call_id))
            closed += bool(was_lost)
            skipped += not ok
        return closed, skipped

    async def _close_lost(self, call_id: int) -> bool:
        """End one call lost with the old process, as if it had hung up then (True), unless
        there is nothing to end (False)."""
        async with self.core.store.read() as session:
            call = await session.get(Call, call_id)
        if call is None or call.state in cm.FINAL or call.state == cm.CallState.WRAP_UP:
            return False
        if undialed(call):
            return False  # waits for the phone line: it is placed, not lost
        if await self._live_now(call.ref):
            return False  # placed again meanwhile (the line came back while we checked)
        if call.offer_id is not None:
            async with self.core.store.tx() as tx:
                offer = await self.core.get(tx, Offer, call.offer_id, "offer")
                await self.offers.expire_lost(tx, offer)
        await self.calls.ended(call.ref, "lost")
        if call.direction == "in" and call.state in cm.WAITING and call.queued_at is None:
            # cut off in the menu by our restart: they may never ring again by themselves
            await self.queue.callback_once(call, "call lost in a restart")
        return True

    async def _live_now(self, ref: str) -> bool:
        """Whether the backend knows the call now; True when it cannot tell (keep it)."""
        if self.live_calls is None:
            return True
        try:
            return ref in await self.live_calls.live_calls()
        except TelephonyError:
            return True

    async def _stale_desks(self) -> tuple[int, int]:
        """Close wrap-ups and operator states nobody can finish after a restart.

        A call in wrap-up whose operator has moved on (or never will) ends with the
        disposition "closed_at_start"; an operator on a call that has ended wraps up; an
        operator a call was offered to is free again unless the caller still waits.
        """
        async with self.core.store.read() as session:
            statuses = (await session.execute(select(col(OperatorStatus.user_id)))).all()
        closed = skipped = 0
        for user_id in {int(row[0]) for row in statuses}:
            ok, _ = await self._guarded(
                "operator", user_id, partial(self._repair_operator, user_id)
            )
            skipped += not ok
        for call_id, _, state in await self._unfinished_calls():
            if state != cm.CallState.WRAP_UP.value:
                continue
            ok, was_closed = await self._guarded(
                "call", call_id, partial(self._close_stale_wrap_up, call_id)
            )
            closed += bool(was_closed)
            skipped += not ok
        return closed, skipped

    async def _repair_operator(self, user_id: int) -> None:
        async with self.core.store.tx() as tx:
            status = await tx.session.get(OperatorStatus, user_id, populate_existing=True)
            if status is None or status.call_id is None:
                return
            call = await tx.session.get(Call, status.call_id, populate_existing=True)
            # a colleague being consulted is on_call with another operator's caller: theirs
            # is freed with the consult (its end, or the caller's hang-up)
            consulted = call is not None and call.state in cm.CONSULT
            if status.state == opm.OperatorState.ON_CALL and (
                call is None
                or call.state not in cm.AT_DESK
                or (call.operator_id != user_id and not consulted)
            ):
                await self.operators.event(tx, user_id, opm.CallFinished(), call)
            elif status.state == opm.OperatorState.RESERVED and (
                call is None or call.state != cm.CallState.QUEUED
            ):
                await self.operators.event(tx, user_id, opm.Resume())

    async def _close_stale_wrap_up(self, call_id: int) -> bool:
        async with self.core.store.tx() as tx:
            call = await self.core.get(tx, Call, call_id, "call")
            if call.state != cm.CallState.WRAP_UP:
                return False
            status = (
                await self.operators.status(tx, call.operator_id)
                if call.operator_id is not None
                else None
            )
            if (
                status is not None
                and status.state == opm.OperatorState.WRAP_UP
                and status.call_id == call.id
            ):
                return False  # still theirs: their wrap-up timer ends it (see `_wanted_timers`)
            log.info("call %s: wrap-up nobody can finish closed at start", call.ref)
            await self.desk.close_wrap_up(tx, call, disposition=CLOSED_AT_START, actor="system")
            return True

    async def _undispatched(self) -> tuple[int, int]:
        """Keypad tickets created just before a crash, never dispatched (operator tasks such
        as call backs stay with the operators)."""
        async with self.core.store.read() as session:
            ids = (
                (
                    await session.execute(
                        select(col(Ticket.id)).where(
                            col(Ticket.state) == tm.TicketState.NEW,
                            col(Ticket.created_by) == "system",
                            col(Ticket.category_code).not_in(OPERATOR_TASKS),
                            # one waiting for the resident's consent waits for an operator
                            or_(
                                col(Ticket.needs_consent).is_(False),
                                col(Ticket.consented_at).is_not(None),
                            ),
                        )
                    )
                )
                .scalars()
                .all()
            )
        dispatched = skipped = 0
        for ticket_id in ids:
            if ticket_id is None:
                continue
            ok, _ = await self._guarded(
                "ticket", ticket_id, partial(self._dispatch_once, ticket_id)
            )
            if ok:
                dispatched += 1
            else:
                skipped += 1
        return dispatched, skipped

    async def _dispatch_once(self, ticket_id: int) -> None:
        try:
            await self.offers.dispatch(ticket_id, user=None)
        except (IllegalTransition, Conflict):
            return  # someone else dispatched it meanwhile
