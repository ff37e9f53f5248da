"""Twilio call statuses mapped to the port's events: a pure, order-aware state machine.

Twilio may retry a status callback and may deliver them out of order (each is its own
HTTP request). A call's progress only moves forward: queued < initiated < ringing <
in-progress < a final status. A callback that does not move it forward (a retry, or a
late "ringing" after "in-progress") yields no event.

Mapping (outbound calls; inbound calls only ever get `CallEnded`):

    ringing                    -> CallRinging
    in-progress                -> CallAnswered
    completed                  -> CallEnded(normal)   (CallAnswered first if it was missed)
    busy / no-answer           -> OriginateFailed(busy / no_answer) before an answer
    failed                     -> OriginateFailed(failed, or congestion on SIP 502/503)
    canceled                   -> CallEnded(normal)   (we hung up while it rang)
    failed after the answer    -> CallEnded(failed)

With machine detection on (`MachineDetection=Enable` on the call), the answer carries
Twilio's `AnsweredBy` as `CallAnswered.answered_by`: human, machine (machine_start,
machine_end_*, fax) or unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from providers.base import (
    CallAnswered,
    CallEnded,
    CallRinging,
    EndCause,
    OriginateFailed,
    OriginateFailure,
    TelephonyEvent,
)

RANK: dict[str, int] = {
    "queued": 0,
    "initiated": 1,
    "ringing": 2,
    "in-progress": 3,
    "answered": 3,
    "completed": 4,
    "busy": 4,
    "no-answer": 4,
    "failed": 4,
    "canceled": 4,
}

_FAILURES = {
    "busy": OriginateFailure.BUSY,
    "no-answer": OriginateFailure.NO_ANSWER,
    "failed": OriginateFailure.FAILED,
}

_END_CAUSES = {
    "completed": EndCause.NORMAL,
    "canceled": EndCause.NORMAL,
    "busy": EndCause.BUSY,
    "no-answer": EndCause.NO_ANSWER,
    "failed": EndCause.FAILED,
}

_CONGESTION_SIP = {"502", "503", "504"}


def answered_by(value: str) -> str:
    """Twilio's `AnsweredBy` as the port says it ("" when Twilio did not tell)."""
    if not value:
        return ""
    if value.startswith("machine") or value == "fax":
        return "machine"
    return "human" if value == "human" else "unknown"


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a call has come: the highest status rank seen and whether it was answered."""

    rank: int = -1
    answered: bool = False

    @property
    def ended(self) -> bool:
        """A final status has been seen."""
        return self.rank >= RANK["completed"]


def advance(
    progress: Progress,
    status: str,
    *,
    ref: str,
    outbound: bool,
    sip_code: str = "",
    by: str = "",
) -> tuple[Progress, list[TelephonyEvent]]:
    """Apply one status; returns the new progress and the events it causes (maybe none)."""
    rank = RANK.get(status)
    if rank is None or rank <= progress.rank:
        return progress, []
    new = replace(progress, rank=rank)
    if status in ("queued", "initiated"):
        return new, []
    if status == "ringing":
        return new, [CallRinging(ref)] if outbound else []
    if status in ("in-progress", "answered"):
        return replace(new, answered=True), [CallAnswered(ref, by)] if outbound else []
    return new, _final(progress, status, ref=ref, outbound=outbound, sip_code=sip_code, by=by)


def _final(
    progress: Progress, status: str, *, ref: str, outbound: bool, sip_code: str, by: str
) -> list[TelephonyEvent]:
    if not outbound or progress.answered:
        cause = _END_CAUSES.get(status, EndCause.UNKNOWN)
        return [CallEnded(ref, cause)]
    if status == "completed":
        # "completed" means it was answered; the in-progress callback was lost or late.
        return [CallAnswered(ref, by), CallEnded(ref, EndCause.NORMAL)]
    if status == "canceled":
        return [CallEnded(ref, EndCause.NORMAL)]
    reason = _FAILURES[status]
    if reason is OriginateFailure.FAILED and sip_code in _CONGESTION_SIP:
        reason = OriginateFailure.CONGESTION
    return [OriginateFailed(ref, reason)]
