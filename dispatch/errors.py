"""What the dispatch use cases refuse with, translated to HTTP once (operator_console.errors).

Conflict                  someone else changed the subject first (409)
Invalid(ValueError)       a request that cannot be carried out as asked (422)
 +-- OperatorTask         a call back is work for an operator, never for a merchant
dispatch.machines.IllegalTransition   the state does not allow it (409)
registry.repository.NotFound          no such row (404)
"""

from __future__ import annotations


class Conflict(Exception):
    """Someone else changed the subject first (HTTP 409)."""


class Invalid(ValueError):
    """A request that cannot be carried out as asked (HTTP 422)."""

    error_id = "invalid_input"


class OperatorTask(Invalid):
    """The ticket is a task for an operator (a call back), never offered to a merchant."""

    error_id = "operator_task"
