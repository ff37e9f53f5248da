"""The command interpreter (`dispatch.effects`), alone: each machine command class maps to
exactly one adapter call, event or follow-up, made after the commit (never before); each
service command reaches its adapter; refusals are reported to the owning use case."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, get_args

import pytest

from dispatch.config import DispatchConfig
from dispatch.effects import (
    MACHINE_COMMANDS,
    Bridge,
    CancelTimer,
    Effects,
    FollowUps,
    Hangup,
    Hold,
    PlaceCall,
    PlayFlow,
    Reports,
    ScheduleTimer,
    TouchMerchant,
    Transfer,
    Unhold,
)
from dispatch.machines import call as cm
from dispatch.machines import emergency as em
from dispatch.machines import incident as im
from dispatch.machines import offer as om
from dispatch.machines import operator as opm
from dispatch.machines import ticket as tm
from dispatch.models import Call, EmergencyEscalation, Offer, Ticket
from dispatch.timer_keys import TimerKey
from dispatch.timers import ManualTimers
from eventlog.clock import ManualClock
from ivr.library import FlowLibrary
from providers.base import (
    Health,
    OriginateFailure,
    TelephonyError,
    TelephonyUnavailable,
    UnknownCall,
)
from tests.conftest import MORNING


class FakeTelephony:
    """Records every command; `fail[name]` makes that command raise."""

    name = "fake"

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.up = True
        self.fail: dict[str, Exception] = {}

    def health(self) -> Health:
        return Health(self.name, self.up)

    def _do(self, *entry: Any) -> None:
        if entry[0] in self.fail:
            raise self.fail[entry[0]]
        self.log.append(entry)

    async def originate(
        self, *, ref: str, number: str, caller_id: str | None = None, timeout_s: float = 30.0
    ) -> None:
        self._do("originate", ref, number, caller_id, timeout_s)

    async def run_flow(self, ref: str, flow: Any, *, context: Any, lang: str = "zh-CN") -> None:
        self._do("run_flow", ref, flow.name, dict(context), lang)

    async def bridge(self, ref: str, *, peer: str) -> None:
        self._do("bridge", ref, peer)

    async def hold(self, ref: str) -> None:
        self._do("hold", ref)

    async def unhold(self, ref: str) -> None:
        self._do("unhold", ref)

    async def transfer(self, ref: str, *, peer: str) -> None:
        self._do("transfer", ref, peer)

    async def hangup(self, ref: str) -> None:
        self._do("hangup", ref)


class FakeTx:
    """A unit of work's after-commit list and events, committed by hand."""

    def __init__(self) -> None:
        self.after: list[Callable[[], Awaitable[object]]] = []
        self.events: list[tuple[str, str, str, dict[str, Any]]] = []

    def after_commit(self, fn: Callable[[], Awaitable[object]]) -> None:
        self.after.append(fn)

    def emit(self, name: str, subject: str, subject_id: object, **data: Any) -> None:
        self.events.append((name, subject, str(subject_id), data))

    async def commit(self) -> None:
        for fn in self.after:
            await fn()


class FakeStats:
    def __init__(self) -> None:
        self.touched: list[int | None] = []

    def touch(self, merchant_id: int | None) -> None:
        self.touched.append(merchant_id)


@dataclass
class Rig:
    fx: Effects
    telephony: FakeTelephony
    timers: ManualTimers
    clock: ManualClock
    stats: FakeStats
    reported: list[tuple[Any, ...]] = field(default_factory=list)

    def record(self, name: str) -> Callable[..., Awaitable[None]]:
        async def hook(*args: Any) -> None:
            self.reported.append((name, *args))

        return hook


@pytest.fixture
def rig() -> Rig:
    clock = ManualClock(MORNING)
    telephony = FakeTelephony()
    timers = ManualTimers(clock)
    stats = FakeStats()
    fx = Effects(
        telephony=telephony,  # type: ignore[arg-type]
        timers=timers,
        flows=FlowLibrary(),
        clock=clock,
        config=DispatchConfig(wrap_up_s=60, ring_timeout_s=25),
        stats=stats,  # type: ignore[arg-type]
    )
    r = Rig(fx, telephony, timers, clock, stats)
    fx.bind(
        reports=Reports(
            deferred=r.record("deferred"),
            dialed=r.record("dialed"),
            failed=r.record("failed"),
            hold_failed=r.record("hold_failed"),
            transfer_failed=r.record("transfer_failed"),
            bridge_failed=r.record("bridge_failed"),
        ),
        follow_ups=FollowUps(
            next_candidate=r.record("next_candidate"),
            withdraw_other_offers=r.record("withdraw_other_offers"),
            redispatch=r.record("redispatch"),
            schedule_survey=r.record("schedule_survey"),
            tell_resident=r.record("tell_resident"),
            tell_family=r.record("tell_family"),
            ring_operators=r.record("ring_operators"),
            call_responder=r.record("call_responder"),
        ),
    )
    return r


