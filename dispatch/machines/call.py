"""The call machine: ringing -> ivr -> queued -> connected -> wrap_up -> ended.

A caller who hangs up in any waiting state is `abandoned`. Outbound calls go
ringing -> connected -> ended.

At the operator desk a connected caller can be put on hold (`on_hold`, the caller hears
the hold prompt, the operator's leg stays up) and taken back, and be transferred to
another operator, connected or on hold: the call stays connected and only changes hands
(it is not answered a second time, so the answer figures are not touched). A caller who
hangs up on hold ends the call as from `connected`: the operator wraps up. A transfer
whose new operator never answers puts the caller back in the queue (`TransferUnanswered`),
keeping their first answer and their place (see `dispatch.desk`).

A consult (warm) transfer: the operator puts the caller on hold and rings a colleague
(`consult_ringing`); once the colleague answers the two operators talk (`consulting`),
the caller still on hold. Completing hands the caller to the colleague (as a transfer);
cancelling, or a colleague who never answers, gives the caller back to their operator
(`connected`). A caller who hangs up meanwhile ends the call as from `connected`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from dispatch.machines import IllegalTransition


class CallState(enum.StrEnum):
    """Where a call is."""

    RINGING = "ringing"
    IVR = "ivr"
    QUEUED = "queued"
    CONNECTED = "connected"
    ON_HOLD = "on_hold"
    CONSULT_RINGING = "consult_ringing"
    CONSULTING = "consulting"
    WRAP_UP = "wrap_up"
    ENDED = "ended"
    ABANDONED = "abandoned"


WAITING = frozenset({CallState.RINGING, CallState.IVR, CallState.QUEUED})
FINAL = frozenset({CallState.ENDED, CallState.ABANDONED})
#: an operator is talking to the caller, or has them on hold
AT_DESK = frozenset(
    {CallState.CONNECTED, CallState.ON_HOLD, CallState.CONSULT_RINGING, CallState.CONSULTING}
)
#: the caller is on hold while their operator asks a colleague
CONSULT = frozenset({CallState.CONSULT_RINGING, CallState.CONSULTING})


@dataclass(frozen=True, slots=True)
class StartIvr:
    """The hotline flow starts on an inbound call."""

    flow: str


@dataclass(frozen=True, slots=True)
class Enqueue:
    """The caller waits for an operator."""


@dataclass(frozen=True, slots=True)
class Answer:
    """An operator takes a queued call, or the far end of an outbound call picks up."""

    operator_id: int | None = None


@dataclass(frozen=True, slots=True)
class Hangup:
    """Either side hung up; `desk`: the caller was with an operator (who wraps up)."""

    inbound: bool
    desk: bool = True


@dataclass(frozen=True, slots=True)
class Responded:
    """Someone away from the desk took a waiting emergency call (an on-call phone, a
    contact, 120): the backend joins them; no operator, so no wrap-up at the end."""


@dataclass(frozen=True, slots=True)
class WrapUpDone:
    """The operator finished the after-call work."""


@dataclass(frozen=True, slots=True)
class SelfServed:
    """The caller finished in the menu (a routine need taken by keypad); no operator needed."""


@dataclass(frozen=True, slots=True)
class CallbackRequested:
    """A waiting caller chose a call back that keeps their place; the call ends."""


@dataclass(frozen=True, slots=True)
class Hold:
    """The operator puts the caller on hold."""


@dataclass(frozen=True, slots=True)
class Unhold:
    """The operator takes the caller back from hold."""


@dataclass(frozen=True, slots=True)
class HoldFailed:
    """The PBX could not put the caller on hold: they are still talking to the operator."""


@dataclass(frozen=True, slots=True)
class Transfer:
    """The caller is handed to another operator (or a supervisor)."""

    operator_id: int


@dataclass(frozen=True, slots=True)
class TransferUnanswered:
    """The operator a caller was transferred to never answered: the caller waits again."""


@dataclass(frozen=True, slots=True)
class AskOperator:
    """The far end of an answered outbound call asked for an operator (a wellbeing call's
    2 or 0): it waits in the queue like a caller."""


@dataclass(frozen=True, slots=True)
class Consult:
    """The operator holds the caller and rings a colleague to talk to first."""

    operator_id: int


@dataclass(frozen=True, slots=True)
class ConsultAnswered:
    """The colleague answered: the two operators talk, the caller on hold."""


@dataclass(frozen=True, slots=True)
class ConsultComplete:
    """The operator hands the caller to the colleague they consulted."""

    operator_id: int


@dataclass(frozen=True, slots=True)
class ConsultCancel:
    """The operator ends the consult and takes the caller back."""

    operator_id: int


@dataclass(frozen=True, slots=True)
class ConsultFailed:
    """The colleague never answered: the caller is back with their operator."""


CallEvent = (
    StartIvr
    | Enqueue
    | Answer
    | Hangup
    | WrapUpDone
    | SelfServed
    | CallbackRequested
    | Hold
    | Unhold
    | HoldFailed
    | Transfer
    | TransferUnanswered
    | Responded
    | AskOperator
    | Consult
    | ConsultAnswered
    | ConsultComplete
    | ConsultCancel
    | ConsultFailed
)


@dataclass(frozen=True, slots=True)
class RunFlow:
    """Run an IVR flow on the call."""

    flow: str


@dataclass(frozen=True, slots=True)
class BridgeToOperator:
    """Connect the call to an operator's endpoint."""

    operator_id: int


