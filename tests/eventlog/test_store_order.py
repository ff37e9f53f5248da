"""A store publishes the log's order, on both databases: events another store (another
process) committed between two of its own units of work are read from the log and
published first, each once, and listeners hear them too; a store's first batch is not
preceded by anything older (clients resume from the log with `since=seq`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from eventlog.bus import EventBus
from eventlog.clock import ManualClock
from eventlog.db import make_engine, make_sessionmaker
from eventlog.store import Store


@pytest.fixture
async def two_stores(migrated_db_url: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on two engines of the same database, no relay."""
    engines = [make_engine(migrated_db_url) for _ in range(2)]
    try:
        a, b = (Store(make_sessionmaker(e), EventBus(), ManualClock()) for e in engines)
        yield a, b
    finally:
        for engine in engines:
            await engine.dispose()


async def test_given_another_store_wrote_in_between_then_its_events_are_published_first_once(
    two_stores: tuple[Store, Store],
) -> None:
    a, b = two_stores
    async with b.tx() as tx:
        tx.emit("grid.created", "grid", "old")  # before A published anything: not replayed
    heard: list[str] = []
    a.bus.listen(lambda e: heard.append(e["subject_id"]), subjects=("grid",))
    queue = a.bus.subscribe()

    async with a.tx() as tx:
        tx.emit("grid.created", "grid", "a1")
    async with b.tx() as tx:
        tx.emit("grid.created", "grid", "b1")
        tx.emit("grid.updated", "grid", "b1")
    async with b.tx() as tx:
        tx.emit("grid.created", "grid", "b2")
    async with a.tx() as tx:
        tx.emit("grid.created", "grid", "a2")

    assert heard == ["a1", "b1", "b1", "b2", "a2"]  # before A's unit of work returned
    got = [queue.get_nowait() for _ in range(queue.qsize())]
    seqs = [e["seq"] for e in got if e is not None]
    assert seqs == [e["seq"] for e in await a.events_since(seqs[0] - 1)]
    assert await a.catch_up() == 0  # nothing twice
    assert queue.empty()


async def test_given_concurrent_units_of_work_in_one_store_then_they_publish_in_seq_order(
    two_stores: tuple[Store, Store],
) -> None:
    a, b = two_stores
    queue = a.bus.subscribe()

    async def write(n: int, store: Store) -> None:
        async with store.tx() as tx:
            tx.emit("call.note", "call", n)
            await asyncio.sleep(0)

    await asyncio.gather(*(write(n, a if n % 3 else b) for n in range(30)))
    async with a.tx() as tx:
        tx.emit("call.note", "call", "last")
    got = [e["seq"] for e in (queue.get_nowait() for _ in range(queue.qsize())) if e is not None]
    log = [e["seq"] for e in await a.events_since(0)]
    assert got == log[log.index(got[0]) :]
    assert got[-1] == log[-1] and len(got) == len(set(got))
