"""One Yijing process per database, until running several is built.

Two processes on one database each believe they own the calls: the second one's start-up
reconciler took the first one's ringing offers for calls "lost in a restart" and placed
them again on its own simulator. So a process holds a lock on its database for its whole
life, and a second one refuses to start with a message that names the holder:

- SQLite: an exclusive `flock` on `<database file>.lock` (released by the kernel when
  the process dies, even by kill -9); the file says which process holds it.
- PostgreSQL: a session advisory lock on a connection kept open for the process's life
  (released when that connection closes, also on kill -9); the holder is named by its
  connection's `application_name`.

This is the same lock a future standby would wait on to take over (DESIGN.md §12).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

#: the advisory lock's key ("YIJG"); below 2**31, so pg_locks shows it as classid 0, objid KEY
ADVISORY_KEY = 0x59494A47


class AlreadyRunning(RuntimeError):
    """Another process already serves this database."""


def _me() -> str:
    return f"yijing pid={os.getpid()} host={socket.gethostname()}"


@asynccontextmanager
async def instance_lock(engine: AsyncEngine, url: str) -> AsyncIterator[None]:
    """Hold the database's process lock for the life of the block, or raise AlreadyRunning."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        with _file_lock(make_url(url).database):
            yield
    elif backend == "postgresql":
        async with _advisory_lock(engine):
            yield
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        yield


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


@asynccontextmanager
async def _advisory_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    conn = await engine.connect()
    try:
        await conn.execute(text("SELECT set_config('application_name', :me, false)"), {"me": _me()})
        got = (
            await conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_KEY})
        ).scalar()
        holder = None
        if not got:
            holder = (
                await conn.execute(
                    text(
                        "SELECT a.application_name FROM pg_locks l "
                        "JOIN pg_stat_activity a ON a.pid = l.pid "
                        "WHERE l.locktype = 'advisory' AND l.classid = 0 "
                        "AND l.objid = :key AND l.granted"
                    ),
                    {"key": ADVISORY_KEY},
                )
            ).scalar()
        # the lock belongs to the session, not to this transaction: no open transaction
        # is kept for the life of the process
        await conn.commit()
        if not got:
            raise AlreadyRunning(
                f"another Yijing process ({holder or 'unknown'}) is using this PostgreSQL "
                "database; stop it first (running several processes on one database is "
                "not supported yet)"
            )
        log.info("holding the database's advisory lock %s", ADVISORY_KEY)
        yield
    finally:
        # closing the connection releases the lock (and returns nothing to the pool that
        # still holds it)
        with contextlib.suppress(Exception):
            await conn.invalidate()
        await conn.close()
