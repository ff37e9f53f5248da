"""The operator's desk: log in, pause and resume; answer a waiting caller, hang up, hold
and resume, transfer to a colleague or the supervisor desk, and wrap up.

Each use case is one unit of work; the PBX is told after the commit (`dispatch.effects`).
A wrap-up ends when the operator says so, when its timer runs out (the call ends with
disposition `wrap_up_timeout`), or when a supervisor wrapping up takes a transferred
caller (`transferred_in`), or when its operator logs out (`signed_off`). Logging out of
the console signs the desk off; with a caller at the desk it is refused. A transfer nobody
answers puts the caller back at the front of the queue with their first answer kept.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from dispatch.core import Core
from dispatch.effects import CancelTimer, Hangup
from dispatch.emergency import Emergency
from dispatch.errors import Conflict, Invalid, OnCall
from dispatch.machines import call as cm
from dispatch.machines import operator as opm
from dispatch.models import Call, OperatorStatus
from dispatch.operators import Operators
from dispatch.queue import Queue
from dispatch.timer_keys import TimerKey
from eventlog.store import Tx
from providers.base import UnknownCall
from registry import repository as repo
from registry.models import Role, User

log = logging.getLogger(__name__)

#: the states in which a supervisor takes a transferred caller (logged in, not with another)
SUPERVISOR_DESK = frozenset(
    {opm.OperatorState.AVAILABLE, opm.OperatorState.PAUSED, opm.OperatorState.WRAP_UP}
)
#: the disposition of a wrap-up ended because its operator took a transferred caller
TRANSFERRED_IN = "transferred_in"
#: why a wrap-up was finished by the service rather than by its operator
WRAP_UP_TIMEOUT = "wrap_up_timeout"
CLOSED_AT_START = "closed_at_start"
#: a wrap-up its operator left by logging out of the console
SIGNED_OFF = "signed_off"


def operator_of(peer: str) -> int | None:
    """The user id in an operator endpoint name ("operator:<id>"), else None."""
    prefix, _, rest = peer.partition(":")
    return int(rest) if prefix == "operator" and rest.isdigit() else None


class Desk:
    """What an operator does with their callers."""

    def __init__(
        self, core: Core, operators: Operators, queue: Queue, emergency: Emergency
    ) -> None:
        self.core = core
        self.operators = operators
        self.queue = queue
        self.emergency = emergency

    async def set_operator_state(self, user: User, action: str, reason: str = "") -> str:
        """Log in, log out, pause (with a reason) or resume an operator."""
        events: dict[str, opm.OperatorEvent] = {
            "login": opm.Login(),
            "logout": opm.Logout(),
            "pause": opm.Pause(reason or "break"),
            "resume": opm.Resume(),
            "wrap_up_done": opm.WrapUpDone(),
        }
        if action not in events:
            raise Invalid(f"unknown operator action {action!r}")
        assert user.id is not None
        async with self.core.store.tx() as tx:
            status = await self.operators.event(tx, user.id, events[action])
        return status.state.value  # one freed is offered the next caller (`when_free`)

    async def sign_off(self, user: User) -> None:
        """The operator logs out of the console: their desk signs off, so no caller is
        reserved to it and the wallboard stops counting it free. A wrap-up in progress
        ends (`signed_off`); `OnCall` while a caller is at the desk (hang up or transfer
        first: a caller is never left with a desk nobody watches)."""
        assert user.id is not None
        core = self.core
        async with core.store.tx() as tx:
            status = await tx.session.get(OperatorStatus, user.id, populate_existing=True)
            if status is None or status.state == opm.OperatorState.LOGGED_OUT:
                return
            if status.state == opm.OperatorState.ON_CALL:
                raise OnCall(status.call_id or 0)
            if status.state == opm.OperatorState.WRAP_UP:
                core.fx.after_commit(tx, CancelTimer(TimerKey.wrapup(user.id)))
                await self.finish_wrap_up(
                    tx, user.id, status, disposition=SIGNED_OFF, actor=user.username
                )
            elif status.state == opm.OperatorState.RESERVED:
                core.fx.after_commit(tx, CancelTimer(TimerKey.ring(user.id)))
            await self.operators.event(tx, user.id, opm.Logout())
        log.info("operator %s signed off at logout", user.id)
        await self.queue.distribute()

    async def answer_call(self, call_id: int, user: User) -> Call:
        """An operator takes a waiting call; a second operator gets `IllegalTransition`.

        Only a caller the PBX connects counts as answered: a caller it no longer has is a
        `Conflict` (the call ends, see `bridge_failed`), a bridge it refuses raises the
        `TelephonyError` (the caller waits again).
        """
        try:
            return await self._answer(call_id, user)
        except UnknownCall:
            raise Conflict(f"call {call_id}: the caller is no longer on the line") from None

    async def _answer(self, call_id: int, user: User) -> Call:
        assert user.id is not None
        core = self.core
        async with core.store.tx() as tx:
            call = await core.get(tx, Call, call_id, "call")
            state, commands = cm.transition(call.state, cm.Answer(user.id))
            status = await self.operators.status(tx, user.id)
            if status.state in (opm.OperatorState.LOGGED_OUT, opm.OperatorState.PAUSED):
                await self.operators.event(
                    tx,
                    user.id,
                    opm.Login() if status.state == opm.OperatorState.LOGGED_OUT else opm.Resume(),
                )
            await self.operators.event(tx, user.id, opm.TakeCall(), call)
            # a caller back in the queue after an unanswered transfer keeps their first answer
            answered_at = call.answered_at or core.now()
            await core.cas(tx, call, state=state, operator_id=user.id, answered_at=answered_at)
            # whoever else this call was being offered to is free again
            others = (
                (
                    await tx.session.execute(
                        select(OperatorStatus).where(
                            col(OperatorStatus.state) == opm.OperatorState.RESERVED,
                            col(OperatorStatus.call_id) == call.id,
                            col(OperatorStatus.user_id) != user.id,
                        )
                    )
                )
                .scalars()
                .all()
            )
            for other in others:
                await self.operators.event(tx, other.user_id, opm.Resume())
            for uid in {user.id, *(o.user_id for o in others)}:
                core.fx.after_commit(tx, CancelTimer(TimerKey.ring(uid)))
            tx.emit(
                "call.connected",
                "call",
                call.id,
                operator=user.username,
                wait_s=(core.now() - (call.queued_at or call.started_at)).total_seconds(),
            )
            await core.fx.call(tx, call, commands)
            # an emergency is taken: its escalation stops (on-call phones stop ringing)
            await self.emergency.operator_answered(tx, call, user.id)
        return call

    async def hangup_call(self, call_id: int, user: User) -> None:
        """The operator ends a call; the PBX reports the hang-up back."""
        async with self.core.store.read() as session:
            call = await session.get(Call, call_id)
            if call is None:
                raise repo.NotFound("call", call_id)
        await self.core.fx.run(Hangup(call.ref, strict=True))

    # -- hold ------------------------------------------------------------------------------
    async def desk_call(self, tx: Tx, call_id: int, user: User) -> Call:
        """A call the user is handling at the desk; 404, or 409 when it is not theirs."""
        call = await self.core.get(tx, Call, call_id, "call")
        if call.direction != "in" or call.operator_id is None:
            raise Conflict(f"call {call_id} is not with an operator")
        if call.operator_id != user.id:
            raise Conflict(f"call {call_id} is with another operator")
        return call

    async def hold_call(self, call_id: int, user: User) -> Call:
        """The operator puts their caller on hold; the caller hears the hold prompt.

        A PBX that cannot hold the call leaves it connected (`call.hold_failed`) and the
        `TelephonyError` is raised to the operator.
        """
        core = self.core
        async with core.store.tx() as tx:
            call = await self.desk_call(tx, call_id, user)
            state, commands = cm.transition(call.state, cm.Hold())
            await core.cas(tx, call, state=state, held_at=core.now())
            tx.emit("call.held", "call", call.id, actor=user.username, ticket_id=call.ticket_id)
            await core.fx.call(tx, call, commands, actor=user.username)
        return call

    async def hold_failed(self, call_id: int, actor: str) -> None:
        """The PBX could not hold the call: the desk shows it connected again."""
        core = self.core
        async with core.store.tx() as tx:
            call = await core.get(tx, Call, call_id, "call")
            if call.state != cm.CallState.ON_HOLD:
                return  # the caller hung up meanwhile: nothing to undo
            state, commands = cm.transition(call.state, cm.HoldFailed())
            await core.cas(tx, call, state=state, held_at=None)
            tx.emit("call.hold_failed", "call", call.id, actor=actor)
            await core.fx.call(tx, call, commands)

    async def bridge_failed(self, call_id: int, operator_id: int, gone: bool) -> None:
        """The PBX could not connect an answered caller to the operator.

        `gone`: the PBX has no such call (the caller hung up while nobody saw it, e.g.
        while Yijing was down): the call ends (cause `lost`) as a hang-up at the desk
        would, and the caller, who had waited, gets a call back. Otherwise the caller is
        still there: back to the front of the queue, the operator free again.
        """
        core = self.core
        async with core.store.tx() as tx:
            call = await core.get(tx, Call, call_id, "call")
            if call.state != cm.CallState.CONNECTED or call.operator_id != operator_id:
                return  # something else happened to it meanwhile (its hang-up came)
            status = await self.operators.status(tx, operator_id)
            mine = status.state == opm.OperatorState.ON_CALL and status.call_id == call.id
            tx.emit("call.bridge_failed", "call", call.id, operator_id=operator_id, gone=gone)
            if gone:
                state, commands = cm.transition(call.state, cm.Hangup(inbound=True))
                await core.cas(tx, call, state=state, ended_at=core.now(), cause="lost")
                tx.emit("call.ended", "call", call.id, cause="lost", ticket_id=call.ticket_id)
                await core.fx.call(tx, call, commands)
                if mine:
                    await self.operators.event(tx, operator_id, opm.CallFinished(), call)
            else:
                state, commands = cm.transition(call.state, cm.TransferUnanswered())
                await core.cas(tx, call, state=state, operator_id=None)
                await core.fx.call(tx, call, commands)
                if mine:
                    await self.operators.event(tx, operator_id, opm.TransferUnanswered())
                self.queue.announce_later(tx, call)
        log.warning("call %s: not connected to operator %s (gone: %s)", call.ref, operator_id, gone)
        if gone:
            await self.queue.callback_once(call, "caller gone before the answer")
        else:
            await self.queue.distribute()

    async def resume_call(self, call_id: int, user: User) -> Call:
        """The operator takes their caller back from hold."""
        core = self.core
        async with core.store.tx() as tx:
            call = await self.desk_call(tx, call_id, user)
            state, commands = cm.transition(call.state, cm.Unhold())
            held_s = self.held_s(call)
            await core.cas(tx, call, state=state, held_at=None)
            tx.emit(
                "call.resumed",
                "call",
                call.id,
                actor=user.username,
                held_s=held_s,
                ticket_id=call.ticket_id,
            )
            await core.fx.call(tx, call, commands)
        return call

    def held_s(self, call: Call) -> float | None:
        """How long the caller has been on hold, if they are."""
        if call.held_at is None:
            return None
        return round((self.core.now() - call.held_at).total_seconds(), 1)

    # -- transfer --------------------------------------------------------------------------
    async def transfer_targets(self, user: User) -> dict[str, Any]:
        """Who a caller can be handed to now: available operators, and the supervisor desk."""
        async with self.core.store.read() as session:
            rows = (
                await session.execute(
                    select(OperatorStatus, User)
                    .join(User, col(User.id) == OperatorStatus.user_id)
                    .where(col(User.active), col(OperatorStatus.user_id) != user.id)
                    .order_by(col(OperatorStatus.since), col(OperatorStatus.user_id))
                )
            ).all()
        operators = [
            {
                "user_id": u.id,
                "name": u.display_name or u.username,
                "role": u.role.value,
                "state": status.state.value,
            }
            for status, u in rows
            if status.state == opm.OperatorState.AVAILABLE
        ]
        supervisors = [
            {"user_id": u.id, "name": u.display_name or u.username, "state": status.state.value}
            for status, u in rows
            if u.role == Role.SUPERVISOR and status.state in SUPERVISOR_DESK
        ]
        return {"operators": operators, "supervisors": supervisors}

    async def _transfer_target(
        self, tx: Tx, user: User, to_user_id: int | None, to_role: str | None
    ) -> tuple[User, OperatorStatus, bool]:
        """The user who takes the caller, their status row, and whether via the supervisor desk."""
        if to_role is not None:
            rows = (
                await tx.session.execute(
                    select(OperatorStatus, User)
                    .join(User, col(User.id) == OperatorStatus.user_id)
                    .where(
                        col(User.role) == Role.SUPERVISOR,
                        col(User.active),
                        col(User.id) != user.id,
                        col(OperatorStatus.state).in_(list(SUPERVISOR_DESK)),
                    )
                )
            ).all()
            if not rows:
                raise Conflict("no supervisor is logged in and free to take the call")
            # an available supervisor first, then the one longest in their state
            status, target = min(
                rows,
                key=lambda r: (r[0].state != opm.OperatorState.AVAILABLE, r[0].since),
            )
            return target, status, True
        assert to_user_id is not None
        if to_user_id == user.id:
            raise Invalid("a call cannot be transferred to the operator who has it")
        found = await tx.session.get(User, to_user_id)
        if found is None or not found.active or found.role == Role.MERCHANT:
            raise repo.NotFound("operator", to_user_id)
        target = found
        status = await self.operators.status(tx, to_user_id)
        via_desk = target.role == Role.SUPERVISOR
        ok = status.state == opm.OperatorState.AVAILABLE or (
            via_desk and status.state in SUPERVISOR_DESK
        )
        if not ok:
            name = target.display_name or target.username
            raise Conflict(f"{name} is {status.state.value}, not free to take a transfer")
        return target, status, via_desk

    async def transfer_call(
        self,
        call_id: int,
        user: User,
        *,
        to_user_id: int | None = None,
        to_role: str | None = None,
        note: str = "",
    ) -> Call:
        """Hand the caller to an available operator or a supervisor; the sender wraps up.

        The call stays connected (it is not answered again: waits and answer figures keep
        the first answer); a refused target changes nothing. The sender's `note` ("wants
        her daughter called first") rides on the `call.transferred` event, which is what
        the receiving desk reads along with the call's resident and ticket.
        """
        assert user.id is not None
        if (to_user_id is None) == (to_role is None):
            raise Invalid("give either to_user_id or to='supervisor'")
        if to_role not in (None, "supervisor"):
            raise Invalid("to must be 'supervisor'")
        core = self.core
        async with core.store.tx() as tx:
            call = await self.desk_call(tx, call_id, user)
            target, status, via_desk = await self._transfer_target(tx, user, to_user_id, to_role)
            assert target.id is not None
            state, commands = cm.transition(call.state, cm.Transfer(target.id))
            held_s = self.held_s(call)
            # the receiving side first: a refusal there leaves the sender untouched
            if status.state == opm.OperatorState.WRAP_UP:
                core.fx.after_commit(tx, CancelTimer(TimerKey.wrapup(target.id)))
                await self.finish_wrap_up(
                    tx, target.id, status, disposition=TRANSFERRED_IN, actor=target.username
                )
            await self.operators.event(tx, target.id, opm.ReceiveTransfer(via_desk), call)
            await self.operators.event(tx, user.id, opm.TransferOut())
            await core.cas(tx, call, state=state, operator_id=target.id, held_at=None)
            tx.emit(
                "call.transferred",
                "call",
                call.id,
                actor=user.username,
                from_operator_id=user.id,
                from_operator=user.display_name or user.username,
                to_operator_id=target.id,
                to_operator=target.username,
                to=to_role or "operator",
                held_s=held_s,
                ticket_id=call.ticket_id,
                resident_id=call.resident_id,
                note=note.strip()[:200],
            )
            await core.fx.call(tx, call, commands)
        log.info("call %s transferred from operator %s to %s", call.ref, user.id, target.id)
        return call

    async def transfer_failed(self, call_id: int, operator_id: int) -> None:
        """The PBX refused the transfer: say so on the call's timeline."""
        async with self.core.store.tx() as tx:
            tx.emit("call.transfer_failed", "call", call_id, to_operator_id=operator_id)

    async def transfer_unanswered(self, ref: str, peer: str) -> None:
        """The operator a caller was transferred to never answered: the caller goes back to
        the front of the queue, the operator who did not answer is available again.

        Why the queue rather than the transferring operator: by the time the new operator's
        phone has rung out, the transferring operator's leg is hung up and they are wrapping
        up or already busy; they chose to hand the caller on (often because someone else is
        needed), and ringing them back would make an elderly caller wait on one person.
        The queue hands the caller to the first free operator with the usual ring timeout,
        and puts them ahead of newer callers: `queued_at` and the emergency flag are kept
        (so is `answered_at`, a second answer does not count in the figures). The
        transferring operator gets the caller like anyone else once free.
        """
        core = self.core
        operator_id = operator_of(peer)
        async with core.store.tx() as tx:
            call = await core.call_by_ref(tx, ref)
            if (
                call is None
                or operator_id is None
                or call.state != cm.CallState.CONNECTED
                or call.operator_id != operator_id
            ):
                log.info("call %s: unanswered transfer to %s no longer matters", ref, peer)
                return
            state, commands = cm.transition(call.state, cm.TransferUnanswered())
            await core.cas(tx, call, state=state, operator_id=None, held_at=None)
            status = await self.operators.status(tx, operator_id)
            if status.state == opm.OperatorState.ON_CALL and status.call_id == call.id:
                await self.operators.event(tx, operator_id, opm.TransferUnanswered())
            target = await tx.session.get(User, operator_id)
            tx.emit(
                "call.transfer_unanswered",
                "call",
                call.id,
                to_operator_id=operator_id,
                to_operator=target.username if target is not None else None,
                requeued=True,
                emergency=call.emergency,
                ticket_id=call.ticket_id,
            )
            await core.fx.call(tx, call, commands)
            self.queue.announce_later(tx, call)
        log.info("call %s: operator %s never answered the transfer; queued again", ref, peer)
        await self.queue.distribute()

    # -- wrap-up ----------------------------------------------------------------------------
    async def wrap_up(self, call_id: int, user: User, disposition: str = "") -> None:
        """The operator finishes the after-call work."""
        assert user.id is not None
        core = self.core
        async with core.store.tx() as tx:
            call = await core.get(tx, Call, call_id, "call")
            status = await self.operators.status(tx, user.id)
            # handed on: with another operator now, or back in the queue after a transfer
            # nobody answered
            handed_on = call.operator_id != user.id
            if not handed_on:
                state, commands = cm.transition(call.state, cm.WrapUpDone())
                await core.cas(tx, call, state=state)
                await core.fx.call(tx, call, commands)
            elif status.state != opm.OperatorState.WRAP_UP or status.call_id != call.id:
                raise Conflict(f"call {call_id} is with another operator")
            # a caller this operator transferred talks on with someone else: only this
            # operator's after-call work ends
            tx.emit(
                "call.wrapped_up",
                "call",
                call.id,
                disposition=disposition[:64],
                actor=user.username,
                **({"transferred": True} if handed_on else {}),
            )
            if status.state == opm.OperatorState.WRAP_UP:
                await self.operators.event(tx, user.id, opm.WrapUpDone())
            core.fx.after_commit(tx, CancelTimer(TimerKey.wrapup(user.id)))

    async def finish_wrap_up(
        self,
        tx: Tx,
        user_id: int,
        status: OperatorStatus,
        *,
        disposition: str,
        actor: str = "system",
    ) -> None:
        """End an operator's wrap-up on their behalf, and the call it was about.

        Three ways: a supervisor takes a transfer while wrapping up (their desk moves on
        to the new caller, disposition "transferred_in"); the wrap-up timer runs out
        ("wrap_up_timeout"); the start-up reconciler finds a wrap-up nobody will finish
        ("closed_at_start"). The call would otherwise stay in wrap-up for good. The event
        is marked `auto`, so reports can tell it from a chosen disposition.
        """
        previous = (
            await tx.session.get(Call, status.call_id, populate_existing=True)
            if status.call_id is not None
            else None
        )
        if previous is not None:
            mine = previous.operator_id == user_id
            if mine and previous.state == cm.CallState.WRAP_UP:
                await self.close_wrap_up(tx, previous, disposition=disposition, actor=actor)
            else:
                tx.emit(
                    "call.wrapped_up",
                    "call",
                    previous.id,
                    disposition=disposition,
                    actor=actor,
                    auto=True,
                    **({} if mine else {"transferred": True}),
                )
        if status.state == opm.OperatorState.WRAP_UP:
            await self.operators.event(tx, user_id, opm.WrapUpDone())

    async def close_wrap_up(self, tx: Tx, call: Call, *, disposition: str, actor: str) -> None:
        """A call in wrap-up ends with a disposition the service chose."""
        state, commands = cm.transition(call.state, cm.WrapUpDone())
        await self.core.cas(tx, call, state=state)
        tx.emit("call.wrapped_up", "call", call.id, disposition=disposition, actor=actor, auto=True)
        await self.core.fx.call(tx, call, commands)

    async def wrap_up_timeout(self, user_id: int) -> None:
        """Nobody pressed wrap-up in time: the operator is free and the call ends."""
        async with self.core.store.tx() as tx:
            status = await tx.session.get(OperatorStatus, user_id, populate_existing=True)
            if status is None or status.state != opm.OperatorState.WRAP_UP:
                return
            await self.finish_wrap_up(tx, user_id, status, disposition=WRAP_UP_TIMEOUT)
