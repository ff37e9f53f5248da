"""The registry's use cases, without the HTTP app, on both databases: each write commits
its rows and its events together and publishes them on the bus; the events name ids,
fields, statuses and counts, never a name, number, address or note; a refused write
leaves neither a row nor an event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from eventlog.bus import EventBus
from eventlog.clock import ManualClock
from eventlog.models import Event
from eventlog.store import Store
from registry import repository as repo
from registry import usecases
from registry.models import ContractStatus, Grid, Merchant, Resident, Role, User
from registry.schemas import (
    CategoryIn,
    ContactIn,
    ContractIn,
    GridIn,
    MerchantIn,
    PhoneIn,
    ResidentIn,
    ServiceIn,
)
from registry.search import SearchIndex, search_residents
from tests.registry.conftest import admin_user

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "registry"
#: personal values the writes below use; none may reach an event
NAME, ADDRESS, NOTE, HEALTH = "测试林桂芳", "白公路测试巷9号", "钥匙在邻居家", "高血压测试"
PHONE, CONTACT_NAME, CONTACT_PHONE = "+8613812345670", "林小测", "+8613912345671"
MERCHANT_NAME, MERCHANT_PHONE = "测试便民药房", "+8613700001234"
PERSONAL = (NAME, ADDRESS, NOTE, HEALTH, PHONE, CONTACT_NAME, CONTACT_PHONE)


@dataclass
class Registry:
    """A store over the registry fixture's database, and what its bus delivered."""

    store: Store
    published: list[dict[str, Any]]
    admin: User