CALL = Call(id=7, ref="sim-7", direction="in", number="+8613800000001")
OFFER = Offer(id=3, ticket_id=5, merchant_id=2, call_ref="offer-3", phone="+8613900000002")
TICKET = Ticket(id=5, category_code="medicine")


def test_given_the_machines_then_every_command_class_is_mapped() -> None:
    declared = {
        *get_args(cm.CallCommand),
        *get_args(om.OfferCommand),
        *get_args(tm.TicketCommand),
        *get_args(em.EscalationCommand),
        # a union of one is the class itself
        *(get_args(opm.OperatorCommand) or (opm.OperatorCommand,)),
        *(get_args(im.IncidentCommand) or (im.IncidentCommand,)),
    }
    assert declared == set(MACHINE_COMMANDS)


async def test_given_call_commands_then_each_reaches_the_pbx_only_after_the_commit(
    rig: Rig,
) -> None:
    tx = FakeTx()
    commands: list[cm.CallCommand] = [
        cm.RunFlow("hotline"),
        cm.BridgeToOperator(4),
        cm.HoldCaller(),
        cm.UnholdCaller(),
        cm.TransferToOperator(9),
    ]
    await rig.fx.call(tx, CALL, commands, context={"name": "王"}, lang="en", actor="op")  # type: ignore[arg-type]
    assert rig.telephony.log == []  # nothing before the commit
    await tx.commit()
    assert rig.telephony.log == [
        ("run_flow", "sim-7", "hotline", {"name": "王"}, "en"),
        ("bridge", "sim-7", "operator:4"),
        ("hold", "sim-7"),
        ("unhold", "sim-7"),
        ("transfer", "sim-7", "operator:9"),
    ]


async def test_given_offer_commands_then_hangup_after_commit_and_the_cascade_in_the_tx(
    rig: Rig,
) -> None:
    tx = FakeTx()
    await rig.fx.offer(tx, OFFER, [om.HangupCall(), om.NextCandidate()])  # type: ignore[arg-type]
    assert rig.reported == [("next_candidate", tx, OFFER)]  # inside the unit of work
    assert rig.telephony.log == []
    await tx.commit()
    assert rig.telephony.log == [("hangup", "offer-3")]


async def test_given_keep_call_then_the_offer_call_is_left_to_its_flow(rig: Rig) -> None:
    tx = FakeTx()
    await rig.fx.offer(tx, OFFER, [om.HangupCall()], keep_call=True)  # type: ignore[arg-type]
    await tx.commit()
    assert rig.telephony.log == []


async def test_given_the_wrap_up_command_then_its_timer_is_scheduled_after_commit(
    rig: Rig,
) -> None:
    tx = FakeTx()
    await rig.fx.operator(tx, 4, [opm.StartWrapUpTimer()])  # type: ignore[arg-type]
    assert rig.timers.pending == {}
    await tx.commit()
    assert rig.timers.pending == {"wrapup:4": MORNING + timedelta(seconds=60)}


async def test_given_ticket_commands_then_alert_in_the_tx_and_follow_ups_to_their_owners(
    rig: Rig,
) -> None:
    tx = FakeTx()
    commands: list[tm.TicketCommand] = [
        tm.AlertOperators("nobody accepted"),
        tm.WithdrawOtherOffers(),
        tm.TellResident(),
        tm.ScheduleSurvey(),
        tm.Redispatch(),
        tm.TellFamily("arrived"),
    ]
    await rig.fx.ticket(tx, TICKET, commands)  # type: ignore[arg-type]
    assert tx.events == [("alert.unassigned", "ticket", "5", {"reason": "nobody accepted"})]
    assert rig.reported == [
        ("withdraw_other_offers", tx, TICKET),
        ("tell_resident", tx, TICKET),
        ("schedule_survey", tx, TICKET),
        ("redispatch", tx, TICKET),
        ("tell_family", tx, TICKET, "arrived"),
    ]
    assert tx.after == []


async def test_given_service_commands_then_each_reaches_its_adapter(rig: Rig) -> None:
    at = MORNING + timedelta(minutes=5)
    await rig.fx.run_all(
        [
            PlayFlow("sim-7", "survey", {"category": "药"}),
            Bridge("sim-7", 1),
            Unhold("sim-7"),
            Hangup("offer-3"),
            ScheduleTimer(TimerKey.offer(3), at),
            ScheduleTimer(TimerKey.deadline(5), at),
            CancelTimer(TimerKey.deadline(5)),
            TouchMerchant(2),
        ]
    )
    assert rig.telephony.log == [
        ("run_flow", "sim-7", "survey", {"category": "药"}, "zh-CN"),
        ("bridge", "sim-7", "operator:1"),
        ("unhold", "sim-7"),
        ("hangup", "offer-3"),
    ]
    assert rig.timers.pending == {"offer:3": at}  # the stored key format is unchanged
    assert rig.stats.touched == [2]


