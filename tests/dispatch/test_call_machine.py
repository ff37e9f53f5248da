"""The call machine: every transition it allows, and refusals for the rest."""

from __future__ import annotations

import pytest

from dispatch.machines import IllegalTransition
from dispatch.machines.call import (
    Answer,
    BridgeToOperator,
    CallEvent,
    CallState,
    Enqueue,
    Hangup,
    RunFlow,
    SelfServed,
    StartIvr,
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
]


@pytest.mark.parametrize(("state", "event", "new", "commands"), ALLOWED)
def test_given_state_when_event_then_next_state_and_commands(
    state: CallState, event: CallEvent, new: CallState, commands: list[object]
) -> None:
    assert transition(state, event) == (new, commands)


EVENTS: list[CallEvent] = [
    StartIvr("hotline"), Enqueue(), SelfServed(), Answer(7), Answer(None),
    Hangup(inbound=True), Hangup(inbound=False), WrapUpDone(),
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
