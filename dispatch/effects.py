"""The one command interpreter: every command of every state machine is carried out here.

A use case changes rows inside a unit of work (`Tx`) and hands the machine's commands to
`Effects` together with the subject they are about (the call, offer, ticket or operator).
Each command class maps to exactly one thing:

==============================  ==========================================================
machine command                 carried out as
==============================  ==========================================================
call.RunFlow                    `PlayFlow` after commit (telephony.run_flow)
call.BridgeToOperator           `Bridge` after commit (telephony.bridge; failed: undone, raised)
call.HoldCaller                 `Hold` after commit (telephony.hold; refused: undone, raised)
call.UnholdCaller               `Unhold` after commit (telephony.unhold)
call.TransferToOperator         `Transfer` after commit (telephony.transfer)
call.(Consult|Complete|Cancel)  `ConsultStep` after commit (`dispatch.consult_steps`)
offer.HangupCall                `Hangup` of the offer's call after commit
offer.NextCandidate             follow-up in the unit of work: the cascade's next offers
operator.StartWrapUpTimer       `ScheduleTimer(wrapup:<user>)` after commit
ticket.AlertOperators           an `alert.unassigned` event in the unit of work
ticket.WithdrawOtherOffers      follow-up in the unit of work: the other live offers end
ticket.ScheduleSurvey           follow-up in the unit of work: survey and close timers
ticket.Redispatch               follow-up in the unit of work: a new plan, new offers
ticket.TellFamily               follow-up in the unit of work: the contacts' notices noted
incident.StartCallbacks         `ScheduleTimer(incident:<id>)` now, after commit (paced)
emergency.RingOperators         follow-up in the unit of work: every free operator reserved
emergency.CallResponder         follow-up in the unit of work: the step's call recorded, placed
emergency.HangupResponder       `Hangup` of the step's call after commit
emergency.ConnectResponder      `Connect` of the caller and the step's call after commit
emergency.TellCaller            `PlayFlow` on the caller after commit
emergency.StartDeadline         `ScheduleTimer(emergency:<call>)` after commit
emergency.StopDeadline          `CancelTimer(emergency:<call>)` after commit
emergency.AlertSupervisor       an `alert.emergency` event in the unit of work
emergency.Record                an `emergency.<name>` event on the call in the unit of work
==============================  ==========================================================

Use cases also issue the service-level commands below themselves (`after_commit`), for
work no machine decides: placing a recorded call, an operator's click-to-call
(`CallOut`), a flow chosen by a feature (the offer
call, the survey), timers, and dropping a merchant's cached record. Nothing else in
`dispatch/` calls the telephony or timer adapters for a command.

Adapter calls wait for the commit (`Tx.after_commit`): a crash never leaves a call placed
for an offer the database forgot, and the timer job store never waits on an open
transaction. What the adapters answer is reported back to the owning use case through
`Reports` (a call that waits for the phone line, a hold the PBX refused, ...).
Follow-ups are machine commands that are more domain work inside the same unit of work;
the service owning them registers a handler (`FollowUps`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, assert_never

from dispatch.config import DispatchConfig
from dispatch.consult_steps import CONSULT_COMMANDS, ConsultStep, carry_out, consult_step
from dispatch.machines import call as cm
from dispatch.machines import emergency as em
from dispatch.machines import incident as im
from dispatch.machines import offer as om
from dispatch.machines import operator as opm
from dispatch.machines import ticket as tm
from dispatch.models import Call, EmergencyEscalation, Incident, Offer, Ticket
from dispatch.stats import StatsCache
from dispatch.timer_keys import TimerKey
from dispatch.timers import Timers
from eventlog.clock import Clock
from eventlog.store import Tx
from ivr.library import FlowLibrary
from providers.base import (
    OriginateFailure,
    Telephony,
    TelephonyError,
    TelephonyUnavailable,
    UnknownCall,
)
from registry.phones import mask

log = logging.getLogger(__name__)


# -- service-level commands ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PlaceCall:
    """Hand a recorded outbound call to the backend (its ref is the idempotency key)."""

    ref: str
    number: str
    caller_id: str | None = None
    #: it waited for the phone line: an offer gets its full timeout from now
    waited: bool = False
    #: how long it rings at most (None: `ring_timeout_s`); emergencies ring short
    ring_s: float | None = None


@dataclass(frozen=True, slots=True)
class CallOut:
    """Click-to-call: ring the operator's desk, then the number (`telephony.call_out`);
    a refusal ends the call as failed (`Reports.failed`): nobody waits for the line."""

    ref: str
    operator_id: int
    number: str
    caller_id: str | None = None


@dataclass(frozen=True, slots=True)
class PlayFlow:
    """Run an IVR flow on a live call."""

    ref: str
    flow: str
    context: Mapping[str, Any] = field(default_factory=dict)
    lang: str = "zh-CN"


@dataclass(frozen=True, slots=True)
class Bridge:
    """Connect a call to an operator's endpoint (`call_id`: an answer that reports back)."""

    ref: str
    operator_id: int
    call_id: int | None = None


