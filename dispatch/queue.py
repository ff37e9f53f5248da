"""The hotline queue: callers waiting for an operator, and how they are handed out.

Order: emergencies first, then callers ringing again within `repeat_window_s`, then the
longest waiting. `distribute` offers each waiting call to the available operator idle
longest (`reserved`); one who lets it ring out (`ring:` timer) counts a miss and is
paused after `missed_to_pause` within an hour. A waiting caller hears their place every
`queue_announce_s` and may ask for a call back that keeps it: a callback ticket for the
operators (at most one per call, whoever asks: the caller, their hang-up, an outage).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from dispatch.core import Core
from dispatch.effects import CancelTimer, PlayFlow, ScheduleTimer
from dispatch.machines import call as cm
from dispatch.machines import operator as opm
from dispatch.models import Call, OperatorStatus, Ticket
from dispatch.operators import Operators
from dispatch.tickets import Tickets
from dispatch.timer_keys import TimerKey
from eventlog.models import Event
from eventlog.store import Tx
from registry.catalog import CALLBACK

log = logging.getLogger(__name__)

#: a hotline call, or an outbound call whose far end asked for an operator (a wellbeing
#: call's 2 or 0), may wait in the queue
WAITING = or_(col(Call.direction) == "in", col(Call.state) == cm.CallState.QUEUED)
#: what the queue's order reads of each waiting call
_ORDER_COLUMNS = (
    col(Call.id),
    col(Call.number),
    col(Call.emergency),
    col(Call.queued_at),
    col(Call.started_at),
)


class _Waiting(Protocol):
    """What the queue's order reads of a call."""

    @property
    def number(self) -> str: ...
    @property
    def emergency(self) -> bool: ...
    @property
    def queued_at(self) -> datetime | None: ...
    @property
    def started_at(self) -> datetime: ...


_R = TypeVar("_R", bound=_Waiting)


