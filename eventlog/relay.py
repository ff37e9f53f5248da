"""Events other processes commit, on this process's bus: PostgreSQL LISTEN/NOTIFY.

Several processes serve one PostgreSQL database (DESIGN.md §12); each has its own
`EventBus`, and a WebSocket client or a cache of one process must see every event, in
order, whichever process wrote it. Every unit of work with events notifies
`yijing_events` with its last seq (`eventlog.store`); the `Follower` keeps one dedicated
connection listening there and, on a notification, has the store publish what the log
holds after its last published seq (`Store.catch_up`: ordered, each event once, also for
listeners). A notification is only a wake-up, never the data: the log is read, so a lost
one loses nothing. The follower also catches up every `poll_s` seconds and whenever its
connection is (re)made, and reconnects with backoff when the connection drops.

At start the store's published seq is the log's newest: clients resume with `since=seq`
from the log itself, so nothing older is replayed on the bus.

The listening connection is a plain asyncpg connection of its own, outside the engine's
pool (it lives as long as the process and must not be handed to a unit of work); it
needs a session-mode path to the server (a transaction-pooling PgBouncer drops LISTEN).

SQLite has one process per database: `relay` does nothing there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from eventlog.store import CHANNEL, Store

log = logging.getLogger(__name__)

#: catch up this often even without a notification (a lost one, a listener that died quietly)
POLL_S = 2.0
#: the longest wait between attempts to reconnect the listening connection
MAX_BACKOFF_S = 10.0
#: how the listening connection shows in pg_stat_activity
APPLICATION_NAME = "yijing event relay"


@asynccontextmanager
async def relay(
    store: Store, engine: AsyncEngine, *, poll_s: float = POLL_S
) -> AsyncIterator[Follower | None]:
    """Follow other processes' events for the life of the block (PostgreSQL; a no-op on
    SQLite); yields the running `Follower`, or None.

    Every process enters it once its database is migrated, owner and standby alike (their
    consoles' streams and caches need every process's events)."""
    if engine.dialect.name != "postgresql":
        yield None
        return
    follower = Follower(store, engine.url, poll_s=poll_s)
    await follower.start()
    try:
        yield follower
    finally:
        await follower.stop()


class Follower:
    """One process's listening connection and the catch-ups it triggers."""

    def __init__(
        self,
        store: Store,
        url: URL,
        *,
        poll_s: float = POLL_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        channel: str = CHANNEL,
    ) -> None:
        self.store = store
        # a plain libpq-style URL for asyncpg: SQLAlchemy's own query options (say
        # prepared_statement_cache_size) would reach the server as settings
        query = {k: v for k, v in url.query.items() if k.startswith("ssl")}
        plain = url.set(drivername="postgresql", query=query)
        self._dsn = plain.render_as_string(hide_password=False)
        self.poll_s = poll_s
        self.max_backoff_s = max_backoff_s
        self.channel = channel
        self._wake = asyncio.Event()
        self._notified = 0
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        #: how many times the listening connection was made (tests, figures)
        self.connects = 0
        self._backoff = 0.0
        self._stopping = False
        self._tried = asyncio.Event()
        #: more channels to wake someone on (`wake_on`), kept across reconnects
        self._also: dict[str, asyncio.Event] = {}

    async def start(self) -> None:
        """Set the published seq to the log's newest and start listening; returns once
        the first connection is up (or its first attempt failed: retries go on)."""
        await self.store.catch_up()
        self._task = asyncio.create_task(self._run(), name="event-relay")
        tried = asyncio.ensure_future(self._tried.wait())
        await asyncio.wait({tried, self._task}, return_when=asyncio.FIRST_COMPLETED)
        tried.cancel()

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        # again until it ends: a cancellation that lands as an inner wait completes can be
        # lost (asyncio.wait_for in Python 3.11, and in asyncpg)
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def wake_on(self, channel: str, event: asyncio.Event) -> None:
        """Set `event` whenever `channel` is notified (on this connection, and on every
        one made after it): a wake-up only, its payload unread."""
        self._also[channel] = event
        conn = self._conn
        if conn is not None and not conn.is_closed():
            await conn.add_listener(channel, _waker(event))

    @property
    def backend_pid(self) -> int | None:
        """The listening connection's server process id (None while disconnected)."""
        conn = self._conn
        return None if conn is None or conn.is_closed() else int(conn.get_server_pid())

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database went away: try again, never give up
                self._backoff = min(self.max_backoff_s, max(0.1, self._backoff * 2))
                # the error's type and text: no statement parameters, no password
                log.warning(
                    "event relay: listening connection lost (%s: %.200s); again in %.1f s",
                    type(exc).__name__,
                    exc,
                    self._backoff,
                )
                self._tried.set()  # `start` waits for the first attempt, not its success
                await asyncio.sleep(self._backoff)

    async def _listen(self) -> None:
        """One listening connection's life: listen, catch up, then wait for news."""
        conn: asyncpg.Connection = await asyncpg.connect(
            self._dsn, timeout=10, server_settings={"application_name": APPLICATION_NAME}
        )
        lost = asyncio.Event()
        try:
            self._conn = conn
            conn.add_termination_listener(lambda _conn: _set(lost))
            await conn.add_listener(self.channel, self._on_notify)
            for channel, event in self._also.items():
                await conn.add_listener(channel, _waker(event))
                event.set()  # whatever was notified while nobody listened
            self.connects += 1
            self._backoff = 0.0
            if self.connects > 1:
                log.info("event relay: listening again (connection %d)", self.connects)
            self._tried.set()
            # what was committed while nobody listened
            await self.store.catch_up()
            loop = asyncio.get_running_loop()
            polled = loop.time()
            while not self._stopping:
                left = polled + self.poll_s - loop.time()
                if left > 0:
                    await self._woken(lost, left)
                if lost.is_set() or conn.is_closed():
                    raise ConnectionError("the listening connection closed")
                if loop.time() >= polled + self.poll_s:
                    # a listener can die without a word (a cut cable): ask it, and catch
                    # up on anything a lost notification did not announce
                    await conn.execute("SELECT 1", timeout=self.poll_s)
                    polled = loop.time()
                    self._wake.clear()
                    await self.store.catch_up()
                elif self._wake.is_set():
                    self._wake.clear()
                    if self._notified > (self.store.published_seq or 0):
                        await self.store.catch_up()  # else our own commit, published already
        finally:
            self._conn = None
            try:
                await asyncio.wait_for(conn.close(), 2)
            except Exception:
                pass  # gone already, or not answering: terminated below
            finally:
                if not conn.is_closed():
                    conn.terminate()

    async def _woken(self, lost: asyncio.Event, within: float) -> None:
        """Until a notification, the connection's loss or the timeout, whichever first."""
        waits = {asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(lost.wait())}
        try:
            await asyncio.wait(waits, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self._notified = max(self._notified, int(payload))
        self._wake.set()


def _set(event: asyncio.Event) -> None:
    event.set()


def _waker(event: asyncio.Event) -> Callable[[object, int, str, str], None]:
    def wake(_conn: object, _pid: int, _channel: str, _payload: str) -> None:
        event.set()

    return wake
