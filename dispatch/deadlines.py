"""What a late ticket means: pure decisions taken when a ticket's deadline timers fire.

Two timers per ticket: `deadline:<id>` at the category's deadline and `escalate:<id>` at
the deadline plus half the deadline window (`SUPERVISOR_FRACTION`). At the deadline an
accepted ticket whose merchant has not arrived is a no-show (re-offered) and every open,
unfinished ticket escalates to the operator on duty; if it is still unfinished at the
second timer it escalates to the supervisor. Finished tickets (completed, rated, closed,
cancelled) never escalate. Each decision is idempotent: a timer that fires twice (a
reconciler racing the scheduler at start) changes nothing the second time.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from dispatch.machines.ticket import TicketState

SUPERVISOR_FRACTION = 0.5

#: ticket states in which a deadline still matters
PENDING = frozenset(
    {
        TicketState.NEW,
        TicketState.MATCHING,
        TicketState.OFFERING,
        TicketState.UNASSIGNED,
        TicketState.ACCEPTED,
        TicketState.IN_SERVICE,
    }
)


class Level(enum.IntEnum):
    """Who has been told about a late ticket."""

    NONE = 0
    OPERATOR = 1
    SUPERVISOR = 2


@dataclass(frozen=True, slots=True)
class Escalate:
    """Raise the ticket to `level` for `reason`."""

    level: Level
    reason: str


@dataclass(frozen=True, slots=True)
class DeclareNoShow:
    """The accepted merchant did not arrive: record it and re-offer the ticket."""


@dataclass(frozen=True, slots=True)
class ScheduleSupervisor:
    """Arm the second escalation timer."""


Decision = Escalate | DeclareNoShow | ScheduleSupervisor


def _reason(state: TicketState) -> str:
    return {
        TicketState.ACCEPTED: "merchant did not arrive by the deadline",
        TicketState.IN_SERVICE: "visit not completed by the deadline",
        TicketState.UNASSIGNED: "nobody accepted before the deadline",
    }.get(state, "not accepted by the deadline")


def on_deadline(state: TicketState, level: int) -> list[Decision]:
    """The ticket's deadline passed."""
    if state not in PENDING or level >= Level.OPERATOR:
        return []
    out: list[Decision] = []
    if state == TicketState.ACCEPTED:
        out.append(DeclareNoShow())
    out += [Escalate(Level.OPERATOR, _reason(state)), ScheduleSupervisor()]
    return out


def on_supervisor_timer(state: TicketState, level: int) -> list[Decision]:
    """Half a deadline window after the deadline: still unfinished goes to the supervisor."""
    if state not in PENDING or level >= Level.SUPERVISOR:
        return []
    return [Escalate(Level.SUPERVISOR, "still " + _reason(state).replace("by the", "after the"))]


def supervisor_at(created_at: datetime, deadline_at: datetime) -> datetime:
    """When a late ticket goes to the supervisor: the deadline plus half its window."""
    return deadline_at + (deadline_at - created_at) * SUPERVISOR_FRACTION
