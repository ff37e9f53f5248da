"""Test databases on PostgreSQL: made with commits that do not wait for the disk, and
dropped in the background, several at a time.

Measured on this machine (PostgreSQL 15): `CREATE DATABASE ... TEMPLATE` takes about
0.15 s, but `DROP DATABASE` about 0.7-1.7 s, most of it the checkpoint it waits for; six
drops issued together took 1.5 s, as long as one, because they share that checkpoint. A
test used to wait for its own drop in its teardown; now the teardown hands the name to a
thread that drops whatever has piled up, together, while the next tests run. The session
waits for the last drops at its end, so nothing is left behind.

`synchronous_commit = off` on a test database: a commit returns before its WAL reaches the
disk (0.1 ms instead of 0.5-2 ms a commit here). It changes what a crash of the PostgreSQL
server itself could lose, which no test does; a crash of the app (the restart tests' kill -9)
loses nothing either way.
"""

from __future__ import annotations

import asyncio
import queue
import sys
import threading

import asyncpg

#: drops issued together (they share one checkpoint); more only adds connections
BATCH = 6


async def create(admin: asyncpg.Connection, name: str, template: str | None = None) -> None:
    """A new test database, a copy of `template` when given, with fast commits."""
    copy_of = f' TEMPLATE "{template}"' if template else ""
    await admin.execute(f'CREATE DATABASE "{name}"{copy_of}')
    await admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')


class Dropper:
    """Drops databases on a thread of its own; `close` waits until every one is gone."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._names: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.failed: list[str] = []

    def drop(self, name: str) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pg-dropper", daemon=True)
                self._thread.start()
        self._names.put(name)

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._names.put(None)
        thread.join()
        if self.failed:
            print(f"pg-dropper: could not drop {self.failed}", file=sys.stderr)

    def _run(self) -> None:
        asyncio.run(self._drop_all())

    async def _drop_all(self) -> None:
        while True:
            first = await asyncio.to_thread(self._names.get)
            batch = [first]
            while len(batch) < BATCH:
                try:
                    batch.append(self._names.get_nowait())
                except queue.Empty:
                    break
            names = [name for name in batch if name is not None]
            await asyncio.gather(*(self._drop(name) for name in names))
            if None in batch:
                if not self._names.empty():  # names handed in after close: drop them too
                    self._names.put(None)
                    continue
                return

    async def _drop(self, name: str) -> None:
        try:
            conn = await asyncpg.connect(self.dsn, timeout=10)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError) as exc:
            self.failed.append(f"{name}: {exc}")
