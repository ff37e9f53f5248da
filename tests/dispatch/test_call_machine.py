"""The call machine: every transition it allows, and refusals for the rest."""

from __future__ import annotations

import pytest

from dispatch.machines import IllegalTransition
from dispatch.machines.call import (
    Answer,
    AskOperator,
    BridgeToOperator,
    CallEvent,
    CallState,
    CancelConsult,
    CompleteConsult,
    Consult,
    ConsultAnswered,
    ConsultCancel,
    ConsultComplete,
    ConsultFailed,
    ConsultOperator,
    Enqueue,
    Hangup,
    Hold,
    HoldCaller,
    RunFlow,
    SelfServed,
    StartIvr,
    Transfer,
    TransferToOperator,
    TransferUnanswered,
    Unhold,
    UnholdCaller,
    WrapUpDone,
    transition,
)

S = CallState

ALLOWED: list[tuple[CallState, CallEvent, CallState, list[object]]] = [
    (S.RINGING, StartIvr("hotline"), S.IVR, [RunFlow("hotline")]),
    (S.RINGING, Enqueue(), S.QUEUED, []),
    (S.IVR, Enqueue(), S.QUEUED, []),
    (S.IVR, SelfServed(), S.ENDED, []),
    (S.QUEUED, Answer(7), S.CONNECTED, [BridgeToOperator(7)]),
    (S.RINGING, Answer(None), S.CONNECTED, []),
    (S.CONNECTED, Hangup(inbound=True), S.WRAP_UP, []),
    (S.CONNECTED, Hangup(inbound=False), S.ENDED, []),
    (S.RINGING, Hangup(inbound=True), S.ABANDONED, []),
    (S.IVR, Hangup(inbound=True), S.ABANDONED, []),
    (S.QUEUED, Hangup(inbound=True), S.ABANDONED, []),
    (S.RINGING, Hangup(inbound=False), S.ENDED, []),
    (S.IVR, Hangup(inbound=False), S.ENDED, []),
    (S.QUEUED, Hangup(inbound=False), S.ENDED, []),
    (S.WRAP_UP, WrapUpDone(), S.ENDED, []),
    # the desk: hold, resume, transfer (connected or held), hang-up while held
    (S.CONNECTED, Hold(), S.ON_HOLD, [HoldCaller()]),
    (S.ON_HOLD, Unhold(), S.CONNECTED, [UnholdCaller()]),
    (S.CONNECTED, Transfer(9), S.CONNECTED, [TransferToOperator(9)]),
    (S.ON_HOLD, Transfer(9), S.CONNECTED, [TransferToOperator(9)]),
    (S.CONNECTED, TransferUnanswered(), S.QUEUED, []),
    (S.ON_HOLD, Hangup(inbound=True), S.WRAP_UP, []),
    (S.ON_HOLD, Hangup(inbound=False), S.ENDED, []),
    # an answered outbound call asks for an operator (a wellbeing call's 2 or 0)
    (S.CONNECTED, AskOperator(), S.QUEUED, []),
    # a consult: the caller held while a colleague is rung, then talked to
    (S.CONNECTED, Consult(9), S.CONSULT_RINGING, [ConsultOperator(9)]),
    (S.ON_HOLD, Consult(9), S.CONSULT_RINGING, [ConsultOperator(9)]),
    (S.CONSULT_RINGING, ConsultAnswered(), S.CONSULTING, []),
    (S.CONSULT_RINGING, ConsultFailed(), S.CONNECTED, [UnholdCaller()]),
    (S.CONSULT_RINGING, ConsultCancel(9), S.CONNECTED, [CancelConsult(9)]),
    (S.CONSULTING, ConsultCancel(9), S.CONNECTED, [CancelConsult(9)]),
    (S.CONSULTING, ConsultComplete(9), S.CONNECTED, [CompleteConsult(9)]),
    (S.CONSULT_RINGING, Hangup(inbound=True), S.WRAP_UP, []),
    (S.CONSULTING, Hangup(inbound=True), S.WRAP_UP, []),
    (S.CONSULT_RINGING, Hangup(inbound=False), S.ENDED, []),
    (S.CONSULTING, Hangup(inbound=False), S.ENDED, []),
]


@pytest.mark.parametrize(("state", "event", "new", "commands"), ALLOWED)
def test_given_state_when_event_then_next_state_and_commands(
    state: CallState, event: CallEvent, new: CallState, commands: list[object]
) -> None:
    assert transition(state, event) == (new, commands)


EVENTS: list[CallEvent] = [
    StartIvr("hotline"), Enqueue(), SelfServed(), Answer(7), Answer(None),
    Hangup(inbound=True), Hangup(inbound=False), WrapUpDone(), Hold(), Unhold(), Transfer(9),
    TransferUnanswered(), AskOperator(), Consult(9), ConsultAnswered(), ConsultComplete(9),
    ConsultCancel(9), ConsultFailed(),
]  # fmt: skip


@pytest.mark.parametrize("state", list(CallState))
@pytest.mark.parametrize("event", EVENTS, ids=repr)
def test_given_any_pair_not_allowed_when_applied_then_refused(
    state: CallState, event: CallEvent
) -> None:
    if any(s == state and e == event for s, e, _, _ in ALLOWED):
        return
    with pytest.raises(IllegalTransition):
        transition(state, event)


def test_given_a_connected_call_when_a_second_operator_answers_then_refused() -> None:
    with pytest.raises(IllegalTransition, match="Answer not allowed in state 'connected'"):
        transition(S.CONNECTED, Answer(8))


def test_given_a_held_call_when_held_again_then_refused() -> None:
    with pytest.raises(IllegalTransition, match="Hold not allowed in state 'on_hold'"):
        transition(S.ON_HOLD, Hold())


def test_given_a_caller_who_hangs_up_on_hold_then_not_counted_as_abandoned() -> None:
    state, _ = transition(S.ON_HOLD, Hangup(inbound=True))
    assert state != S.ABANDONED
