"""Daily wellbeing calls: an elder living alone is called every day, and their care circle
is alerted when they do not answer.

A resident's `WellbeingPlan` says on which weekdays, in which window (local time), in
which language, and when they are away. A hotline call from the resident inside the
window is their check-in; at its end, without one (and not away), the service calls
(purpose `wellbeing`, flow `wellbeing`, never in the quiet hours): 1 all is well; 2 or 0
puts the call first in the operators' queue as an emergency (`dispatch.emergency`:
every free operator rings, then the on-call list). No answer, busy, failed or no key:
another try after `wellbeing_retry_s`, `wellbeing_tries` in all. Then the care circle:
the resident's emergency contacts in cascade order (flow `wellbeing_contact`); the first
who presses 1 owns the alert and is called back after `wellbeing_report_s` (flow
`wellbeing_report`: 1 all well closes it, 2 opens an urgent operator task). Nobody takes
it (or the report never comes): an urgent operator task with the history, and an
`alert.emergency` for the supervisors. Every step is a `wellbeing.*` event on the
resident's timeline.

Restart safety: each call's ref is written on the day's `WellbeingRound` in the unit of
work that records the call (one call under way per round, placed once); the one timer per
resident (`wellbeing:<resident id>`) is idempotent (it looks at the round and does what is
due), and the reconciler asks `wanted_timers` for every enabled plan.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from dispatch.core import Core, quiet_until
from dispatch.effects import CancelTimer, Command, Hangup, PlayFlow, ScheduleTimer
from dispatch.emergency import Emergency
from dispatch.errors import Invalid
from dispatch.machines import call as cm
from dispatch.models import Call, EmergencyEscalation, WellbeingPlan, WellbeingRound
from dispatch.outbound import Outbound, Purpose
from dispatch.tickets import Tickets
from dispatch.timer_keys import TimerKey
from dispatch.wellbeing_schedule import due_at, is_away, leg_of, next_due, round_id_of, round_ref
from eventlog.clock import LOCAL_TZ
from eventlog.store import Tx
from ivr.prompts import pick_lang
from providers.base import OriginateFailure
from registry import repository as repo
from registry.catalog import CALLBACK
from registry.models import EmergencyContact, Resident, ResidentPhone
from registry.phones import mask

log = logging.getLogger(__name__)

PURPOSE = "wellbeing"
#: the three calls of a round: the resident's tries, a contact's, a contact's report
RESIDENT_FLOW, CONTACT_FLOW, REPORT_FLOW = "wellbeing", "wellbeing_contact", "wellbeing_report"
#: a round's states
CALLING, CHECKED_IN, AWAY, OPERATOR = "calling", "checked_in", "away", "operator"
ALERTING, TAKEN, CLOSED = "alerting", "taken", "closed"
#: the states in which a round still has work to do
OPEN = frozenset({CALLING, ALERTING, TAKEN})
#: how often a round with a call under way is looked at (a lost report of its end)
WATCHDOG_S = 600.0
#: why an operator task is opened (the round's outcome)
UNREACHED, NO_REPORT, HELP = "unreached", "no_report", "help"


class Wellbeing:
    """Daily wellbeing calls, their retries, and the care circle."""

    def __init__(
        self, core: Core, *, outbound: Outbound, tickets: Tickets, emergency: Emergency
    ) -> None:
        self.core = core
        self.outbound = outbound
        self.tickets = tickets
        self.emergency = emergency
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
                machine=self._machine,
            ),
        )

    # -- the plan ----------------------------------------------------------------------------
    async def resident(self, resident_id: int) -> Resident:
        """The resident (`NotFound` when there is none)."""
        async with self.core.store.read() as session:
            resident = await session.get(Resident, resident_id)
        if resident is None:
            raise repo.NotFound("resident", resident_id)
        return resident

    async def plan(self, resident_id: int) -> WellbeingPlan | None:
        """A resident's plan, if they have one."""
        async with self.core.store.read() as session:
            return await session.get(WellbeingPlan, resident_id)

    async def set_plan(
        self,
        resident_id: int,
        *,
        actor: str,
        note: tuple[str, dict[str, Any]] | None = None,
        **values: Any,
    ) -> WellbeingPlan:
        """Write a resident's plan (on or off, days, window, language, away periods); the
        next round is scheduled (or, switched off, its timer cancelled). `note` is one more
        event on the resident's timeline, in the same unit of work (why it changed)."""
        core = self.core
        end = values.get("window_end")
        if end is not None and quiet_until(core.config, datetime.combine(
            core.now().astimezone(LOCAL_TZ).date(), end, tzinfo=LOCAL_TZ)):  # fmt: skip
            quiet = f"{core.config.quiet_start:%H:%M}-{core.config.quiet_end:%H:%M}"
            raise Invalid(f"window_end falls in the quiet hours ({quiet}): no call then")
        async with core.store.tx() as tx:
            await core.get(tx, Resident, resident_id, "resident")
            plan = await tx.session.get(WellbeingPlan, resident_id, populate_existing=True)
            if plan is None:
                plan = WellbeingPlan(resident_id=resident_id, **values)
                tx.session.add(plan)
            else:
                for name, value in values.items():
                    setattr(plan, name, value)
                plan.version += 1
            plan.updated_by, plan.updated_at = actor, core.now()
            await tx.session.flush()
            tx.emit(
                "wellbeing.plan_set", "resident", resident_id, actor=actor, enabled=plan.enabled,
                days=plan.days, window=[plan.window_start.isoformat(), plan.window_end.isoformat()],
                away=len(plan.away),
            )  # fmt: skip
            if note is not None:
                tx.emit(note[0], "resident", resident_id, actor=actor, **note[1])
            key = TimerKey.wellbeing(resident_id)
            rnd = await self._current(tx, resident_id)
            at = self._next_at(plan, rnd)
            core.fx.after_commit(tx, ScheduleTimer(key, at) if at else CancelTimer(key))
        return plan

    async def rounds(self, resident_id: int, limit: int = 14) -> list[WellbeingRound]:
        """A resident's latest rounds, newest first."""
        async with self.core.store.read() as session:
            return list(
                (
                    await session.execute(
                        select(WellbeingRound)
                        .where(col(WellbeingRound.resident_id) == resident_id)
                        .order_by(col(WellbeingRound.day).desc())
                        .limit(limit)
                    )
                ).scalars()
            )

    # -- the round (the `wellbeing:` timer) --------------------------------------------------
    async def _current(self, tx: Tx, resident_id: int) -> WellbeingRound | None:
        """The resident's round still under way (a retry the quiet hours pushed past
        midnight finishes first), else today's, if any."""
        today = self.core.now().astimezone(LOCAL_TZ).date()
        return (
            (
                await tx.session.execute(
                    select(WellbeingRound)
                    .where(
                        col(WellbeingRound.resident_id) == resident_id,
                        col(WellbeingRound.state).in_(list(OPEN))
                        | (col(WellbeingRound.day) == today),
                    )
                    # an open one first (the oldest); any other is today's
                    .order_by(
                        col(WellbeingRound.state).in_(list(OPEN)).desc(), col(WellbeingRound.day)
                    )
                    .execution_options(populate_existing=True)
                )
            )
            .scalars()
            .first()
        )

    def _next_at(self, plan: WellbeingPlan, rnd: WellbeingRound | None) -> datetime | None:
        """When the resident's timer must fire next: a retry or report due in the open
        round; while a call is under way, a look after `WATCHDOG_S` (its end decides, and a
        report of it that never came must not stall the round); else the next round."""
        if not plan.enabled:
            return None
        now = self.core.now()
        today = now.astimezone(LOCAL_TZ).date()
        upcoming = next_due(plan, now, today_done=rnd is not None and rnd.day >= today)
        soon: datetime | None = None
        if rnd is not None and rnd.state in OPEN:
            soon = rnd.retry_at if rnd.call_ref is None else now + timedelta(seconds=WATCHDOG_S)
        return min(x for x in (soon, upcoming) if x is not None) if soon or upcoming else None

    async def tick(self, resident_id: int) -> None:
        """The resident's timer: start the day's round when due, or place its next try or
        report call when due; then the timer is set for what comes next."""
        core = self.core
        now = core.now()
        async with core.store.tx() as tx:
            plan = await tx.session.get(WellbeingPlan, resident_id, populate_existing=True)
            if plan is None or not plan.enabled:
                return
            rnd = await self._current(tx, resident_id)
            today = now.astimezone(LOCAL_TZ).date()
            key = TimerKey.wellbeing(resident_id)
            quiet = quiet_until(core.config, now)
            due = today.isoweekday() in plan.days and now >= due_at(plan, today)
            retry_due = rnd is not None and rnd.retry_at is not None
            if quiet is not None and ((rnd is None and due) or retry_due):
                # what is due waits for the morning (a round keeps its day)
                core.fx.after_commit(tx, ScheduleTimer(key, quiet))
                return
            if rnd is None and due:
                rnd = await self._start_round(tx, plan, today)
            elif (
                rnd is not None
                and rnd.state in OPEN
                and rnd.call_ref is None
                and rnd.retry_at is not None
                and rnd.retry_at <= now
            ):
                rnd.retry_at = None
                if rnd.state == CALLING and await self._called_in(tx, rnd, rnd.due_at):
                    rnd.state, rnd.outcome, rnd.closed_at = CHECKED_IN, "hotline", now
                    tx.emit("wellbeing.checked_in", "resident", resident_id, round_id=rnd.id,
                            via="hotline", attempts=rnd.attempts)  # fmt: skip
                elif rnd.state == CALLING:
                    await self._call_resident(tx, rnd)
                elif rnd.state == TAKEN:
                    await self._call_report(tx, rnd)
            elif rnd is not None and rnd.state in OPEN and rnd.call_ref is not None:
                call = await core.call_by_ref(tx, rnd.call_ref)
                if call is not None and call.state in cm.FINAL:
                    log.info("wellbeing round %s: call %s ended unheard", rnd.id, call.id)
                    await self._gone(tx, call, "lost")
            at = self._next_at(plan, rnd)
            if at is not None:
                core.fx.after_commit(tx, ScheduleTimer(key, at))

    async def _start_round(self, tx: Tx, plan: WellbeingPlan, today: date) -> WellbeingRound:
        core = self.core
        rid = plan.resident_id
        rnd = WellbeingRound(resident_id=rid, day=today, due_at=due_at(plan, today))
        tx.session.add(rnd)
        away = is_away(plan, today)
        start = datetime.combine(today, plan.window_start, tzinfo=LOCAL_TZ)
        called_in = await self._called_in(tx, rnd, start)
        if away is not None:
            rnd.state, rnd.closed_at = AWAY, core.now()
        elif called_in:
            rnd.state, rnd.outcome, rnd.closed_at = CHECKED_IN, "hotline", core.now()
        await tx.session.flush()
        tx.emit("wellbeing.due", "resident", rid, round_id=rnd.id, day=today.isoformat())
        if away is not None:
            tx.emit("wellbeing.away", "resident", rid, round_id=rnd.id, reason=away.get("reason"))
        elif called_in:
            tx.emit("wellbeing.checked_in", "resident", rid, round_id=rnd.id, via="hotline")
        else:
            await self._call_resident(tx, rnd)
        return rnd

    async def _called_in(self, tx: Tx, rnd: WellbeingRound, since: datetime) -> bool:
        """Whether the resident rang the hotline since `since` (the window's start; while
        the tries go on, the window's end): that is their check-in."""
        count = (
            await tx.session.execute(
                select(func.count()).where(
                    col(Call.resident_id) == rnd.resident_id,
                    col(Call.direction) == "in",
                    col(Call.started_at) >= since,
                    col(Call.started_at) <= self.core.now(),
                )
            )
        ).scalar_one()
        return bool(count)

    async def _record(self, tx: Tx, rnd: WellbeingRound, leg: str, number: str) -> Call:
        """Record one call of the round and place it after the commit (its ref on the
        round in the same unit of work: placed once)."""
        ref = round_ref(rnd.id, leg)
        call = self.outbound.record(
            tx, ref=ref, number=number, purpose=PURPOSE, resident_id=rnd.resident_id,
            registered=True,
        )  # fmt: skip
        rnd.call_ref = ref
        rnd.version += 1
        await tx.session.flush()
        self.outbound.place(tx, call)
        return call

    async def _call_resident(self, tx: Tx, rnd: WellbeingRound) -> None:
        number = (
            await tx.session.execute(
                select(col(ResidentPhone.number))
                .where(col(ResidentPhone.resident_id) == rnd.resident_id)
                .order_by(col(ResidentPhone.id))
                .limit(1)
            )
        ).scalar()
        rnd.attempts += 1
        if number is None:
            tx.emit("wellbeing.no_phone", "resident", rnd.resident_id, round_id=rnd.id)
            await self._alert(tx, rnd)
            return
        call = await self._record(tx, rnd, str(rnd.attempts), number)
        tx.emit(
            "wellbeing.calling", "resident", rnd.resident_id, round_id=rnd.id,
            attempt=rnd.attempts, call_id=call.id,
        )  # fmt: skip

    # -- the resident's answer ---------------------------------------------------------------
    async def _round_of(self, tx: Tx, call: Call) -> WellbeingRound | None:
        """The round whose current call this is (None: a late report of an earlier one)."""
        rid = round_id_of(call.ref)
        rnd = await tx.session.get(WellbeingRound, rid, populate_existing=True) if rid else None
        now = rnd.call_ref if rnd is not None else None
        if rnd is None or now is None or not (call.ref == now or call.ref.startswith(now + ".")):
            return None
        return rnd

    async def finished(self, ref: str, outcome: str, variables: dict[str, str]) -> None:
        """The resident's flow ended: well (checked in), help (first in the queue, as an
        emergency), or no key (like no answer)."""
        core = self.core
        async with core.store.tx() as tx:
            call = await core.call_by_ref(tx, ref)
            rnd = await self._round_of(tx, call) if call is not None else None
            if call is None or rnd is None or rnd.state != CALLING:
                return
            rid = rnd.resident_id
            if outcome == "well":
                rnd.call_ref, rnd.state, rnd.outcome = None, CHECKED_IN, "key"
                rnd.closed_at = core.now()
                tx.emit("wellbeing.checked_in", "resident", rid, round_id=rnd.id, via="key",
                        call_id=call.id)  # fmt: skip
                return
            reason = variables.get("reason", "")
            if reason in ("asked", "talk"):
                rnd.call_ref, rnd.state, rnd.outcome = None, OPERATOR, reason
                rnd.closed_at = core.now()
                tx.emit("wellbeing.help", "resident", rid, round_id=rnd.id, reason=reason,
                        call_id=call.id)  # fmt: skip
            else:
                await self._try_failed(tx, rnd, call, "no_key")
                return
        await self.emergency.start(ref, "wellbeing")

    async def _try_failed(self, tx: Tx, rnd: WellbeingRound, call: Call, why: str) -> None:
        """A try got no key: another one later, or the care circle."""
        config = self.core.config
        rnd.call_ref = None
        tx.emit(
            "wellbeing.unanswered", "resident", rnd.resident_id, round_id=rnd.id,
            attempt=rnd.attempts, outcome=why, call_id=call.id,
        )  # fmt: skip
        if rnd.attempts < config.wellbeing_tries:
            rnd.retry_at = self.core.now() + timedelta(seconds=config.wellbeing_retry_s)
            tx.emit("wellbeing.retry", "resident", rnd.resident_id, round_id=rnd.id,
                    at=rnd.retry_at.isoformat())  # fmt: skip
            key = TimerKey.wellbeing(rnd.resident_id)
            self.core.fx.after_commit(tx, ScheduleTimer(key, rnd.retry_at))
            return
        await self._alert(tx, rnd)

    # -- the care circle ---------------------------------------------------------------------
    async def _alert(self, tx: Tx, rnd: WellbeingRound) -> None:
        """The last try failed: the resident's contacts, in cascade order."""
        contacts = (
            await tx.session.execute(
                select(col(EmergencyContact.id))
                .where(col(EmergencyContact.resident_id) == rnd.resident_id)
                .order_by(col(EmergencyContact.position), col(EmergencyContact.id))
            )
        ).scalars()
        rnd.state, rnd.missed_at = ALERTING, self.core.now()
        rnd.contacts, rnd.contact_step = [i for i in contacts if i is not None], 0
        tx.emit("wellbeing.missed", "resident", rnd.resident_id, round_id=rnd.id,
                attempts=rnd.attempts, contacts=len(rnd.contacts))  # fmt: skip
        await self._call_contact(tx, rnd)

    async def _call_contact(self, tx: Tx, rnd: WellbeingRound) -> None:
        """Ring the cascade's current contact; past the last one, the operators."""
        while rnd.contact_step < len(rnd.contacts):
            contact = await tx.session.get(EmergencyContact, rnd.contacts[rnd.contact_step])
            if contact is not None and contact.phone:
                call = await self._record(tx, rnd, f"c{rnd.contact_step}", contact.phone)
                tx.emit(
                    "wellbeing.contact_called", "resident", rnd.resident_id, round_id=rnd.id,
                    step=rnd.contact_step, contact_id=contact.id, phone=mask(contact.phone),
                    call_id=call.id,
                )  # fmt: skip
                return
            rnd.contact_step += 1
        await self._close(tx, rnd, UNREACHED)

    async def _contact_gone(self, tx: Tx, rnd: WellbeingRound, call: Call, why: str) -> None:
        rnd.call_ref = None
        tx.emit("wellbeing.contact_declined", "resident", rnd.resident_id, round_id=rnd.id,
                step=rnd.contact_step, outcome=why, call_id=call.id)  # fmt: skip
        rnd.contact_step += 1
        await self._call_contact(tx, rnd)

    async def contact_finished(self, ref: str, outcome: str) -> None:
        """A contact's flow ended: 1 owns the alert (called back later), else the next."""
        core = self.core
        async with core.store.tx() as tx:
            call = await core.call_by_ref(tx, ref)
            rnd = await self._round_of(tx, call) if call is not None else None
            if call is None or rnd is None or rnd.state != ALERTING:
                return
            if outcome != "taken":
                await self._contact_gone(tx, rnd, call, "no_key")
                return
            rnd.call_ref, rnd.state = None, TAKEN
            rnd.taken_by, rnd.taken_at = rnd.contacts[rnd.contact_step], core.now()
            contact = await tx.session.get(EmergencyContact, rnd.taken_by)
            rnd.retry_at = core.now() + timedelta(seconds=core.config.wellbeing_report_s)
            tx.emit("wellbeing.taken", "resident", rnd.resident_id, round_id=rnd.id,
                    contact_id=rnd.taken_by, step=rnd.contact_step,
                    kind=contact.kind if contact is not None else "",
                    report_at=rnd.retry_at.isoformat())  # fmt: skip
            key = TimerKey.wellbeing(rnd.resident_id)
            core.fx.after_commit(tx, ScheduleTimer(key, rnd.retry_at))

    async def _call_report(self, tx: Tx, rnd: WellbeingRound) -> None:
        contact = await tx.session.get(EmergencyContact, rnd.taken_by) if rnd.taken_by else None
        if contact is None or not contact.phone:
            await self._close(tx, rnd, NO_REPORT)
            return
        rnd.report_tries += 1
        call = await self._record(tx, rnd, f"r{rnd.report_tries}", contact.phone)
        tx.emit("wellbeing.report_called", "resident", rnd.resident_id, round_id=rnd.id,
                contact_id=contact.id, attempt=rnd.report_tries, call_id=call.id)  # fmt: skip

    async def report_finished(self, ref: str, outcome: str) -> None:
        """The contact reported: 1 all well (closed), 2 needs help (an operator task)."""
        async with self.core.store.tx() as tx:
            call = await self.core.call_by_ref(tx, ref)
            rnd = await self._round_of(tx, call) if call is not None else None
            if call is None or rnd is None or rnd.state != TAKEN:
                return
            if outcome not in ("well", "help"):
                await self._report_gone(tx, rnd, call, "no_key")
                return
            rnd.call_ref = None
            tx.emit("wellbeing.reported", "resident", rnd.resident_id, round_id=rnd.id,
                    contact_id=rnd.taken_by, outcome=outcome, call_id=call.id)  # fmt: skip
            await self._close(tx, rnd, "well" if outcome == "well" else HELP)

    async def _report_gone(self, tx: Tx, rnd: WellbeingRound, call: Call, why: str) -> None:
        rnd.call_ref = None
        tx.emit("wellbeing.report_missed", "resident", rnd.resident_id, round_id=rnd.id,
                attempt=rnd.report_tries, outcome=why, call_id=call.id)  # fmt: skip
        config = self.core.config
        if rnd.report_tries < config.wellbeing_tries:
            rnd.retry_at = self.core.now() + timedelta(seconds=config.wellbeing_retry_s)
            key = TimerKey.wellbeing(rnd.resident_id)
            self.core.fx.after_commit(tx, ScheduleTimer(key, rnd.retry_at))
        else:
            await self._close(tx, rnd, NO_REPORT)

    async def _close(self, tx: Tx, rnd: WellbeingRound, outcome: str) -> None:
        rnd.state, rnd.outcome, rnd.closed_at = CLOSED, outcome, self.core.now()
        rnd.retry_at = None
        tx.emit("wellbeing.closed", "resident", rnd.resident_id, round_id=rnd.id, outcome=outcome)
        if outcome in (UNREACHED, NO_REPORT, HELP):
            await self._operator_task(tx, rnd)

    async def _operator_task(self, tx: Tx, rnd: WellbeingRound) -> None:
        """An urgent task for the operators with the round's history, and the supervisors'
        emergency alert, in the unit of work that closes the round (so exactly once)."""
        history = {
            UNREACHED: f"关爱电话 {rnd.attempts} 次未接通，{len(rnd.contacts)} 位联系人无人接手 / "
            f"wellbeing call unanswered {rnd.attempts}x, no contact took it",
            NO_REPORT: "联系人答应上门，但没有回报 / a contact went to see but never reported",
            HELP: "联系人上门后报告需要帮助 / the contact who went to see reports help is needed",
        }[rnd.outcome or UNREACHED]
        ticket = await self.tickets.add_ticket(
            tx, user=None, category=CALLBACK, description=history, resident_id=rnd.resident_id
        )
        rnd.ticket_id = ticket.id
        why = "wellbeing_help" if rnd.outcome == HELP else "wellbeing_unreached"
        tx.emit("wellbeing.escalated", "resident", rnd.resident_id, round_id=rnd.id,
                ticket_id=ticket.id, outcome=rnd.outcome)  # fmt: skip
        tx.emit("alert.emergency", "resident", rnd.resident_id, why=why,
                reason="wellbeing", ticket_id=ticket.id, round_id=rnd.id)  # fmt: skip
        log.info("wellbeing round %s: operator task %s (%s)", rnd.id, ticket.id, rnd.outcome)

    # -- the calls (purpose "wellbeing") -----------------------------------------------------
    async def _answered(self, tx: Tx, call: Call) -> Sequence[Command]:
        rnd = await self._round_of(tx, call)
        if rnd is None or rnd.state not in OPEN:
            return [Hangup(call.ref)]
        resident = await self.core.get(tx, Resident, rnd.resident_id, "resident")
        plan = await tx.session.get(WellbeingPlan, rnd.resident_id)
        context: dict[str, Any] = {"name": resident.name, "sex": resident.sex}
        leg = leg_of(call.ref)
        if leg.isdigit():
            lang = pick_lang((plan.language if plan else None) or resident.language)
            context |= {"birth_year": resident.birth_year or "",
                        "today": self.core.now().astimezone(LOCAL_TZ).date()}  # fmt: skip
            return [PlayFlow(call.ref, RESIDENT_FLOW, context, lang)]
        place = " ".join(
            p for p in (resident.address, resident.building, resident.unit, resident.room) if p
        )
        minutes = round(self.core.config.wellbeing_report_s / 60)
        flow = CONTACT_FLOW if leg.startswith("c") else REPORT_FLOW
        return [PlayFlow(call.ref, flow, context | {"address": place, "minutes": minutes})]

    async def _gone(self, tx: Tx, call: Call, why: str) -> None:
        """A round's call ended without a decision (no answer, busy, failed, hung up, lost)."""
        rnd = await self._round_of(tx, call)
        if rnd is None:
            return
        leg = leg_of(call.ref)
        if rnd.state == CALLING and leg.isdigit():
            await self._try_failed(tx, rnd, call, why)
        elif rnd.state == ALERTING and leg.startswith("c"):
            await self._contact_gone(tx, rnd, call, why)
        elif rnd.state == TAKEN and leg.startswith("r"):
            await self._report_gone(tx, rnd, call, why)

    async def _ended(self, tx: Tx, call: Call) -> None:
        await self._left_waiting(tx, call)
        if call.cause == "lost":
            await self._gone(tx, call, "lost")
        else:
            await self._gone(tx, call, "no_key" if call.answered_at else "unanswered")

    async def _left_waiting(self, tx: Tx, call: Call) -> None:
        """A resident who asked for help on the call hung up before anyone took it: a call
        back for the operators (once), as for a caller who hangs up in the queue."""
        rid = round_id_of(call.ref)
        rnd = (
            await tx.session.get(WellbeingRound, rid)
            if rid and leg_of(call.ref).isdigit()
            else None
        )
        if rnd is None or rnd.state != OPERATOR or rnd.ticket_id is not None:
            return
        escalation = await tx.session.get(EmergencyEscalation, call.id)
        if call.operator_id is not None or (escalation and escalation.taken_at is not None):
            return
        ticket = await self.tickets.add_ticket(
            tx, user=None, category=CALLBACK, resident_id=rnd.resident_id, call_id=call.id,
            description="关爱电话中求助，等待时挂断 / asked for help on the care call, hung up",
        )  # fmt: skip
        rnd.ticket_id = ticket.id
        tx.emit("wellbeing.hung_up_waiting", "resident", rnd.resident_id, round_id=rnd.id,
                call_id=call.id, ticket_id=ticket.id)  # fmt: skip

    async def _failed(self, tx: Tx, call: Call, reason: OriginateFailure) -> None:
        await self._gone(tx, call, reason.value)

    async def _machine(self, tx: Tx, call: Call) -> Sequence[Command]:
        """An answering machine took it: nobody checked in (a try not reached), hung up."""
        await self._gone(tx, call, "machine")
        return [Hangup(call.ref)]

    async def _wanted(self, tx: Tx, call: Call) -> bool:
        rnd = await self._round_of(tx, call)
        return rnd is not None and rnd.state in OPEN

    # -- restarts ----------------------------------------------------------------------------
    async def wanted_timers(self) -> dict[TimerKey, datetime]:
        """For the reconciler: every enabled plan needs its `wellbeing:` timer (the tick is
        idempotent: fired now, it does what is due and sets the next time)."""
        async with self.core.store.read() as session:
            ids = (
                await session.execute(
                    select(col(WellbeingPlan.resident_id)).where(col(WellbeingPlan.enabled))
                )
            ).scalars()
            now = self.core.now()
            return {TimerKey.wellbeing(i): now for i in ids}
