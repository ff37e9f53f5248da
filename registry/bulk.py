"""Set-based writes of many checked residents: staged first, then written in one short step.

An import of 100,000 rows cannot write row by row inside the one transaction that the
process-wide write lock guards: that held the lock (and SQLite's) for minutes. So the
rows go first into TEMPORARY tables on the import's own connection, in chunks and without
any lock: nobody else sees them or waits for them (on SQLite a temporary table lives in
its own database file, so filling it never takes the main database's write lock).
`Staging.write` then moves everything in a handful of INSERT ... SELECT / UPDATE ...
FROM statements that run inside the database engine, with no per-row Python work: about
1 s for 100,000 new residents on SQLite, 3-4 s on PostgreSQL. On SQLite that is the
longest hold of the write lock; on PostgreSQL it runs before the lock is taken (see
`importing._write_residents`), which is then held for the event and the commit only
(bench/import.py prints both).

The staging tables live on one connection the import keeps from their creation to their
drop, after the commit or the rollback (SQLite runs CREATE TEMPORARY TABLE outside the
transaction, so a rollback alone would leave them on a pooled connection); a failure or
a cancellation therefore leaves nothing behind anywhere.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.schema import CreateTable, DropTable

from eventlog.db import BigId, JSONType, UTCDateTime
from registry.models import (
    EmergencyContact,
    RegistryRevision,
    Resident,
    ResidentPhone,
    ResidentStatusChange,
)

#: rows per INSERT while staging: each chunk is a few milliseconds of the event loop
STAGE_CHUNK = 500

RESIDENT = Resident.__table__  # type: ignore[attr-defined]
PHONE = ResidentPhone.__table__  # type: ignore[attr-defined]
CONTACT = EmergencyContact.__table__  # type: ignore[attr-defined]
STATUS = ResidentStatusChange.__table__  # type: ignore[attr-defined]
REVISION = RegistryRevision.__table__  # type: ignore[attr-defined]
#: resident columns an update writes (the key, creation time and revision are not data)
UPDATED = [c.name for c in RESIDENT.columns if c.name not in ("id", "created_at", "revision")]


@dataclass(slots=True)
class NewResident:
    """One resident to create or update, ready to stage.

    `ord` numbers the rows of one import; `id` is the stored resident (an update), an id
    already taken from the sequence (PostgreSQL) or None (SQLite: given at write time).
    """

    ord: int
    id: int | None
    is_new: bool
    values: dict[str, Any]
    phones: list[tuple[str, str]] | None  # (number, kind); None: keep the stored ones
    contacts: list[dict[str, Any]] | None
    status_change: tuple[str, str, str] | None  # from, to, reason


class Staging:
    """The temporary tables of one import, on the session's connection."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.dialect = session.get_bind().dialect.name
        suffix = uuid.uuid4().hex[:12]
        md = MetaData()

        def temp(name: str, *columns: Column[Any]) -> Table:
            return Table(f"imp_{name}_{suffix}", md, *columns, prefixes=["TEMPORARY"])

        self.residents = temp(
            "resident",
            *(Column(c.name, c.type) for c in RESIDENT.columns),
            Column("ord", Integer),
            Column("is_new", Boolean),
            Column("replace_phones", Boolean),
            Column("replace_contacts", Boolean),
        )
        self.phones = temp(
            "phone",
            Column("resident_id", BigId),
            Column("ord", Integer),
            Column("number", String(32)),
            Column("kind", String(16)),
        )
        self.contacts = temp(
            "contact",
            Column("resident_id", BigId),
            Column("ord", Integer),
            Column("position", Integer),
            Column("name", String(64)),
            Column("relation", String(32)),
            Column("phone", String(32)),
            Column("phones", JSONType),
            Column("kind", String(32)),
            Column("when_to_call", String(100)),
        )
        self.statuses = temp(
            "status",
            Column("resident_id", BigId),
            Column("ord", Integer),
            Column("from_status", String(32)),
            Column("to_status", String(32)),
            Column("reason", String(200)),
            Column("by", String(64)),
            Column("at", UTCDateTime()),
        )
        self.releases = temp("release", Column("number", String(32)), Column("resident_id", BigId))
        self.tables = (self.residents, self.phones, self.contacts, self.statuses, self.releases)
        self._created = False

    async def create(self) -> None:
        """Make the tables (and drop any an earlier, killed import left on this connection)."""
        if self.dialect == "sqlite":
            leftovers = await self.session.execute(
                text(
                    "SELECT name FROM sqlite_temp_master WHERE type = 'table' "
                    "AND name LIKE 'imp\\_%' ESCAPE '\\'"
                )
            )
            for (name,) in leftovers.all():
                await self.session.execute(text(f'DROP TABLE IF EXISTS temp."{name}"'))
        for table in self.tables:
            await self.session.execute(CreateTable(table))
        self._created = True

    async def drop(self) -> None:
        """Drop the tables (the caller commits: on PostgreSQL a DROP is transactional)."""
        if not self._created:
            return
        self._created = False
        for table in self.tables:
            # in a PostgreSQL transaction that already failed this raises: its rollback
            # drops them anyway (they were made in it)
            with contextlib.suppress(Exception):
                await self.session.execute(DropTable(table, if_exists=True))

    async def reserve_ids(self, count: int) -> list[int]:
        """Resident ids for new rows: from the sequence on PostgreSQL (never given twice,
        whatever other processes do), none on SQLite (`write` numbers them under its lock)."""
        if self.dialect != "postgresql" or count == 0:
            return []
        rows = await self.session.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence('resident', 'id')) "
                "FROM generate_series(1, :n)"
            ),
            {"n": count},
        )
        return [int(v) for (v,) in rows.all()]

    async def fill(
        self,
        rows: Sequence[NewResident],
        *,
        actor: str,
        now: datetime,
        tick: Callable[[], Awaitable[None]],
    ) -> None:
        """Stage the rows, STAGE_CHUNK at a time, calling `tick` between chunks."""
        for start in range(0, len(rows), STAGE_CHUNK):
            await tick()
            chunk = rows[start : start + STAGE_CHUNK]
            residents, phones, contacts, statuses = [], [], [], []
            for row in chunk:
                rid = row.id
                residents.append(
                    row.values
                    | {
                        "id": rid,
                        "ord": row.ord,
                        "is_new": row.is_new,
                        "replace_phones": row.phones is not None,
                        "replace_contacts": row.contacts is not None,
                        "updated_at": now,
                        "revision": 0,
                    }
                )
                for number, kind in row.phones or ():
                    phones.append(
                        {"resident_id": rid, "ord": row.ord, "number": number, "kind": kind}
                    )
                for position, contact in enumerate(row.contacts or ()):
                    contacts.append(
                        contact | {"resident_id": rid, "ord": row.ord, "position": position}
                    )
                if row.status_change is not None:
                    before, after, reason = row.status_change
                    statuses.append(
                        {
                            "resident_id": rid,
                            "ord": row.ord,
                            "from_status": before,
                            "to_status": after,
                            "reason": reason,
                            "by": actor,
                            "at": now,
                        }
                    )
            for table, values in (
                (self.residents, residents),
                (self.phones, phones),
                (self.contacts, contacts),
                (self.statuses, statuses),
            ):
                if values:
                    await self.session.execute(insert(table), values)

    async def stage_releases(self, releases: dict[str, list[int]]) -> None:
        """Numbers to take off residents who moved out or died (number -> their ids)."""
        released = [{"number": n, "resident_id": rid} for n, ids in releases.items() for rid in ids]
        for start in range(0, len(released), STAGE_CHUNK):
            await self.session.execute(insert(self.releases), released[start : start + STAGE_CHUNK])

    async def blocking_others(self) -> bool:
        """PostgreSQL: whether another session waits for a lock this one holds."""
        waiting = await self.session.scalar(
            text(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity "
                "WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid)))"
            )
        )
        return bool(waiting)

    async def bump_revision(self) -> int:
        """Move the registry revision once for the whole import and return it.

        The first statement under the lock, and a write: on SQLite it takes the write lock
        before anything is read, so no snapshot can go stale between read and write.
        """
        bumped = await self.session.execute(
            update(REVISION)
            .where(REVISION.c.key == "resident")
            .values(value=REVISION.c.value + 1)
            .returning(REVISION.c.value)
        )
        value = bumped.scalar()
        if value is None:  # a database that was not made by the migrations
            await self.session.execute(insert(REVISION).values(key="resident", value=1))
            value = 1
        return int(value)

    async def write(self, *, revision: int, now: datetime) -> int:
        """Move the staged rows into the registry (the caller holds its write lock).

        Returns the base new SQLite ids were counted from (a new row's id is base + ord;
        0 on PostgreSQL, whose ids were reserved while staging).
        """
        s, execute = self.residents, self.session.execute
        base = 0
        if self.dialect != "postgresql":
            base = int(
                (await execute(select(func.coalesce(func.max(RESIDENT.c.id), 0)))).scalar_one()
            )
        rev = literal(revision, BigId)
        # numbers taken off residents who moved out or died, then what updates replace
        gone = select(self.releases.c.number).scalar_subquery()
        await execute(delete(PHONE).where(PHONE.c.number.in_(gone)))
        await execute(
            update(RESIDENT)
            .where(RESIDENT.c.id.in_(select(self.releases.c.resident_id).scalar_subquery()))
            .values(revision=rev, updated_at=now)
        )
        for table, flag in ((PHONE, s.c.replace_phones), (CONTACT, s.c.replace_contacts)):
            replaced = select(s.c.id).where(s.c.is_new.is_(False), flag.is_(True)).scalar_subquery()
            await execute(delete(table).where(table.c.resident_id.in_(replaced)))
        await execute(
            update(RESIDENT)
            .where(RESIDENT.c.id == s.c.id, s.c.is_new.is_(False))
            .values({name: s.c[name] for name in UPDATED} | {"revision": rev})
        )
        new_id = func.coalesce(s.c.id, literal(base, BigId) + s.c.ord)
        columns = [c.name for c in RESIDENT.columns]
        picked = [
            new_id if name == "id" else rev if name == "revision" else s.c[name] for name in columns
        ]
        await execute(
            insert(RESIDENT).from_select(columns, select(*picked).where(s.c.is_new.is_(True)))
        )
        owner = {
            table: func.coalesce(table.c.resident_id, literal(base, BigId) + table.c.ord)
            for table in (self.phones, self.contacts, self.statuses)
        }
        p = self.phones
        await execute(
            insert(PHONE).from_select(
                ["resident_id", "number", "kind"], select(owner[p], p.c.number, p.c.kind)
            )
        )
        c = self.contacts
        contact_columns = [
            "position",
            "name",
            "relation",
            "phone",
            "phones",
            "kind",
            "when_to_call",
        ]
        await execute(
            insert(CONTACT).from_select(
                ["resident_id", *contact_columns],
                select(owner[c], *(c.c[n] for n in contact_columns)),
            )
        )
        t = self.statuses
        status_columns = ["from_status", "to_status", "reason", "by", "at"]
        await execute(
            insert(STATUS).from_select(
                ["resident_id", *status_columns],
                select(owner[t], *(t.c[n] for n in status_columns)),
            )
        )
        return base
