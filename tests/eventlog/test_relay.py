"""Several processes on one PostgreSQL database, each with its own engine, store and bus
(two `Store`s on two engines stand for two processes): an event written through one
reaches the other's listeners and subscribers in the log's order, each once, whichever
side wrote it and however the writers interleave; a unit of work in one process waits for
one open in another (the advisory lock is what orders commits); a killed listening
connection is made again and nothing is lost; a notification that never came is made up
by the periodic catch-up. On SQLite (one process per database) the relay does nothing."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select, text
from sqlmodel import col

from eventlog.bus import EventBus
from eventlog.clock import ManualClock
from eventlog.db import make_engine, make_sessionmaker
from eventlog.models import Event
from eventlog.relay import Follower, relay
from eventlog.store import EVENT_LOCK_KEY, Store
from tests.conftest import eventually

POSTGRESQL = pytest.mark.parametrize("migrated_db_url", ["postgresql"], indirect=True)


@dataclass
class Process:
    """One 'process': a store on an engine of its own, what its bus delivered, its relay."""

    store: Store
    follower: Follower | None
    queue: asyncio.Queue[dict[str, Any] | None]
    #: what its listener heard, and its subscriber got so far
    heard: list[int] = field(default_factory=list)
    got: list[int] = field(default_factory=list)

    def received(self) -> list[int]:
        """The seqs its subscriber got so far (the queue drained into `got`)."""
        while not self.queue.empty():
            event = self.queue.get_nowait()
            assert event is not None, "the subscriber was cut off"
            self.got.append(event["seq"])
        return self.got


@pytest.fixture
async def processes(migrated_db_url: str) -> AsyncIterator[list[Process]]:
    """Two processes on the same migrated database, relays running."""
    async with AsyncExitStack() as stack:
        out = []
        for _ in range(2):
            engine = make_engine(migrated_db_url)
            stack.push_async_callback(engine.dispose)
            store = Store(make_sessionmaker(engine), EventBus(), ManualClock())
            follower = await stack.enter_async_context(relay(store, engine, poll_s=60))
            p = Process(store, follower, store.bus.subscribe())
            store.bus.listen(lambda e, p=p: p.heard.append(e["seq"]))
            out.append(p)
        yield out


async def log_seqs(store: Store) -> list[int]:
    """Every seq in the log, oldest first."""
    async with store.read() as session:
        return list((await session.scalars(select(col(Event.seq)).order_by(col(Event.seq)))).all())


@POSTGRESQL
async def test_given_two_processes_when_one_writes_then_the_others_bus_gets_it_in_order_once(
    processes: list[Process],
) -> None:
    a, b = processes
    for n in range(3):
        async with a.store.tx() as tx:
            tx.emit("grid.created", "grid", f"BG0{n}")
            tx.emit("grid.updated", "grid", f"BG0{n}")

    written = await log_seqs(a.store)
    assert len(written) == 6
    assert await eventually(lambda: _async(b.received() == written))
    assert b.heard == written  # listeners (caches) too, before the subscribers
    assert a.received() == written and a.heard == written
    # nothing more arrives later (each once), also after a catch-up with nothing new
    assert await b.store.catch_up() == 0
    assert b.received() == written and b.heard == written


@POSTGRESQL
async def test_given_writers_in_both_processes_interleaved_then_everyone_sees_the_logs_order(
    processes: list[Process],
) -> None:
    rng = random.Random(17)

    async def writer(p: Process, name: str) -> None:
        for n in range(25):
            try:
                async with p.store.tx() as tx:
                    tx.emit("call.note", "call", f"{name}-{n}")
                    await tx.session.flush()  # its seq is taken: the commit comes later
                    await asyncio.sleep(rng.uniform(0, 0.004))
                    if rng.random() < 0.5:
                        tx.emit("call.note", "call", f"{name}-{n}b")
                    if n % 7 == 3:  # rolled back after its insert: a hole in the seqs
                        await tx.session.flush()
                        raise LookupError("refused")
            except LookupError:
                pass
            await asyncio.sleep(rng.uniform(0, 0.002))

    await asyncio.gather(*(writer(p, f"{i}{k}") for i, p in enumerate(processes) for k in "xy"))

    written = await log_seqs(processes[0].store)
    assert len(written) >= 80
    assert written != list(range(written[0], written[0] + len(written)))  # holes are there
    for p in processes:
        assert await eventually(lambda p=p: _async(p.received() == written))
        assert p.heard == written


@POSTGRESQL
async def test_given_a_unit_of_work_open_in_one_process_then_anothers_waits_for_its_commit(
    processes: list[Process],
) -> None:
    a, b = processes
    admin = await asyncpg.connect(_plain(a.store))
    try:
        async with a.store.tx() as tx:
            tx.emit("grid.created", "grid", "A")
            await tx.session.flush()  # seq taken: the event is in the table, not committed
            first = tx.events[0].seq

            async def write_in_b() -> int | None:
                async with b.store.tx() as tx_b:
                    event = tx_b.emit("grid.created", "grid", "B")
                return event.seq

            task = asyncio.create_task(write_in_b())
            # B waits on the advisory lock: in the database, not in its process
            assert await eventually(lambda: _waiting_for_the_lock(admin))
            assert not task.done()
            assert await b.store.events_since(0) == []  # a reader sees neither yet
        second = await task
    finally:
        await admin.close()
    assert first is not None and second is not None and second > first
    assert await log_seqs(a.store) == [first, second]


@POSTGRESQL
async def test_given_the_listening_connection_killed_then_it_listens_again_and_loses_nothing(
    processes: list[Process], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = processes
    assert b.follower is not None
    async with a.store.tx() as tx:
        tx.emit("grid.created", "grid", "before")
    assert await eventually(lambda: _async(len(b.received()) == 1))

    pid = b.follower.backend_pid
    admin = await asyncpg.connect(_plain(a.store))
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    # written while B's listener is gone (its notifications reach nobody in B)
    for n in range(5):
        async with a.store.tx() as tx:
            tx.emit("grid.created", "grid", f"during-{n}")

    # poll_s is 60 s here: only the reconnect's catch-up can bring them
    written = await log_seqs(a.store)
    assert await eventually(lambda: _async(b.received() == written))
    assert b.follower.connects == 2 and b.follower.backend_pid not in (None, pid)
    assert "listening connection lost" in caplog.text
    async with a.store.tx() as tx:
        tx.emit("grid.created", "grid", "after")
    written = await log_seqs(a.store)
    assert await eventually(lambda: _async(b.received() == written))
    assert b.heard == written


@POSTGRESQL
async def test_given_an_event_that_notified_nobody_then_the_periodic_catch_up_brings_it(
    migrated_db_url: str,
) -> None:
    async with AsyncExitStack() as stack:
        engine = make_engine(migrated_db_url)
        stack.push_async_callback(engine.dispose)
        store = Store(make_sessionmaker(engine), EventBus(), ManualClock())
        queue = store.bus.subscribe()
        await stack.enter_async_context(relay(store, engine, poll_s=0.2))
        # a row in the log without a NOTIFY (a notification lost on the way)
        async with make_sessionmaker(engine)() as session:
            session.add(Event(name="grid.created", subject="grid", subject_id="quiet"))
            await session.commit()
        event = await asyncio.wait_for(queue.get(), 15)
        assert event is not None and event["subject_id"] == "quiet"


@POSTGRESQL
async def test_given_a_unit_of_work_in_another_process_when_waiting_gives_up_then_nothing_is_undone(
    processes: list[Process],
) -> None:
    a, b = processes
    asked = 0

    async def give_up() -> None:
        nonlocal asked
        asked += 1
        raise TimeoutError("the caller stops waiting")

    async with a.store.tx() as tx:
        tx.emit("grid.created", "grid", "A")
        async with b.store.sessions() as session:
            await session.execute(text("CREATE TEMPORARY TABLE mine (n int)"))
            with pytest.raises(TimeoutError):
                async with b.store.tx(session=session, waiting=give_up):
                    raise AssertionError("got the lock held by the other process")
            # the caller's transaction is still its own, not rolled back
            assert await session.scalar(text("SELECT count(*) FROM mine")) == 0
    assert asked == 1
    assert not b.store.write_lock.locked()


async def test_given_either_database_then_the_relay_listens_on_postgresql_only(
    migrated_db_url: str,
) -> None:
    engine = make_engine(migrated_db_url)
    try:
        store = Store(make_sessionmaker(engine), EventBus(), ManualClock())
        async with relay(store, engine) as follower:
            if engine.dialect.name == "sqlite":
                assert follower is None
            else:
                assert isinstance(follower, Follower) and follower.backend_pid is not None
    finally:
        await engine.dispose()


async def _waiting_for_the_lock(admin: asyncpg.Connection) -> bool:
    waiting = await admin.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND classid = 0 AND objid = $1",
        EVENT_LOCK_KEY,
    )
    return bool(waiting)


def _plain(store: Store) -> str:
    """The store's database as a plain asyncpg DSN."""
    bind = store.sessions.kw["bind"]
    return str(bind.url.set(drivername="postgresql").render_as_string(hide_password=False))


async def _async(value: Any) -> Any:
    return value


@POSTGRESQL
async def test_given_a_notification_arriving_as_the_relay_stops_then_it_still_stops(
    migrated_db_url: str,
) -> None:
    engine = make_engine(migrated_db_url)
    try:
        store = Store(make_sessionmaker(engine), EventBus(), ManualClock())
        async with asyncio.timeout(60):  # a lost cancellation would hang here
            for n in range(20):
                async with relay(store, engine, poll_s=60):
                    async with store.tx() as tx:
                        tx.emit("grid.created", "grid", n)
                    for _ in range(n % 4):
                        await asyncio.sleep(0)  # the notification lands at another moment
        assert len(await store.events_since(0)) == 20
    finally:
        await engine.dispose()
