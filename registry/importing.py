"""Import residents (with their emergency contacts) and merchants from the CSV / XLSX files
a community office keeps after door-to-door surveys.

One file is one transaction: every row is checked first and every bad row reported with
its line number and reason; if any row is bad nothing is written. A dry run does the same
checks and writes nothing, so it shows exactly what a real run would change. Rows are
matched to stored records (residents by ID number, else by name and address; merchants by
external code, else by name and address) and written only when something differs, so
importing the same file twice changes nothing the second time. Columns missing from a file
leave the stored values alone.

One phone, one resident, as on the API (`repository.phone_owner` decides for both): a row
whose phone another registered or suspended resident calls from is refused, naming that
resident's id; two rows of one file with the same phone are both refused, each naming the
other's line; a number left on a resident who moved out or died passes to the new one.

A residents file of 100,000 rows is checked without holding the write lock: batched
queries (a few per 500 rows, never one per row), validation in slices that give the event
loop a turn every SLICE_S, rows staged in temporary tables as they pass (`registry.bulk`)
and freed, full garbage collections put off; so calls, logins and tickets go on. The
staged rows are then written set-based in one transaction that re-checks only the
residents changed since the file was read. The longest hold of the write lock is that
write on SQLite (about 1 s for 100,000 new residents) and, on PostgreSQL, where the rows
are written before the lock is taken, the event and the commit (tens of ms; see
`_write_residents`). `should_stop` (the console: the client went away) is asked at every
slice; the import then stops with `Stopped` and writes nothing. Merchants files are
small and keep the simple path: one row at a time in the caller's transaction.

Log lines carry counts and line numbers only: never a name, an address or a condition.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlmodel import col

from eventlog.db import utcnow
from registry import repository as repo
from registry.bulk import NewResident, Staging
from registry.models import (
    EmergencyContact,
    Grid,
    Merchant,
    PriceKind,
    RegistryRevision,
    Resident,
    ResidentPhone,
    ServiceCategory,
)
from registry.names import pinyin_keys
from registry.phones import mask
from registry.schemas import CONTROL, ContactIn, MerchantIn, PhoneIn, ResidentIn
from registry.tabular import BadFile, read_table

log = logging.getLogger(__name__)

LIST_SPLIT = re.compile(r"[;；,，、/|\n]+")
MAX_CONTACTS = 5
#: the longest stretch of checking before the event loop gets a turn
SLICE_S = 0.01
#: at most this many errors and changes in the JSON report (the counts are always whole)
MAX_LISTED = 1000

#: resident columns: field -> header names accepted (Chinese as offices write them)
RESIDENT_COLUMNS: dict[str, tuple[str, ...]] = {
    "name": ("姓名", "name"),
    "sex": ("性别", "sex"),
    "birth_year": ("出生年份", "出生年", "birth_year"),
    "id_number": ("身份证号", "身份证号码", "身份证", "id_number"),
    "phones": ("电话", "联系电话", "phones", "phone"),
    "address": ("地址", "住址", "address"),
    "building": ("楼栋", "栋", "building"),
    "unit": ("单元", "unit"),
    "room": ("房号", "室", "room"),
    "grid": ("网格", "grid", "grid_code"),
    "community": ("社区", "community"),
    "lat": ("纬度", "lat"),
    "lon": ("经度", "lon"),
    "groups": ("类别", "人员类别", "groups"),
    "mobility": ("行动能力", "mobility"),
    "hearing": ("听力", "hearing"),
    "sight": ("视力", "sight"),
    "dialect": ("方言", "dialect"),
    "conditions": ("慢性病", "conditions"),
    "medicines": ("用药", "medicines"),
    "risk_notes": ("风险提示", "risk_notes"),
    "key_holder": ("钥匙保管人", "key_holder"),
    "key_safe": ("钥匙盒", "key_safe"),
    "health_notes": ("健康备注", "health_notes"),
    "usual_pharmacy": ("常用药房", "usual_pharmacy"),
    "notes": ("备注", "话务备注", "notes"),
    "status": ("状态", "status"),
    "status_reason": ("状态说明", "status_reason"),
}
CONTACT_FIELDS: dict[str, tuple[str, ...]] = {
    "name": ("姓名", "name"),
    "relation": ("关系", "relation"),
    "kind": ("类型", "kind"),
    "phones": ("电话", "phones"),
    "when_to_call": ("何时联系", "when_to_call"),
}
MERCHANT_COLUMNS: dict[str, tuple[str, ...]] = {
    "external_code": ("编号", "商家编号", "external_code", "code"),
    "name": ("名称", "商家名称", "name"),
    "kind": ("类型", "kind"),
    "address": ("地址", "address"),
    "grid": ("网格", "所在网格", "grid", "grid_code"),
    "lat": ("纬度", "lat"),
    "lon": ("经度", "lon"),
    "service_grids": ("服务网格", "service_grids"),
    "radius_m": ("服务半径", "服务半径米", "radius_m"),
    "capacity": ("接单上限", "capacity"),
    "hours": ("营业时间", "hours"),
    "holidays": ("节假日", "holidays"),
    "phones": ("接单电话", "电话", "phones"),
    "services": ("服务", "服务项目", "services"),
    "contract_status": ("合同状态", "contract_status"),
    "contract_start": ("合同开始", "contract_start"),
    "contract_end": ("合同结束", "contract_end"),
    "contract_signed_by": ("签约人", "contract_signed_by"),
}
STATUS_WORDS = {"在册": "registered", "暂停": "suspended", "迁出": "moved_out", "已故": "deceased"}
CONTRACT_WORDS = {"有效": "active", "暂停": "suspended", "终止": "ended", "到期": "ended"}
CONTACT_KIND_WORDS = {
    "家属": "family",
    "邻居": "neighbour",
    "网格员": "grid_worker",
    "社区": "community_staff",
}


@dataclass(slots=True)
class RowError:
    """One bad row: where, a machine-readable code, why in words, and ids that help fix it
    (`resident_id` of a phone's owner, `other_lines` sharing it, the number masked)."""

    line: int
    code: str
    reason: str
    extra: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        """JSON shape."""
        return {"line": self.line, "code": self.code, "reason": self.reason, **self.extra}


@dataclass(slots=True)
class RowChange:
    """What the import does (or would do) with one good row."""

    line: int
    action: str  # create | update | unchanged
    record_id: int | None
    fields: list[str]

    def public(self) -> dict[str, Any]:
        """JSON shape."""
        return {
            "line": self.line,
            "action": self.action,
            "id": self.record_id,
            "fields": self.fields,
        }


@dataclass(slots=True)
class ImportReport:
    """The outcome of one file."""

    kind: str
    dry_run: bool
    encoding: str = ""
    rows: int = 0
    errors: list[RowError] = field(default_factory=list)
    changes: list[RowChange] = field(default_factory=list)
    committed: bool = False
    #: (resident id, id of the resident who took their number): moved out or died residents
    #: whose number a row of this file now holds
    released: list[tuple[int, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every row was good."""
        return not self.errors

    def count(self, action: str) -> int:
        """How many rows have an action."""
        return sum(1 for c in self.changes if c.action == action)

    def public(self) -> dict[str, Any]:
        """JSON shape for the console: counts, and the first MAX_LISTED errors and changes
        (`more_errors` / `more_changes` say how many more there are)."""
        changed = [c for c in self.changes if c.action != "unchanged"]
        return {
            "kind": self.kind,
            "dry_run": self.dry_run,
            "encoding": self.encoding,
            "rows": self.rows,
            "ok": self.ok,
            "committed": self.committed,
            "created": self.count("create"),
            "updated": self.count("update"),
            "unchanged": self.count("unchanged"),
            "errors": [e.public() for e in self.errors[:MAX_LISTED]],
            "more_errors": max(0, len(self.errors) - MAX_LISTED),
            "changes": [c.public() for c in changed[:MAX_LISTED]],
            "more_changes": max(0, len(changed) - MAX_LISTED),
        }

    def summary(self) -> dict[str, Any]:
        """Counts only (no row contents): what an event-log entry may carry."""
        return {
            "kind": self.kind,
            "rows": self.rows,
            "created": self.count("create"),
            "updated": self.count("update"),
            "unchanged": self.count("unchanged"),
        }

    def lines(self) -> list[str]:
        """A plain report for the terminal."""
        mode = "dry run" if self.dry_run else ("imported" if self.committed else "NOT imported")
        out = [
            f"{self.kind}: {self.rows} rows ({self.encoding}) - {mode}: "
            f"{self.count('create')} new, {self.count('update')} changed, "
            f"{self.count('unchanged')} unchanged, {len(self.errors)} bad"
        ]
        out += [f"  line {e.line}: {e.reason} [{e.code}]" for e in self.errors]
        out += [
            f"  line {c.line}: {c.action} #{c.record_id or 'new'} ({', '.join(c.fields)})"
            for c in self.changes
            if c.action != "unchanged"
        ]
        return out


#: called with the report of a good, real run while its transaction is still open
BeforeCommit = Callable[[ImportReport], Awaitable[None]]
#: the short transaction a checked file is committed in, on the session given: the caller
#: takes its write lock, commits on a clean exit and rolls back on an exception; while it
#: waits for the lock it awaits the callable given (if any), which may raise to give up
FinalStep = Callable[
    [AsyncSession, Callable[[], Awaitable[None]] | None], AbstractAsyncContextManager[object]
]


class Stopped(Exception):
    """The import was asked to stop (its client went away); nothing was written."""


async def pause() -> None:
    """Give the event loop a turn (a test may replace it to hold an import half way)."""
    await asyncio.sleep(0)


_deferring = 0
_thresholds: tuple[int, int, int] = (0, 0, 0)


@contextlib.contextmanager
def _full_collections_deferred() -> Iterator[None]:
    """No full garbage collection while a big file is checked (young ones still run).

    A full collection walks every object of the process (~300,000 after start, most of
    them the pinyin dictionary) and stops the event loop for 100-300 ms; the rows of an
    import outlive the young generations, and CPython's heuristic then ran a full
    collection about every second of the import. They are put off until the import ends
    (one collection then, as would have happened anyway); a counter lets imports overlap.
    """
    global _deferring, _thresholds
    if _deferring == 0:
        _thresholds = gc.get_threshold()
        gc.set_threshold(_thresholds[0], _thresholds[1], 1_000_000)
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if _deferring == 0:
            gc.set_threshold(*_thresholds)


class _Pacer:
    """Hands the event loop a turn after every SLICE_S of work, and stops when asked."""

    def __init__(self, should_stop: Callable[[], bool] | None) -> None:
        self._should_stop = should_stop
        self._since = float("-inf")
        self.line = 0

    async def tick(self, *, now: bool = False) -> None:
        """Called often; cheap unless a slice is over (or `now`)."""
        if not now and time.perf_counter() - self._since < SLICE_S:
            return
        await pause()
        self._since = time.perf_counter()
        if self._should_stop is not None and self._should_stop():
            raise Stopped(f"stopped at line {self.line}")


def _columns(header: list[str], spec: dict[str, tuple[str, ...]]) -> dict[str, int]:
    found: dict[str, int] = {}
    for key, names in spec.items():
        for name in names:
            if name.lower() in header:
                found[key] = header.index(name.lower())
                break
    return found


def _contact_columns(header: list[str]) -> dict[int, dict[str, int]]:
    """联系人1姓名 / contact1_name style columns, by contact number."""
    out: dict[int, dict[str, int]] = {}
    for n in range(1, MAX_CONTACTS + 1):
        cols: dict[str, int] = {}
        for key, names in CONTACT_FIELDS.items():
            for name in names:
                for candidate in (f"联系人{n}{name}", f"contact{n}_{name}"):
                    if candidate.lower() in header:
                        cols[key] = header.index(candidate.lower())
        if cols:
            out[n] = cols
    return out


def _control_cell(line: int, header: list[str], cells: list[str]) -> RowError | None:
    """The first cell with a control character (a NUL, say), before it reaches a query."""
    for i, cell in enumerate(cells):
        if CONTROL.search(cell):
            column = header[i] if i < len(header) and not CONTROL.search(header[i]) else i + 1
            return RowError(
                line, "control_character", f"{column}: control characters are not allowed"
            )
    return None


def _split(text: str) -> list[str]:
    return [part.strip() for part in LIST_SPLIT.split(text) if part.strip()]


def _error_from_validation(line: int, exc: ValidationError) -> list[RowError]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = [str(p) for p in err["loc"]]
        where = ".".join(loc) or "row"
        message = str(err["msg"]).removeprefix("Value error, ")
        if "phone" in where or "phone" in message:
            code = "bad_phone"
        elif loc and loc[0] == "name" and err["type"] in ("missing", "string_too_short"):
            code, message = "missing_name", "the name is missing"
        elif loc and loc[0] == "id_number":
            code, message = (
                "bad_id_number",
                "the ID number is not 18 characters (17 digits + digit/X)",
            )
        else:
            code = "invalid"
        out.append(RowError(line, code, f"{where}: {message}"))
    return out


class _Lookups:
    """Grids, merchants and categories by every name a file may use for them."""

    def __init__(self) -> None:
        self.grids: dict[str, str] = {}
        self.merchants: dict[str, int] = {}
        self.categories: dict[str, str] = {}

    @property
    def grid_codes(self) -> set[str]:
        """Every grid code."""
        return set(self.grids.values())

    @property
    def merchant_ids(self) -> set[int]:
        """Every merchant id."""
        return set(self.merchants.values())

    async def load(self, session: AsyncSession) -> None:
        for code, name in (await session.execute(select(col(Grid.code), col(Grid.name)))).all():
            self.grids[code.lower()] = code
            self.grids[name.lower()] = code
        rows: list[Any] = list(
            (
                await session.execute(
                    select(col(Merchant.id), col(Merchant.name), col(Merchant.external_code))
                )
            ).all()
        )
        for mid, name, code in rows:
            self.merchants.setdefault(name.lower(), mid)
            if code:
                self.merchants[code.lower()] = mid
            self.merchants[str(mid)] = mid
        for code, zh, en in (
            await session.execute(
                select(
                    col(ServiceCategory.code),
                    col(ServiceCategory.name_zh),
                    col(ServiceCategory.name_en),
                )
            )
        ).all():
            for key in (code, zh, en):
                self.categories[key.lower()] = code


def _resident_values(
    line: int,
    cells: Sequence[str],
    cols: dict[str, int],
    contact_cols: dict[int, dict[str, int]],
    lookups: _Lookups,
    errors: list[RowError],
) -> dict[str, Any]:
    """The fields a row sets, as ResidentIn input (lookup failures go to `errors`)."""
    raw = {key: cells[i].strip() for key, i in cols.items()}
    values: dict[str, Any] = {}
    for key, text in raw.items():
        if key in ("grid", "usual_pharmacy", "phones", "groups", "status"):
            continue
        if key in ("birth_year", "lat", "lon"):
            values[key] = text or None
        else:
            values[key] = text
    if "grid" in raw:
        code = lookups.grids.get(raw["grid"].lower())
        if code is None:
            errors.append(RowError(line, "unknown_grid", f"unknown grid {raw['grid']!r}"))
        values["grid_code"] = code or raw["grid"]
    if "usual_pharmacy" in raw:
        if raw["usual_pharmacy"]:
            mid = lookups.merchants.get(raw["usual_pharmacy"].lower())
            if mid is None:
                errors.append(RowError(line, "unknown_merchant", "unknown usual pharmacy"))
            values["usual_pharmacy_id"] = mid
        else:
            values["usual_pharmacy_id"] = None
    if "phones" in raw:
        values["phones"] = [
            {"number": n, "kind": "mobile" if re.sub(r"\D", "", n).startswith("1") else "landline"}
            for n in _split(raw["phones"])
        ]
    if "groups" in raw:
        values["groups"] = _split(raw["groups"])
    if raw.get("status"):
        values["status"] = STATUS_WORDS.get(raw["status"], raw["status"])
    if contact_cols:
        contacts = []
        for n in sorted(contact_cols):
            c = {key: cells[i].strip() for key, i in contact_cols[n].items()}
            if not any(c.values()):
                continue
            contacts.append(
                {
                    "name": c.get("name", ""),
                    "relation": c.get("relation", ""),
                    "kind": CONTACT_KIND_WORDS.get(c.get("kind", ""), c.get("kind") or "family"),
                    "phones": _split(c.get("phones", "")),
                    "when_to_call": c.get("when_to_call", ""),
                }
            )
        values["contacts"] = contacts
    return values


#: rows checked (and staged) together: one batch of lookups, one staging chunk
CHUNK_ROWS = 500


@dataclass(slots=True)
class _Plan:
    """What checking a residents file decided so far, kept small: a 100,000-row file must
    not leave millions of objects for the garbage collector to walk while the event loop
    waits (rows are checked and staged a chunk at a time, then dropped)."""

    revision: int
    lookups: _Lookups
    #: the staging tables, while the file is good and not a dry run
    staging: Staging | None
    rows: int = 0
    #: per staged row: the report's change, its number in the file, the id it was given
    #: (an update's resident, an id from the sequence, or None: SQLite numbers it at write)
    staged: list[tuple[RowChange, int, int | None]] = field(default_factory=list)
    #: stored residents the file changes, by id -> line
    matched: dict[int, int] = field(default_factory=dict)
    #: new residents' ID numbers and (name, address ...) keys -> line
    new_ids: dict[str, int] = field(default_factory=dict)
    new_people: dict[tuple[str, ...], int] = field(default_factory=dict)
    #: numbers a row gives a resident who does not hold them yet -> (line, row number)
    claims: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: the stored resident (None: new) of each row number with a claim
    claimant: dict[int, int | None] = field(default_factory=dict)
    #: every number on the file's rows -> the lines it is on
    lines_of: dict[str, int | list[int]] = field(default_factory=dict)
    #: number -> residents (moved out or died) it is taken off
    releases: dict[str, list[int]] = field(default_factory=dict)
    seen_ids: dict[str, int] = field(default_factory=dict)
    seen_people: dict[tuple[str, ...], int] = field(default_factory=dict)

    def on_line(self, number: str, line: int) -> None:
        """Note that a number is on a line (a number on two lines is refused on both)."""
        found = self.lines_of.get(number)
        if found is None:
            self.lines_of[number] = line
        elif isinstance(found, int):
            if found != line:
                self.lines_of[number] = [found, line]
        elif line not in found:
            found.append(line)


async def import_residents(
    session: AsyncSession,
    *,
    name: str,
    data: bytes,
    dry_run: bool,
    actor: str,
    before_commit: BeforeCommit | None = None,
    final: FinalStep | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ImportReport:
    """Check and (unless a dry run, or any row is bad) write a residents file.

    `session` reads the registry and is rolled back at the end; the rows are staged and
    written on a second session of the same engine, which only `final` commits (the
    console: a unit of work holding the write lock; by default the staging session is
    simply committed). `before_commit` runs in that final step just before the commit
    (the console writes its event-log entry there, so the rows and the entry commit
    together). Nothing of a bad, stopped or failed file is ever written. `should_stop`
    raises `Stopped` at the next slice of work.
    """
    report = ImportReport(kind="residents", dry_run=dry_run)
    pacer = _Pacer(should_stop)
    with _full_collections_deferred():
        await _import_residents(
            session,
            report,
            name=name,
            data=data,
            actor=actor,
            before_commit=before_commit,
            final=final,
            pacer=pacer,
        )
    _log_report(report, actor)
    return report


async def _import_residents(
    session: AsyncSession,
    report: ImportReport,
    *,
    name: str,
    data: bytes,
    actor: str,
    before_commit: BeforeCommit | None,
    final: FinalStep | None,
    pacer: _Pacer,
) -> None:
    dry_run = report.dry_run
    engine = session.bind.engine if isinstance(session.bind, AsyncConnection) else session.bind
    assert isinstance(engine, AsyncEngine), "an import needs a session bound to an engine"
    # one connection for the staging tables from their creation to their drop, which
    # comes after the final step's commit, outside the caller's lock
    async with (
        engine.connect() as connection,
        AsyncSession(bind=connection, expire_on_commit=False) as stage_session,
    ):
        staging = None if dry_run else Staging(stage_session)
        try:
            plan = await _check_residents(
                session, report, name=name, data=data, staging=staging, actor=actor, pacer=pacer
            )
            await session.rollback()  # it only read
            if plan is None or report.errors or dry_run:
                raise _Refused
            assert staging is not None
            await pacer.tick(now=True)  # a client gone by now still stops the import
            await _write_residents(
                stage_session,
                report,
                plan,
                staging,
                actor=actor,
                final=final or _commit,
                before_commit=before_commit,
            )
            await staging.drop()
            await stage_session.commit()
        except _Refused:
            await _discard(session, stage_session, staging)
        except (Stopped, asyncio.CancelledError):
            await _discard(session, stage_session, staging)
            log.info(
                "import residents by %s stopped at line %d: nothing was written", actor, pacer.line
            )
            raise
        except BaseException:
            await _discard(session, stage_session, staging)
            raise


async def _discard(
    session: AsyncSession, stage_session: AsyncSession, staging: Staging | None
) -> None:
    """Nothing of this file stays: both sessions rolled back, the staging tables dropped
    (a PostgreSQL rollback drops them; SQLite made them outside the transaction)."""
    await stage_session.rollback()
    await session.rollback()
    if staging is not None:
        await staging.drop()
        await stage_session.commit()


@contextlib.asynccontextmanager
async def _commit(
    session: AsyncSession, waiting: Callable[[], Awaitable[None]] | None
) -> AsyncIterator[None]:
    """The final step without a caller's lock: commit, or roll back on an exception."""
    try:
        yield
    except BaseException:
        await session.rollback()
        raise
    await session.commit()


_Chunk = list[tuple[int, tuple[str, ...]]]


def _read(name: str, data: bytes) -> tuple[list[str], list[_Chunk], int, str]:
    """`read_table` in chunks of CHUNK_ROWS rows, each row's cells a tuple: a chunk is
    freed once checked (freeing 100,000 rows at once stops the event loop for a while),
    and a tuple of strings costs the garbage collector nothing."""
    header, body, encoding = read_table(name, data)
    chunks = [
        [(line, tuple(cells)) for line, cells in body[start : start + CHUNK_ROWS]]
        for start in range(0, len(body), CHUNK_ROWS)
    ]
    return header, chunks, len(body), encoding


async def _check_residents(
    session: AsyncSession,
    report: ImportReport,
    *,
    name: str,
    data: bytes,
    staging: Staging | None,
    actor: str,
    pacer: _Pacer,
) -> _Plan | None:
    """Every row checked against the registry as it is now, and staged while the file is
    good; no write to the registry, no lock."""
    try:
        # openpyxl takes seconds for a big workbook: not on the event loop's thread
        header, chunks, report.rows, report.encoding = await asyncio.to_thread(_read, name, data)
    except BadFile as exc:
        report.errors.append(RowError(0, "bad_file", str(exc)))
        return None
    cols = _columns(header, RESIDENT_COLUMNS)
    contact_cols = _contact_columns(header)
    if "name" not in cols:
        report.errors.append(RowError(1, "bad_header", "no name column (姓名)"))
        return None
    # read before anything else: a change made from here on has a newer revision, and the
    # write step re-checks exactly those
    plan = _Plan(revision=await _registry_revision(session), lookups=_Lookups(), staging=staging)
    await plan.lookups.load(session)
    if staging is not None:
        await staging.create()
    now = utcnow()
    chunks.reverse()
    while chunks:
        good = await _check_chunk(
            session, report, plan, chunks.pop(), header, cols, contact_cols, pacer
        )
        if staging is not None and not report.errors and good:
            await _stage_chunk(staging, plan, good, actor=actor, now=now, pacer=pacer)
    await _check_phones(session, report, plan, pacer)
    if staging is not None and not report.errors and plan.releases:
        await staging.stage_releases(plan.releases)
    return plan


async def _check_chunk(
    session: AsyncSession,
    report: ImportReport,
    plan: _Plan,
    chunk: _Chunk,
    header: list[str],
    cols: dict[str, int],
    contact_cols: dict[int, dict[str, int]],
    pacer: _Pacer,
) -> list[tuple[int, ResidentIn, int | None, str]]:
    """Check some rows; returns the good ones that create or change a resident, each with
    its row number, data, stored resident (None: new) and stored status."""
    rows: list[tuple[int, dict[str, Any], bool]] = []
    for line, cells in chunk:
        pacer.line = line
        await pacer.tick()
        before = len(report.errors)
        if bad := _control_cell(line, header, list(cells)):
            report.errors.append(bad)
            continue
        values = _resident_values(line, cells, cols, contact_cols, plan.lookups, report.errors)
        id_number = str(values.get("id_number") or "").strip().upper()
        if id_number:
            if id_number in plan.seen_ids:
                report.errors.append(
                    RowError(
                        line,
                        "duplicate_id_number",
                        f"duplicate ID number (also on line {plan.seen_ids[id_number]})",
                    )
                )
                continue
            plan.seen_ids[id_number] = line
        person = _person(values)
        if not id_number and person in plan.seen_people:
            report.errors.append(
                RowError(
                    line,
                    "duplicate_row",
                    f"same name and address as line {plan.seen_people[person]}",
                )
            )
            continue
        plan.seen_people.setdefault(person, line)
        rows.append((line, values, len(report.errors) == before))

    matches = await _match(session, rows, pacer)
    stored = await _stored(session, sorted(set(matches.values())), pacer)
    good: list[tuple[int, ResidentIn, int | None, str]] = []
    for line, values, lookups_ok in rows:
        pacer.line = line
        await pacer.tick()
        rid = matches.get(line)
        old, old_status = stored[rid] if rid is not None else (None, "")
        merged = old.model_dump(exclude={"status_reason"}) | values if old else dict(values)
        try:
            resident = ResidentIn.model_validate(merged)
        except ValidationError as exc:
            report.errors.extend(_error_from_validation(line, exc))
            continue
        if "phones" in values:
            for phone in resident.phones:
                plan.on_line(phone.number, line)
        if not lookups_ok:
            continue
        problem = _registry_problem(line, resident, plan.lookups)
        if problem is not None:
            report.errors.append(problem)
            continue
        changes = repo.resident_changes(old, resident)
        action = "create" if rid is None else ("update" if changes else "unchanged")
        change = RowChange(line, action, rid, changes)
        report.changes.append(change)
        if action == "unchanged":
            continue
        plan.rows += 1
        n = plan.rows
        held = {p.number for p in old.phones} if old is not None else set()
        for phone in resident.phones:
            if phone.number not in held:
                plan.claims.setdefault(phone.number, (line, n))
                plan.claimant[n] = rid
        if rid is None:
            if resident.id_number:
                plan.new_ids[resident.id_number] = line
            plan.new_people[
                (resident.name, resident.address, resident.building, resident.unit, resident.room)
            ] = line
        else:
            plan.matched[rid] = line
        plan.staged.append((change, n, rid))
        good.append((n, resident, rid, old_status))
    return good


async def _stage_chunk(
    staging: Staging,
    plan: _Plan,
    good: list[tuple[int, ResidentIn, int | None, str]],
    *,
    actor: str,
    now: Any,
    pacer: _Pacer,
) -> None:
    """Put checked rows in the staging tables (new residents get their ids here on
    PostgreSQL, from the sequence)."""
    ids = iter(await staging.reserve_ids(sum(1 for _, _, rid, _ in good if rid is None)))
    rows = []
    for n, resident, rid, old_status in good:
        given = rid if rid is not None else next(ids, None)
        if rid is None and given is not None:
            change, _, _ = plan.staged[n - 1]
            plan.staged[n - 1] = (change, n, given)
        rows.append(
            _staged(n, given, resident, rid is None, plan.staged[n - 1][0], old_status, now)
        )
    await staging.fill(rows, actor=actor, now=now, tick=pacer.tick)


async def _registry_revision(session: AsyncSession) -> int:
    value = await session.scalar(
        select(col(RegistryRevision.value)).where(col(RegistryRevision.key) == "resident")
    )
    return int(value or 0)


def _person(values: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(values.get(k, "")) for k in ("name", "address", "building", "unit", "room"))


async def _match(
    session: AsyncSession, rows: list[tuple[int, dict[str, Any], bool]], pacer: _Pacer
) -> dict[int, int]:
    """The stored resident each row means (`repository.find_resident_for`, in batches):
    same ID number, else same name and address (the oldest such record)."""
    by_id: dict[str, int] = {}
    wanted = sorted({str(v.get("id_number") or "").strip().upper() for _, v, _ in rows} - {""})
    for start in range(0, len(wanted), repo.IN_CHUNK):
        await pacer.tick()
        pairs: list[Any] = list(
            (
                await session.execute(
                    select(col(Resident.id_number), col(Resident.id)).where(
                        col(Resident.id_number).in_(wanted[start : start + repo.IN_CHUNK])
                    )
                )
            ).all()
        )
        by_id.update((str(number), int(rid)) for number, rid in pairs)
    out: dict[int, int] = {}
    rest: list[tuple[int, tuple[str, ...]]] = []
    for line, values, _ in rows:
        rid = by_id.get(str(values.get("id_number") or "").strip().upper())
        if rid is not None:
            out[line] = rid
        else:
            rest.append((line, _person(values)))
    names = sorted({person[0] for _, person in rest})
    by_person: dict[tuple[str, ...], int] = {}
    for start in range(0, len(names), repo.IN_CHUNK):
        await pacer.tick()
        stored: list[Any] = list(
            (
                await session.execute(
                    select(
                        col(Resident.id),
                        col(Resident.name),
                        col(Resident.address),
                        col(Resident.building),
                        col(Resident.unit),
                        col(Resident.room),
                    )
                    .where(col(Resident.name).in_(names[start : start + repo.IN_CHUNK]))
                    .order_by(col(Resident.id))
                )
            ).all()
        )
        for found in stored:
            by_person.setdefault(tuple(str(v) for v in found[1:]), int(found[0]))
    for line, person in rest:
        if person in by_person:
            out[line] = by_person[person]
    return out


async def _stored(
    session: AsyncSession, ids: list[int], pacer: _Pacer
) -> dict[int, tuple[ResidentIn, str]]:
    """Stored residents as written (`repository.resident_input`, in batches), with their
    status; plain rows, so the session's identity map stays empty however big the file."""
    out: dict[int, tuple[ResidentIn, str]] = {}
    residents = Resident.__table__  # type: ignore[attr-defined]
    phone_t = ResidentPhone.__table__  # type: ignore[attr-defined]
    contact_t = EmergencyContact.__table__  # type: ignore[attr-defined]
    skip = {"id", "created_at", "updated_at", "revision", "name_pinyin", "name_initials"}
    for start in range(0, len(ids), repo.IN_CHUNK):
        await pacer.tick()
        chunk = ids[start : start + repo.IN_CHUNK]
        phones: dict[int, list[PhoneIn]] = {}
        found = await session.execute(
            select(phone_t.c.resident_id, phone_t.c.number, phone_t.c.kind)
            .where(phone_t.c.resident_id.in_(chunk))
            .order_by(phone_t.c.id)
        )
        for owner, number, kind in found.all():
            phones.setdefault(owner, []).append(PhoneIn.model_construct(number=number, kind=kind))
        contacts: dict[int, list[ContactIn]] = {}
        found = await session.execute(
            select(contact_t)
            .where(contact_t.c.resident_id.in_(chunk))
            .order_by(contact_t.c.position, contact_t.c.id)
        )
        for c in found.mappings():
            contacts.setdefault(c["resident_id"], []).append(
                ContactIn.model_construct(
                    name=c["name"],
                    relation=c["relation"],
                    kind=c["kind"],
                    phones=list(c["phones"] or [c["phone"]]),
                    when_to_call=c["when_to_call"],
                )
            )
        found = await session.execute(select(residents).where(residents.c.id.in_(chunk)))
        for row in found.mappings():
            rid = int(row["id"])
            written = ResidentIn.model_construct(
                **{k: v for k, v in row.items() if k not in skip},
                status_reason="",
                phones=phones.get(rid, []),
                contacts=contacts.get(rid, []),
            )
            out[rid] = (written, str(getattr(row["status"], "value", row["status"])))
    return out


def _registry_problem(line: int, data: ResidentIn, lookups: _Lookups) -> RowError | None:
    """`repository.check_resident`, on the lookups already loaded."""
    if data.grid_code not in lookups.grid_codes:
        return RowError(line, "unknown_grid", f"unknown grid {data.grid_code!r}")
    wanted = {data.usual_pharmacy_id, *data.preferred_merchants.values()} - {None}
    missing = sorted(m for m in wanted if m is not None and m not in lookups.merchant_ids)
    if missing:
        return RowError(line, "invalid", f"unknown merchant {missing[0]}")
    return None


def _phone_taken(line: int, number: str, owner: int) -> RowError:
    return RowError(
        line,
        "phone_taken",
        f"phone {mask(number)} already belongs to resident {owner}; a number belongs to one "
        "resident: take it off that resident first if it has really changed hands",
        {"resident_id": owner, "number": mask(number)},
    )


def _changed_meanwhile(line: int, what: str) -> RowError:
    return RowError(
        line,
        "changed_meanwhile",
        f"{what} changed while this file was being checked; nothing was imported: "
        "import the file again",
    )


async def _check_phones(
    session: AsyncSession, report: ImportReport, plan: _Plan, pacer: _Pacer
) -> None:
    """One phone, one resident: across the file's rows, then against the registry."""
    shared = {n: lines for n, lines in plan.lines_of.items() if isinstance(lines, list)}
    for number, lines in sorted(shared.items()):
        for line in lines:
            others = [other for other in lines if other != line]
            report.errors.append(
                RowError(
                    line,
                    "duplicate_phone",
                    f"phone {mask(number)} is also on line "
                    f"{', '.join(str(o) for o in others)}; a number belongs to one resident",
                    {"number": mask(number), "other_lines": others},
                )
            )
    claims = [n for n in plan.claims if n not in shared]
    holders = await repo.phone_holders(session, numbers=claims)
    await pacer.tick()
    for number in claims:
        await pacer.tick()
        line, n = plan.claims[number]
        found = holders.get(number, [])
        owner = repo.phone_owner(found, resident_id=plan.claimant[n])
        if owner is not None:
            report.errors.append(_phone_taken(line, number, owner))
            continue
        released = repo.phones_to_release(found, resident_id=plan.claimant[n])
        if released:
            plan.releases[number] = released
    report.errors.sort(key=lambda e: e.line)


class _Refused(Exception):
    """The file is not written: a bad row, a dry run, or the registry changed under it."""


class _GiveWay(Exception):
    """Another writer waits for a row this import holds while the import waits for the
    write lock (which that writer may hold): the import steps back."""


async def _write_residents(
    stage_session: AsyncSession,
    report: ImportReport,
    plan: _Plan,
    staging: Staging,
    *,
    actor: str,
    final: FinalStep,
    before_commit: BeforeCommit | None,
) -> None:
    """The final step: the staged rows written set-based, committed under the caller's lock.

    On PostgreSQL the rows are written first, in the final transaction but before the
    lock is taken (a few seconds for 100,000 rows, the registry revision's row lock held
    meanwhile, so resident edits wait but calls, logins and tickets do not); the lock is
    then held for the event and the commit only. Should another writer wait for one of
    those rows while the import waits for the lock (a resident edit holding the lock),
    the import rolls the rows back to a savepoint and writes them again under the lock.
    SQLite has one writer at a time anyway: there everything is written under the lock
    (about 1 s for 100,000 new residents).
    """
    early = staging.dialect == "postgresql" and bool(plan.staged)
    began = time.perf_counter()
    locked = 0.0
    base = 0

    async def step_back_if_blocking() -> None:
        if await staging.blocking_others():
            raise _GiveWay

    try:
        savepoint = await stage_session.begin_nested() if early else None
        if early:
            base = await _write_staged(stage_session, report, plan, staging)
        try:
            async with final(stage_session, step_back_if_blocking if early else None):
                locked = time.perf_counter()
                if plan.staged and not early:  # else nothing changes: not even the revision
                    base = await _write_staged(stage_session, report, plan, staging)
                report.released = _released(plan, base)
                if before_commit is not None:
                    await before_commit(report)
        except _GiveWay:
            assert savepoint is not None
            log.info("import residents by %s: a resident edit waits; writing under the lock", actor)
            await savepoint.rollback()
            async with final(stage_session, None):
                locked = time.perf_counter()
                base = await _write_staged(stage_session, report, plan, staging)
                report.released = _released(plan, base)
                if before_commit is not None:
                    await before_commit(report)
    except _Refused:
        report.released = []
        raise
    finally:
        if locked:
            now = time.perf_counter()
            log.info(
                "import residents by %s: %d rows written in %.2f s, %.2f s of it "
                "under the write lock",
                actor,
                len(plan.staged),
                now - began,
                now - locked,
            )
    report.committed = True
    for change, n, given in plan.staged:  # the ids of new residents
        change.record_id = given if given is not None else base + n


async def _write_staged(
    stage_session: AsyncSession, report: ImportReport, plan: _Plan, staging: Staging
) -> int:
    """Move the registry revision, re-check what changed since the file was read, and
    write the staged rows; returns the base of new SQLite ids."""
    revision = await staging.bump_revision()
    await _recheck(stage_session, report, plan, revision)
    if report.errors:
        raise _Refused
    try:
        return await staging.write(revision=revision, now=utcnow())
    except IntegrityError as exc:
        report.errors.append(_changed_meanwhile(0, "the registry"))
        raise _Refused from exc


def _staged(
    n: int,
    given: int | None,
    data: ResidentIn,
    new: bool,
    change: RowChange,
    old_status: str,
    now: Any,
) -> NewResident:
    values = data.model_dump(exclude={"phones", "contacts", "status_reason"})
    values["name_pinyin"], values["name_initials"] = pinyin_keys(data.name)
    values["created_at"] = now
    contacts = [
        {
            "name": c.name,
            "relation": c.relation,
            "kind": c.kind,
            "phone": c.phones[0],
            "phones": list(c.phones),
            "when_to_call": c.when_to_call,
        }
        for c in data.contacts
    ]
    return NewResident(
        ord=n,
        id=given,
        is_new=new,
        values=values,
        phones=[(p.number, p.kind) for p in data.phones]
        if new or "phones" in change.fields
        else None,
        contacts=contacts if new or "contacts" in change.fields else None,
        status_change=(old_status, data.status.value, data.status_reason)
        if data.status.value != old_status
        else None,
    )


def _released(plan: _Plan, base: int) -> list[tuple[int, int]]:
    """(resident who moved out or died, the resident now holding their number)."""
    out = []
    for number, released in sorted(plan.releases.items()):
        _, n = plan.claims[number]
        _, _, given = plan.staged[n - 1]
        out += [(rid, given if given is not None else base + n) for rid in released]
    return out


async def _recheck(session: AsyncSession, report: ImportReport, plan: _Plan, revision: int) -> None:
    """Under the lock: residents written since the file was checked must not change what
    was decided (a matched resident edited, a number given to someone, the same person
    registered meanwhile); those rows are refused and the file can simply be run again."""
    residents = Resident.__table__  # type: ignore[attr-defined]
    changed = list(
        (
            await session.execute(
                select(residents).where(
                    residents.c.revision > plan.revision, residents.c.revision < revision
                )
            )
        ).mappings()
    )
    if not changed:
        return
    ids = {int(r["id"]) for r in changed}
    released = {rid for owners in plan.releases.values() for rid in owners}
    for rid in sorted(ids & (set(plan.matched) | released)):
        report.errors.append(_changed_meanwhile(plan.matched.get(rid, 0), f"resident {rid}"))
    numbers = (
        await session.execute(
            select(col(ResidentPhone.number)).where(col(ResidentPhone.resident_id).in_(sorted(ids)))
        )
    ).scalars()
    holders = await repo.phone_holders(session, numbers=list(numbers))
    for number, found in holders.items():
        if number in plan.claims:
            line, n = plan.claims[number]
            owner = repo.phone_owner(found, resident_id=plan.claimant[n])
            if owner is not None:
                report.errors.append(_phone_taken(line, number, owner))
    for r in changed:
        same = plan.new_ids.get(r["id_number"] or "") or plan.new_people.get(_person(dict(r)))
        if same is not None:
            report.errors.append(_changed_meanwhile(same, f"resident {r['id']}"))
    report.errors.sort(key=lambda e: e.line)


async def _settle(
    session: AsyncSession,
    report: ImportReport,
    *,
    dry_run: bool,
    before_commit: BeforeCommit | None,
) -> None:
    """Commit a clean, confirmed file (the caller's hook first); roll anything else back."""
    if report.errors or dry_run:
        await session.rollback()
        return
    if before_commit is not None:
        await before_commit(report)
    await session.commit()
    report.committed = True


def _log_report(report: ImportReport, actor: str) -> None:
    """One log line per file: counts only, never the rows' contents."""
    log.info(
        "import %s by %s: %d rows, %d new, %d changed, %d bad, dry_run=%s, committed=%s",
        report.kind,
        actor,
        report.rows,
        report.count("create"),
        report.count("update"),
        len(report.errors),
        report.dry_run,
        report.committed,
    )


# -- merchants --
def _hours(text: str) -> dict[str, list[list[str]]]:
    """ "08:00-20:00" (every day) or "1-5 08:00-18:00; 6-7 09:00-12:00" (1 = Monday)."""
    out: dict[str, list[list[str]]] = {}
    for part in _split_semicolons(text):
        m = re.fullmatch(r"(?:(\d)(?:-(\d))?\s+)?(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})", part)
        if not m:
            raise ValueError(f"opening hours {part!r} are not like 1-5 08:00-18:00")
        first, last = int(m.group(1) or 1), int(m.group(2) or m.group(1) or 7)
        start, end = m.group(3).zfill(5), m.group(4).zfill(5)
        for day in range(first, last + 1):
            out.setdefault(str(day - 1), []).append([start, end])
    return out


def _holidays(text: str) -> dict[str, list[list[str]]]:
    """ "2026-10-01 休息; 2026-10-02 09:00-12:00"."""
    out: dict[str, list[list[str]]] = {}
    for part in _split_semicolons(text):
        m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})\s+(.+)", part)
        if not m:
            raise ValueError(f"holiday {part!r} is not like 2026-10-01 休息")
        day, rest = m.group(1), m.group(2).strip()
        if rest in ("休息", "closed", "不营业"):
            out[day] = []
            continue
        span = re.fullmatch(r"(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})", rest)
        if not span:
            raise ValueError(f"holiday {part!r} is not like 2026-10-02 09:00-12:00")
        out.setdefault(day, []).append([span.group(1).zfill(5), span.group(2).zfill(5)])
    return out


def _split_semicolons(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"[;；\n]+", text) if p.strip()]


