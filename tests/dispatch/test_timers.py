"""`SchedulerTimers` on a real database (SQLite and PostgreSQL): keys in the `timer` table,
one APScheduler job per time bucket. Order, cancel, move, overdue-on-start, restarts,
failing handlers, a key rescheduled by its own firing, and 10,000 deadlines at once."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from dispatch.timers import SchedulerTimers
from eventlog.db import sync_url
from operator_console.migrate import upgrade
from tests.conftest import eventually


class Recorder:
    """A fire handler that remembers what fired, and when."""

    def __init__(self) -> None:
        self.fired: list[str] = []
        self.at: dict[str, float] = {}

    async def __call__(self, key: str) -> None:
        self.fired.append(key)
        self.at[key] = time.time()


@asynccontextmanager
async def timers_on(migrated_db_url: str, handler: Recorder) -> AsyncIterator[SchedulerTimers]:
    """One process's life: the timers on the (migrated) database."""
    await asyncio.to_thread(upgrade, migrated_db_url)
    async with SchedulerTimers(
        sync_url=sync_url(migrated_db_url), handler=handler, name="test", resolution=0.1
    ) as timers:
        yield timers


def soon(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def test_given_keys_out_of_order_when_due_then_they_fire_in_time_order(
    migrated_db_url: str,
) -> None:
    rec = Recorder()
    async with timers_on(migrated_db_url, rec) as timers:
        base = datetime.now(UTC) - timedelta(seconds=5)
        await timers.schedule_many(
            [(f"k{i}", base + timedelta(milliseconds=(7 * i) % 50)) for i in range(50)]
        )
        # both due times from one reading of the clock: "early" is written after "late"
        # yet is due a second before it, however long the writes take on a loaded machine
        late = soon(2.0)
        await timers.schedule("late", late)
        await timers.schedule("early", late - timedelta(seconds=1))
        await eventually(lambda: _count(rec, 52))
        expected = sorted(range(50), key=lambda i: (7 * i) % 50)
        assert rec.fired == [f"k{i}" for i in expected] + ["early", "late"]
        assert await timers.keys() == set()


async def _count(rec: Recorder, n: int) -> bool:
    return len(rec.fired) >= n


async def test_given_cancelled_and_moved_keys_when_time_passes_then_only_live_ones_fire(
    migrated_db_url: str,
) -> None:
    rec = Recorder()
    async with timers_on(migrated_db_url, rec) as timers:
        await timers.schedule("gone", soon(0.2))
        await timers.cancel("gone")
        await timers.cancel("never-scheduled")  # ignored
        await timers.schedule("sooner", soon(60))
        await timers.schedule("sooner", soon(0.2))  # moved earlier
        await timers.schedule("later", soon(0.2))
        await timers.schedule("later", soon(60))  # moved later
        await timers.schedule("marker", soon(0.4))
        await eventually(lambda: _count(rec, 2))
        await asyncio.sleep(0.3)
        assert rec.fired == ["sooner", "marker"]
        assert await timers.keys() == {"later"}


async def test_given_a_failing_handler_when_a_batch_fires_then_the_others_still_fire(
    migrated_db_url: str,
) -> None:
    rec = Recorder()

    async def handler(key: str) -> None:
        await rec(key)
        if key == "bad":
            raise RuntimeError("boom")

    async with timers_on(migrated_db_url, handler) as timers:  # type: ignore[arg-type]
        past = datetime.now(UTC) - timedelta(seconds=1)
        await timers.schedule_many(
            [("a", past), ("bad", past + timedelta(milliseconds=1)), ("c", soon(0))]
        )
        await eventually(lambda: _count(rec, 3))
        assert rec.fired == ["a", "bad", "c"]


async def test_given_a_key_rescheduled_by_its_own_firing_when_fired_then_it_is_kept(
    migrated_db_url: str,
) -> None:
    rec = Recorder()
    holder: list[SchedulerTimers] = []

    async def handler(key: str) -> None:
        await rec(key)
        if rec.fired.count(key) == 1:
            await holder[0].schedule(key, soon(0.2))

    async with timers_on(migrated_db_url, handler) as timers:  # type: ignore[arg-type]
        holder.append(timers)
        await timers.schedule("again", soon(0.05))
        await eventually(lambda: _count(rec, 1))
        assert await timers.keys() == {"again"}
        await eventually(lambda: _count(rec, 2))
        await asyncio.sleep(0.3)
        assert rec.fired == ["again", "again"]
        assert await timers.keys() == set()


async def test_given_deadlines_due_while_down_when_restarted_then_each_fires_once(
    migrated_db_url: str,
) -> None:
    first = Recorder()
    async with timers_on(migrated_db_url, first) as timers:
        await timers.schedule("due-while-down", soon(0.4))
        await timers.schedule("tomorrow", soon(86400))
        await timers.schedule("moved", soon(0.4))
        await timers.schedule("moved", soon(86400 * 2))
    assert first.fired == []
    await asyncio.sleep(0.6)
    second = Recorder()
    async with timers_on(migrated_db_url, second) as timers:
        await eventually(lambda: _count(second, 1))
        await asyncio.sleep(0.4)  # a second firing would show by now
        assert second.fired == ["due-while-down"]
        assert await timers.keys() == {"tomorrow", "moved"}
        await timers.schedule("next-life", soon(0.3))
    await asyncio.sleep(0.5)
    third = Recorder()
    async with timers_on(migrated_db_url, third) as timers:
        await eventually(lambda: _count(third, 1))
        await asyncio.sleep(0.3)
        assert third.fired == ["next-life"]
        assert await timers.keys() == {"tomorrow", "moved"}


async def test_given_the_loop_busy_in_a_transaction_when_a_bucket_falls_due_then_no_deadlock(
    migrated_db_url: str,
) -> None:
    """The scheduler's job store works in its own thread: a unit of work holding SQLite's
    write lock on the loop never waits for it, nor it for the loop."""
    rec = Recorder()
    async with timers_on(migrated_db_url, rec) as timers:
        await timers.schedule("soon", soon(0.3))
        # APScheduler's own jobs are rebuilt from the timer table: none is stored beside it
        assert all(j.id.startswith("bucket:") for j in timers.scheduler.get_jobs())
        await eventually(lambda: _count(rec, 1))
        assert rec.fired == ["soon"]


async def test_given_10k_deadlines_when_they_fall_due_then_each_fires_once_in_order(
    migrated_db_url: str,
) -> None:
    rec = Recorder()
    n = 10_000
    async with timers_on(migrated_db_url, rec) as timers:
        start = time.time() + 1.5
        due = {f"d{i}": start + 2.0 * i / n for i in range(n)}
        await timers.schedule_many(
            (key, datetime.fromtimestamp(at, UTC)) for key, at in due.items()
        )
        await eventually(lambda: _count(rec, n), within=60)
        await asyncio.sleep(0.3)
        assert len(rec.fired) == n and set(rec.fired) == set(due)
        assert rec.fired == sorted(due, key=lambda k: due[k])
        assert all(rec.at[k] >= due[k] for k in due)  # never early
        late = sorted(rec.at[k] - due[k] for k in due)
        print(f"10k: late median {statistics.median(late):.3f} s p99 {late[int(0.99 * n)]:.3f} s")
        assert await timers.keys() == set()


async def test_given_a_key_due_in_the_bucket_now_firing_when_scheduled_then_it_still_fires(
    migrated_db_url: str,
) -> None:
    """A key written into the bucket whose job is running (a handler scheduling "now", an
    overdue timer restored during a busy start) gets a job for that bucket again; with one
    instance per job APScheduler skipped it ("maximum number of running instances"), and
    the row waited for whatever bucket came next."""
    release = asyncio.Event()
    rec = Recorder()
    at = soon(0.3)

    async def handler(key: str) -> None:
        await rec(key)
        if key == "first":
            await timers.schedule("second", at)  # the very bucket now firing
            await release.wait()  # still firing when the new job is due

    async with timers_on(migrated_db_url, handler) as timers:  # type: ignore[arg-type]
        await timers.schedule("first", at)
        await eventually(lambda: _count(rec, 1))
        await eventually(lambda: _past(at + timedelta(seconds=0.3)))  # the re-added job
        # came due while "first" was still running
        release.set()
        await eventually(lambda: _count(rec, 2), within=5)
        assert rec.fired == ["first", "second"]


async def _past(when: datetime) -> bool:
    return datetime.now(UTC) >= when
