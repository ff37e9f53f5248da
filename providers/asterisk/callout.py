"""Click-to-call on Asterisk: what the port reports for a `call_out`. Pure: no I/O.

`call_out` Originates the operator's device (`AsteriskConfig.desk_template`) into the
``yijing-callout`` context, which Dial()s the number once the operator answers (see
``conf/extensions.conf``). The originated channel is the operator's leg and carries the
ref, so the correlator's view of it is the desk's, not the number's. This tracker
rewrites it into what the port promises for a click-to-call:

- the desk ringing (Newstate 5 of the operator's leg) says nothing yet;
- the desk answering (OriginateResponse Success) is ``CallBridged(ref, desk)``;
- the Dial of the number ringing (DialState RINGING from the operator's leg) is
  ``CallRinging(ref)``, its answer (DialEnd ANSWER) ``CallAnswered(ref)``, any other
  DialEnd ``OriginateFailed(ref, reason)`` (the operator's leg then hangs up: that
  hang-up says nothing more);
- the operator's leg entering a bridge with the number is already said;
- the desk never answering (OriginateResponse Failure) is the correlator's
  ``OriginateFailed`` as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from providers.asterisk.wire import Message
from providers.base import (
    CallAnswered,
    CallBridged,
    CallEnded,
    CallRinging,
    OriginateFailed,
    OriginateFailure,
    TelephonyEvent,
)

#: DialEnd statuses of the number's Dial -> why the number never answered
DIAL_FAILURES: dict[str, OriginateFailure] = {
    "NOANSWER": OriginateFailure.NO_ANSWER,
    "BUSY": OriginateFailure.BUSY,
    "CONGESTION": OriginateFailure.CONGESTION,
    "CHANUNAVAIL": OriginateFailure.FAILED,
    "CANCEL": OriginateFailure.NO_ANSWER,
}


@dataclass(slots=True)
class Callout:
    """One click-to-call as the tracker follows it."""

    ref: str
    desk: str
    #: desk (the operator's phone rings), dialling, ringing, answered, failed
    stage: str = "desk"


class CalloutTracker:
    """The click-to-calls of one adapter, by ref."""

    def __init__(self) -> None:
        self.calls: dict[str, Callout] = {}

    def placed(self, ref: str, desk: str) -> None:
        """A call_out's Originate is being sent."""
        self.calls[ref] = Callout(ref=ref, desk=desk)

    def dial_message(self, ref: str, msg: Message) -> list[TelephonyEvent]:
        """A DialState / DialEnd whose dialling channel is the call_out `ref`'s leg."""
        call = self.calls.get(ref)
        if call is None or call.stage not in ("dialling", "ringing"):
            return []
        status = msg.get("DialStatus", "")
        if msg.get("Event") == "DialState":
            if status == "RINGING" and call.stage == "dialling":
                call.stage = "ringing"
                return [CallRinging(ref)]
            return []
        if status == "ANSWER":
            call.stage = "answered"
            return [CallAnswered(ref)]
        call.stage = "failed"
        return [OriginateFailed(ref, DIAL_FAILURES.get(status, OriginateFailure.FAILED))]

    def rewrite(self, event: TelephonyEvent) -> list[TelephonyEvent]:
        """What the port says for an event the correlator derived (others pass)."""
        call = self.calls.get(getattr(event, "ref", ""))
        if call is None:
            return [event]
        match event:
            case CallRinging():
                return []  # the desk rings: nothing to say until it answers
            case CallAnswered():
                if call.stage != "desk":
                    return []
                call.stage = "dialling"
                return [CallBridged(call.ref, call.desk)]
            case CallBridged():
                return []  # the operator's leg bridged with the number: said at DialEnd
            case OriginateFailed():
                del self.calls[call.ref]  # the desk never answered
                return [event]
            case CallEnded():
                del self.calls[call.ref]
                # after a failure OriginateFailed said it all; else either side hung up
                return [] if call.stage == "failed" else [event]
        return [event]
