"""The ticket (工单) machine.

new -> matching -> offering -> accepted -> in_service -> completed -> rated -> closed;
cancelled from any open state; unassigned when nobody accepts (and back to offering on
a new dispatch). A no-show, or the merchant cancelling a booked visit they accepted, sends
an accepted ticket back to offering. Escalation is a
flag with a reason on the ticket, not a state. An operator's task (a call back) never
meets a merchant: new -> closed once done (`TaskDone`), or cancelled.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from dispatch.machines import IllegalTransition


class TicketState(enum.StrEnum):
    """Where a ticket is."""

    NEW = "new"
    MATCHING = "matching"
    OFFERING = "offering"
    ACCEPTED = "accepted"
    IN_SERVICE = "in_service"
    COMPLETED = "completed"
    RATED = "rated"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    UNASSIGNED = "unassigned"


FINAL = frozenset({TicketState.CLOSED, TicketState.CANCELLED})
OPEN = frozenset(TicketState) - FINAL


@dataclass(frozen=True, slots=True)
class StartMatching:
    """Look for merchants."""


@dataclass(frozen=True, slots=True)
class OffersPlaced:
    """One or more offers went out."""


@dataclass(frozen=True, slots=True)
class NobodyAvailable:
    """No candidate left: nobody can or will take the ticket."""


@dataclass(frozen=True, slots=True)
class MerchantAccepted:
    """A merchant accepted an offer."""

    merchant_id: int


@dataclass(frozen=True, slots=True)
class Arrived:
    """The merchant reports arrival at the door."""


@dataclass(frozen=True, slots=True)
class Completed:
    """The visit is done."""


@dataclass(frozen=True, slots=True)
class NoShow:
    """The accepted merchant did not arrive in time."""


@dataclass(frozen=True, slots=True)
class MerchantCancelled:
    """The accepted merchant cancelled the booked visit (`dispatch.booking`)."""


@dataclass(frozen=True, slots=True)
class Rated:
    """The resident (or family) rated the visit."""

    rating: str


@dataclass(frozen=True, slots=True)
class Close:
    """Close the ticket (rated, or the survey window passed)."""


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel the ticket."""

    reason: str


@dataclass(frozen=True, slots=True)
class TaskDone:
    """An operator's task (a call back) is done: the operator reached the caller."""


TicketEvent = (
    StartMatching
    | OffersPlaced
    | NobodyAvailable
    | MerchantAccepted
    | Arrived
    | Completed
    | NoShow
    | MerchantCancelled
    | Rated
    | Close
    | Cancel
    | TaskDone
)


@dataclass(frozen=True, slots=True)
class AlertOperators:
    """Tell every operator at once that a ticket needs a human."""

    reason: str


@dataclass(frozen=True, slots=True)
class WithdrawOtherOffers:
    """First accept wins: withdraw the ticket's other live offers."""


@dataclass(frozen=True, slots=True)
class TellResident:
    """A merchant accepted: tell the resident who is coming, by when, and the code word."""


@dataclass(frozen=True, slots=True)
class ScheduleSurvey:
    """Call the resident for a rating."""


@dataclass(frozen=True, slots=True)
class Redispatch:
    """Offer the ticket again to the next candidates."""


@dataclass(frozen=True, slots=True)
class TellFamily:
    """Tell the resident's contacts who chose to hear about `event` (accepted, arrived,
    completed, late, no_show)."""

    event: str


TicketCommand = (
    AlertOperators | WithdrawOtherOffers | TellResident | ScheduleSurvey | Redispatch | TellFamily
)

_S = TicketState


def transition(state: TicketState, event: TicketEvent) -> tuple[TicketState, list[TicketCommand]]:
    """The next state of a ticket and what to do about it."""
    match state, event:
        case ((_S.NEW | _S.UNASSIGNED), StartMatching()):
            return _S.MATCHING, []
        case ((_S.MATCHING | _S.OFFERING | _S.UNASSIGNED), OffersPlaced()):
            return _S.OFFERING, []
        case ((_S.MATCHING | _S.OFFERING), NobodyAvailable()):
            return _S.UNASSIGNED, [AlertOperators("nobody accepted")]
        case _S.OFFERING, MerchantAccepted():
            return _S.ACCEPTED, [WithdrawOtherOffers(), TellResident(), TellFamily("accepted")]
        case _S.ACCEPTED, Arrived():
            return _S.IN_SERVICE, [TellFamily("arrived")]
        case ((_S.ACCEPTED | _S.IN_SERVICE), Completed()):
            return _S.COMPLETED, [ScheduleSurvey(), TellFamily("completed")]
        case _S.ACCEPTED, NoShow():
            return _S.OFFERING, [Redispatch(), TellFamily("no_show")]
        case _S.ACCEPTED, MerchantCancelled():
            # the cascade re-opens at once, with the candidates open in the window
            return _S.OFFERING, [Redispatch()]
        case _S.COMPLETED, Rated():
            return _S.RATED, []
        case ((_S.RATED | _S.COMPLETED), Close()):
            return _S.CLOSED, []
        case state, Cancel() if state in OPEN:
            return _S.CANCELLED, []
        case _S.NEW, TaskDone():
            return _S.CLOSED, []
    raise IllegalTransition("ticket", state, event)
