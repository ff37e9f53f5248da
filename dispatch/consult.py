"""The consult (warm) transfer: ask a colleague first, then hand the caller on or take
them back.

The operator puts their caller on hold and rings a free colleague, whose desk shows the
caller's card, ticket and the operator's note (`call.consult_started`). When the colleague
answers (`call.consult_answered`) the two operators talk, the caller still hearing the
hold prompt. Then the operator completes (`call.consult_completed`, followed by the
`call.transferred` a blind transfer writes: the colleague has the caller, the operator
wraps up) or cancels (`call.consult_cancelled`: the colleague is free, the caller back
with the operator). A colleague who never answers gives the caller back as a cancel does
(`call.consult_failed`). A caller who hangs up meanwhile ends the call as at the desk and
frees the colleague too (`call.consult_cancelled` with `caller_left`).

Only a backend with the port's `Consult` capability does it: elsewhere the request is
refused (`ConsultUnsupported`) before anything changes.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlmodel import col

from dispatch.core import Core
from dispatch.desk import Desk, operator_of
from dispatch.errors import Conflict, Invalid
from dispatch.machines import call as cm
from dispatch.machines import operator as opm
from dispatch.models import Call, OperatorStatus
from dispatch.operators import Operators
from eventlog.models import Event
from eventlog.store import Tx
from providers.base import Consult
from registry import repository as repo
from registry.models import Role, User

log = logging.getLogger(__name__)


class ConsultUnsupported(Conflict):
    """The telephony backend cannot hold a consult (HTTP 409 `consult_unsupported`)."""

    error_id = "consult_unsupported"

    def __init__(self, backend: str) -> None:
        super().__init__(
            f"the {backend} telephony backend cannot do a consult transfer: "
            "use a transfer (转接) instead"
        )
        self.details = {"backend": backend}


async def consultee(tx: Tx, call: Call) -> OperatorStatus | None:
    """The colleague a call's operator is consulting (on_call with it, not its operator)."""
    if call.state not in cm.CONSULT:
        return None
    rows = (
        (
            await tx.session.execute(
                select(OperatorStatus).where(
                    col(OperatorStatus.call_id) == call.id,
                    col(OperatorStatus.state) == opm.OperatorState.ON_CALL,
                    col(OperatorStatus.user_id) != call.operator_id,
                )
            )
        )
        .scalars()
        .all()
    )
    return rows[0] if rows else None