@dataclass(frozen=True, slots=True)
class Connect:
    """Join two live calls (an emergency caller and the responder who took it; the two
    legs of a masked call, the resident's as `ref`: `dispatch.masked`)."""

    ref: str
    peer_ref: str


@dataclass(frozen=True, slots=True)
class Hold:
    """Put a caller on hold; a refusal is undone (`Reports.hold_failed`) and raised."""

    ref: str
    call_id: int
    actor: str


@dataclass(frozen=True, slots=True)
class Unhold:
    """Take a caller back from hold."""

    ref: str


@dataclass(frozen=True, slots=True)
class Transfer:
    """Move a caller to another operator; a refusal is reported (`Reports.transfer_failed`)."""

    ref: str
    call_id: int
    operator_id: int


@dataclass(frozen=True, slots=True)
class Hangup:
    """Hang up a call; `strict`: a backend refusal is raised to the caller, not logged."""

    ref: str
    strict: bool = False


@dataclass(frozen=True, slots=True)
class ScheduleTimer:
    """Schedule (or move) a keyed deadline."""

    key: TimerKey
    at: datetime


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Cancel a keyed deadline (unknown keys are ignored)."""

    key: TimerKey


@dataclass(frozen=True, slots=True)
class TouchMerchant:
    """A merchant's record (offers, ratings) changed: drop its cached ranking inputs."""

    merchant_id: int | None


Command = (
    PlaceCall
    | CallOut
    | PlayFlow
    | Bridge
    | Connect
    | Hold
    | Unhold
    | Transfer
    | ConsultStep
    | Hangup
    | ScheduleTimer
    | CancelTimer
    | TouchMerchant
)

#: every machine command class, and the service-level command classes
MACHINE_COMMANDS: tuple[type, ...] = (
    cm.RunFlow,
    cm.BridgeToOperator,
    cm.HoldCaller,
    cm.UnholdCaller,
    cm.TransferToOperator,
    *CONSULT_COMMANDS,
    om.HangupCall,
    om.NextCandidate,
    opm.StartWrapUpTimer,
    tm.AlertOperators,
    tm.WithdrawOtherOffers,
    tm.TellResident,
    tm.ScheduleSurvey,
    tm.Redispatch,
    tm.TellFamily,
    im.StartCallbacks,
    em.RingOperators,
    em.CallResponder,
    em.HangupResponder,
    em.ConnectResponder,
    em.TellCaller,
    em.StartDeadline,
    em.StopDeadline,
    em.AlertSupervisor,
    em.Record,
)


# -- where outcomes and follow-ups go --------------------------------------------------------
@dataclass(slots=True)
class Reports:
    """The use cases told what the adapters did with a command."""

    #: the backend could not be reached: the call (ref) waits for the phone line
    deferred: Callable[[str], Awaitable[None]]
    #: the backend took the call (ref); `waited`: it had waited for the line
    dialed: Callable[[str, bool], Awaitable[None]]
    #: the backend refused the call (ref) outright
    failed: Callable[[str, OriginateFailure], Awaitable[None]]
    #: the PBX could not hold the call (id), which the operator (actor) put on hold
    hold_failed: Callable[[int, str], Awaitable[None]]
    #: the PBX could not transfer the call (id) to the operator (id)
    transfer_failed: Callable[[int, int], Awaitable[None]]
    #: the PBX could not connect the answered call (id) to the operator (id); `gone`:
    #: it has no such call any more (the caller hung up while nobody was watching)
    bridge_failed: Callable[[int, int, bool], Awaitable[None]]
    #: the PBX could not ring the colleague (peer) to consult about the call (ref)
    consult_failed: Callable[[str, str], Awaitable[None]] | None = None


