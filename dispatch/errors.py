"""What the dispatch use cases refuse with, translated to HTTP once (operator_console.errors).

Conflict                  someone else changed the subject first (409)
 +-- TicketExists         the call has its ticket already (a second click, a second tab)
 +-- OnCall               an operator with a caller at the desk cannot sign off
 +-- TicketClosed         a closed or cancelled ticket is not reassigned
 +-- AlreadyAssigned      the ticket is with that operator already
 +-- ConsentRequired      the category asks for the resident's consent before dispatch
Invalid(ValueError)       a request that cannot be carried out as asked (422)
 +-- OperatorTask         a call back is work for an operator, never for a merchant
 +-- NotAssignable        a ticket goes to an active operator or supervisor only
dispatch.machines.IllegalTransition   the state does not allow it (409)
registry.repository.NotFound          no such row (404)
"""

from __future__ import annotations


class Conflict(Exception):
    """Someone else changed the subject first (HTTP 409)."""

    error_id = "conflict"


class TicketExists(Conflict):
    """A call has one ticket: a second one for it is refused (`details.ticket_id`)."""

    error_id = "ticket_exists"

    def __init__(self, call_id: int, ticket_id: int) -> None:
        super().__init__(
            f"call {call_id} has its ticket already (#{ticket_id}): open that ticket "
            "instead of making a second one"
        )
        self.details = {"ticket_id": ticket_id}


class OnCall(Conflict):
    """An operator with a caller at the desk cannot sign off (`details.call_id`)."""

    error_id = "on_call"

    def __init__(self, call_id: int) -> None:
        super().__init__(
            f"a caller is on the line (call {call_id}): hang up or transfer the call, then log out"
        )
        self.details = {"call_id": call_id}


class Invalid(ValueError):
    """A request that cannot be carried out as asked (HTTP 422)."""

    error_id = "invalid_input"


class OperatorTask(Invalid):
    """The ticket is a task for an operator (a call back), never offered to a merchant."""

    error_id = "operator_task"


class TicketClosed(Conflict):
    """A closed or cancelled ticket is not reassigned (`details.state`)."""

    error_id = "ticket_closed"

    def __init__(self, ticket_id: int, state: str) -> None:
        super().__init__(f"ticket {ticket_id} is {state}: nothing is left to hand on")
        self.details = {"ticket_id": ticket_id, "state": state}


class AlreadyAssigned(Conflict):
    """The ticket is with that operator already (`details.name`)."""

    error_id = "already_assigned"

    def __init__(self, ticket_id: int, name: str) -> None:
        super().__init__(f"ticket {ticket_id} is with {name} already")
        self.details = {"ticket_id": ticket_id, "name": name}


class ConsentRequired(Conflict):
    """The ticket's category asks for the resident's consent (to the price) before it is
    dispatched, and none is recorded yet (`details.ticket_id`)."""

    error_id = "consent_required"

    def __init__(self, ticket_id: int) -> None:
        super().__init__(
            f"ticket {ticket_id} needs the resident's consent before dispatch: record it first"
        )
        self.details = {"ticket_id": ticket_id}


class NotAssignable(Invalid):
    """Only an active operator, supervisor or admin may be handed a ticket."""

    error_id = "not_assignable"

    def __init__(self, user_id: int) -> None:
        super().__init__(f"user {user_id} is not an active operator or supervisor")
