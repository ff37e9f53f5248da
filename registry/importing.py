"""Import residents (with their emergency contacts) and merchants from the CSV / XLSX files
a community office keeps after door-to-door surveys.

One file is one transaction: every row is checked first and every bad row reported with
its line number and reason; if any row is bad nothing is written. A dry run does the same
work and rolls back, so it shows exactly what a real run would change. Rows are matched to
stored records (residents by ID number, else by name and address; merchants by external
code, else by name and address) and written only when something differs, so importing the
same file twice changes nothing the second time. Columns missing from a file leave the
stored values alone.

Log lines carry counts and line numbers only: never a name, an address or a condition.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from registry import repository as repo
from registry.models import Grid, Merchant, ServiceCategory
from registry.schemas import CONTROL, MerchantIn, ResidentIn
from registry.tabular import BadFile, read_table

log = logging.getLogger(__name__)

LIST_SPLIT = re.compile(r"[;；,，、/|\n]+")
MAX_CONTACTS = 5

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
    """One bad row: where, a machine-readable code, and why in words."""

    line: int
    code: str
    reason: str

    def public(self) -> dict[str, Any]:
        """JSON shape."""
        return {"line": self.line, "code": self.code, "reason": self.reason}


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

    @property
    def ok(self) -> bool:
        """True when every row was good."""
        return not self.errors

    def count(self, action: str) -> int:
        """How many rows have an action."""
        return sum(1 for c in self.changes if c.action == action)

    def public(self) -> dict[str, Any]:
        """JSON shape for the console and the CLI."""
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
            "errors": [e.public() for e in self.errors],
            "changes": [c.public() for c in self.changes if c.action != "unchanged"],
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
    cells: list[str],
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


async def import_residents(
    session: AsyncSession,
    *,
    name: str,
    data: bytes,
    dry_run: bool,
    actor: str,
    before_commit: BeforeCommit | None = None,
) -> ImportReport:
    """Check and (unless a dry run, or any row is bad) write a residents file.

    The caller owns the session; this function commits only a good, real run and rolls
    back otherwise, so nothing of a bad file is ever left behind. `before_commit` runs in
    the same transaction just before a good, real run commits (the console writes its
    event-log entry there, so the rows and the entry commit together).
    """
    report = ImportReport(kind="residents", dry_run=dry_run)
    try:
        header, body, report.encoding = read_table(name, data)
    except BadFile as exc:
        report.errors.append(RowError(0, "bad_file", str(exc)))
        return report
    cols = _columns(header, RESIDENT_COLUMNS)
    contact_cols = _contact_columns(header)
    if "name" not in cols:
        report.errors.append(RowError(1, "bad_header", "no name column (姓名)"))
        return report
    report.rows = len(body)
    lookups = _Lookups()
    await lookups.load(session)
    seen_ids: dict[str, int] = {}
    seen_people: dict[tuple[str, ...], int] = {}
    try:
        for line, cells in body:
            before = len(report.errors)
            if bad := _control_cell(line, header, cells):
                report.errors.append(bad)
                continue
            values = _resident_values(line, cells, cols, contact_cols, lookups, report.errors)
            id_number = str(values.get("id_number") or "").strip().upper()
            if id_number:
                if id_number in seen_ids:
                    report.errors.append(
                        RowError(
                            line,
                            "duplicate_id_number",
                            f"duplicate ID number (also on line {seen_ids[id_number]})",
                        )
                    )
                    continue
                seen_ids[id_number] = line
            person = tuple(
                str(values.get(k, "")) for k in ("name", "address", "building", "unit", "room")
            )
            if not id_number and person in seen_people:
                report.errors.append(
                    RowError(
                        line,
                        "duplicate_row",
                        f"same name and address as line {seen_people[person]}",
                    )
                )
                continue
            seen_people.setdefault(person, line)
            await _import_resident_row(
                session, line, values, report, actor, checked=len(report.errors) == before
            )
        await _settle(session, report, dry_run=dry_run, before_commit=before_commit)
    except BaseException:
        await session.rollback()
        raise
    _log_report(report, actor)
    return report


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


async def _import_resident_row(
    session: AsyncSession,
    line: int,
    values: dict[str, Any],
    report: ImportReport,
    actor: str,
    *,
    checked: bool,
) -> None:
    """Validate a row (every reason is reported) and, if it is good, write it."""
    key = ResidentIn.model_construct(
        **{k: values.get(k, "") for k in ("name", "address", "building", "unit", "room")},
        id_number=str(values.get("id_number") or "").strip().upper() or None,
    )
    existing = await repo.find_resident_for(session, data=key)
    merged = dict(values)
    if existing is not None:
        old = await repo.resident_input(session, resident=existing)
        merged = old.model_dump(exclude={"status_reason"}) | values
    try:
        data = ResidentIn.model_validate(merged)
    except ValidationError as exc:
        report.errors.extend(_error_from_validation(line, exc))
        return
    if not checked:
        return
    try:
        resident, changes = await repo.save_resident(
            session, data=data, resident_id=existing.id if existing else None, actor=actor
        )
    except repo.Duplicate as exc:
        report.errors.append(RowError(line, "duplicate_id_number", str(exc)))
        return
    except repo.Invalid as exc:
        code = "unknown_grid" if "grid" in str(exc) else "invalid"
        report.errors.append(RowError(line, code, str(exc)))
        return
    action = "create" if existing is None else ("update" if changes else "unchanged")
    report.changes.append(RowChange(line, action, resident.id, changes))


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
            services.append({"category": code, "price_note": note.strip()})
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
) -> ImportReport:
    """Check and (unless a dry run, or any row is bad) write a merchants file."""
    report = ImportReport(kind="merchants", dry_run=dry_run)
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
