"""Operators' states (logged out, available, reserved, on call, wrap-up, paused): the one
place their machine is applied to their `OperatorStatus` row.

The desk (`dispatch.desk`) and the queue (`dispatch.queue`) decide what happens to an
operator; this module writes it, with its event and its commands. Whatever frees an
operator (a wrap-up by hand or by timer, a resume, a login, a call someone else answered)
runs the hook the queue registers (`when_free`) once after that unit of work commits, so a
waiting caller is offered to them at once, whichever path freed them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from dispatch.core import Core
from dispatch.machines import operator as opm
from dispatch.models import Call, OperatorStatus
from eventlog.store import Tx


class Operators:
    """Operator status rows and their transitions."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self._freed: Callable[[], Awaitable[object]] | None = None

    def when_free(self, hook: Callable[[], Awaitable[object]]) -> None:
        """Run `hook` after any unit of work that made an operator available."""
        self._freed = hook

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
        was = status.state
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
        freed = state == opm.OperatorState.AVAILABLE and was != opm.OperatorState.AVAILABLE
        if freed and self._freed is not None and self._freed not in tx.after:
            tx.after_commit(self._freed)
        await self.core.fx.operator(tx, user_id, commands)
        return status