@dataclass(slots=True)
class FollowUps:
    """Machine commands that are more work in the same unit of work, by their owners."""

    #: an offer was refused or expired: place the cascade's next offers (offers)
    next_candidate: Callable[[Tx, Offer], Awaitable[None]]
    #: a merchant won the ticket: withdraw its other live offers (offers)
    withdraw_other_offers: Callable[[Tx, Ticket], Awaitable[None]]
    #: a no-show: rank again without the merchants tried, offer again (offers)
    redispatch: Callable[[Tx, Ticket], Awaitable[None]]
    #: the visit is done: the survey call and the end of the survey window (surveys)
    schedule_survey: Callable[[Tx, Ticket], Awaitable[None]]
    #: a merchant accepted: the resident is told who comes, by when, the code word (notify)
    tell_resident: Callable[[Tx, Ticket], Awaitable[None]] | None = None
    #: something the resident's contacts may hear about happened to a ticket (family)
    tell_family: Callable[[Tx, Ticket, str], Awaitable[None]] | None = None
    #: an emergency's call goes to every free operator at once (emergency)
    ring_operators: Callable[[Tx, EmergencyEscalation], Awaitable[None]] | None = None
    #: ring one responder of an emergency: record and place the step's call (emergency)
    call_responder: Callable[[Tx, EmergencyEscalation, str, int], Awaitable[None]] | None = None


def responder_ref(call_id: int, stage: str, step: int) -> str:
    """The one outbound call ref of an emergency's step: never two calls for one step."""
    return f"em-{call_id}-{stage}-{step}"


