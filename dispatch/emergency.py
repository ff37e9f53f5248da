"""Emergencies: a caller in trouble reaches a human in seconds, at any hour.

What counts (`reason` on the call): the hotline's emergency key (`key`); a high-risk
resident (`DispatchConfig.high_risk_groups`) who neither presses a key nor speaks past the
greeting (`silent`, judged by `dispatch.silence`: speech where the backend hears it); a
caller ringing again within `emergency_repeat_s` of an unanswered call (`repeat`).

The escalation is the pure machine `dispatch.machines.emergency`, kept in its
`EmergencyEscalation` row: every available operator is offered the call at once (the
first to answer wins, `dispatch.desk`), the supervisor is alerted (`alert.emergency`),
then the on-call list (`dispatch.oncall`) and the resident's emergency contacts are rung,
each hearing who calls from where and pressing 1 to be connected; the caller hears a
holding prompt that loops (with, once help is being called, a key for 120). Every step is
an `emergency.*` event on the call's timeline. Each step has one outbound call ref
(`effects.responder_ref`), so nobody is rung twice for a step, across restarts too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from dispatch.core import Core
from dispatch.effects import (
    CancelTimer,
    Command,
    Hangup,
    PlayFlow,
    ScheduleTimer,
    responder_ref,
)
from dispatch.family import Family
from dispatch.machines import call as cm
from dispatch.machines import emergency as em
from dispatch.machines import operator as opm
from dispatch.models import Call, EmergencyEscalation, OnCallPhone, OperatorStatus
from dispatch.operators import Operators
from dispatch.outbound import Outbound, Purpose
from dispatch.queue import Queue
from dispatch.silence import Silence
from dispatch.timer_keys import TimerKey
from eventlog.clock import LOCAL_TZ
from eventlog.store import Tx
from ivr.prompts import pick_lang
from providers.base import OriginateFailure
from registry.models import EmergencyContact, Resident
from registry.phones import mask

log = logging.getLogger(__name__)

#: the purpose of the calls that ring responders (on-call, contacts, 120)
PURPOSE = "emergency"
#: why a call is an emergency
KEY, SILENT, REPEAT = "key", "silent", "repeat"
#: what the caller hears while waiting: before help is called, and after (with 120)
WAIT_FLOW = "emergency_wait"
RESPONDER_FLOW = "emergency_responder"
DESK_CLOSED_FLOW = "desk_closed"
#: the cause of a routine call that came when nobody was on duty
AFTER_HOURS = "after_hours"
_REF = re.compile(r"^em-(\d+)-(\w+)-(\d+)")


def parse_responder_ref(ref: str) -> tuple[int, str, int] | None:
    """(emergency call id, stage, step) of a responder call's ref, else None."""
    found = _REF.match(ref)
    if found is None:
        return None
    return int(found[1]), found[2], int(found[3])


def state_of(row: EmergencyEscalation) -> em.Escalation:
    """The machine state an escalation row holds."""
    return em.Escalation(
        stage=row.stage,
        step=row.step,
        oncall=len(row.plan.get("oncall", [])),
        contacts=len(row.plan.get("contacts", [])),
        dialled_120=row.dialled_120,
    )