#: the words of a price note that say who pays ("medicine:政府补贴 自付5元")
PRICE_WORDS = {"补贴": PriceKind.SUBSIDISED, "自费": PriceKind.SELF_PAID, "免费": PriceKind.FREE}


def price_of(note: str) -> dict[str, Any]:
    """Who pays and the amount, as a file's price note words them: the first of 补贴, 自费,
    免费 in the note, and the first "<n>元"; nothing said is None."""
    found = sorted((note.find(word), kind) for word, kind in PRICE_WORDS.items() if word in note)
    amount = re.search(r"(\d+)\s*元", note)
    return {
        "price_kind": found[0][1] if found else None,
        "price_yuan": int(amount.group(1)) if amount else None,
    }


def _merchant_values(
    line: int, cells: list[str], cols: dict[str, int], lookups: _Lookups, errors: list[RowError]
) -> dict[str, Any]:
    """The fields a row sets, as MerchantIn input (lookup failures go to `errors`)."""
    raw = {key: cells[i].strip() for key, i in cols.items()}
    values: dict[str, Any] = {}
    for key, text in raw.items():
        if key in ("lat", "lon", "contract_start", "contract_end"):
            values[key] = text or None
        elif key in ("radius_m", "capacity"):
            if text:
                values[key] = text
        elif key in ("external_code", "name", "kind", "address", "contract_signed_by"):
            values[key] = text
    if "grid" in raw:
        code = lookups.grids.get(raw["grid"].lower())
        if code is None:
            errors.append(RowError(line, "unknown_grid", f"unknown grid {raw['grid']!r}"))
        values["grid_code"] = code or raw["grid"]
    if "service_grids" in raw:
        codes = []
        for g in _split(raw["service_grids"]):
            code = lookups.grids.get(g.lower())
            if code is None:
                errors.append(RowError(line, "unknown_grid", f"unknown service grid {g!r}"))
            codes.append(code or g)
        values["service_grids"] = codes
    if "phones" in raw:
        values["phones"] = _split(raw["phones"])
    if raw.get("contract_status"):
        values["contract_status"] = CONTRACT_WORDS.get(
            raw["contract_status"], raw["contract_status"]
        )
    if "services" in raw:
        services = []
        for part in _split_semicolons(raw["services"].replace(",", ";").replace("，", ";")):
            cat, _, note = part.partition(":") if ":" in part else part.partition("：")
            code = lookups.categories.get(cat.strip().lower())
            if code is None:
                errors.append(RowError(line, "unknown_category", f"unknown service {cat!r}"))
                continue
            services.append({"category": code, "price_note": note.strip(), **price_of(note)})
        values["services"] = services
    try:
        if "hours" in raw:
            values["hours"] = _hours(raw["hours"])
        if "holidays" in raw:
            values["holidays"] = _holidays(raw["holidays"])
    except ValueError as exc:
        errors.append(RowError(line, "bad_hours", str(exc)))
    return values