class Effects:
    """Carries out machine and service commands through the telephony and timer adapters."""

    def __init__(
        self,
        *,
        telephony: Telephony,
        timers: Timers,
        flows: FlowLibrary,
        clock: Clock,
        config: DispatchConfig,
        stats: StatsCache,
    ) -> None:
        self.telephony = telephony
        self.timers = timers
        self.flows = flows
        self.clock = clock
        self.config = config
        self.stats = stats
        self._reports: Reports | None = None
        self._follow_ups: FollowUps | None = None
        #: refs being handed to the backend now: never two originates of one ref at once
        self._dialing: set[str] = set()

    def bind(self, *, reports: Reports, follow_ups: FollowUps) -> None:
        """Say where outcomes and follow-ups go (the services are built after `Effects`)."""
        self._reports, self._follow_ups = reports, follow_ups

    @property
    def reports(self) -> Reports:
        assert self._reports is not None, "Effects.bind was not called"
        return self._reports

    @property
    def follow_ups(self) -> FollowUps:
        assert self._follow_ups is not None, "Effects.bind was not called"
        return self._follow_ups

    # -- machine commands, with their subject --------------------------------------------
    async def call(
        self,
        tx: Tx,
        call: Call,
        commands: Sequence[cm.CallCommand],
        *,
        context: Mapping[str, Any] | None = None,
        lang: str = "zh-CN",
        actor: str = "system",
    ) -> None:
        """Carry out a call transition's commands (`context`, `lang`: of a flow it starts)."""
        assert call.id is not None
        for command in commands:
            match command:
                case cm.RunFlow(flow=flow):
                    self.after_commit(tx, PlayFlow(call.ref, flow, dict(context or {}), lang))
                case cm.BridgeToOperator(operator_id=operator_id):
                    self.after_commit(tx, Bridge(call.ref, operator_id, call.id))
                case cm.HoldCaller():
                    self.after_commit(tx, Hold(call.ref, call.id, actor))
                case cm.UnholdCaller():
                    self.after_commit(tx, Unhold(call.ref))
                case cm.TransferToOperator(operator_id=operator_id):
                    self.after_commit(tx, Transfer(call.ref, call.id, operator_id))
                case cm.ConsultOperator() | cm.CompleteConsult() | cm.CancelConsult():
                    self.after_commit(tx, consult_step(call.ref, command))
                case _:
                    assert_never(command)

    async def offer(
        self,
        tx: Tx,
        offer: Offer,
        commands: Sequence[om.OfferCommand],
        *,
        keep_call: bool = False,
    ) -> None:
        """Carry out an offer transition's commands.

        `keep_call`: the offer's call is not hung up, because a flow still has something to
        tell the merchant ("another merchant was faster") and hangs up itself.
        """
        for command in commands:
            match command:
                case om.HangupCall():
                    if not keep_call:
                        self.after_commit(tx, Hangup(offer.call_ref))
                case om.NextCandidate():
                    await self.follow_ups.next_candidate(tx, offer)
                case _:
                    assert_never(command)

    async def operator(self, tx: Tx, user_id: int, commands: Sequence[opm.OperatorCommand]) -> None:
        """Carry out an operator transition's commands."""
        for command in commands:
            match command:
                case opm.StartWrapUpTimer():
                    at = self.clock.now() + timedelta(seconds=self.config.wrap_up_s)
                    self.after_commit(tx, ScheduleTimer(TimerKey.wrapup(user_id), at))
                case _:
                    assert_never(command)

    async def ticket(self, tx: Tx, ticket: Ticket, commands: Sequence[tm.TicketCommand]) -> None:
        """Carry out a ticket transition's commands."""
        for command in commands:
            match command:
                case tm.AlertOperators(reason=reason):
                    tx.emit("alert.unassigned", "ticket", ticket.id, reason=reason)
                case tm.WithdrawOtherOffers():
                    await self.follow_ups.withdraw_other_offers(tx, ticket)
                case tm.TellResident():
                    if self.follow_ups.tell_resident is not None:
                        await self.follow_ups.tell_resident(tx, ticket)
                case tm.ScheduleSurvey():
                    await self.follow_ups.schedule_survey(tx, ticket)
                case tm.Redispatch():
                    await self.follow_ups.redispatch(tx, ticket)
                case tm.TellFamily(event=event):
                    if self.follow_ups.tell_family is not None:
                        await self.follow_ups.tell_family(tx, ticket, event)
                case _:
                    assert_never(command)

    async def incident(
        self, tx: Tx, incident: Incident, commands: Sequence[im.IncidentCommand]
    ) -> None:
        """Carry out an incident transition's commands."""
        for command in commands:
            match command:
                case im.StartCallbacks():
                    key = TimerKey.incident(incident.id)
                    self.after_commit(tx, ScheduleTimer(key, self.clock.now()))

    async def emergency(
        self,
        tx: Tx,
        escalation: EmergencyEscalation,
        commands: Sequence[em.EscalationCommand],
        **data: Any,
    ) -> None:
        """Carry out an emergency escalation's commands (`data`: on its timeline events)."""
        call_id, ref = escalation.call_id, escalation.call_ref
        follow = self.follow_ups
        for command in commands:
            match command:
                case em.RingOperators():
                    assert follow.ring_operators is not None
                    await follow.ring_operators(tx, escalation)
                case em.CallResponder(stage=stage, step=step):
                    assert follow.call_responder is not None
                    await follow.call_responder(tx, escalation, stage, step)
                case em.HangupResponder(stage=stage, step=step):
                    self.after_commit(tx, Hangup(responder_ref(call_id, stage, step)))
                case em.ConnectResponder(stage=stage, step=step):
                    self.after_commit(tx, Connect(ref, responder_ref(call_id, stage, step)))
                case em.TellCaller(flow=flow):
                    self.after_commit(tx, PlayFlow(ref, flow))
                case em.StartDeadline(setting=setting):
                    at = self.clock.now() + timedelta(seconds=getattr(self.config, setting))
                    self.after_commit(tx, ScheduleTimer(TimerKey.emergency(call_id), at))
                case em.StopDeadline():
                    self.after_commit(tx, CancelTimer(TimerKey.emergency(call_id)))
                case em.AlertSupervisor(why=why):
                    tx.emit("alert.emergency", "call", call_id, why=why, reason=escalation.reason)
                case em.Record(name=name):
                    tx.emit(
                        "emergency." + name,
                        "call",
                        call_id,
                        stage=escalation.stage.value,
                        step=escalation.step,
                        **data,
                    )
                case _:
                    assert_never(command)

    # -- service-level commands ------------------------------------------------------------
    def after_commit(self, tx: Tx, *commands: Command) -> None:
        """Carry out `commands`, in order, once `tx` has committed (never if it rolls back)."""
        if commands:
            tx.after_commit(partial(self.run_all, commands))

    async def run_all(self, commands: Sequence[Command]) -> None:
        """Carry out commands now, in order (outside any unit of work)."""
        for command in commands:
            await self.run(command)

    def dialing(self, ref: str) -> bool:
        """Whether a call with this ref is being handed to the backend right now."""
        return ref in self._dialing

    async def run(self, command: Command) -> bool:
        """Carry out one command now; False when the adapter could not (it was logged)."""
        telephony = self.telephony
        match command:
            case PlaceCall():
                return await self._place(command)
            case CallOut(ref=ref, operator_id=operator_id, number=number, caller_id=caller_id):
                try:
                    await telephony.call_out(
                        ref=ref,
                        desk=f"operator:{operator_id}",
                        number=number,
                        caller_id=caller_id,
                        timeout_s=self.config.ring_timeout_s,
                    )
                except TelephonyError as exc:
                    log.warning("callout %s to %s refused (%s)", ref, mask(number), exc)
                    await self.reports.failed(ref, OriginateFailure.FAILED)
                    return False
                log.info("callout %s: operator %s, then %s", ref, operator_id, mask(number))
            case PlayFlow(ref=ref, flow=flow, context=context, lang=lang):
                try:
                    await telephony.run_flow(ref, self.flows[flow], context=context, lang=lang)
                except TelephonyError:
                    log.warning("call %s: flow %s could not start", ref, flow)
                    return False
            case Bridge(ref=ref, operator_id=operator_id, call_id=call_id):
                try:
                    await telephony.bridge(ref, peer=f"operator:{operator_id}")
                except TelephonyError as exc:
                    log.warning("call %s: bridge to operator %s failed", ref, operator_id)
                    if call_id is None:
                        return False
                    # an answer that reached nobody is no answer: undone, and said so
                    await self.reports.bridge_failed(
                        call_id, operator_id, isinstance(exc, UnknownCall)
                    )
                    raise
            case Connect(ref=ref, peer_ref=peer_ref):
                try:
                    await telephony.bridge(ref, peer=peer_ref)
                except TelephonyError:
                    log.warning("call %s: could not be joined with call %s", ref, peer_ref)
                    return False
            case Hold(ref=ref, call_id=call_id, actor=actor):
                try:
                    await telephony.hold(ref)
                except TelephonyError:
                    log.warning("call %s: hold failed at the PBX; back to connected", ref)
                    await self.reports.hold_failed(call_id, actor)
                    raise
            case Unhold(ref=ref):
                try:
                    await telephony.unhold(ref)
                except TelephonyError:
                    # the caller may have gone; their hang-up ends the call as usual
                    log.warning("call %s: unhold failed at the PBX", ref)
                    return False
            case Transfer(ref=ref, call_id=call_id, operator_id=operator_id):
                try:
                    await telephony.transfer(ref, peer=f"operator:{operator_id}")
                except TelephonyError:
                    log.warning(
                        "call %s: transfer to operator %s failed at the PBX", ref, operator_id
                    )
                    await self.reports.transfer_failed(call_id, operator_id)
                    return False
            case ConsultStep():
                return await carry_out(telephony, command, self.reports.consult_failed)
            case Hangup(ref=ref, strict=strict):
                try:
                    await telephony.hangup(ref)
                except TelephonyError:
                    if strict:
                        raise
                    # a phone line that is down only leaves a log line
                    log.warning("call %s: hang-up failed", ref)
                    return False
            case ScheduleTimer(key=key, at=at):
                await self.timers.schedule(str(key), at)
            case CancelTimer(key=key):
                await self.timers.cancel(str(key))
            case TouchMerchant(merchant_id=merchant_id):
                self.stats.touch(merchant_id)
            case _:
                assert_never(command)
        return True

    async def _place(self, command: PlaceCall) -> bool:
        """Originate a recorded call; True when the backend took it.

        A backend that cannot be reached (or reports itself down) is no failure of the far
        end: the call waits for the line (`Reports.deferred`) and is placed again, same
        ref, when the backend is back. Any other refusal ends the call as failed.
        """
        ref, number = command.ref, command.number
        if ref in self._dialing:
            return False
        self._dialing.add(ref)
        try:
            try:
                if not self.telephony.health().up:
                    raise TelephonyUnavailable("the telephony backend reports itself down")
                await self.telephony.originate(
                    ref=ref,
                    number=number,
                    caller_id=command.caller_id,
                    timeout_s=command.ring_s or self.config.ring_timeout_s,
                )
            except TelephonyUnavailable as exc:
                log.warning("call %s to %s waits for the phone line (%s)", ref, mask(number), exc)
                await self.reports.deferred(ref)
                return False
            except TelephonyError:
                log.warning("call %s: originate failed", ref)
                await self.reports.failed(ref, OriginateFailure.FAILED)
                return False
            log.info("call %s placed to %s", ref, mask(number))
            await self.reports.dialed(ref, command.waited)
            return True
        finally:
            self._dialing.discard(ref)
