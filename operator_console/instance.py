"""Who owns the calls: one process per database holds a lock for its whole life.

Two processes that each believe they own the calls place them twice: the second one's
start-up reconciler took the first one's ringing offers for calls "lost in a restart" and
placed them again. So the owner holds a lock on its database:

- SQLite: an exclusive `flock` on `<database file>.lock` (released by the kernel when
  the process dies, even by kill -9); the file says which process holds it. SQLite is
  single-process: a second process refuses to start.
- PostgreSQL: a session advisory lock on a connection kept open for the process's life
  (released when that connection closes, also on kill -9); the holder is named by its
  connection's `application_name`. With a PBX every process can reach (Asterisk, Twilio), a
  second process stands by (DESIGN.md section 12): it serves the console and the API,
  sends its adapter calls to the owner (`eventlog.commands`), and tries for the lock every
  second; when the owner dies it takes over, resyncs and carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

#: the advisory lock's key ("YIJG"); below 2**31, so pg_locks shows it as classid 0, objid KEY
ADVISORY_KEY = 0x59494A47


class AlreadyRunning(RuntimeError):
    """Another process already serves this database."""


def _me() -> str:
    return f"yijing pid={os.getpid()} host={socket.gethostname()}"


@dataclass
class Ownership:
    """Whether this process owns the PBX link and the timers, and who does."""

    role: str = "owner"  # or "standby"
    #: the owner's application name ("yijing pid=... host=..."), this one's when it owns
    holder: str = field(default_factory=_me)
    became_owner: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def owner(self) -> bool:
        return self.role == "owner"

    def _own(self) -> None:
        self.role, self.holder = "owner", _me()
        self.became_owner.set()


@asynccontextmanager
async def instance_lock(
    engine: AsyncEngine,
    url: str,
    *,
    standby: bool = False,
    poll_s: float = 1.0,
    on_lost: Callable[[], None] | None = None,
) -> AsyncIterator[Ownership]:
    """Hold the database's process lock for the life of the block, or raise AlreadyRunning.

    With `standby` (PostgreSQL only) a second process does not refuse: it yields a
    standby `Ownership` and tries for the lock every `poll_s`; once it has it,
    `became_owner` is set. The owner checks its lock's connection as often: when that is
    lost (the database restarted, the network went) another process may already own the
    calls, so `on_lost` is called (the composition root ends the process).
    """
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        with _file_lock(make_url(url).database):
            ownership = Ownership()
            ownership.became_owner.set()
            yield ownership
    elif backend == "postgresql":
        async with _advisory_lock(engine, standby=standby, poll_s=poll_s, on_lost=on_lost) as own:
            yield own
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        ownership = Ownership()
        ownership.became_owner.set()
        yield ownership


@contextlib.contextmanager
def _file_lock(database: str | None) -> Iterator[None]:
    if not database or database == ":memory:":
        yield  # a private in-memory database: nobody else can open it
        return
    path = Path(database).with_name(Path(database).name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            raise AlreadyRunning(
                f"another Yijing process ({holder}) is using the database {database}; "
                "stop it first (running several processes on one database is not "
                "supported yet)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{_me()} since={datetime.now(UTC).isoformat()}\n".encode(), 0)
        log.info("holding the database lock %s", path)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


async def _try_lock(conn: AsyncConnection) -> tuple[bool, str | None]:
    got = bool(
        (
            await conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_KEY})
        ).scalar()
    )
    holder = None
    if not got:
        holder = (
            await conn.execute(
                text(
                    "SELECT a.application_name FROM pg_locks l "
                    "JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.classid = 0 "
                    "AND l.objid = :key AND l.granted "
                    # advisory locks are per database: another database's holder is not ours
                    "AND l.database = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database())"
                ),
                {"key": ADVISORY_KEY},
            )
        ).scalar()
    # the lock belongs to the session, not to this transaction: no open transaction
    # is kept for the life of the process
    await conn.commit()
    return got, holder


@asynccontextmanager
async def _advisory_lock(
    engine: AsyncEngine,
    *,
    standby: bool,
    poll_s: float,
    on_lost: Callable[[], None] | None,
) -> AsyncIterator[Ownership]:
    conn = await engine.connect()
    watch: asyncio.Task[None] | None = None
    try:
        await conn.execute(text("SELECT set_config('application_name', :me, false)"), {"me": _me()})
        got, holder = await _try_lock(conn)
        if not got and not standby:
            raise AlreadyRunning(
                f"another Yijing process ({holder or 'unknown'}) is using this PostgreSQL "
                "database; stop it first (several processes on one database need the "
                "Asterisk or Twilio backend: see README, Running several processes)"
            )
        ownership = Ownership()
        if got:
            log.info("holding the database's advisory lock %s: this process owns the calls",
                     ADVISORY_KEY)  # fmt: skip
            ownership.became_owner.set()
        else:
            ownership.role, ownership.holder = "standby", holder or "unknown"
            log.info("standing by: %s owns the calls", ownership.holder)
        watch = asyncio.get_running_loop().create_task(
            _watch(conn, ownership, poll_s, on_lost), name="ownership"
        )
        yield ownership
    finally:
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        # closing the connection releases the lock (and returns nothing to the pool that
        # still holds it)
        with contextlib.suppress(Exception):
            await conn.invalidate()
        await conn.close()


async def _watch(
    conn: AsyncConnection,
    ownership: Ownership,
    poll_s: float,
    on_lost: Callable[[], None] | None,
) -> None:
    """A standby tries for the lock; the owner checks it still has its connection."""
    while True:
        await asyncio.sleep(poll_s)
        try:
            if ownership.owner:
                await conn.execute(text("SELECT 1"))
                await conn.commit()
                continue
            got, holder = await _try_lock(conn)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if ownership.owner:
                log.critical("lost the database's advisory lock (%s): stopping, another "
                             "process may own the calls now", type(exc).__name__)  # fmt: skip
                if on_lost is not None:
                    on_lost()
                return
            log.warning("standby: cannot reach the database (%s)", type(exc).__name__)
            continue
        if got:
            log.warning("taking over: this process owns the calls now (was %s)",
                        ownership.holder)  # fmt: skip
            ownership._own()
        elif holder:
            ownership.holder = holder
