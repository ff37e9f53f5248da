"""A reader can see a unit of work's commit before its after-commit work (a timer it
schedules) has run. `Store.quiet` returns only once every unit of work is through both, and
a test's manual timers wait for it before the clock moves: a ring timer scheduled just after
the reservation a test saw is never missed by the advance that follows (the flake of
`test_operator_offers` on PostgreSQL, seen at 1 in ~2,000 tests under load)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from dispatch.timers import ManualTimers
from eventlog.bus import EventBus
from eventlog.clock import ManualClock
from eventlog.db import make_engine, make_sessionmaker
from eventlog.store import Store

T0 = datetime(2026, 12, 4, 2, tzinfo=UTC)


@pytest.fixture
async def store(migrated_db_url: str) -> AsyncIterator[Store]:
    engine = make_engine(migrated_db_url)
    try:
        yield Store(make_sessionmaker(engine), EventBus(), ManualClock(T0))
    finally:
        await engine.dispose()


async def test_given_after_commit_work_still_running_then_quiet_waits_for_it(
    store: Store,
) -> None:
    release = asyncio.Event()
    done: list[str] = []

    async def slow_after() -> None:
        await release.wait()
        done.append("after")

    async def unit() -> None:
        async with store.tx() as tx:
            tx.emit("grid.created", "grid", "g1")
            tx.after_commit(slow_after)

    writer = asyncio.create_task(unit())
    committed = asyncio.Event()
    store.bus.listen(lambda e: committed.set(), subjects=("grid",))
    await asyncio.wait_for(committed.wait(), 15)  # the commit is visible ...
    quiet = asyncio.create_task(store.quiet())
    await asyncio.sleep(0)
    assert not quiet.done()  # ... its after-commit work is not done: not quiet
    release.set()
    await asyncio.wait_for(quiet, 15)
    assert done == ["after"]
    await writer
    await asyncio.wait_for(store.quiet(), 1)  # nothing open: returns at once


async def test_given_a_timer_scheduled_after_commit_when_advancing_then_it_fires(
    store: Store,
) -> None:
    assert isinstance(store.clock, ManualClock)
    timers = ManualTimers(store.clock)
    fired: list[str] = []

    async def handler(key: str) -> None:
        fired.append(key)

    timers.handler = handler
    timers.before = store.quiet
    release = asyncio.Event()

    async def schedule_ring() -> None:
        await release.wait()  # a slow publish or a busy loop between commit and this
        await timers.schedule("ring:2", store.clock.now() + timedelta(seconds=20))

    async def reserve() -> None:
        async with store.tx() as tx:
            tx.emit("operator.reserved", "operator", 2)
            tx.after_commit(schedule_ring)

    writer = asyncio.create_task(reserve())
    seen = asyncio.Event()
    store.bus.listen(lambda e: seen.set(), subjects=("operator",))
    await asyncio.wait_for(seen.wait(), 15)  # the test sees the reservation
    advancing = asyncio.create_task(timers.advance(21))
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.wait_for(advancing, 15) == ["ring:2"]
    assert fired == ["ring:2"]
    await writer