class Consults:
    """Consult transfers at the operator desk."""

    def __init__(self, core: Core, operators: Operators, desk: Desk) -> None:
        self.core = core
        self.operators = operators
        self.desk = desk

    def supported(self) -> bool:
        """Whether the telephony backend offers the consult capability."""
        return isinstance(self.core.fx.telephony, Consult)

    def _require(self) -> None:
        if not self.supported():
            raise ConsultUnsupported(self.core.fx.telephony.name)

    async def _colleague(self, tx: Tx, user: User, to_user_id: int) -> User:
        if to_user_id == user.id:
            raise Invalid("an operator cannot consult themselves")
        found = await tx.session.get(User, to_user_id)
        if found is None or not found.active or found.role == Role.MERCHANT:
            raise repo.NotFound("operator", to_user_id)
        status = await self.operators.status(tx, to_user_id)
        if status.state != opm.OperatorState.AVAILABLE:
            name = found.display_name or found.username
            raise Conflict(f"{name} is {status.state.value}, not free to take a consult")
        return found

    async def _consulted(self, tx: Tx, call: Call) -> OperatorStatus:
        status = await consultee(tx, call)
        if status is None:
            raise Conflict(f"call {call.id}: no consult is under way")
        return status

    async def start(self, call_id: int, user: User, *, to_user_id: int, note: str = "") -> Call:
        """Hold the caller and ring a free colleague, with the caller's context and a note."""
        assert user.id is not None
        self._require()
        core = self.core
        async with core.store.tx() as tx:
            call = await self.desk.desk_call(tx, call_id, user)
            target = await self._colleague(tx, user, to_user_id)
            assert target.id is not None
            state, commands = cm.transition(call.state, cm.Consult(target.id))
            await self.operators.event(tx, target.id, opm.Consulted(), call)
            await core.cas(tx, call, state=state, held_at=call.held_at or core.now())
            tx.emit(
                "call.consult_started",
                "call",
                call.id,
                actor=user.username,
                from_operator_id=user.id,
                from_operator=user.display_name or user.username,
                to_operator_id=target.id,
                to_operator=target.username,
                ticket_id=call.ticket_id,
                resident_id=call.resident_id,
                note=note.strip()[:200],
            )
            await core.fx.call(tx, call, commands, actor=user.username)
        log.info("call %s: operator %s consults operator %s", call.ref, user.id, target.id)
        return call

    async def complete(self, call_id: int, user: User) -> Call:
        """Hand the held caller to the colleague being consulted; the operator wraps up."""
        assert user.id is not None
        self._require()
        core = self.core
        async with core.store.tx() as tx:
            call = await self.desk.desk_call(tx, call_id, user)
            if call.state == cm.CallState.CONSULT_RINGING:
                raise Conflict(f"call {call_id}: the colleague has not answered yet")
            if call.state not in cm.CONSULT:
                raise Conflict(f"call {call_id}: no consult is under way")
            target = await self._consulted(tx, call)
            state, commands = cm.transition(call.state, cm.ConsultComplete(target.user_id))
            held_s = self.desk.held_s(call)
            await self.operators.event(tx, user.id, opm.TransferOut())
            await core.cas(tx, call, state=state, operator_id=target.user_id, held_at=None)
            other = await tx.session.get(User, target.user_id)
            to_name = other.username if other is not None else None
            started = await self._note(tx, call)
            tx.emit(
                "call.consult_completed",
                "call",
                call.id,
                actor=user.username,
                to_operator_id=target.user_id,
                to_operator=to_name,
                held_s=held_s,
                ticket_id=call.ticket_id,
            )
            # the same end state as a blind transfer, for the receiving desk and the figures
            tx.emit(
                "call.transferred",
                "call",
                call.id,
                actor=user.username,
                from_operator_id=user.id,
                from_operator=user.display_name or user.username,
                to_operator_id=target.user_id,
                to_operator=to_name,
                to="operator",
                held_s=held_s,
                ticket_id=call.ticket_id,
                resident_id=call.resident_id,
                note=started,
                consult=True,
            )
            await core.fx.call(tx, call, commands)
        log.info("call %s: consult completed to operator %s", call.ref, target.user_id)
        return call

    async def _note(self, tx: Tx, call: Call) -> str:
        """The note the operator gave when the consult started."""
        row = (
            (
                await tx.session.execute(
                    select(Event)
                    .where(
                        col(Event.subject) == "call",
                        col(Event.subject_id) == str(call.id),
                        col(Event.name) == "call.consult_started",
                    )
                    .order_by(col(Event.seq).desc())
                    .limit(1)
                )
            )
            .scalars()
            .first()
        )
        return str(row.data.get("note", "")) if row is not None else ""

    async def cancel(self, call_id: int, user: User) -> Call:
        """End the consult: the colleague is free, the caller back with the operator."""
        assert user.id is not None
        self._require()
        core = self.core
        async with core.store.tx() as tx:
            call = await self.desk.desk_call(tx, call_id, user)
            if call.state not in cm.CONSULT:
                raise Conflict(f"call {call_id}: no consult is under way")
            target = await self._consulted(tx, call)
            state, commands = cm.transition(call.state, cm.ConsultCancel(target.user_id))
            await self.operators.event(tx, target.user_id, opm.ConsultEnded())
            held_s = self.desk.held_s(call)
            await core.cas(tx, call, state=state, held_at=None)
            tx.emit(
                "call.consult_cancelled",
                "call",
                call.id,
                actor=user.username,
                to_operator_id=target.user_id,
                held_s=held_s,
                ticket_id=call.ticket_id,
            )
            await core.fx.call(tx, call, commands)
        log.info("call %s: consult with operator %s cancelled", call.ref, target.user_id)
        return call

    # -- what the PBX reports ----------------------------------------------------------------
    async def answered(self, ref: str, peer: str) -> None:
        """The colleague answered: the two operators talk."""
        core = self.core
        async with core.store.tx() as tx:
            call = await core.call_by_ref(tx, ref)
            if call is None or call.state != cm.CallState.CONSULT_RINGING:
                log.info("call %s: consult answer by %s no longer matters", ref, peer)
                return
            target = await consultee(tx, call)
            if target is None or target.user_id != operator_of(peer):
                return
            state, commands = cm.transition(call.state, cm.ConsultAnswered())
            await core.cas(tx, call, state=state)
            tx.emit(
                "call.consult_answered",
                "call",
                call.id,
                to_operator_id=target.user_id,
                ticket_id=call.ticket_id,
            )
            await core.fx.call(tx, call, commands)

    async def failed(self, ref: str, peer: str) -> None:
        """The colleague never answered (or the PBX could not ring them): the caller is
        taken off hold, back with their operator, who is told on the timeline."""
        core = self.core
        async with core.store.tx() as tx:
            call = await core.call_by_ref(tx, ref)
            if call is None or call.state not in cm.CONSULT:
                log.info("call %s: failed consult with %s no longer matters", ref, peer)
                return
            target = await consultee(tx, call)
            if target is None or target.user_id != operator_of(peer):
                return
            if call.state == cm.CallState.CONSULT_RINGING:
                state, commands = cm.transition(call.state, cm.ConsultFailed())
            else:  # the PBX lost the talking colleague: as if the operator cancelled
                state, commands = cm.transition(call.state, cm.ConsultCancel(target.user_id))
            await self.operators.event(tx, target.user_id, opm.ConsultEnded())
            await core.cas(tx, call, state=state, held_at=None)
            tx.emit(
                "call.consult_failed",
                "call",
                call.id,
                operator_id=call.operator_id,
                to_operator_id=target.user_id,
                ticket_id=call.ticket_id,
            )
            await core.fx.call(tx, call, commands)
        log.info("call %s: consulted operator %s did not answer", ref, peer)

    async def caller_left(self, tx: Tx, call: Call) -> None:
        """A caller hung up during a consult (in the hang-up's unit of work, before the
        call's state changes): the colleague's desk is free again."""
        target = await consultee(tx, call)
        if target is None:
            return
        await self.operators.event(tx, target.user_id, opm.ConsultEnded())
        tx.emit(
            "call.consult_cancelled",
            "call",
            call.id,
            to_operator_id=target.user_id,
            caller_left=True,
            ticket_id=call.ticket_id,
        )
