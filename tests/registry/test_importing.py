"""Import of residents and merchants: good files (UTF-8, BOM, GBK, XLSX), every kind of
bad row, dry runs, all-or-nothing, and importing the same file twice."""

from __future__ import annotations

import io
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.importing import ImportReport, import_merchants, import_residents
from registry.models import (
    ContractChange,
    EmergencyContact,
    Merchant,
    MerchantService,
    RegistryRevision,
    Resident,
    ResidentPhone,
    ResidentStatus,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "registry"


async def _counts(session: AsyncSession) -> tuple[int, ...]:
    out = []
    for table in (Resident, ResidentPhone, EmergencyContact, Merchant, MerchantService):
        out.append((await session.execute(select(func.count()).select_from(table))).scalar_one())
    out.append((await session.execute(select(RegistryRevision.value))).scalar_one())
    return tuple(out)


async def _by_name(session: AsyncSession, name: str) -> Resident:
    return (await session.execute(select(Resident).where(Resident.name == name))).scalar_one()


async def test_given_a_good_file_when_imported_twice_then_the_second_run_changes_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    data = (FIXTURES / "residents_good.csv").read_bytes()
    async with sessions() as session:
        before = await _counts(session)
        report = await import_residents(
            session, name="residents_good.csv", data=data, dry_run=False, actor="t"
        )
        assert report.ok and report.committed, report.lines()
        assert (report.count("create"), report.count("update")) == (2, 0)
        assert report.encoding == "utf-8"
    async with sessions() as session:
        after_first = await _counts(session)
        assert after_first[0] == before[0] + 2
        gong = await _by_name(session, "龚翠兰")
        assert gong.groups == ["孤寡", "残疾"]
        assert (gong.hearing, gong.dialect, gong.room, gong.grid_code) == (
            "耳背",
            "忠县话",
            "201",
            "BG01",
        )
        assert gong.usual_pharmacy_id == 1
        assert (gong.name_pinyin, gong.name_initials) == ("gongcuilan", "gcl")
        phones = (
            await session.execute(
                select(ResidentPhone.number).where(ResidentPhone.resident_id == gong.id)
            )
        ).scalars()
        assert sorted(phones) == ["+8613911112222", "+862354441234"]
        contacts = (
            (
                await session.execute(
                    select(EmergencyContact)
                    .where(EmergencyContact.resident_id == gong.id)
                    .order_by(EmergencyContact.position)
                )
            )
            .scalars()
            .all()
        )
        assert [c.name for c in contacts] == ["李明", "周芳"]
        assert contacts[0].phones == ["+8613700001111", "+862354449999"]
        assert contacts[0].phone == "+8613700001111"
        assert contacts[0].kind == "family"
        second = await import_residents(
            session, name="residents_good.csv", data=data, dry_run=False, actor="t"
        )
        assert second.ok
        assert (second.count("create"), second.count("update"), second.count("unchanged")) == (
            0,
            0,
            2,
        )
    async with sessions() as session:
        assert await _counts(session) == after_first  # not even the revision moved


async def test_given_a_gbk_file_when_imported_then_chinese_is_read_right(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    data = (FIXTURES / "residents_gbk.csv").read_bytes()
    async with sessions() as session:
        report = await import_residents(
            session, name="residents_gbk.csv", data=data, dry_run=False, actor="t"
        )
        assert report.ok, report.lines()
        assert report.encoding == "gb18030"
    async with sessions() as session:
        resident = await _by_name(session, "龚桂芬")
        assert resident.address == "巴王路12号3栋1单元201室"
        assert resident.medicines == "硝苯地平缓释片"


async def test_given_a_utf8_bom_file_and_an_xlsx_when_imported_then_both_are_read(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    text = (FIXTURES / "residents_good.csv").read_text(encoding="utf-8")
    async with sessions() as session:
        bom = await import_residents(
            session, name="r.csv", data=text.encode("utf-8-sig"), dry_run=False, actor="t"
        )
        assert bom.ok and bom.encoding == "utf-8-sig" and bom.count("create") == 2
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["姓名", "电话", "地址", "网格", "出生年份"])
    sheet.append(["龚大爷", 13955556666, "白公路3号", "BG04", 1944])  # numbers, as Excel keeps
    out = io.BytesIO()
    book.save(out)
    async with sessions() as session:
        xlsx = await import_residents(
            session, name="r.xlsx", data=out.getvalue(), dry_run=False, actor="t"
        )
        assert xlsx.ok and xlsx.encoding == "xlsx", xlsx.lines()
        resident = await _by_name(session, "龚大爷")
        assert resident.birth_year == 1944


async def test_given_every_kind_of_bad_row_when_imported_then_each_is_reported_and_nothing_written(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    data = (FIXTURES / "residents_bad.csv").read_bytes()
    async with sessions() as session:
        before = await _counts(session)
        report = await import_residents(
            session, name="residents_bad.csv", data=data, dry_run=False, actor="t"
        )
    assert not report.ok and not report.committed
    found = {(e.line, e.code) for e in report.errors}
    assert found == {
        (2, "bad_phone"),
        (3, "missing_name"),
        (4, "unknown_grid"),
        (6, "duplicate_id_number"),
        (7, "bad_id_number"),
        (8, "invalid"),  # unknown group 富裕
        (9, "unknown_merchant"),
    }, report.lines()
    assert "line 5" in " ".join(e.reason for e in report.errors if e.line == 6)
    async with sessions() as session:
        assert await _counts(session) == before  # the good row (line 5) was not kept either


async def test_given_a_dry_run_when_imported_then_the_report_shows_changes_and_nothing_is_written(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    data = (FIXTURES / "residents_good.csv").read_bytes()
    async with sessions() as session:
        before = await _counts(session)
        report = await import_residents(
            session, name="residents_good.csv", data=data, dry_run=True, actor="t"
        )
        assert report.ok and not report.committed
        assert report.count("create") == 2
        assert "phones" in report.changes[0].fields
    async with sessions() as session:
        assert await _counts(session) == before


async def test_given_an_edited_file_when_reimported_then_only_the_changed_field_is_updated(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    text = (FIXTURES / "residents_good.csv").read_text(encoding="utf-8")
    async with sessions() as session:
        await import_residents(session, name="r.csv", data=text.encode(), dry_run=False, actor="t")
        edited = text.replace("下午四点后再打", "钥匙在302邻居家")
        report = await import_residents(
            session, name="r.csv", data=edited.encode(), dry_run=False, actor="t"
        )
        assert [(c.action, c.fields) for c in report.changes if c.action != "unchanged"] == [
            ("update", ["notes"])
        ]


async def test_given_a_merchants_file_when_imported_twice_then_hours_services_contract_land_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    data = (FIXTURES / "merchants_good.csv").read_bytes()
    async with sessions() as session:
        report = await import_merchants(
            session, name="merchants_good.csv", data=data, dry_run=False, actor="t"
        )
        assert report.ok, report.lines()
        assert report.count("create") == 2
    async with sessions() as session:
        m = (
            await session.execute(select(Merchant).where(Merchant.external_code == "M-001"))
        ).scalar_one()
        assert m.kind == "pharmacy" and m.capacity == 4 and m.radius_m == 1500
        assert m.hours["0"] == [["08:00", "20:00"]] and m.hours["6"] == [["09:00", "18:00"]]
        assert m.holidays == {"2026-10-01": [], "2026-10-02": [["09:00", "12:00"]]}
        assert m.phones == ["+862354440001", "+8613900000001"]
        assert m.contract_signed_by == "张主任"
        assert m.service_grids == ["BG01", "BG02"]
        services = (
            await session.execute(
                select(
                    MerchantService.category_code,
                    MerchantService.price_note,
                    MerchantService.price_kind,
                    MerchantService.price_yuan,
                ).where(MerchantService.merchant_id == m.id)
            )
        ).all()
        # the note's words say who pays (issue 16)
        assert [tuple(s) for s in services] == [("medicine", "政府补贴", "subsidised", None)]
        history = (
            (
                await session.execute(
                    select(ContractChange).where(ContractChange.merchant_id == m.id)
                )
            )
            .scalars()
            .all()
        )
        assert [h.status for h in history] == ["active"]
        again = await import_merchants(
            session, name="merchants_good.csv", data=data, dry_run=False, actor="t"
        )
        assert again.ok and again.count("unchanged") == 2, again.lines()


async def test_given_bad_merchant_rows_when_imported_then_each_is_reported(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    data = (
        "编号,名称,类型,网格,营业时间,服务,接单电话\n"
        "X1,甲,shop,BG01,8点到晚上,groceries,13900000001\n"
        "X2,乙,shop,BG01,08:00-20:00,飞行,13900000001\n"
        "X2,丙,shop,BG01,08:00-20:00,groceries,13900000001\n"
        "X4,丁,shop,第九网格,08:00-20:00,groceries,12\n"
    ).encode()
    async with sessions() as session:
        report = await import_merchants(session, name="m.csv", data=data, dry_run=False, actor="t")
    found = {(e.line, e.code) for e in report.errors}
    assert found == {
        (2, "bad_hours"),
        (3, "unknown_category"),
        (4, "duplicate_code"),
        (5, "unknown_grid"),
        (5, "bad_phone"),
    }, report.lines()


async def test_given_a_file_that_is_not_a_table_when_imported_then_it_is_refused(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        report = await import_residents(
            session, name="r.xlsx", data=b"not a zip", dry_run=False, actor="t"
        )
        assert [e.code for e in report.errors] == ["bad_file"]
        report = await import_residents(
            session, name="r.csv", data="地址\n白公路\n".encode(), dry_run=False, actor="t"
        )
        assert [e.code for e in report.errors] == ["bad_header"]


async def test_given_a_before_commit_hook_that_fails_when_importing_then_no_row_is_written(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    data = (FIXTURES / "residents_good.csv").read_bytes()
    seen: list[dict[str, object]] = []

    async def hook(report: ImportReport) -> None:
        seen.append(report.summary())
        raise RuntimeError("the event log is down")

    async with sessions() as session:
        before = await _counts(session)
        with pytest.raises(RuntimeError, match="event log is down"):
            await import_residents(
                session, name="r.csv", data=data, dry_run=False, actor="t", before_commit=hook
            )
    async with sessions() as session:
        assert await _counts(session) == before
    # the hook ran once, inside the transaction, with counts only
    assert seen == [{"kind": "residents", "rows": 2, "created": 2, "updated": 0, "unchanged": 0}]


async def test_given_a_dry_run_when_importing_then_the_before_commit_hook_never_runs(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    data = (FIXTURES / "residents_good.csv").read_bytes()
    calls: list[ImportReport] = []

    async def hook(report: ImportReport) -> None:
        calls.append(report)

    async with sessions() as session:
        report = await import_residents(
            session, name="r.csv", data=data, dry_run=True, actor="t", before_commit=hook
        )
    assert report.ok and not report.committed and calls == []


# -- one phone, one resident: the import applies the API's rule --
#: resident 1's landline in the demo community
PHONE_OF_1 = "+862354000001"


async def _holders(session: AsyncSession, number: str) -> list[int]:
    rows = await session.execute(
        select(ResidentPhone.resident_id)
        .where(ResidentPhone.number == number)
        .order_by(ResidentPhone.resident_id)
    )
    return [int(r) for r in rows.scalars()]


@pytest.mark.parametrize("dry_run", [True, False])
async def test_given_a_row_with_another_residents_phone_when_imported_then_row_and_owner_are_named(
    sessions: async_sessionmaker[AsyncSession], dry_run: bool
) -> None:
    data = "姓名,电话,网格\n欧建华,13955550001,BG01\n冒名者,023-5400 0001,BG01\n".encode()
    async with sessions() as session:
        before = await _counts(session)
        report = await import_residents(
            session, name="r.csv", data=data, dry_run=dry_run, actor="t"
        )
    assert not report.ok and not report.committed
    assert [(e.line, e.code) for e in report.errors] == [(3, "phone_taken")], report.lines()
    error = report.errors[0].public()
    assert error["resident_id"] == 1
    assert "resident 1" in error["reason"] and PHONE_OF_1 not in error["reason"]
    async with sessions() as session:
        assert await _counts(session) == before  # not even the good row on line 2
        assert await _holders(session, PHONE_OF_1) == [1]


async def test_given_two_rows_sharing_a_phone_when_imported_then_both_rows_are_named(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    data = (
        "姓名,电话,网格\n"
        "甲,13955550001,BG01\n"
        "乙,139 5555 0002,BG01\n"
        "丙,13955550003; +86 139 5555 0001,BG02\n"
    ).encode()
    async with sessions() as session:
        before = await _counts(session)
        report = await import_residents(session, name="r.csv", data=data, dry_run=False, actor="t")
    assert not report.committed
    assert {(e.line, e.code) for e in report.errors} == {
        (2, "duplicate_phone"),
        (4, "duplicate_phone"),
    }, report.lines()
    reasons = {e.line: e.reason for e in report.errors}
    assert "line 4" in reasons[2] and "line 2" in reasons[4]
    async with sessions() as session:
        assert await _counts(session) == before


async def test_given_a_moved_out_residents_phone_when_imported_then_the_new_one_holds_it_alone(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # the API lets a new household take the line of someone who moved out (or died);
    # the import does the same, and the number then has one holder
    async with sessions() as session:
        gone = await session.get(Resident, 1)
        assert gone is not None
        gone.status = ResidentStatus.MOVED_OUT
        await session.commit()
    data = "姓名,电话,网格\n新住户,02354000001,BG01\n".encode()
    async with sessions() as session:
        report = await import_residents(session, name="r.csv", data=data, dry_run=False, actor="t")
        assert report.ok and report.committed, report.lines()
    async with sessions() as session:
        newcomer = await _by_name(session, "新住户")
        assert await _holders(session, PHONE_OF_1) == [newcomer.id]


async def test_given_a_resident_reimported_with_their_own_phone_then_it_is_no_conflict(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        one = await session.get(Resident, 1)
        assert one is not None and one.id_number
        row = f"{one.name},{one.id_number},{PHONE_OF_1},{one.grid_code},新备注"
    data = f"姓名,身份证号,电话,网格,备注\n{row}\n".encode()
    async with sessions() as session:
        report = await import_residents(session, name="r.csv", data=data, dry_run=False, actor="t")
        assert report.ok, report.lines()
        assert [(c.action, c.record_id) for c in report.changes] == [("update", 1)]
        assert "notes" in report.changes[0].fields
    async with sessions() as session:
        assert await _holders(session, PHONE_OF_1) == [1]


def test_given_price_notes_when_read_from_a_file_then_who_pays_and_the_amount_are_found() -> None:
    from registry.importing import price_of

    assert price_of("政府补贴 自付5元") == {"price_kind": "subsidised", "price_yuan": 5}
    assert price_of("自费 30 元") == {"price_kind": "self_paid", "price_yuan": 30}
    assert price_of("送药免费") == {"price_kind": "free", "price_yuan": None}
    assert price_of("上门时说明") == {"price_kind": None, "price_yuan": None}
