"""Operators' states (logged out, available, reserved, on call, wrap-up, paused): the one
place their machine is applied to their `OperatorStatus` row.

The desk (`dispatch.desk`) and the queue (`dispatch.queue`) decide what happens to an
operator; this module writes it, with its event and its commands.
"""

from __future__ import annotations

from dispatch.core import Core
from dispatch.machines import operator as opm
from dispatch.models import Call, OperatorStatus
from eventlog.store import Tx


class Operators:
    """Operator status rows and their transitions."""

    def __init__(self, core: Core) -> None:
        self.core = core

    async def status(self, tx: Tx, user_id: int) -> OperatorStatus:
        """An operator's status row, made (logged out) on first use."""
        status = await tx.session.get(OperatorStatus, user_id, populate_existing=True)
        if status is None:
            status = OperatorStatus(user_id=user_id, since=self.core.now())
            tx.session.add(status)
            await tx.session.flush()
        return status

    async def event(
        self, tx: Tx, user_id: int, event: opm.OperatorEvent, call: Call | None = None
    ) -> OperatorStatus:
        """Apply an event to an operator; `call`: the call they take (on_call)."""
        status = await self.status(tx, user_id)
        state, commands = opm.transition(status.state, event)
        reason = event.reason if isinstance(event, opm.Pause) else None
        call_id = (
            call.id
            if call is not None and state == opm.OperatorState.ON_CALL
            else (status.call_id if state == opm.OperatorState.WRAP_UP else None)
        )
        await self.core.cas(
            tx, status, state=state, reason=reason, since=self.core.now(), call_id=call_id
        )
        tx.emit("operator." + state.value, "operator", user_id, reason=reason)
        await self.core.fx.operator(tx, user_id, commands)
        return status
