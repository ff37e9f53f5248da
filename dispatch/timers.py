"""The `Timers` port: schedule a key at a time, cancel a key, get told when it fires.

`SchedulerTimers` keeps every deadline in APScheduler 3.11 with a persistent SQLAlchemy
job store in the project database, so deadlines survive restarts and overdue ones fire
once on start. `ManualTimers` is driven by a manual clock in tests.

Keys name what they are about: `offer:<id>`, `deadline:<ticket id>`, `survey:<ticket id>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol

from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler, run_in_event_loop
from sqlalchemy import Engine, create_engine, event

from dispatch.clock import ManualClock

log = logging.getLogger(__name__)

FireHandler = Callable[[str], Awaitable[None]]

#: APScheduler stores jobs by a textual reference to a module-level function; this maps
#: each running scheduler's name to the handler its jobs call.
_HANDLERS: dict[str, FireHandler] = {}


async def _fire(scheduler_name: str, key: str) -> None:
    """The job function every persisted timer calls."""
    handler = _HANDLERS.get(scheduler_name)
    if handler is None and len(_HANDLERS) == 1:
        # a job persisted under an older scheduler name: the one running scheduler owns it
        handler = next(iter(_HANDLERS.values()))
    if handler is None:
        log.error("timer %s fired with no handler for %s", key, scheduler_name)
        return
    await handler(key)


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
        return create_engine(sync_url, pool_pre_ping=True)
    engine = create_engine(sync_url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: object, _record: object) -> None:
        cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return engine


class _GuardedScheduler(AsyncIOScheduler):  # type: ignore[misc]
    """An AsyncIOScheduler that waits while this process holds a database write lock.

    Its job store writes synchronously, on the event loop's thread; on SQLite that write
    would wait for a transaction that cannot finish while the loop is blocked.
    """

    busy: Callable[[], bool] = staticmethod(lambda: False)

    @run_in_event_loop  # type: ignore[misc]
    def wakeup(self) -> None:
        self._stop_timer()
        if self.busy():
            self._start_timer(0.02)
            return
        self._start_timer(self._process_jobs())


class SchedulerTimers:
    """Timers in APScheduler with a persistent job store; an async context manager.

    `guard` is the store's write lock: every job-store write waits for the unit of work in
    flight, and the scheduler's own processing waits while `busy()` says a write lock may be
    held. Never call these methods from inside a unit of work (use `Tx.after_commit`).
    """

    def __init__(
        self,
        *,
        sync_url: str,
        handler: FireHandler,
        name: str | None = None,
        guard: asyncio.Lock | None = None,
        busy: Callable[[], bool] | None = None,
    ) -> None:
        self.name = name or scheduler_name(sync_url)
        self._handler = handler
        self._guard = guard or asyncio.Lock()
        self._engine = job_store_engine(sync_url)
        self._store = SQLAlchemyJobStore(engine=self._engine, tablename="apscheduler_jobs")
        self.scheduler = _GuardedScheduler(
            jobstores={"default": self._store},
            job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
            timezone="UTC",
        )
        if busy is not None:
            self.scheduler.busy = busy

    async def __aenter__(self) -> SchedulerTimers:
        _HANDLERS[self.name] = self._handler
        self.scheduler.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.scheduler.shutdown(wait=False)
        _HANDLERS.pop(self.name, None)
        await asyncio.to_thread(self._store.shutdown)
        await asyncio.to_thread(self._engine.dispose)

    @property
    def running(self) -> bool:
        """True while the scheduler runs."""
        return bool(self.scheduler.running)

    async def schedule(self, key: str, at: datetime) -> None:
        """Fire `key` at `at`; an existing key is moved."""
        async with self._guard:
            self._add(key, at)

    def _add(self, key: str, at: datetime) -> None:
        self.scheduler.add_job(
            _fire,
            trigger="date",
            run_date=at,
            args=[self.name, key],
            id=key,
            replace_existing=True,
        )

    async def cancel(self, key: str) -> None:
        """Forget `key`; unknown keys are ignored."""
        async with self._guard:
            with contextlib.suppress(JobLookupError):
                self.scheduler.remove_job(key)

    async def keys(self) -> set[str]:
        """Every scheduled key."""
        async with self._guard:
            return {job.id for job in self.scheduler.get_jobs()}


class ManualTimers:
    """Timers that fire only when a test advances the clock."""

    def __init__(self, clock: ManualClock, handler: FireHandler | None = None) -> None:
        self.clock = clock
        self.handler = handler
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