class Emergency:
    """Flagging emergency calls and escalating them until a human takes them."""

    def __init__(
        self,
        core: Core,
        *,
        queue: Queue,
        operators: Operators,
        outbound: Outbound,
        family: Family | None = None,
        silence: Silence | None = None,
    ) -> None:
        self.core = core
        self.silence = silence or Silence(core)
        self.family = family
        self.queue = queue
        self.operators = operators
        self.outbound = outbound
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

    # -- what counts -------------------------------------------------------------------------
    async def reason_for(self, ref: str, outcome: str) -> str | None:
        """Why a hotline call whose menu ended with `outcome` is an emergency, or None."""
        if outcome == "emergency":
            return KEY
        core = self.core
        async with core.store.read() as session:
            call = (
                (await session.execute(select(Call).where(col(Call.ref) == ref))).scalars().first()
            )
            if call is None:
                return None
            since = core.now() - timedelta(seconds=core.config.emergency_repeat_s)
            unanswered = (
                await session.execute(
                    select(func.count()).where(
                        col(Call.number) == call.number,
                        col(Call.id) != call.id,
                        col(Call.direction) == "in",
                        col(Call.started_at) >= since,
                        col(Call.answered_at).is_(None),
                        col(Call.state).in_([cm.CallState.ABANDONED, cm.CallState.ENDED]),
                        col(Call.cause) != "self_served",
                    )
                )
            ).scalar_one()
            if unanswered and call.number:
                return REPEAT
            if outcome != "transfer" or call.resident_id is None:
                return None
            resident = await session.get(Resident, call.resident_id)
            risky = resident is not None and set(resident.groups) & set(
                core.config.high_risk_groups
            )
            if not risky:
                return None
            return SILENT if await self.silence.silent(session, call) else None

    async def desk_closed_now(self) -> bool:
        """Outside the desk's hours with nobody logged in: routine callers are not queued."""
        config = self.core.config
        now = self.core.now().astimezone(LOCAL_TZ).time()
        inside = config.desk_open <= now < config.desk_close
        return not inside and not await self.on_duty()

    async def on_duty(self) -> bool:
        """Whether any operator is logged in (available, busy or paused)."""
        async with self.core.store.read() as session:
            count = (
                await session.execute(
                    select(func.count()).where(
                        col(OperatorStatus.state) != opm.OperatorState.LOGGED_OUT
                    )
                )
            ).scalar_one()
        return bool(count)

    def desk_opens(self) -> datetime:
        """When the desk opens next (`desk_open`, local time)."""
        config = self.core.config
        local = self.core.now().astimezone(LOCAL_TZ)
        opens = local.replace(
            hour=config.desk_open.hour, minute=config.desk_open.minute, second=0, microsecond=0
        )
        return opens if opens > local else opens + timedelta(days=1)

    async def desk_closed(self, ref: str) -> None:
        """A routine caller with nobody on duty: they hear when the desk opens, and get a
        callback task that is first in the list when it does (it keeps their call's time)."""
        core = self.core
        async with core.store.tx() as tx:
            call = await core.call_by_ref(tx, ref)
            if call is None or call.state not in (cm.CallState.IVR, cm.CallState.RINGING):
                return
            state, commands = cm.transition(call.state, cm.SelfServed())
            await core.cas(tx, call, state=state, ended_at=core.now(), cause=AFTER_HOURS)
            tx.emit("call.after_hours", "call", call.id, desk_opens=self.desk_opens().isoformat())
            await core.fx.call(tx, call, commands)
            resident = (
                await tx.session.get(Resident, call.resident_id) if call.resident_id else None
            )
            lang = pick_lang(resident.language) if resident is not None else "zh-CN"
            context = {"opens": self.desk_opens(), "today": core.now().astimezone(LOCAL_TZ).date()}
            core.fx.after_commit(tx, PlayFlow(ref, DESK_CLOSED_FLOW, context, lang))
        call.queued_at = call.started_at  # the callback keeps the time of the call
        await self.queue.callback_once(call, "called after hours")

    # -- starting ------------------------------------------------------------------------------
    async def start(self, ref: str, reason: str, category: str | None = None) -> bool:
        """Flag a call waiting in the menu an emergency and start its escalation (or an
        answered outbound call whose far end asked for help: `dispatch.wellbeing`)."""
        core = self.core
        async with core.store.tx() as tx:
            call = await core.call_by_ref(tx, ref)
            # an answered outbound call whose far end asks for help (a wellbeing call)
            asked = call is not None and call.direction == "out"
            waiting = (cm.CallState.IVR, cm.CallState.RINGING)
            if call is None or call.state not in ((cm.CallState.CONNECTED,) if asked else waiting):
                return False
            assert call.id is not None
            state, commands = cm.transition(call.state, cm.AskOperator() if asked else cm.Enqueue())
            await core.cas(
                tx, call, state=state, queued_at=core.now(), emergency=True, emergency_reason=reason
            )
            tx.emit(
                "call.queued", "call", call.id, emergency=True, outcome="emergency",
                category=category, reason=reason,
            )  # fmt: skip
            await core.fx.call(tx, call, commands)
            oncall = (
                await tx.session.execute(
                    select(col(OnCallPhone.id))
                    .where(col(OnCallPhone.active))
                    .order_by(col(OnCallPhone.position), col(OnCallPhone.id))
                )
            ).scalars()
            contacts: Sequence[int | None] = []
            if call.resident_id is not None:
                contacts = (
                    (
                        await tx.session.execute(
                            select(col(EmergencyContact.id))
                            .where(col(EmergencyContact.resident_id) == call.resident_id)
                            .order_by(col(EmergencyContact.position), col(EmergencyContact.id))
                        )
                    )
                    .scalars()
                    .all()
                )
            row = EmergencyEscalation(
                call_id=call.id,
                call_ref=call.ref,
                reason=reason,
                plan={
                    "oncall": [i for i in oncall if i is not None],
                    "contacts": [i for i in contacts if i is not None],
                },
                started_at=core.now(),
            )
            tx.session.add(row)
            await tx.session.flush()
            on_duty = (
                await tx.session.execute(
                    select(func.count()).where(
                        col(OperatorStatus.state) != opm.OperatorState.LOGGED_OUT
                    )
                )
            ).scalar_one() > 0
            # a silent call: whether speech was listened for, or keys alone told
            heard: dict[str, Any] = {"by_speech": self.silence.listens} if reason == SILENT else {}
            tx.emit("emergency.flagged", "call", call.id, reason=reason, on_duty=on_duty, **heard)
            if self.family is not None:
                await self.family.emergency(tx, call)
            await self._apply(tx, row, em.Start(on_duty=on_duty))
            self._announce_later(tx, call)
        log.info("call %s: emergency (%s)", ref, reason)
        return True

    # -- the machine ---------------------------------------------------------------------------
    async def _apply(
        self, tx: Tx, row: EmergencyEscalation, event: em.EscalationEvent, **data: Any
    ) -> None:
        before = row.stage
        state, commands = em.transition(state_of(row), event)
        values: dict[str, Any] = {
            "stage": state.stage,
            "step": state.step,
            "dialled_120": state.dialled_120,
        }
        now = self.core.now()
        if state.stage in (em.Stage.ONCALL, em.Stage.CONTACTS) and row.overflow_at is None:
            values["overflow_at"] = now
        if state.stage == em.Stage.TAKEN and before != em.Stage.TAKEN:
            values["taken_at"] = now
            values["taken_by"] = data.get("by")
        if state.stage == em.Stage.ENDED:
            values["ended_at"] = now
        await self.core.cas(tx, row, **values)
        await self.core.fx.emergency(tx, row, commands, **data)

    async def _row(self, tx: Tx, call_id: int) -> EmergencyEscalation | None:
        return await tx.session.get(EmergencyEscalation, call_id, populate_existing=True)

    async def on_deadline(self, call_id: int) -> None:
        """The stage's time ran out: the next stage."""
        async with self.core.store.tx() as tx:
            row = await self._row(tx, call_id)
            if row is None or row.stage not in em.OPEN:
                return
            await self._apply(tx, row, em.Deadline())

    async def ring_operators(self, tx: Tx, row: EmergencyEscalation) -> None:
        """Follow-up of `RingOperators`: every available operator is offered the call."""
        call = await self.core.get(tx, Call, row.call_id, "call")
        await self.queue.reserve_all(tx, call)

    async def call_responder(self, tx: Tx, row: EmergencyEscalation, stage: str, step: int) -> None:
        """Follow-up of `CallResponder`: record the step's one call and place it."""
        number, who = await self._responder(tx, row, stage, step)
        ref = responder_ref(row.call_id, stage, step)
        if await self.core.call_by_ref(tx, ref) is not None:
            # rung already (a restart): the step is spent, its call's end moves it on
            log.info("emergency %s: step %s/%s not rung again", row.call_id, stage, step)
            return
        if number is None:
            # gone from the list or the registry since the escalation started: the next one
            tx.emit("emergency.responder_failed", "call", row.call_id, stage=stage, step=step)
            await self._apply(tx, row, em.ResponderFailed(stage, step))
            return
        call = self.outbound.record(tx, ref=ref, number=number, purpose=PURPOSE)
        await tx.session.flush()
        tx.emit(
            "emergency.responder_called", "call", row.call_id, stage=stage, step=step, who=who,
            phone=mask(number), responder_call_id=call.id,
        )  # fmt: skip
        self.outbound.place(tx, call, ring_s=self.core.config.emergency_ring_s)

    async def _responder(
        self, tx: Tx, row: EmergencyEscalation, stage: str, step: int
    ) -> tuple[str | None, str]:
        """The number and the label ("oncall:3") of a step's responder."""
        if stage == em.EMERGENCY_NUMBER:
            return self.core.config.emergency_number, em.EMERGENCY_NUMBER
        ids = row.plan.get(stage, [])
        if step >= len(ids):
            return None, ""
        if stage == em.Stage.ONCALL:
            phone = await tx.session.get(OnCallPhone, ids[step])
            return (phone.phone if phone else None), f"oncall:{ids[step]}"
        contact = await tx.session.get(EmergencyContact, ids[step])
        return (contact.phone if contact else None), f"contact:{ids[step]}"

    # -- the caller ----------------------------------------------------------------------------
    def _announce_later(self, tx: Tx, call: Call) -> None:
        when = self.core.now() + timedelta(seconds=self.core.config.emergency_announce_s)
        self.core.fx.after_commit(tx, ScheduleTimer(TimerKey.queue(call.id), when))

    async def announce(self, call_id: int) -> None:
        """A waiting caller's announcement: the emergency holding prompt, or their place."""
        async with self.core.store.read() as session:
            call = await session.get(Call, call_id)
            row = await session.get(EmergencyEscalation, call_id)
        if call is None or row is None or row.stage not in em.OPEN:
            await self.queue.announce(call_id)
            return
        if call.state != cm.CallState.QUEUED:
            return
        helping = row.stage in (em.Stage.CONTACTS, em.Stage.EXHAUSTED)
        await self.core.fx.run(PlayFlow(call.ref, em.HELP_FLOW if helping else WAIT_FLOW))

    async def wait_finished(self, ref: str, outcome: str) -> None:
        """The holding prompt ended: it loops, or the caller asked for 120."""
        async with self.core.store.tx() as tx:
            call = await self.core.call_by_ref(tx, ref)
            if call is None or call.id is None or call.state != cm.CallState.QUEUED:
                return
            row = await self._row(tx, call.id)
            if row is None or row.stage not in em.OPEN:
                return
            if outcome == "dial_120":
                await self._apply(tx, row, em.CallerAsked120())
            self._announce_later(tx, call)

    async def operator_answered(self, tx: Tx, call: Call, operator_id: int) -> None:
        """An operator took the call at the console (called by the desk in its unit of work)."""
        if not call.emergency or call.id is None:
            return
        row = await self._row(tx, call.id)
        if row is not None and row.stage in em.OPEN:
            await self._apply(tx, row, em.OperatorAnswered(), by=f"operator:{operator_id}")

    async def caller_left(self, tx: Tx, call: Call) -> None:
        """The caller hung up (called by `Calls.ended` in its unit of work)."""
        if not call.emergency or call.id is None:
            return
        row = await self._row(tx, call.id)
        if row is not None and row.stage in em.OPEN:
            await self._apply(tx, row, em.CallerLeft())

    # -- the responders' calls -----------------------------------------------------------------
    async def _escalation_of(
        self, tx: Tx, call: Call
    ) -> tuple[EmergencyEscalation, str, int] | None:
        parsed = parse_responder_ref(call.ref)
        if parsed is None:
            return None
        row = await self._row(tx, parsed[0])
        return (row, parsed[1], parsed[2]) if row is not None else None

    async def _wanted(self, tx: Tx, call: Call) -> bool:
        found = await self._escalation_of(tx, call)
        if found is None:
            return False
        row, stage, step = found
        return row.stage in em.OPEN and (
            (stage, step) == (row.stage, row.step) or (stage == em.EMERGENCY_NUMBER)
        )

    async def _answered(self, tx: Tx, call: Call) -> Sequence[Command]:
        """A responder picked up: 120 is connected at once, others hear who calls."""
        found = await self._escalation_of(tx, call)
        if found is None or found[0].stage not in em.OPEN:
            return [] if found is None else [self._hangup(call)]
        row, stage, step = found
        if stage == em.EMERGENCY_NUMBER:
            await self._taken(tx, row, stage, step)
            return []
        caller = await self.core.get(tx, Call, row.call_id, "call")
        resident = (
            await tx.session.get(Resident, caller.resident_id) if caller.resident_id else None
        )
        context: dict[str, Any] = {
            "reason": row.reason,
            "number": caller.number,
            "registered": "yes" if resident is not None else "no",
        }
        lang = "zh-CN"
        if resident is not None:
            place = " ".join(
                p for p in (resident.address, resident.building, resident.unit, resident.room) if p
            )
            context |= {"name": resident.name, "sex": resident.sex, "address": place}
            lang = pick_lang(resident.language)
        return [PlayFlow(call.ref, RESPONDER_FLOW, context, lang)]

    def _hangup(self, call: Call) -> Command:
        return Hangup(call.ref)

    async def responder_finished(self, ref: str, outcome: str) -> None:
        """A responder's prompt ended: "taken" (pressed 1) connects them to the caller."""
        async with self.core.store.tx() as tx:
            call = await self.core.call_by_ref(tx, ref)
            if call is None:
                return
            found = await self._escalation_of(tx, call)
            if found is None:
                return
            row, stage, step = found
            if outcome != "taken":
                return  # the flow hangs up; the call's end moves the escalation on
            if row.stage not in em.OPEN:
                self.core.fx.after_commit(tx, self._hangup(call))
                return
            await self._taken(tx, row, stage, step)

    async def _taken(self, tx: Tx, row: EmergencyEscalation, stage: str, step: int) -> None:
        who = await self._responder(tx, row, stage, step)
        await self._apply(tx, row, em.ResponderTook(stage, step), by=who[1], taken_stage=stage)
        caller = await self.core.get(tx, Call, row.call_id, "call")
        if caller.state == cm.CallState.QUEUED:
            state, commands = cm.transition(caller.state, cm.Responded())
            await self.core.cas(tx, caller, state=state, answered_at=self.core.now())
            await self.core.fx.call(tx, caller, commands)
            self.core.fx.after_commit(tx, CancelTimer(TimerKey.queue(caller.id)))
            await self.queue.release_reserved(tx, caller)
        if stage == em.EMERGENCY_NUMBER:
            tx.emit("emergency.connected_120", "call", row.call_id)

    async def _ended(self, tx: Tx, call: Call) -> None:
        await self._responder_gone(tx, call)

    async def _failed(self, tx: Tx, call: Call, reason: OriginateFailure) -> None:
        await self._responder_gone(tx, call)

    async def _responder_gone(self, tx: Tx, call: Call) -> None:
        """A responder's call ended without them taking it: the next one."""
        found = await self._escalation_of(tx, call)
        if found is None:
            return
        row, stage, step = found
        if row.stage in em.OPEN:
            tx.emit("emergency.responder_failed", "call", row.call_id, stage=stage, step=step)
            await self._apply(tx, row, em.ResponderFailed(stage, step))

    # -- restarts --------------------------------------------------------------------------------
    async def open_escalations(self) -> list[EmergencyEscalation]:
        """Escalations still under way."""
        async with self.core.store.read() as session:
            return list(
                (
                    await session.execute(
                        select(EmergencyEscalation).where(
                            col(EmergencyEscalation.stage).in_(list(em.OPEN))
                        )
                    )
                ).scalars()
            )

    async def wanted_timers(self) -> dict[TimerKey, datetime]:
        """The deadlines open escalations need (the reconciler schedules missing ones) and
        the holding prompt of every emergency caller still waiting."""
        config = self.core.config
        wanted: dict[TimerKey, datetime] = {}
        async with self.core.store.read() as session:
            rows = await session.execute(
                select(EmergencyEscalation, col(Call.state))
                .join(Call, col(Call.id) == EmergencyEscalation.call_id)
                .where(col(EmergencyEscalation.stage).in_(list(em.OPEN)))
            )
            for row, call_state in rows:
                key = TimerKey.emergency(row.call_id)
                if row.stage == em.Stage.OPERATORS:
                    wanted[key] = row.started_at + timedelta(seconds=config.emergency_answer_s)
                elif row.stage == em.Stage.ONCALL:
                    since = row.overflow_at or row.started_at
                    wanted[key] = since + timedelta(seconds=config.emergency_oncall_s)
                if call_state == cm.CallState.QUEUED:
                    wanted[TimerKey.queue(row.call_id)] = self.core.now()
        return wanted

    async def resume(self, call_id: int) -> bool:
        """After a restart: an escalation whose current responder's call is over moves on."""
        async with self.core.store.tx() as tx:
            row = await self._row(tx, call_id)
            if row is None or row.stage not in (em.Stage.ONCALL, em.Stage.CONTACTS):
                return False
            ref = responder_ref(row.call_id, row.stage, row.step)
            call = await self.core.call_by_ref(tx, ref)
            if call is None or call.state not in cm.FINAL:
                return False
            log.info("emergency %s: step %s/%s ended meanwhile", call_id, row.stage, row.step)
            tx.emit(
                "emergency.responder_failed", "call", call_id, stage=row.stage.value,
                step=row.step, at_start=True,
            )  # fmt: skip
            await self._apply(tx, row, em.ResponderFailed(row.stage, row.step))
            return True
