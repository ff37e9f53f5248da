"""The offer machine: placed -> ringing -> answered -> accepted | declined, or
no_answer | busy | failed | expired | withdrawn. An accepted offer whose merchant never
arrives becomes a no_show (the merchant's record shows it); one whose merchant cancels the
booked visit they accepted becomes cancelled (`dispatch.booking`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from dispatch.machines import IllegalTransition


class OfferState(enum.StrEnum):
    """Where an offer is."""

    PLACED = "placed"
    RINGING = "ringing"
    ANSWERED = "answered"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    FAILED = "failed"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"
    NO_SHOW = "no_show"
    #: the merchant cancelled a booked visit they had accepted
    CANCELLED = "cancelled"


LIVE = frozenset({OfferState.PLACED, OfferState.RINGING, OfferState.ANSWERED})
#: outcomes after which the cascade moves on to the next merchant
REFUSED = frozenset(
    {
        OfferState.DECLINED,
        OfferState.NO_ANSWER,
        OfferState.BUSY,
        OfferState.FAILED,
        OfferState.EXPIRED,
    }
)


@dataclass(frozen=True, slots=True)
class Ringing:
    """The merchant's phone rings."""


@dataclass(frozen=True, slots=True)
class Answered:
    """The merchant picked up and hears the order."""


@dataclass(frozen=True, slots=True)
class Accept:
    """The merchant pressed 1."""


@dataclass(frozen=True, slots=True)
class Decline:
    """The merchant pressed 2."""


@dataclass(frozen=True, slots=True)
class Unreached:
    """The call never got a decision: no answer, busy, failed or no input."""

    outcome: OfferState


@dataclass(frozen=True, slots=True)
class Expire:
    """The offer's timeout ran out."""


@dataclass(frozen=True, slots=True)
class Withdraw:
    """Another merchant won the ticket, or the ticket was cancelled."""


@dataclass(frozen=True, slots=True)
class NoShow:
    """The merchant accepted but did not arrive by the ticket's deadline."""


@dataclass(frozen=True, slots=True)
class MerchantCancel:
    """The merchant cancels the booked visit they accepted."""


OfferEvent = (
    Ringing | Answered | Accept | Decline | Unreached | Expire | Withdraw | NoShow | MerchantCancel
)


@dataclass(frozen=True, slots=True)
class HangupCall:
    """Hang up the offer's call if it is still live."""


@dataclass(frozen=True, slots=True)
class NextCandidate:
    """The cascade moves on."""


OfferCommand = HangupCall | NextCandidate

_S = OfferState


def transition(state: OfferState, event: OfferEvent) -> tuple[OfferState, list[OfferCommand]]:
    """The next state of an offer and what to do about it."""
    match state, event:
        case _S.PLACED, Ringing():
            return _S.RINGING, []
        case ((_S.PLACED | _S.RINGING), Answered()):
            return _S.ANSWERED, []
        case state, Accept() if state in LIVE:
            # normally after answering; from the console a merchant may accept directly
            return _S.ACCEPTED, []
        case state, Decline() if state in LIVE:
            # pressed 2 on the call, or refused on the merchant page while it rang
            return _S.DECLINED, [HangupCall(), NextCandidate()]
        case state, Unreached(outcome=outcome) if state in LIVE and outcome in REFUSED:
            return outcome, [NextCandidate()]
        case state, Expire() if state in LIVE:
            return _S.EXPIRED, [HangupCall(), NextCandidate()]
        case state, Withdraw() if state in LIVE:
            return _S.WITHDRAWN, [HangupCall()]
        case _S.ACCEPTED, NoShow():
            return _S.NO_SHOW, []
        case _S.ACCEPTED, MerchantCancel():
            return _S.CANCELLED, []
    raise IllegalTransition("offer", state, event)