@pytest.fixture
async def registry(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[Registry]:
    """The registry's use cases on a migrated database with the demo community."""
    bus = EventBus()
    published: list[dict[str, Any]] = []
    bus.listen(published.append)
    async with sessions() as session:
        admin = await admin_user(session)
    yield Registry(Store(sessions, bus, ManualClock()), published, admin)


async def logged(reg: Registry, since: int = 0) -> list[dict[str, Any]]:
    """The committed events after `since`, oldest first."""
    return await reg.store.events_since(since)


def shape(events: list[dict[str, Any]]) -> list[tuple[str, str, str, dict[str, Any]]]:
    return [(e["name"], e["subject"], e["subject_id"], e["data"]) for e in events]


def assert_no_personal_data(events: list[dict[str, Any]], *values: str) -> None:
    flat = repr([(e["data"], e["actor"], e["subject_id"]) for e in events])
    for value in values:
        assert value not in flat
        assert value[-8:] not in flat  # nor the tail of a number


def new_resident(grid: str, phones: list[str]) -> ResidentIn:
    return ResidentIn(
        name=NAME,
        address=ADDRESS,
        grid_code=grid,
        notes=NOTE,
        health_notes=HEALTH,
        phones=[PhoneIn(number=p) for p in phones],
        contacts=[ContactIn(name=CONTACT_NAME, relation="女儿", phones=[CONTACT_PHONE])],
    )


async def test_given_the_resident_use_cases_when_residents_are_written_then_their_events_commit_with_them(  # noqa: E501
    registry: Registry,
) -> None:
    reg = registry
    created = await usecases.create_resident(
        reg.store, data=new_resident("BG01", [PHONE]), user=reg.admin
    )
    rid = created.resident_id
    assert created.card["version"] == str(created.card["revision"])
    edited = await usecases.update_resident(
        reg.store,
        resident_id=rid,
        patch={"notes": NOTE + "，备用钥匙", "contacts": []},
        version=created.card["version"],
        user=reg.admin,
    )
    assert sorted(edited.changed) == ["contacts", "notes"]
    moved = await usecases.update_resident(
        reg.store, resident_id=rid, patch={"status": "moved_out"}, user=reg.admin
    )
    assert moved.changed == ["status"]
    # the number of the resident who moved out goes to a new household
    second = await usecases.create_resident(
        reg.store, data=new_resident("BG02", [PHONE]), user=reg.admin
    )
    events = await logged(reg)
    assert shape(events) == [
        ("resident.created", "resident", str(rid), {"changed": created.changed}),
        ("resident.updated", "resident", str(rid), {"changed": edited.changed}),
        ("resident.updated", "resident", str(rid), {"changed": ["status"]}),
        (
            "resident.status_changed",
            "resident",
            str(rid),
            {"from_status": "registered", "to_status": "moved_out"},
        ),
        ("resident.created", "resident", str(second.resident_id), {"changed": second.changed}),
        (
            "resident.updated",
            "resident",
            str(rid),
            {"changed": ["phones"], "reason": "phone_taken", "taken_by": second.resident_id},
        ),
    ]
    assert {e["actor"] for e in events} == {"admin"}
    assert_no_personal_data(events, *PERSONAL)
    # the bus carried exactly what was committed, in commit order
    assert reg.published == events
    # the card read back by each write is in the access log as an edit
    async with reg.store.read() as session:
        reasons = [r.reason for r in await repo.access_log(session, resident_id=rid, limit=10)]
    assert reasons.count("edit") == 3


async def test_given_a_refused_resident_write_then_neither_a_row_nor_an_event_is_left(
    registry: Registry,
) -> None:
    reg = registry
    first = await usecases.create_resident(
        reg.store, data=new_resident("BG01", [PHONE]), user=reg.admin
    )
    seq = (await logged(reg))[-1]["seq"]
    async with reg.store.read() as session:
        residents = await session.scalar(select(func.count()).select_from(Resident))
    with pytest.raises(repo.PhoneTaken) as taken:
        await usecases.create_resident(
            reg.store, data=new_resident("BG02", [PHONE]), user=reg.admin
        )
    assert taken.value.owner == first.resident_id
    with pytest.raises(usecases.StaleVersion):
        await usecases.update_resident(
            reg.store,
            resident_id=first.resident_id,
            patch={"notes": "x"},
            version="not-the-version",
            user=reg.admin,
        )
    with pytest.raises(repo.Invalid):
        await usecases.update_resident(
            reg.store, resident_id=first.resident_id, patch={"grid_code": "NOPE"}, user=reg.admin
        )
    assert await logged(reg, seq) == []
    assert [e["seq"] for e in reg.published][-1] == seq
    async with reg.store.read() as session:
        assert await session.scalar(select(func.count()).select_from(Resident)) == residents
        resident = await session.get(Resident, first.resident_id)
        assert resident is not None and resident.notes == NOTE


async def test_given_the_merchant_catalog_and_grid_use_cases_when_they_write_then_each_emits_its_event(  # noqa: E501
    registry: Registry,
) -> None:
    reg = registry
    saved = await usecases.create_merchant(
        reg.store,
        data=MerchantIn(
            name=MERCHANT_NAME,
            kind="pharmacy",
            address=ADDRESS,
            grid_code="BG01",
            service_grids=["BG01"],
            phones=[MERCHANT_PHONE],
            services=[ServiceIn(category="medicine")],
        ),
        actor="admin",
    )
    mid = saved.merchant.id
    assert mid is not None
    version = usecases.merchant_version(saved.data)
    changed = await usecases.update_merchant(
        reg.store, merchant_id=mid, patch={"capacity": 7}, version=version, actor="admin"
    )
    assert changed.changed == ["capacity"]
    with pytest.raises(usecases.StaleVersion) as stale:
        await usecases.update_merchant(
            reg.store, merchant_id=mid, patch={"capacity": 8}, version=version, actor="admin"
        )
    assert stale.value.current == usecases.merchant_version(changed.data)
    unchanged = await usecases.update_merchant(
        reg.store, merchant_id=mid, patch={"capacity": 7}, actor="admin"
    )
    assert unchanged.changed == []  # nothing changed: no event
    merchant = await usecases.change_contract(
        reg.store,
        merchant_id=mid,
        contract=ContractIn(status=ContractStatus.SUSPENDED, signed_by="张主任"),
        actor="admin",
    )
    assert merchant.contract_status == ContractStatus.SUSPENDED
    category, created = await usecases.save_category(
        reg.store,
        data=CategoryIn(code="haircut", name_zh="上门理发", name_en="Haircut at home"),
        create=True,
        actor="admin",
    )
    assert created
    with pytest.raises(repo.Duplicate):
        await usecases.save_category(
            reg.store,
            data=CategoryIn(code="haircut", name_zh="理发", name_en="Haircut"),
            create=True,
            actor="admin",
        )
    _, created = await usecases.save_category(
        reg.store,
        data=CategoryIn(code="haircut", name_zh="理发", name_en="Haircut"),
        version=usecases.category_version(category),
        create=False,
        actor="admin",
    )
    assert not created
    grid = await usecases.create_grid(
        reg.store, data=GridIn(code="BG99", name="第九十九网格"), actor="admin"
    )
    with pytest.raises(repo.Duplicate):
        await usecases.create_grid(reg.store, data=GridIn(code="BG99", name="x"), actor="admin")
    renamed = await usecases.update_grid(
        reg.store, code="BG99", name="新网格", version=usecases.grid_version(grid), actor="admin"
    )
    assert (renamed.name, renamed.community) == ("新网格", "")
    with pytest.raises(repo.NotFound):
        await usecases.update_grid(reg.store, code="NOPE", name="x", actor="admin")

    events = await logged(reg)
    assert shape(events) == [
        ("merchant.created", "merchant", str(mid), {"changed": saved.changed}),
        ("merchant.updated", "merchant", str(mid), {"changed": ["capacity"]}),
        (
            "merchant.contract_changed",
            "merchant",
            str(mid),
            {"status": "suspended", "start": None, "end": None},
        ),
        ("category.saved", "category", "haircut", {"created": True}),
        ("category.saved", "category", "haircut", {"created": False}),
        ("grid.created", "grid", "BG99", {}),
        ("grid.updated", "grid", "BG99", {}),
    ]
    assert reg.published == events
    assert_no_personal_data(events, MERCHANT_NAME, MERCHANT_PHONE, ADDRESS, "张主任")
    # every event is one that matching follows
    assert {e["name"] for e in events} <= usecases.MERCHANT_INDEX_EVENTS
    assert {e["subject"] for e in events} <= usecases.MERCHANT_INDEX_SUBJECTS


async def test_given_the_login_use_cases_when_an_admin_writes_logins_then_events_and_sessions_follow(  # noqa: E501
    registry: Registry,
) -> None:
    reg = registry
    ended: list[int] = []

    async def end_sessions(session: AsyncSession, user_id: int) -> None:
        # inside the unit of work: the row is there, not yet committed
        assert await session.get(User, user_id) is not None
        ended.append(user_id)

    user = await usecases.create_user(
        reg.store,
        username="xiaoli",
        display_name="话务员测试",
        role=Role.OPERATOR,
        merchant_id=None,
        password_hash="$argon2id$test-hash",
        actor="admin",
    )
    assert user.id is not None
    with pytest.raises(repo.Duplicate):
        await usecases.create_user(
            reg.store,
            username="xiaoli",
            display_name="",
            role=Role.OPERATOR,
            merchant_id=None,
            password_hash="x",
            actor="admin",
        )
    with pytest.raises(repo.Invalid) as bad:
        await usecases.create_user(
            reg.store,
            username="shop",
            display_name="",
            role=Role.MERCHANT,
            merchant_id=None,
            password_hash="x",
            actor="admin",
        )
    assert bad.value.field == "merchant_id"
    renamed, changed = await usecases.update_user(
        reg.store,
        user_id=user.id,
        changes={"display_name": "小李"},
        version=usecases.user_version(user),
        admin=reg.admin,
        end_sessions=end_sessions,
    )
    assert changed == ["display_name"] and ended == []
    _, changed = await usecases.update_user(
        reg.store,
        user_id=user.id,
        changes={"active": False},
        admin=reg.admin,
        end_sessions=end_sessions,
    )
    assert changed == ["active"] and ended == [user.id]
    with pytest.raises(repo.Invalid) as own:
        await usecases.update_user(
            reg.store,
            user_id=reg.admin.id or 0,
            changes={"active": False},
            admin=reg.admin,
            end_sessions=end_sessions,
        )
    assert own.value.field == "active"
    with pytest.raises(usecases.StaleVersion):
        await usecases.update_user(
            reg.store,
            user_id=user.id,
            changes={"display_name": "x"},
            version=usecases.user_version(renamed),
            admin=reg.admin,
            end_sessions=end_sessions,
        )
    await usecases.set_password(
        reg.store,
        user_id=user.id,
        password_hash="$argon2id$new-hash",
        actor="admin",
        end_sessions=end_sessions,
    )
    assert ended == [user.id, user.id]

    events = await logged(reg)
    assert shape(events) == [
        ("user.created", "user", str(user.id), {"role": "operator"}),
        ("user.updated", "user", str(user.id), {"changed": ["display_name"]}),
        ("user.updated", "user", str(user.id), {"changed": ["active"]}),
        ("user.password_reset", "user", str(user.id), {}),
    ]
    assert reg.published == events
    assert_no_personal_data(events, "test-hash", "new-hash", "话务员测试", "小李")
    async with reg.store.read() as session:
        row = await session.get(User, user.id)
        assert row is not None
        assert (row.active, row.password_hash) == (False, "$argon2id$new-hash")


async def test_given_a_merchants_file_when_imported_through_the_use_case_then_one_event_counts_it(
    registry: Registry,
) -> None:
    reg = registry
    data = (FIXTURES / "merchants_good.csv").read_bytes()
    report, import_id = await usecases.run_import(
        reg.store,
        kind="merchants",
        name="merchants_good.csv",
        data=data,
        dry_run=True,
        actor="admin",
        source="test",
    )
    assert report.ok and import_id is None and await logged(reg) == []
    report, import_id = await usecases.run_import(
        reg.store,
        kind="merchants",
        name="merchants_good.csv",
        data=data,
        dry_run=False,
        actor="admin",
        source="test",
    )
    assert report.ok and import_id
    (event,) = await logged(reg)
    assert (event["name"], event["subject"], event["subject_id"]) == (
        "registry.imported",
        "import",
        import_id,
    )
    assert event["data"]["kind"] == "merchants" and event["data"]["created"] >= 1
    assert "merchants_good" not in repr(event["data"])  # file names name people
    assert event["name"] in usecases.MERCHANT_INDEX_EVENTS
    async with reg.store.read() as session:
        found = await session.scalar(
            select(func.count()).select_from(Merchant).where(col(Merchant.name) == "百草堂药房")
        )
        assert found == 1
        assert await session.scalar(select(func.count()).select_from(Event)) == 1


async def test_given_a_loaded_search_index_when_a_grid_is_renamed_by_the_use_case_then_the_next_search_shows_it(  # noqa: E501
    registry: Registry,
) -> None:
    reg = registry
    index = SearchIndex()
    reg.store.bus.listen(index.follow, subjects=("grid",))
    async with reg.store.read() as session:
        await index.ensure_loaded(session)
        resident = await session.get(Resident, 7)
        assert resident is not None
        grid = await session.get(Grid, resident.grid_code)
        assert grid is not None
    await usecases.update_grid(reg.store, code=grid.code, name="改名网格", actor="admin")
    async with reg.store.read() as session:
        hits = await search_residents(index, session, query=resident.name)
    shown = {h.entry.id: h.public(index.grid_names)["grid_name"] for h in hits}
    assert shown[7] == "改名网格"
