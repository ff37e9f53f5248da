"""Export: formula neutralisation in CSV and XLSX, masked ID numbers, the access log, and
an exported file importing back unchanged."""

from __future__ import annotations

import csv
import io

import openpyxl
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry import repository as repo
from registry.exporting import export_merchants, export_residents
from registry.importing import import_merchants, import_residents
from registry.models import AccessLog
from registry.schemas import ResidentIn
from registry.tabular import neutralise

DANGEROUS = {
    "notes": '=HYPERLINK("http://evil.example","x")',
    "conditions": "+1+1",
    "medicines": "-2+3",
    "health_notes": "@SUM(A1:A2)",
}


async def _with_formulas(session: AsyncSession) -> None:
    data = ResidentIn.model_validate(
        {"name": "龚公式", "grid_code": "BG01", "id_number": "50023319400101123X", **DANGEROUS}
    )
    await repo.save_resident(session, data=data, actor="t")
    await session.commit()


def test_given_formula_starts_when_neutralised_then_an_apostrophe_leads() -> None:
    assert [neutralise(v) for v in ("=1", "+1", "-1", "@x", "\t=1", "ok", 5)] == [
        "'=1",
        "'+1",
        "'-1",
        "'@x",
        "'\t=1",
        "ok",
        5,
    ]


async def test_given_formula_cells_when_exported_to_csv_then_none_can_run_and_reimport_is_clean(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        await _with_formulas(session)
        data = await export_residents(session, fmt="csv", user=None, full_id_numbers=True)
        await session.commit()
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    header, body = rows[0], rows[1:]
    row = next(r for r in body if r[0] == "龚公式")
    for cell in row:
        assert not cell.startswith(("=", "+", "-", "@")), cell
    assert row[header.index("备注")] == "'" + DANGEROUS["notes"]
    assert row[header.index("身份证号")] == "50023319400101123X"
    async with sessions() as session:
        report = await import_residents(session, name="x.csv", data=data, dry_run=False, actor="t")
        assert report.ok, report.lines()
        assert report.count("create") == report.count("update") == 0


async def test_given_formula_cells_when_exported_to_xlsx_then_they_are_text_not_formulas(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        await _with_formulas(session)
        data = await export_residents(session, fmt="xlsx", user=None)
        await session.commit()
    book = openpyxl.load_workbook(io.BytesIO(data))
    sheet = book.worksheets[0]
    cells = [c for row in sheet.iter_rows() for c in row]
    assert all(c.data_type != "f" for c in cells)
    values = [c.value for c in cells if isinstance(c.value, str)]
    assert "'" + DANGEROUS["notes"] in values
    # masked by default: no full ID number leaves without asking
    assert "50023319400101123X" not in values
    assert "500***********123X" in values


async def test_given_an_export_when_written_then_every_resident_read_is_in_the_access_log(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        total = await repo.count_residents(session)
        await export_residents(session, fmt="csv", user=None)
        await session.commit()
        logged = (
            await session.execute(
                select(func.count()).select_from(AccessLog).where(AccessLog.reason == "export")
            )
        ).scalar_one()
        assert logged == total


async def test_given_merchants_when_exported_and_reimported_then_nothing_changes(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        data = await export_merchants(session, fmt="xlsx")
        report = await import_merchants(session, name="m.xlsx", data=data, dry_run=False, actor="t")
        assert report.ok, report.lines()
        assert report.count("unchanged") == report.rows == 40
