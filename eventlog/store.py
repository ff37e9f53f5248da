"""The unit of work that writes the event log with every state change, and its reads.

A `Tx` is one transaction: state rows and the events that describe them commit
together, then the events are published on the `EventBus` (listeners, WebSocket clients).

Units of work are serialized so that `seq` order is commit order, and a client resuming
with `since=seq` never misses an event (a reader at since=10 must never see 11 committed
while 10 is still to come):

- in the process, by an asyncio lock (`write_lock`), held for the whole unit of work: the
  queue in front of the database, so that one process waits on one connection, not on a
  pool of them;
- on PostgreSQL, across processes too, by a transaction-level advisory lock
  (`EVENT_LOCK_KEY`), the first statement of every unit of work and so taken before any
  event is inserted (a seq is assigned at INSERT, by a sequence that ignores rollbacks);
  PostgreSQL releases it at commit, after the commit is visible. Taken at the start
  rather than just before the first event: every unit of work then takes it before any
  row lock (no deadlock between a unit of work waiting for it and one waiting for a row),
  autoflush cannot insert an event before it, and the check-then-write steps written
  under the process-wide lock stay serialized when several processes write;
- SQLite has one process per database (`operator_console.instance`) and one writer at a
  time anyway: there only the asyncio lock is taken, as before.

Publishing is ordered too: the store remembers the highest seq it has published, and a
batch that does not follow it (another process committed in between) is preceded by the
gap read from the log (committed already, since commits are ordered), so every listener
and subscriber sees the log's order, each event once. On PostgreSQL a unit of work with
events also sends `NOTIFY yijing_events, '<last seq>'` (delivered at its commit), which
`eventlog.relay` turns into a `catch_up` in the other processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from eventlog.bus import EventBus
from eventlog.clock import Clock
from eventlog.models import Event

log = logging.getLogger(__name__)

#: how often `Store.tx(waiting=...)` asks its caller while it waits for the write lock
WAIT_POLL_S = 0.05
#: the PostgreSQL advisory lock every unit of work takes ("YIJE"; not the process lock of
#: `operator_console.instance`, "YIJG", nor the login throttles' 7_349_01x)
EVENT_LOCK_KEY = 0x59494A45
#: the PostgreSQL notification channel a unit of work with events notifies, with its last seq
CHANNEL = "yijing_events"
#: events read from the log at a time when publishing what another process committed
CATCH_UP_PAGE = 1000


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
        #: the highest seq published on the bus (None: not known yet, see `_publish`)
        self._published: int | None = None
        self._publishing = asyncio.Lock()
        #: units of work begun and not yet through their after-commit work
        self._open = 0
        self._quiet = asyncio.Event()
        self._quiet.set()

    @property
    def write_lock(self) -> asyncio.Lock:
        """Held for the whole of every unit of work (in this process)."""
        return self._write

    async def quiet(self) -> None:
        """Return once no unit of work is open or still running its after-commit work.

        A reader can see a commit before its after-commit work (a timer scheduled, a call
        placed) has run; waiting here first is how a test, or a clean stop, sees both.
        """
        while self._open:
            await self._quiet.wait()

    @property
    def published_seq(self) -> int | None:
        """The highest seq published on the bus so far (None before the first)."""
        return self._published

    @asynccontextmanager
    async def tx(
        self,
        *,
        session: AsyncSession | None = None,
        waiting: Callable[[], Awaitable[None]] | None = None,
    ) -> AsyncIterator[Tx]:
        """One transaction; events are published after it commits, before this returns.

        `session` finishes a transaction the caller began without the lock (an import
        checks, stages and may even write its file first, see `registry.bulk`): the lock
        is held from here to the commit only, and the caller keeps the session.
        `waiting` is awaited every WAIT_POLL_S while another unit of work holds the lock
        (of this process, or on PostgreSQL of another); an exception from it gives up
        waiting (nothing was begun, the session not rolled back).
        """
        self._open += 1
        self._quiet.clear()
        try:
            async with self._unit(waiting, session) as tx:
                yield tx
        finally:
            self._open -= 1
            if not self._open:
                self._quiet.set()

    @asynccontextmanager
    async def _unit(
        self,
        waiting: Callable[[], Awaitable[None]] | None,
        session: AsyncSession | None,
    ) -> AsyncIterator[Tx]:
        await self._acquire(waiting)
        try:
            async with contextlib.AsyncExitStack() as stack:
                if session is None:
                    session = await stack.enter_async_context(self.sessions())
                postgres = session.get_bind().dialect.name == "postgresql"
                if postgres:
                    await self._serialize(session, waiting)
                tx = Tx(session, self.clock)
                try:
                    if postgres and self._published is None:
                        # under the lock: everything up to here is committed, ours follows
                        self._published = await _newest(session)
                    yield tx
                    if postgres and tx.events:
                        await _notify(session, tx.events)
                    await session.commit()
                except BaseException:
                    await session.rollback()
                    raise
        finally:
            self._write.release()
        if tx.events:
            await self._publish(sorted((event_public(e) for e in tx.events), key=_seq))
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

    async def _serialize(
        self, session: AsyncSession, waiting: Callable[[], Awaitable[None]] | None
    ) -> None:
        """PostgreSQL: take the units of work's advisory lock in this transaction.

        No autoflush: nothing pending in a caller's session may be inserted before it.
        With `waiting`, the lock is tried every WAIT_POLL_S instead of waited for, so that
        the caller can give way (an import holding rows another process's unit of work
        waits for, see `registry.importing`).
        """
        key = {"key": EVENT_LOCK_KEY}
        with session.no_autoflush:
            if waiting is None:
                await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), key)
                return
            while not await session.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), key):
                await waiting()
                await asyncio.sleep(WAIT_POLL_S)

    async def _publish(self, batch: list[dict[str, Any]]) -> None:
        """Publish committed events in seq order, each once, after any not yet published.

        A batch that does not follow the last published seq comes after events another
        process committed (or after seqs that rolled back): those are read from the log
        and published first. A failed read leaves them, and this batch, to the next
        catch-up (`eventlog.relay` runs one every few seconds): the order is never broken.
        """
        async with self._publishing:
            if self._published is None:  # SQLite: one process, nothing came before
                self._published = batch[0]["seq"] - 1
            try:
                if batch[0]["seq"] > self._published + 1:
                    await self._catch_up_locked(before=batch[0]["seq"])
            except Exception:  # committed already: the caller's unit of work succeeded
                log.exception(
                    "reading events before seq %s failed; publishing later", _seq(batch[0])
                )
                return
            self._deliver(batch)

    async def catch_up(self) -> int:
        """Publish every committed event after the last published seq, in order; returns
        how many (the relay's path for events other processes wrote)."""
        async with self._publishing:
            if self._published is None:
                async with self.sessions() as session:
                    self._published = await _newest(session)
                return 0
            return await self._catch_up_locked()

    async def _catch_up_locked(self, *, before: int | None = None) -> int:
        count = 0
        while True:
            assert self._published is not None
            page = await self._events_after(self._published, before=before, limit=CATCH_UP_PAGE)
            self._deliver(page)
            count += len(page)
            if len(page) < CATCH_UP_PAGE:
                return count

    def _deliver(self, events: list[dict[str, Any]]) -> None:
        assert self._published is not None
        fresh = [e for e in events if e["seq"] > self._published]
        if fresh:
            self.bus.publish(fresh)
            self._published = fresh[-1]["seq"]

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reads (and access-log writes that need no event)."""
        async with self.sessions() as session:
            yield session
            await session.commit()

    async def events_since(self, seq: int, *, limit: int = 1000) -> list[dict[str, Any]]:
        """Events after `seq`, oldest first."""
        return await self._events_after(seq, limit=limit)

    async def _events_after(
        self, seq: int, *, before: int | None = None, limit: int
    ) -> list[dict[str, Any]]:
        query = select(Event).where(col(Event.seq) > seq)
        if before is not None:
            query = query.where(col(Event.seq) < before)
        async with self.sessions() as session:
            rows = (await session.execute(query.order_by(col(Event.seq)).limit(limit))).scalars()
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


def _seq(event: dict[str, Any]) -> int:
    return int(event["seq"])


async def _newest(session: AsyncSession) -> int:
    """The highest seq in the log (0 for an empty log)."""
    with session.no_autoflush:
        return int(await session.scalar(select(func.max(col(Event.seq)))) or 0)


async def _notify(session: AsyncSession, events: list[Event]) -> None:
    """PostgreSQL: tell the other processes (at commit) the last seq of this unit of work."""
    await session.flush()
    last = max(int(e.seq or 0) for e in events)
    await session.execute(
        text("SELECT pg_notify(:channel, :seq)"), {"channel": CHANNEL, "seq": str(last)}
    )
