"""The `Timers` port: schedule a key at a time, cancel a key, get told when it fires.

`SchedulerTimers` keeps every deadline in the `timer` table of the project database (the
persistent store: deadlines survive restarts and overdue ones fire once on start), woken
by APScheduler 3.11. `ManualTimers` is driven by a manual clock in tests.

Only APScheduler's public API is used. Its jobs (one per time bucket) are rebuilt from the
`timer` table on every start, so they live in APScheduler's memory job store: its
`AsyncIOScheduler` then never does synchronous database work on the event loop (with the
SQLAlchemy job store it waited, on the loop's thread, for a SQLite transaction the blocked
loop could not finish), and no second writer races the job rows (a threaded scheduler on
the SQLAlchemy store lost its own rows on PostgreSQL: JobLookupError).

Keys name what they are about: `offer:<id>`, `deadline:<ticket id>`, `survey:<ticket id>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import threading
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor as WorkerPool
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import Engine, Table, create_engine, delete, event, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from dispatch.models import Timer
from eventlog.clock import ManualClock

log = logging.getLogger(__name__)

FireHandler = Callable[[str], Awaitable[None]]
#: a bucket's job may run again while it runs: a key written into the bucket being fired
#: (a handler scheduling "now", an overdue timer restored on a busy start) adds its job
#: back, and with one instance APScheduler skipped that run, so the key waited for some
#: later bucket. Each extra run only waits for the firing lock, then fires what is due.
BUCKET_INSTANCES = 100
#: how long `ManualTimers.advance` waits for the app to be quiet before it gives up
QUIET_WAIT_S = 30.0
_T = TypeVar("_T")
_TIMER: Table = Timer.__table__  # type: ignore[attr-defined]
#: each running `SchedulerTimers` by scheduler name, for the bucket jobs (APScheduler
#: persists a job by a textual reference to a module-level function and its arguments)
_OWNERS: dict[str, SchedulerTimers] = {}


async def _fire_bucket(scheduler_name: str, bucket: int) -> None:
    """The job function of every bucket job, on the event loop: fire the rows due."""
    owner = _OWNERS.get(scheduler_name)
    if owner is None:
        log.error("timer bucket %s fired with no owner for %s", bucket, scheduler_name)
        return
    await owner._bucket_due(bucket)


class Timers(Protocol):
    """Schedule and cancel keyed deadlines."""

    async def schedule(self, key: str, at: datetime) -> None: ...

    async def cancel(self, key: str) -> None: ...

    async def keys(self) -> set[str]: ...


def scheduler_name(sync_url: str) -> str:
    """A name stable across restarts and distinct per database: persisted jobs carry it."""
    return "yijing-" + hashlib.sha1(sync_url.encode()).hexdigest()[:12]


def job_store_engine(sync_url: str) -> Engine:
    """The job store's synchronous engine; SQLite gets WAL so each job write is cheap."""
    if not sync_url.startswith("sqlite"):
        return create_engine(sync_url, pool_pre_ping=True, hide_parameters=True)
    engine = create_engine(sync_url, connect_args={"timeout": 30}, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: object, _record: object) -> None:
        cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return engine