@dataclass(frozen=True, slots=True)
class HoldCaller:
    """Play the hold prompt to the caller; keep the operator's leg up."""


@dataclass(frozen=True, slots=True)
class UnholdCaller:
    """Reconnect the held caller to their operator."""


@dataclass(frozen=True, slots=True)
class TransferToOperator:
    """Move the caller to another operator's endpoint; the previous one is released."""

    operator_id: int


@dataclass(frozen=True, slots=True)
class ConsultOperator:
    """Hold the caller (if not held) and ring a colleague's endpoint for their operator."""

    operator_id: int


@dataclass(frozen=True, slots=True)
class CompleteConsult:
    """Connect the held caller to the consulted colleague; their operator is released."""

    operator_id: int


@dataclass(frozen=True, slots=True)
class CancelConsult:
    """Release the consulted colleague and reconnect the caller to their operator."""

    operator_id: int


CallCommand = (
    RunFlow
    | BridgeToOperator
    | HoldCaller
    | UnholdCaller
    | TransferToOperator
    | ConsultOperator
    | CompleteConsult
    | CancelConsult
)


def transition(state: CallState, event: CallEvent) -> tuple[CallState, list[CallCommand]]:
    """The next state of a call and what to do about it."""
    match state, event:
        case CallState.RINGING, StartIvr(flow=flow):
            return CallState.IVR, [RunFlow(flow)]
        case ((CallState.RINGING | CallState.IVR), Enqueue()):
            return CallState.QUEUED, []
        case CallState.IVR, SelfServed():
            return CallState.ENDED, []
        case CallState.QUEUED, CallbackRequested():
            return CallState.ENDED, []
        case CallState.QUEUED, Answer(operator_id=int(operator_id)):
            return CallState.CONNECTED, [BridgeToOperator(operator_id)]
        case CallState.RINGING, Answer(operator_id=None):
            return CallState.CONNECTED, []
        case CallState.CONNECTED, Hold():
            return CallState.ON_HOLD, [HoldCaller()]
        case CallState.ON_HOLD, Unhold():
            return CallState.CONNECTED, [UnholdCaller()]
        case CallState.ON_HOLD, HoldFailed():
            return CallState.CONNECTED, []
        case ((CallState.CONNECTED | CallState.ON_HOLD), Consult(operator_id=operator_id)):
            return CallState.CONSULT_RINGING, [ConsultOperator(operator_id)]
        case CallState.CONSULT_RINGING, ConsultAnswered():
            return CallState.CONSULTING, []
        case CallState.CONSULTING, ConsultComplete(operator_id=operator_id):
            return CallState.CONNECTED, [CompleteConsult(operator_id)]
        case state, ConsultCancel(operator_id=operator_id) if state in CONSULT:
            return CallState.CONNECTED, [CancelConsult(operator_id)]
        case CallState.CONSULT_RINGING, ConsultFailed():
            return CallState.CONNECTED, [UnholdCaller()]
        case ((CallState.CONNECTED | CallState.ON_HOLD), Transfer(operator_id=operator_id)):
            return CallState.CONNECTED, [TransferToOperator(operator_id)]
        case CallState.CONNECTED, TransferUnanswered():
            return CallState.QUEUED, []
        case CallState.CONNECTED, AskOperator():
            return CallState.QUEUED, []
        case CallState.QUEUED, Responded():
            return CallState.CONNECTED, []
        case state, Hangup(inbound=True, desk=True) if state in AT_DESK:
            return CallState.WRAP_UP, []
        case state, Hangup() if state in AT_DESK:
            return CallState.ENDED, []
        case state, Hangup(inbound=inbound) if state in WAITING:
            return (CallState.ABANDONED if inbound else CallState.ENDED), []
        case CallState.WRAP_UP, WrapUpDone():
            return CallState.ENDED, []
    raise IllegalTransition("call", state, event)