class Queue:
    """Waiting callers, their order, and their hand-out to operators."""

    def __init__(self, core: Core, operators: Operators, tickets: Tickets) -> None:
        self.core = core
        self.operators = operators
        self.tickets = tickets
        self._callback_lock = asyncio.Lock()
        # an operator freed by any path is offered the next waiting caller at once
        operators.when_free(self.distribute)

    async def queue(self, limit: int | None = None) -> list[Call]:
        """Waiting hotline calls (in the menu, ringing or queued): emergencies first, then
        callers ringing again, then the longest waiting; the first `limit` of them when
        given (a console lists the head of a queue of 1,000): the head is found on plain
        columns of every waiting call, and only its calls are loaded."""
        states = [cm.CallState.QUEUED, cm.CallState.IVR, cm.CallState.RINGING]
        async with self.core.store.read() as session:
            if limit is None:
                rows = (
                    (
                        await session.execute(
                            select(Call).where(WAITING, col(Call.state).in_(states))
                        )
                    )
                    .scalars()
                    .all()
                )
                return await self._in_order(session, rows)
            light = (
                await session.execute(
                    select(*_ORDER_COLUMNS).where(WAITING, col(Call.state).in_(states))
                )
            ).all()
            head = [row.id for row in await self._in_order(session, light)][:limit]
            calls = (
                (
                    await session.execute(
                        select(Call).where(col(Call.id).in_(head), col(Call.state).in_(states))
                    )
                )
                .scalars()
                .all()
            )
            # in the order of the calls as loaded: one flagged an emergency between the two
            # reads is listed as one, first
            return await self._in_order(session, calls)

    async def waiting_count(self) -> int:
        """How many calls `queue` has in all."""
        async with self.core.store.read() as session:
            return int(
                (
                    await session.execute(
                        select(func.count()).where(
                            WAITING,
                            col(Call.state).in_(
                                [cm.CallState.QUEUED, cm.CallState.IVR, cm.CallState.RINGING]
                            ),
                        )
                    )
                ).scalar_one()
            )

    async def queued_ids(self) -> list[int]:
        """The ids of the calls waiting for an operator, in queue order. Every enqueue,
        freed operator and place announcement reads this: plain columns, not call objects
        (issue 20: loading every waiting call per event cost 30 ms at 1,000 waiting)."""
        async with self.core.store.read() as session:
            rows = (
                await session.execute(
                    select(*_ORDER_COLUMNS).where(WAITING, col(Call.state) == cm.CallState.QUEUED)
                )
            ).all()
            return [row.id for row in await self._in_order(session, rows)]

    async def _in_order(self, session: AsyncSession, rows: Sequence[_R]) -> list[_R]:
        """`rows` (calls, or rows with their number, emergency, queued_at and started_at)
        in queue order."""
        if not rows:
            return []
        since = self.core.now() - timedelta(seconds=self.core.config.repeat_window_s)
        numbers = {c.number for c in rows}
        earlier = set(
            (
                await session.execute(
                    select(col(Call.number)).where(
                        col(Call.number).in_(numbers),
                        col(Call.direction) == "in",
                        col(Call.started_at) >= since,
                        col(Call.state).in_([cm.CallState.ABANDONED, cm.CallState.ENDED]),
                    )
                )
            ).scalars()
        )
        # emergencies first, then callers ringing again, then the longest waiting
        return sorted(
            rows,
            key=lambda c: (not c.emergency, c.number not in earlier, c.queued_at or c.started_at),
        )

    def announce_later(self, tx: Tx, call: Call) -> None:
        """The caller hears their place again after `queue_announce_s`."""
        when = self.core.now() + timedelta(seconds=self.core.config.queue_announce_s)
        self.core.fx.after_commit(tx, ScheduleTimer(TimerKey.queue(call.id), when))

    async def enqueue(self, ref: str, outcome: str, category: str | None) -> None:
        """The hotline menu ended without a keypad order: the caller waits for an operator
        (or the far end of an answered outbound call asked for one: a reminder's 2)."""
        core = self.core
        async with core.store.tx() as tx:
            call = await core.call_by_ref(tx, ref)
            asked = call is not None and call.direction == "out"
            waiting = (
                (cm.CallState.CONNECTED,) if asked else (cm.CallState.IVR, cm.CallState.RINGING)
            )
            if call is None or call.state not in waiting:
                return
            event: cm.CallEvent = cm.AskOperator() if asked else cm.Enqueue()
            state, commands = cm.transition(call.state, event)
            emergency = outcome == "emergency"
            await core.cas(tx, call, state=state, queued_at=core.now(), emergency=emergency)
            tx.emit(
                "call.queued",
                "call",
                call.id,
                emergency=emergency,
                outcome=outcome,
                category=category,
            )
            await core.fx.call(tx, call, commands)
            self.announce_later(tx, call)
        await self.distribute()

    async def distribute(self) -> None:
        """Offer each waiting call, in queue order, to the available operator idle longest."""
        core = self.core
        async with core.store.read() as session:
            # in a surge nobody is free for most events: then the queue is not read at all
            anyone_free = (
                await session.execute(
                    select(col(OperatorStatus.user_id))
                    .where(col(OperatorStatus.state) == opm.OperatorState.AVAILABLE)
                    .limit(1)
                )
            ).first()
        if anyone_free is None:
            return
        waiting = await self.queued_ids()
        if not waiting:
            return
        async with core.store.tx() as tx:
            statuses = (
                (
                    await tx.session.execute(
                        select(OperatorStatus).where(
                            col(OperatorStatus.state).in_(
                                [opm.OperatorState.AVAILABLE, opm.OperatorState.RESERVED]
                            )
                        )
                    )
                )
                .scalars()
                .all()
            )
            offered = {s.call_id for s in statuses if s.state == opm.OperatorState.RESERVED}
            free = sorted(
                (s for s in statuses if s.state == opm.OperatorState.AVAILABLE),
                key=lambda s: (s.since, s.user_id),  # ties (one instant) in a stable order
            )
            for call_id in waiting:
                if not free:
                    break
                # read before this unit of work began: answered, or gone, meanwhile (an
                # operator picking the caller straight from the queue) is not offered
                call = await tx.session.get(Call, call_id, populate_existing=True)
                if call is None or call.state != cm.CallState.QUEUED:
                    continue
                if call.emergency:
                    # an emergency rings every free operator at once: the first answer wins
                    while free:
                        await self._reserve(tx, free.pop(0), call)
                    continue
                if call.id in offered:
                    continue
                await self._reserve(tx, free.pop(0), call)

    async def _reserve(self, tx: Tx, status: OperatorStatus, call: Call) -> None:
        """Offer a waiting call to one available operator; it rings out after a while."""
        core = self.core
        now = core.now()
        state, commands = opm.transition(status.state, opm.Reserve())
        await core.cas(tx, status, state=state, call_id=call.id, since=now)
        tx.emit("operator.reserved", "operator", status.user_id, call_id=call.id)
        tx.emit(
            "call.offered_to", "call", call.id, operator_id=status.user_id,
            emergency=call.emergency,
        )  # fmt: skip
        await core.fx.operator(tx, status.user_id, commands)
        at = now + timedelta(seconds=core.config.ring_operator_s)
        core.fx.after_commit(tx, ScheduleTimer(TimerKey.ring(status.user_id), at))

    async def reserve_all(self, tx: Tx, call: Call) -> None:
        """Offer a waiting (emergency) call to every available operator at once."""
        free = (
            (
                await tx.session.execute(
                    select(OperatorStatus)
                    .where(col(OperatorStatus.state) == opm.OperatorState.AVAILABLE)
                    .order_by(col(OperatorStatus.since), col(OperatorStatus.user_id))
                )
            )
            .scalars()
            .all()
        )
        for status in free:
            await self._reserve(tx, status, call)

    async def release_reserved(self, tx: Tx, call: Call) -> None:
        """Operators being offered a call someone else took stop ringing."""
        others = (
            (
                await tx.session.execute(
                    select(OperatorStatus).where(
                        col(OperatorStatus.state) == opm.OperatorState.RESERVED,
                        col(OperatorStatus.call_id) == call.id,
                    )
                )
            )
            .scalars()
            .all()
        )
        for other in others:
            await self.operators.event(tx, other.user_id, opm.Resume())
            self.core.fx.after_commit(tx, CancelTimer(TimerKey.ring(other.user_id)))

    async def rang_out(self, user_id: int) -> None:
        """An offered call was not taken in time: count a miss, pause after too many."""
        core = self.core
        async with core.store.tx() as tx:
            status = await tx.session.get(OperatorStatus, user_id, populate_existing=True)
            if status is None or status.state != opm.OperatorState.RESERVED:
                return
            call = await tx.session.get(Call, status.call_id) if status.call_id else None
            if call is None or call.state != cm.CallState.QUEUED:
                # the caller left or someone else answered: no fault of this operator
                await self.operators.event(tx, user_id, opm.Resume())
            else:
                since = core.now() - timedelta(hours=1)
                misses = (
                    await tx.session.execute(
                        select(func.count()).where(
                            col(Event.name) == "operator.missed",
                            col(Event.subject) == "operator",
                            col(Event.subject_id) == str(user_id),
                            col(Event.occurred_at) >= since,
                        )
                    )
                ).scalar_one()
                tx.emit("operator.missed", "operator", user_id, call_id=call.id)
                if misses + 1 >= core.config.missed_to_pause:
                    await self.operators.event(tx, user_id, opm.Pause("missed calls"))
                else:
                    await self.operators.event(tx, user_id, opm.Resume())
        await self.distribute()

    async def announce(self, call_id: int) -> None:
        """Tell a waiting caller their place and offer a call back."""
        ids = await self.queued_ids()
        if call_id not in ids:
            return
        async with self.core.store.read() as session:
            call = await session.get(Call, call_id)
        if call is None:
            return
        await self.core.fx.run(PlayFlow(call.ref, "queue_wait", {"position": ids.index(call_id)}))

    async def wait_finished(self, ref: str, outcome: str) -> None:
        """The place announcement ended: the caller waits on, or asked for a call back."""
        core = self.core
        async with core.store.tx() as tx:
            call = await core.call_by_ref(tx, ref)
            if call is None or call.state != cm.CallState.QUEUED:
                return
            if outcome != "callback":
                self.announce_later(tx, call)
                return
            state, commands = cm.transition(call.state, cm.CallbackRequested())
            await core.cas(tx, call, state=state, ended_at=core.now(), cause="callback")
            tx.emit("call.callback_requested", "call", call.id)
            await core.fx.call(tx, call, commands)
        await self.callback_ticket(call, "caller asked for a call back")

    def left(self, tx: Tx, call: Call) -> None:
        """A waiting caller hung up: their announcements stop."""
        self.core.fx.after_commit(tx, CancelTimer(TimerKey.queue(call.id)))

    # -- call backs ------------------------------------------------------------------------
    async def callback_ticket(self, call: Call, reason: str) -> None:
        """A ticket for an operator to ring back, keeping the caller's place in the queue."""
        ticket = await self.tickets.create_ticket(
            user=None,
            category=CALLBACK,
            description=reason,
            resident_id=call.resident_id,
            call_id=call.id,
            created_at=call.queued_at,
        )
        log.info("call %s: callback ticket %s", call.ref, ticket.id)

    async def _has_callback(self, call_id: int | None) -> bool:
        async with self.core.store.read() as session:
            found = (
                await session.execute(
                    select(col(Ticket.id))
                    .where(col(Ticket.call_id) == call_id, col(Ticket.category_code) == CALLBACK)
                    .limit(1)
                )
            ).scalar()
        return found is not None

    async def callback_once(self, call: Call, reason: str) -> bool:
        """A callback task for the caller unless the call has one already (at most one
        per call: an outage and the hang-up it causes both ask)."""
        async with self._callback_lock:
            if await self._has_callback(call.id):
                log.info("call %s: callback task exists already", call.ref)
                return False
            await self.callback_ticket(call, reason)
            return True
