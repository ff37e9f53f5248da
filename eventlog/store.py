"""The unit of work that writes the event log with every state change, and its reads.

A `Tx` is one transaction: state rows and the events that describe them commit
together, then the events are published on the `EventBus` (listeners, WebSocket clients).
Writers in one process are serialized by a lock so that `seq` order is commit order and
a client resuming with `since=seq` never misses an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from eventlog.bus import EventBus
from eventlog.clock import Clock
from eventlog.models import Event

log = logging.getLogger(__name__)

#: how often `Store.tx(waiting=...)` asks its caller while it waits for the write lock
WAIT_POLL_S = 0.05


def event_public(event: Event) -> dict[str, Any]:
    """The JSON shape of an event on the API and the WebSocket."""
    return {
        "seq": event.seq,
        "name": event.name,
        "subject": event.subject,
        "subject_id": event.subject_id,
        "occurred_at": event.occurred_at.isoformat(),
        "actor": event.actor,
        "data": event.data,
    }


class Tx:
    """An open unit of work: a session plus the events it will commit."""

    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self.session = session
        self.clock = clock
        self.events: list[Event] = []
        self.after: list[Callable[[], Awaitable[object]]] = []

    def after_commit(self, fn: Callable[[], Awaitable[object]]) -> None:
        """Run `fn` once this transaction has committed and the write lock is released.

        Timers go here: the APScheduler job store writes to the same database through its
        own synchronous connection, which must never wait on a transaction still open in
        this event loop.
        """
        self.after.append(fn)

    def emit(
        self, name: str, subject: str, subject_id: object, *, actor: str = "system", **data: Any
    ) -> Event:
        """Record an event in this transaction."""
        event = Event(
            name=name,
            subject=subject,
            subject_id=str(subject_id),
            occurred_at=self.clock.now(),
            actor=actor,
            data=data,
        )
        self.session.add(event)
        self.events.append(event)
        return event


class Store:
    """Opens units of work and reads the log."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], bus: EventBus, clock: Clock
    ) -> None:
        self.sessions = sessions
        self.bus = bus
        self.clock = clock
        self._write = asyncio.Lock()

    @property
    def write_lock(self) -> asyncio.Lock:
        """Held for the whole of every unit of work."""
        return self._write

    @asynccontextmanager
    async def tx(
        self,
        *,
        session: AsyncSession | None = None,
        waiting: Callable[[], Awaitable[None]] | None = None,
    ) -> AsyncIterator[Tx]:
        """One transaction; events are published after it commits.

        `session` finishes a transaction the caller began without the lock (an import
        checks, stages and may even write its file first, see `registry.bulk`): the lock
        is held from here to the commit only, and the caller keeps the session.
        `waiting` is awaited every WAIT_POLL_S while another unit of work holds the lock;
        an exception from it gives up waiting (nothing was begun, the session untouched).
        """
        await self._acquire(waiting)
        try:
            async with contextlib.AsyncExitStack() as stack:
                if session is None:
                    session = await stack.enter_async_context(self.sessions())
                tx = Tx(session, self.clock)
                try:
                    yield tx
                    await session.commit()
                except BaseException:
                    await session.rollback()
                    raise
        finally:
            self._write.release()
        if tx.events:
            self.bus.publish([event_public(e) for e in tx.events])
        for fn in tx.after:
            await fn()

    async def _acquire(self, waiting: Callable[[], Awaitable[None]] | None) -> None:
        if waiting is None:
            await self._write.acquire()
            return
        acquiring = asyncio.ensure_future(self._write.acquire())
        try:
            while not acquiring.done():
                await asyncio.wait({acquiring}, timeout=WAIT_POLL_S)
                if not acquiring.done():
                    await waiting()
        except BaseException:
            acquiring.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                if await acquiring:  # got it after all: give it back
                    self._write.release()
            raise

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reads (and access-log writes that need no event)."""
        async with self.sessions() as session:
            yield session
            await session.commit()

    async def events_since(self, seq: int, *, limit: int = 1000) -> list[dict[str, Any]]:
        """Events after `seq`, oldest first."""
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    select(Event).where(col(Event.seq) > seq).order_by(col(Event.seq)).limit(limit)
                )
            ).scalars()
            return [event_public(e) for e in rows]

    async def events_for(self, subject: str, subject_id: object) -> list[dict[str, Any]]:
        """Every event about one subject, oldest first."""
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    select(Event)
                    .where(col(Event.subject) == subject, col(Event.subject_id) == str(subject_id))
                    .order_by(col(Event.seq))
                )
            ).scalars()
            return [event_public(e) for e in rows]