async def test_given_a_place_call_then_outcomes_go_to_the_line(rig: Rig) -> None:
    assert await rig.fx.run(PlaceCall("offer-3", "+8613900000002", caller_id="12349"))
    assert rig.telephony.log == [("originate", "offer-3", "+8613900000002", "12349", 25)]
    rig.telephony.fail["originate"] = TelephonyUnavailable("AMI link down")
    assert not await rig.fx.run(PlaceCall("offer-4", "+8613900000002"))
    rig.telephony.fail["originate"] = TelephonyError("refused")
    assert not await rig.fx.run(PlaceCall("offer-5", "+8613900000002"))
    del rig.telephony.fail["originate"]
    rig.telephony.up = False  # the backend says it is down: nothing is sent at all
    assert not await rig.fx.run(PlaceCall("offer-6", "+8613900000002", waited=True))
    assert len(rig.telephony.log) == 1
    assert rig.reported == [
        ("dialed", "offer-3", False),
        ("deferred", "offer-4"),
        ("failed", "offer-5", OriginateFailure.FAILED),
        ("deferred", "offer-6"),
    ]


async def test_given_a_hold_the_pbx_refuses_then_it_is_undone_and_raised(rig: Rig) -> None:
    rig.telephony.fail["hold"] = TelephonyError("no bridge")
    with pytest.raises(TelephonyError):
        await rig.fx.run(Hold("sim-7", 7, "operator"))
    assert rig.reported == [("hold_failed", 7, "operator")]


async def test_given_a_transfer_the_pbx_refuses_then_it_is_reported_not_raised(
    rig: Rig,
) -> None:
    rig.telephony.fail["transfer"] = TelephonyError("gone")
    assert not await rig.fx.run(Transfer("sim-7", 7, 9))
    assert rig.reported == [("transfer_failed", 7, 9)]


async def test_given_a_hangup_refused_then_logged_unless_strict(rig: Rig) -> None:
    rig.telephony.fail["hangup"] = TelephonyUnavailable("down")
    assert not await rig.fx.run(Hangup("sim-7"))
    with pytest.raises(TelephonyUnavailable):
        await rig.fx.run(Hangup("sim-7", strict=True))


async def test_given_a_flow_or_bridge_refused_then_only_logged(rig: Rig) -> None:
    rig.telephony.fail["run_flow"] = TelephonyError("gone")
    rig.telephony.fail["bridge"] = TelephonyError("gone")
    rig.telephony.fail["unhold"] = TelephonyError("gone")
    for command in (PlayFlow("sim-7", "hotline"), Bridge("sim-7", 1), Unhold("sim-7")):
        assert not await rig.fx.run(command)
    assert rig.reported == []


async def test_given_emergency_commands_then_pbx_and_timers_after_commit_follow_ups_in_the_tx(
    rig: Rig,
) -> None:
    tx = FakeTx()
    row = EmergencyEscalation(call_id=7, call_ref="sim-7", reason="key")
    commands: list[em.EscalationCommand] = [
        em.RingOperators(),
        em.AlertSupervisor("emergency_call"),
        em.StartDeadline(em.ANSWER_S),
        em.CallResponder(em.Stage.ONCALL, 0),
        em.HangupResponder(em.Stage.ONCALL, 0),
        em.ConnectResponder(em.Stage.CONTACTS, 1),
        em.TellCaller(em.HELP_FLOW),
        em.Record("taken"),
        em.StopDeadline(),
    ]
    await rig.fx.emergency(tx, row, commands, by="contact:3")  # type: ignore[arg-type]
    # follow-ups and events happen in the unit of work, before the commit
    assert [r[0] for r in rig.reported] == ["ring_operators", "call_responder"]
    assert rig.reported[1][3:] == ("oncall", 0)
    assert [e[0] for e in tx.events] == ["alert.emergency", "emergency.taken"]
    assert tx.events[1][3]["by"] == "contact:3"
    assert rig.telephony.log == [] and await rig.timers.keys() == set()
    await tx.commit()
    assert rig.telephony.log == [
        ("hangup", "em-7-oncall-0"),
        ("bridge", "sim-7", "em-7-contacts-1"),
        ("run_flow", "sim-7", "emergency_help", {}, "zh-CN"),
    ]
    assert await rig.timers.keys() == set()  # scheduled, then cancelled, in order


@pytest.mark.parametrize(
    ("error", "gone"), [(UnknownCall("sim-7"), True), (TelephonyError("refused"), False)]
)
async def test_given_an_answer_the_pbx_cannot_bridge_then_it_is_undone_and_raised(
    rig: Rig, error: TelephonyError, gone: bool
) -> None:
    # an answer that reached nobody is no answer (on Asterisk: a caller who hung up while
    # Yijing was down was answered "connected" and the operator stuck on the call)
    rig.telephony.fail["bridge"] = error
    with pytest.raises(TelephonyError):
        await rig.fx.run(Bridge("sim-7", 1, 7))
    assert rig.reported == [("bridge_failed", 7, 1, gone)]
