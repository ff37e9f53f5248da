"""The operator machine: every transition it allows, and refusals for the rest."""

from __future__ import annotations

import pytest

from dispatch.machines import IllegalTransition
from dispatch.machines.operator import (
    CallFinished,
    CallOutUnreached,
    Consulted,
    ConsultEnded,
    Login,
    Logout,
    OperatorEvent,
    OperatorState,
    Pause,
    ReceiveTransfer,
    Reserve,
    Resume,
    StartWrapUpTimer,
    TakeCall,
    TransferOut,
    TransferUnanswered,
    WrapUpDone,
    transition,
)

S = OperatorState
EVENTS: list[OperatorEvent] = [
    Login(), Logout(), Pause("lunch"), Resume(), Reserve(), TakeCall(), CallFinished(),
    WrapUpDone(), TransferOut(), ReceiveTransfer(), ReceiveTransfer(supervisor=True),
    TransferUnanswered(), CallOutUnreached(), Consulted(), ConsultEnded(),
]  # fmt: skip

ALLOWED: dict[tuple[OperatorState, OperatorEvent], tuple[OperatorState, list[object]]] = {
    (S.LOGGED_OUT, Login()): (S.AVAILABLE, []),
    (S.LOGGED_OUT, Resume()): (S.AVAILABLE, []),
    (S.PAUSED, Login()): (S.AVAILABLE, []),
    (S.PAUSED, Resume()): (S.AVAILABLE, []),
    (S.AVAILABLE, Logout()): (S.LOGGED_OUT, []),
    (S.PAUSED, Logout()): (S.LOGGED_OUT, []),
    (S.WRAP_UP, Logout()): (S.LOGGED_OUT, []),
    (S.RESERVED, Logout()): (S.LOGGED_OUT, []),
    (S.AVAILABLE, Pause("lunch")): (S.PAUSED, []),
    (S.WRAP_UP, Pause("lunch")): (S.PAUSED, []),
    (S.RESERVED, Pause("lunch")): (S.PAUSED, []),
    (S.AVAILABLE, Reserve()): (S.RESERVED, []),
    (S.AVAILABLE, TakeCall()): (S.ON_CALL, []),
    (S.RESERVED, TakeCall()): (S.ON_CALL, []),
    (S.WRAP_UP, TakeCall()): (S.ON_CALL, []),
    (S.ON_CALL, CallFinished()): (S.WRAP_UP, [StartWrapUpTimer()]),
    (S.WRAP_UP, WrapUpDone()): (S.AVAILABLE, []),
    (S.RESERVED, Resume()): (S.AVAILABLE, []),
    # transfers: the sender wraps up, an available operator receives, a supervisor also
    # receives while paused or wrapping up
    (S.ON_CALL, TransferOut()): (S.WRAP_UP, [StartWrapUpTimer()]),
    (S.AVAILABLE, ReceiveTransfer()): (S.ON_CALL, []),
    (S.ON_CALL, TransferUnanswered()): (S.AVAILABLE, []),
    (S.ON_CALL, CallOutUnreached()): (S.AVAILABLE, []),
    (S.AVAILABLE, ReceiveTransfer(supervisor=True)): (S.ON_CALL, []),
    (S.PAUSED, ReceiveTransfer(supervisor=True)): (S.ON_CALL, []),
    (S.WRAP_UP, ReceiveTransfer(supervisor=True)): (S.ON_CALL, []),
    # a consult: only a free colleague is rung; one whose consult ends is free again
    (S.AVAILABLE, Consulted()): (S.ON_CALL, []),
    (S.ON_CALL, ConsultEnded()): (S.AVAILABLE, []),
}


@pytest.mark.parametrize("state", list(OperatorState))
@pytest.mark.parametrize("event", EVENTS, ids=repr)
def test_given_state_and_event_then_allowed_transition_or_refusal(
    state: OperatorState, event: OperatorEvent
) -> None:
    expected = ALLOWED.get((state, event))
    if expected is None:
        with pytest.raises(IllegalTransition):
            transition(state, event)
    else:
        assert transition(state, event) == expected


def test_given_an_operator_on_a_call_when_offered_another_then_refused() -> None:
    with pytest.raises(IllegalTransition):
        transition(S.ON_CALL, TakeCall())


@pytest.mark.parametrize("state", [S.ON_CALL, S.RESERVED, S.PAUSED, S.WRAP_UP, S.LOGGED_OUT])
def test_given_an_operator_not_available_when_a_transfer_comes_then_refused(
    state: OperatorState,
) -> None:
    with pytest.raises(IllegalTransition, match="ReceiveTransfer"):
        transition(state, ReceiveTransfer())


@pytest.mark.parametrize("state", [S.ON_CALL, S.RESERVED, S.LOGGED_OUT])
def test_given_a_supervisor_busy_or_logged_out_when_a_transfer_comes_then_refused(
    state: OperatorState,
) -> None:
    with pytest.raises(IllegalTransition):
        transition(state, ReceiveTransfer(supervisor=True))
