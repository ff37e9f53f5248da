"""The operator machine: logged_out, available, reserved, on_call, wrap_up, paused(reason).

Transfers: the operator who hands a caller on goes to wrap-up as if the call had ended
for them; the one who receives it goes on_call. A transfer to a named operator needs
them `available`; a supervisor (the escalation desk) takes one whenever logged in and
not busy with another caller (available, paused or wrapping up). One who never picks
up a transferred caller (`TransferUnanswered`) is available again. A click-to-call takes
the operator on_call like an answer (`TakeCall`); one that never reached the number
(`CallOutUnreached`) leaves them available, one that did ends in wrap-up.

A consult: the colleague asked (`Consulted`, only when available) is on_call with the
caller's call while their desk rings and while they talk; a completed consult keeps them
on_call (the caller is theirs) and sends the asking operator to wrap-up (`TransferOut`);
a cancelled or unanswered consult, or a caller who hangs up meanwhile (`ConsultEnded`),
makes them available again.
"""

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


@dataclass(frozen=True, slots=True)
class TransferOut:
    """The operator handed their caller to someone else; after-call work starts."""


@dataclass(frozen=True, slots=True)
class ReceiveTransfer:
    """A caller is handed to this operator; `supervisor` when sent to the supervisor desk."""

    supervisor: bool = False


@dataclass(frozen=True, slots=True)
class TransferUnanswered:
    """A caller handed to this operator never reached them (their phone did not answer)."""


@dataclass(frozen=True, slots=True)
class CallOutUnreached:
    """The operator's click-to-call never reached the number: nothing to wrap up."""


@dataclass(frozen=True, slots=True)
class Consulted:
    """A colleague rings this operator to talk about their caller first."""


@dataclass(frozen=True, slots=True)
class ConsultEnded:
    """The consult this operator was asked into ended without the caller coming to them."""


OperatorEvent = (
    Login
    | Logout
    | Pause
    | Resume
    | Reserve
    | TakeCall
    | CallFinished
    | WrapUpDone
    | TransferOut
    | ReceiveTransfer
    | TransferUnanswered
    | CallOutUnreached
    | Consulted
    | ConsultEnded
)


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
        case _S.ON_CALL, (CallFinished() | TransferOut()):
            return _S.WRAP_UP, [StartWrapUpTimer()]
        case _S.AVAILABLE, Consulted():
            return _S.ON_CALL, []
        case _S.ON_CALL, ConsultEnded():
            return _S.AVAILABLE, []
        case _S.AVAILABLE, ReceiveTransfer():
            return _S.ON_CALL, []
        case ((_S.PAUSED | _S.WRAP_UP), ReceiveTransfer(supervisor=True)):
            return _S.ON_CALL, []
        case _S.ON_CALL, (TransferUnanswered() | CallOutUnreached()):
            return _S.AVAILABLE, []
        case _S.WRAP_UP, WrapUpDone():
            return _S.AVAILABLE, []
        case _S.RESERVED, Resume():
            return _S.AVAILABLE, []
    raise IllegalTransition("operator", state, event)