class SchedulerTimers:
    """Timers kept in the `timer` table, woken by APScheduler; an async context manager.

    Every key is a row `timer(key, fire_at)`. APScheduler's persistent job store holds one
    date job per time bucket (`bucket:<epoch ms>`, run at the end of the bucket, every
    `resolution` seconds); when one runs, every row due by then is fired in time order. So
    100,000 deadlines make a few hundred jobs, not 100,000, and the job store stays small.

    Writes are batched: concurrent `schedule`/`cancel` calls coalesce into one transaction
    (group commit) and `schedule_many` writes many keys at once; each call returns once its
    change is committed. All table work runs in one worker thread with the synchronous
    engine, never on the event loop's thread. `guard` is the store's write lock: every
    write waits for the unit of work in flight. The scheduler's own job store work happens
    in its thread or the worker, never on the loop. Never call these methods from inside a
    unit of work (use `Tx.after_commit`).

    Delivery is at most once per scheduling, as with one APScheduler job per key: a batch
    of due rows is deleted, then its handlers run one by one (a failing handler is logged
    and the others still run; a key scheduled again by its own handler stays). On start,
    rows already due fire once, and every future row gets its bucket job back.
    """

    def __init__(
        self,
        *,
        sync_url: str,
        handler: FireHandler,
        name: str | None = None,
        guard: asyncio.Lock | None = None,
        resolution: float = 0.25,
        batch: int = 1000,
    ) -> None:
        self.name = name or scheduler_name(sync_url)
        self._handler = handler
        self._guard = guard or asyncio.Lock()
        self._resolution_ms = max(1, int(resolution * 1000))
        self._batch = batch
        self._engine = job_store_engine(sync_url)
        self.scheduler = AsyncIOScheduler(
            jobstores={"default": MemoryJobStore()},
            job_defaults={
                "misfire_grace_time": None,
                "coalesce": True,
                "max_instances": BUCKET_INSTANCES,
            },
            timezone="UTC",
        )
        self._pool = WorkerPool(max_workers=1, thread_name_prefix="timers")
        #: buckets with a job in the store (touched only by the worker thread and
        #: `_bucket_due`, under `_known_lock`)
        self._known: set[int] = set()
        self._known_lock = threading.Lock()
        self._pending: dict[str, datetime | None] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._firing = asyncio.Lock()
        self._stopping = False

    async def __aenter__(self) -> SchedulerTimers:
        _OWNERS[self.name] = self
        self._stopping = False
        self.scheduler.start()
        async with self._guard:
            await self._in_worker(self._restore_buckets)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stopping = True
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
        async with self._firing:  # let a batch in flight put back what it did not fire
            pass
        self.scheduler.shutdown(wait=False)
        if _OWNERS.get(self.name) is self:
            del _OWNERS[self.name]
        await asyncio.to_thread(self._pool.shutdown)
        await asyncio.to_thread(self._engine.dispose)

    @property
    def running(self) -> bool:
        """True while the scheduler runs."""
        return bool(self.scheduler.running)

    # -- the port ----------------------------------------------------------------------------

    async def schedule(self, key: str, at: datetime) -> None:
        """Fire `key` at `at`; an existing key is moved."""
        await self._submit({key: _aware(at)})

    async def schedule_many(self, items: Iterable[tuple[str, datetime]]) -> None:
        """Schedule many keys in one write (later entries for a key win)."""
        await self._submit({key: _aware(at) for key, at in items})

    async def cancel(self, key: str) -> None:
        """Forget `key`; unknown keys are ignored."""
        await self._submit({key: None})

    async def keys(self) -> set[str]:
        """Every scheduled key."""
        if self._flusher is not None and not self._flusher.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._flusher)
        return await self._in_worker(self._read_keys)

    # -- writes: coalesced, committed in the worker thread -----------------------------------

    async def _submit(self, ops: dict[str, datetime | None]) -> None:
        if not ops:
            return
        loop = asyncio.get_running_loop()
        self._pending.update(ops)
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="timers-flush")
        await waiter

    async def _flush(self) -> None:
        while self._pending:
            ops, waiters = self._pending, self._waiters
            self._pending, self._waiters = {}, []
            try:
                async with self._guard:
                    await self._in_worker(self._apply, ops)
            except BaseException as exc:
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)

    async def _in_worker(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _apply(self, ops: dict[str, datetime | None]) -> None:
        """Worker thread: upsert and delete rows, then make sure their buckets have jobs."""
        gone = [key for key, at in ops.items() if at is None]
        rows = [{"key": key, "fire_at": at} for key, at in ops.items() if at is not None]
        times = [at for at in ops.values() if at is not None]
        with self._engine.begin() as conn:
            for i in range(0, len(gone), 500):
                conn.execute(delete(_TIMER).where(_TIMER.c.key.in_(gone[i : i + 500])))
            for i in range(0, len(rows), 500):
                conn.execute(self._upsert(rows[i : i + 500]))
        self._ensure_buckets(times)

    def _upsert(self, rows: list[dict[str, Any]]) -> Any:
        if self._engine.dialect.name == "postgresql":
            pg = pg_insert(_TIMER).values(rows)
            return pg.on_conflict_do_update(
                index_elements=["key"], set_={"fire_at": pg.excluded.fire_at}
            )
        lite = sqlite_insert(_TIMER).values(rows)
        return lite.on_conflict_do_update(
            index_elements=["key"], set_={"fire_at": lite.excluded.fire_at}
        )

    def _bucket_of(self, at: datetime) -> int:
        """The end of `at`'s bucket in epoch milliseconds: its job runs once `at` passed."""
        ms = math.ceil(at.timestamp() * 1000)
        return -(-ms // self._resolution_ms) * self._resolution_ms

    def _ensure_buckets(self, times: Iterable[datetime]) -> None:
        """Worker thread: add a job for every bucket not known to have one."""
        with self._known_lock:
            new = {self._bucket_of(at) for at in times} - self._known
            self._known |= new
        for bucket in sorted(new):
            self.scheduler.add_job(
                _fire_bucket,
                trigger="date",
                run_date=datetime.fromtimestamp(bucket / 1000, UTC),
                args=[self.name, bucket],
                id=f"bucket:{bucket}",
                replace_existing=True,
            )

    def _read_keys(self) -> set[str]:
        with self._engine.connect() as conn:
            return set(conn.execute(select(_TIMER.c.key)).scalars())

    # -- start: give every row its bucket ---------------------------------------------------

    def _restore_buckets(self) -> None:
        """Worker thread: one catch-up bucket for what is overdue, a job for every bucket."""
        with self._known_lock:
            self._known = {
                int(job.id.split(":", 1)[1])
                for job in self.scheduler.get_jobs()
                if job.id.startswith("bucket:")
            }
        with self._engine.connect() as conn:
            times = list(conn.execute(select(_TIMER.c.fire_at).distinct()).scalars())
        now = datetime.now(UTC)
        if any(at <= now for at in times):
            # one catch-up bucket: everything overdue fires once, in order, right away
            self._ensure_buckets([now])
        self._ensure_buckets(at for at in times if at > now)

    # -- firing ------------------------------------------------------------------------------

    async def _bucket_due(self, bucket: int) -> None:
        """A bucket's job ran: fire every row due by now."""
        with self._known_lock:
            self._known.discard(bucket)
        await self.fire_due()

    async def fire_due(self) -> int:
        """Fire, in time order, every key due by now; returns how many fired."""
        fired = 0
        async with self._firing:
            while not self._stopping:
                async with self._guard:
                    due = await self._in_worker(self._take_due, datetime.now(UTC))
                for i, (key, _at) in enumerate(due):
                    if self._stopping:
                        async with self._guard:
                            await self._in_worker(self._put_back, due[i:])
                        return fired
                    try:
                        await self._handler(key)
                    except Exception:
                        log.exception("timer %s failed", key)
                    fired += 1
                if len(due) < self._batch:
                    break
        return fired

    def _take_due(self, now: datetime) -> list[tuple[str, datetime]]:
        """Worker thread: delete and return the earliest due rows (up to one batch)."""
        first = (
            select(_TIMER.c.key)
            .where(_TIMER.c.fire_at <= now)
            .order_by(_TIMER.c.fire_at, _TIMER.c.key)
            .limit(self._batch)
        )
        stmt = (
            delete(_TIMER)
            .where(_TIMER.c.key.in_(first), _TIMER.c.fire_at <= now)
            .returning(_TIMER.c.key, _TIMER.c.fire_at)
        )
        with self._engine.begin() as conn:
            rows = [(str(key), at) for key, at in conn.execute(stmt)]
        return sorted(rows, key=lambda row: (row[1], row[0]))

    def _put_back(self, rows: list[tuple[str, datetime]]) -> None:
        """Worker thread: rows taken but not fired (stopping) go back unless rescheduled."""
        values = [{"key": key, "fire_at": at} for key, at in rows]
        with self._engine.begin() as conn:
            for i in range(0, len(values), 500):
                chunk = values[i : i + 500]
                if self._engine.dialect.name == "postgresql":
                    conn.execute(pg_insert(_TIMER).values(chunk).on_conflict_do_nothing())
                else:
                    conn.execute(sqlite_insert(_TIMER).values(chunk).on_conflict_do_nothing())


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("naive datetime refused: use timezone-aware UTC")
    return at.astimezone(UTC)


class ManualTimers:
    """Timers that fire only when a test advances the clock."""

    def __init__(self, clock: ManualClock, handler: FireHandler | None = None) -> None:
        self.clock = clock
        self.handler = handler
        #: awaited before the clock moves: the app's units of work finish their
        #: after-commit part (timers they schedule) so none lands just after an advance
        self.before: Callable[[], Awaitable[None]] | None = None
        self.pending: dict[str, datetime] = {}

    async def schedule(self, key: str, at: datetime) -> None:
        """Fire `key` when the clock passes `at`."""
        self.pending[key] = at

    async def cancel(self, key: str) -> None:
        """Forget `key`."""
        self.pending.pop(key, None)

    async def keys(self) -> set[str]:
        """Every pending key."""
        return set(self.pending)

    async def advance(self, seconds: float) -> list[str]:
        """Move the clock and fire what fell due, in time order; returns the fired keys."""
        if self.before is not None:
            await asyncio.wait_for(self.before(), QUIET_WAIT_S)
        self.clock.advance(seconds)
        fired: list[str] = []
        while True:
            due = sorted((at, key) for key, at in self.pending.items() if at <= self.clock.now())
            if not due:
                return fired
            _, key = due[0]
            del self.pending[key]
            fired.append(key)
            if self.handler is not None:
                await self.handler(key)
