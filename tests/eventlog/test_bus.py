"""The event bus under a real unit of work, on both databases: listeners hear committed
events in commit order (only the subjects they asked for), never a rolled-back one, before
the unit of work returns; a listener that fails is logged and the others, and the
WebSocket queues, still get every event."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from eventlog.bus import EventBus
from eventlog.clock import ManualClock
from eventlog.db import make_engine, make_sessionmaker
from eventlog.store import Store
from operator_console.migrate import upgrade


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    """A store on a migrated, empty database."""
    await asyncio.to_thread(upgrade, db_url)
    engine = make_engine(db_url)
    try:
        yield Store(make_sessionmaker(engine), EventBus(), ManualClock())
    finally:
        await engine.dispose()


async def test_given_listeners_when_units_of_work_commit_or_roll_back_then_they_hear_what_committed(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    everything: list[str] = []
    merchants: list[str] = []
    heard_inside: list[bool] = []
    store.bus.listen(lambda e: everything.append(e["name"]))
    store.bus.listen(lambda e: merchants.append(e["name"]), subjects=("merchant",))

    def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("a broken cache")

    store.bus.listen(broken, subjects=("grid",))
    queue = store.bus.subscribe()

    async with store.tx() as tx:
        tx.emit("merchant.created", "merchant", 1, changed=["name"])
        tx.emit("grid.created", "grid", "BG01")
        heard_inside.append(bool(everything))
    assert heard_inside == [False]  # nothing before the commit...
    assert everything == ["merchant.created", "grid.created"]  # ...all of it after
    assert merchants == ["merchant.created"]
    assert "event listener" in caplog.text and "a broken cache" in caplog.text
    assert [(await queue.get() or {})["name"] for _ in range(2)] == everything

    with pytest.raises(LookupError):
        async with store.tx() as tx:
            tx.emit("merchant.updated", "merchant", 1, changed=["capacity"])
            raise LookupError("refused")
    assert merchants == ["merchant.created"]
    assert queue.empty()
    assert [e["name"] for e in await store.events_since(0)] == everything


async def test_given_a_listener_that_stopped_then_it_hears_nothing_more(store: Store) -> None:
    heard: list[int] = []
    stop = store.bus.listen(lambda e: heard.append(e["seq"]))
    async with store.tx() as tx:
        tx.emit("category.saved", "category", "meal", created=True)
    stop()
    stop()  # twice is harmless
    async with store.tx() as tx:
        tx.emit("category.saved", "category", "meal", created=False)
    assert heard == [(await store.events_since(0))[0]["seq"]]
