"""The operator machine: logged_out, available, reserved, on_call, wrap_up, paused(reason)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from dispatch.machines import IllegalTransition


class OperatorState(enum.StrEnum):
    """Where an operator is."""

    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    RESERVED = "reserved"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"


@dataclass(frozen=True, slots=True)
class Login:
    """The operator starts taking calls."""


@dataclass(frozen=True, slots=True)
class Logout:
    """The operator stops taking calls."""


@dataclass(frozen=True, slots=True)
class Pause:
    """The operator pauses, with a reason."""

    reason: str


@dataclass(frozen=True, slots=True)
class Resume:
    """The operator is available again."""


@dataclass(frozen=True, slots=True)
class Reserve:
    """A waiting call is offered to this operator."""


@dataclass(frozen=True, slots=True)
class TakeCall:
    """The operator is connected to a caller."""


@dataclass(frozen=True, slots=True)
class CallFinished:
    """The operator's call ended; after-call work starts."""


@dataclass(frozen=True, slots=True)
class WrapUpDone:
    """After-call work is done (by the operator or when its timer runs out)."""


OperatorEvent = Login | Logout | Pause | Resume | Reserve | TakeCall | CallFinished | WrapUpDone


@dataclass(frozen=True, slots=True)
class StartWrapUpTimer:
    """Schedule the end of a timed wrap-up."""


OperatorCommand = StartWrapUpTimer

_S = OperatorState


def transition(
    state: OperatorState, event: OperatorEvent
) -> tuple[OperatorState, list[OperatorCommand]]:
    """The next state of an operator and what to do about it."""
    match state, event:
        case ((_S.LOGGED_OUT | _S.PAUSED), (Login() | Resume())):
            return _S.AVAILABLE, []
        case ((_S.AVAILABLE | _S.PAUSED | _S.WRAP_UP | _S.RESERVED), Logout()):
            return _S.LOGGED_OUT, []
        case ((_S.AVAILABLE | _S.WRAP_UP | _S.RESERVED), Pause()):
            return _S.PAUSED, []
        case _S.AVAILABLE, Reserve():
            return _S.RESERVED, []
        case ((_S.AVAILABLE | _S.RESERVED | _S.WRAP_UP), TakeCall()):
            return _S.ON_CALL, []
        case _S.ON_CALL, CallFinished():
            return _S.WRAP_UP, [StartWrapUpTimer()]
        case _S.WRAP_UP, WrapUpDone():
            return _S.AVAILABLE, []
        case _S.RESERVED, Resume():
            return _S.AVAILABLE, []
    raise IllegalTransition("operator", state, event)