async def import_merchants(
    session: AsyncSession,
    *,
    name: str,
    data: bytes,
    dry_run: bool,
    actor: str,
    before_commit: BeforeCommit | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ImportReport:
    """Check and (unless a dry run, or any row is bad) write a merchants file.

    Row by row in the caller's transaction (merchants files hold tens of rows, not
    thousands); `should_stop` is asked between rows, as for residents.
    """
    report = ImportReport(kind="merchants", dry_run=dry_run)
    pacer = _Pacer(should_stop)
    try:
        header, body, report.encoding = read_table(name, data)
    except BadFile as exc:
        report.errors.append(RowError(0, "bad_file", str(exc)))
        return report
    cols = _columns(header, MERCHANT_COLUMNS)
    if "name" not in cols:
        report.errors.append(RowError(1, "bad_header", "no name column (名称)"))
        return report
    report.rows = len(body)
    lookups = _Lookups()
    await lookups.load(session)
    seen_codes: dict[str, int] = {}
    try:
        for line, cells in body:
            pacer.line = line
            await pacer.tick()
            before = len(report.errors)
            if bad := _control_cell(line, header, cells):
                report.errors.append(bad)
                continue
            values = _merchant_values(line, cells, cols, lookups, report.errors)
            code = str(values.get("external_code") or "")
            if code:
                if code in seen_codes:
                    report.errors.append(
                        RowError(
                            line,
                            "duplicate_code",
                            f"duplicate merchant code (also on line {seen_codes[code]})",
                        )
                    )
                    continue
                seen_codes[code] = line
            await _import_merchant_row(
                session, line, values, report, actor, checked=len(report.errors) == before
            )
        await _settle(session, report, dry_run=dry_run, before_commit=before_commit)
    except (Stopped, asyncio.CancelledError):
        await session.rollback()
        log.info(
            "import merchants by %s stopped at line %d: nothing was written", actor, pacer.line
        )
        raise
    except BaseException:
        await session.rollback()
        raise
    _log_report(report, actor)
    return report


async def _import_merchant_row(
    session: AsyncSession,
    line: int,
    values: dict[str, Any],
    report: ImportReport,
    actor: str,
    *,
    checked: bool,
) -> None:
    """Validate a row (every reason is reported) and, if it is good, write it."""
    key = MerchantIn.model_construct(
        name=values.get("name", ""),
        address=values.get("address", ""),
        external_code=values.get("external_code") or None,
    )
    existing = await repo.find_merchant_for(session, data=key)
    merged = dict(values)
    if existing is not None:
        old = await repo.merchant_input(session, merchant=existing)
        merged = old.model_dump() | values
    try:
        data = MerchantIn.model_validate(merged)
    except ValidationError as exc:
        report.errors.extend(_error_from_validation(line, exc))
        return
    if not checked:
        return
    try:
        merchant, changes = await repo.save_merchant(
            session, data=data, merchant_id=existing.id if existing else None, actor=actor
        )
    except repo.Duplicate as exc:
        report.errors.append(RowError(line, "duplicate_code", str(exc)))
        return
    except repo.Invalid as exc:
        report.errors.append(RowError(line, "invalid", str(exc)))
        return
    action = "create" if existing is None else ("update" if changes else "unchanged")
    report.changes.append(RowChange(line, action, merchant.id, changes))
