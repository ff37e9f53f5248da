"""Click-to-call on Twilio: what the port reports for a `call_out`. Pure: no I/O.

`call_out` places one REST call to the operator's endpoint (Twilio Client
``client:operator_<id>`` by default, `TwilioConfig.operator_endpoint`); its voice URL,
fetched when the operator answers, is a `<Dial>` of the number (`twiml.callout`), whose
`<Number>` posts its own progress to ``/callout`` (signed like every webhook), and whose
action (``/dial``) tells how the Dial ended. So a click-to-call has two legs:

- the desk's (the REST call, named by our ref): its ringing says nothing yet; its answer
  is ``CallBridged(ref, desk)``; it never answering is ``OriginateFailed`` as for any
  outbound call; its end is the call's ``CallEnded`` (unless the number failed first);
- the number's: ringing ``CallRinging(ref)``, answer ``CallAnswered(ref)``, busy /
  no-answer / failed (from ``/callout`` or the Dial's action, whichever comes first)
  ``OriginateFailed(ref, reason)``, after which the desk leg is hung up and its end says
  nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from providers.base import (
    CallAnswered,
    CallBridged,
    CallEnded,
    CallRinging,
    OriginateFailed,
    OriginateFailure,
    TelephonyEvent,
)
from providers.twilio.status import Progress, advance

#: the `<Number>` progress Twilio is asked to post to /callout
NUMBER_EVENTS = "ringing answered completed"
#: a `<Dial>` action's DialCallStatus of a number that never answered -> why
DIAL_FAILURES: dict[str, OriginateFailure] = {
    "busy": OriginateFailure.BUSY,
    "no-answer": OriginateFailure.NO_ANSWER,
    "failed": OriginateFailure.FAILED,
    "canceled": OriginateFailure.NO_ANSWER,
}


@dataclass(slots=True)
class Callout:
    """One click-to-call's two legs."""

    desk: str
    number: str
    ring_s: int = 30
    number_progress: Progress = field(default_factory=Progress)
    bridged: bool = False
    failed: bool = False

    def desk_events(self, ref: str, events: list[TelephonyEvent]) -> list[TelephonyEvent]:
        """The port's view of what the desk leg's statuses yielded."""
        out: list[TelephonyEvent] = []
        for event in events:
            match event:
                case CallRinging():
                    continue
                case CallAnswered():
                    if not self.bridged:
                        self.bridged = True
                        out.append(CallBridged(ref, self.desk))
                case CallEnded():
                    if not self.failed:
                        out.append(event)
                case _:
                    out.append(event)
        return out

    def number_status(self, ref: str, status: str, *, sip_code: str = "") -> list[TelephonyEvent]:
        """A `<Number>` status callback."""
        self.number_progress, events = advance(
            self.number_progress, status, ref=ref, outbound=True, sip_code=sip_code
        )
        out: list[TelephonyEvent] = []
        for event in events:
            match event:
                case CallEnded():
                    continue  # the desk leg's end says it
                case OriginateFailed():
                    if not self.failed:
                        self.failed = True
                        out.append(event)
                case _:
                    out.append(event)
        return out

    def dial_ended(self, ref: str, dial_status: str) -> list[TelephonyEvent]:
        """The `<Dial>` of the number ended with `dial_status`."""
        reason = DIAL_FAILURES.get(dial_status)
        if reason is None or self.failed or self.number_progress.answered:
            return []
        self.failed = True
        return [OriginateFailed(ref, reason)]
