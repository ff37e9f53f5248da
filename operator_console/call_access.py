"""Who may act on a call: the operator on it; a supervisor may also hang any call up.

Call ids are sequential, so a desk action names any call there is: another operator's
resident, a merchant's offer call, a survey call. Every desk action on a call (hang up,
wrap up, hold, resume, transfer, quick register of the caller) asks `check` first: 403
with the reason otherwise (`details.reason`: `outbound_call`, `not_answered`,
`another_operator`). An operator's own click-to-call (purpose `callout`) is theirs to hang
up and wrap up. The use cases in `dispatch` still refuse, with 409, an action that a race
made wrong meanwhile.
"""

from __future__ import annotations

from typing import Literal

from aiohttp import web

from dispatch.callouts import CALLOUT
from dispatch.machines.operator import OperatorState
from dispatch.models import Call, OperatorStatus
from operator_console.auth import RANKS
from operator_console.errors import Forbidden
from registry.models import Role, User
from registry.repository import NotFound

Action = Literal["hangup", "wrap-up", "hold", "unhold", "transfer", "consult", "register"]


def _supervisor(user: User) -> bool:
    return RANKS.get(user.role, 0) >= RANKS[Role.SUPERVISOR]


async def check(request: web.Request, call_id: int, user: User, action: Action) -> Call:
    """The call, if `user` may do `action` on it; 404 if there is none, 403 otherwise."""
    from operator_console.app import services_key

    async with request.app[services_key].store.read() as session:
        call = await session.get(Call, call_id)
        if call is None:
            raise NotFound("call", call_id)
        status = await session.get(OperatorStatus, user.id) if action == "wrap-up" else None
    if action == "hangup" and _supervisor(user):
        return call
    # an operator's own click-to-call is theirs to hang up and wrap up, like a caller
    callout = call.purpose == CALLOUT and action in ("hangup", "wrap-up")
    if call.direction != "in" and not callout:
        raise Forbidden(
            f"call {call_id} is an outbound {call.purpose} call: no operator is on it "
            "(a supervisor may hang it up)",
            "outbound_call",
        )
    if call.operator_id == user.id:
        return call
    # after a transfer the sender still wraps up the call they handed on
    if status is not None and status.state == OperatorState.WRAP_UP and status.call_id == call.id:
        return call
    if call.operator_id is None:
        raise Forbidden(f"call {call_id} is not with an operator: answer it first", "not_answered")
    raise Forbidden(f"call {call_id} is with another operator", "another_operator")
