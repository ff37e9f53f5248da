"""The incident machine: many calls about one water, power or gas fault in one grid.

open -> dispatched (one ticket to the utility) -> fixed -> callbacks_done; an incident
may be fixed without a dispatch (the utility phoned in first). Calls are linked while it
is open or dispatched; once fixed, every linked caller is called back with the news.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from dispatch.machines import IllegalTransition

#: the catalog categories an incident can be about
UTILITY_CATEGORIES = ("water", "electricity", "gas")


class IncidentState(enum.StrEnum):
    """Where an incident is."""

    OPEN = "open"
    DISPATCHED = "dispatched"
    FIXED = "fixed"
    CALLBACKS_DONE = "callbacks_done"


#: later callers of the grid hear the announcement and calls may be linked
ACTIVE = frozenset({IncidentState.OPEN, IncidentState.DISPATCHED})


@dataclass(frozen=True, slots=True)
class Dispatch:
    """One ticket went to the utility."""

    ticket_id: int


@dataclass(frozen=True, slots=True)
class Fixed:
    """The utility (keypad, merchant page) or an operator says the fault is repaired."""


@dataclass(frozen=True, slots=True)
class CallbacksFinished:
    """Every linked caller's callback has an outcome."""


IncidentEvent = Dispatch | Fixed | CallbacksFinished


@dataclass(frozen=True, slots=True)
class StartCallbacks:
    """Call every linked caller back with the news, paced."""


IncidentCommand = StartCallbacks


def can_link(state: IncidentState) -> bool:
    """Whether calls may still be linked to an incident in this state."""
    return state in ACTIVE


def transition(
    state: IncidentState, event: IncidentEvent
) -> tuple[IncidentState, list[IncidentCommand]]:
    """The next state and the commands to carry out; `IllegalTransition` otherwise."""
    match state, event:
        case IncidentState.OPEN, Dispatch():
            return IncidentState.DISPATCHED, []
        case ((IncidentState.OPEN | IncidentState.DISPATCHED), Fixed()):
            return IncidentState.FIXED, [StartCallbacks()]
        case IncidentState.FIXED, CallbacksFinished():
            return IncidentState.CALLBACKS_DONE, []
    raise IllegalTransition("incident", state, event)
