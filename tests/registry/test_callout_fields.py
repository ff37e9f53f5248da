"""The emergency panel's registry fields (issue 14): a resident's risk notes, key holder
and key safe, a grid's worker; the import reads them by their Chinese headers, and
migration 0013_callouts gives rows already there empty values. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from sqlalchemy import create_engine, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from eventlog.db import sync_url
from operator_console.migrate import upgrade
from registry.importing import import_residents
from registry.models import Resident

HEADER = "姓名,电话,网格,用药,风险提示,钥匙保管人,钥匙盒\n"


async def test_given_the_new_columns_when_importing_residents_then_they_are_stored(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    data = (HEADER + "钱秀珍,13912340001,BG01,阿司匹林,独居易跌倒,邻居赵姐,门左钥匙盒\n").encode()
    async with sessions() as session:
        report = await import_residents(session, name="r.csv", data=data, dry_run=False, actor="t")
        assert report.ok and report.committed, report.lines()
    async with sessions() as session:
        found = (
            await session.execute(select(Resident).where(Resident.name == "钱秀珍"))
        ).scalar_one()
        assert (found.risk_notes, found.key_holder, found.key_safe) == (
            "独居易跌倒",
            "邻居赵姐",
            "门左钥匙盒",
        )


def _seed_and_read(url: str, stage: str) -> tuple[object, ...] | None:
    engine = create_engine(sync_url(url))
    try:
        with engine.begin() as conn:
            if stage == "seed":
                conn.execute(
                    text("INSERT INTO grid (code, name, community) VALUES ('G1', 'g', 'c')")
                )
                conn.execute(
                    text(
                        "INSERT INTO resident (id, name, sex, address, building, unit, room, "
                        "grid_code, groups, health_notes, conditions, medicines, notes, "
                        "language, status, created_at, updated_at, name_pinyin, "
                        "name_initials, revision, community, mobility, hearing, sight, "
                        "dialect, preferred_merchants) VALUES (1, '王秀英', '女', '', '', '', "
                        "'', 'G1', '[]', '', '', '', '', 'zh-CN', 'registered', "
                        "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, '', '', 0, '', '', '', '', '', "
                        "'{}')"
                    )
                )
                return None
            resident = conn.execute(
                text("SELECT risk_notes, key_holder, key_safe FROM resident")
            ).one()
            grid = conn.execute(text("SELECT worker_name, worker_phone FROM grid")).one()
            calls = conn.execute(text("SELECT count(parent_call_id) FROM call")).scalar()
            return (*resident, *grid, calls)
    finally:
        engine.dispose()


async def test_given_rows_at_0011_when_upgraded_past_0013_callouts_then_the_new_fields_are_empty(
    db_url: str,
) -> None:
    await asyncio.to_thread(upgrade, db_url, "0011_login_attempt")
    await asyncio.to_thread(_seed_and_read, db_url, "seed")
    await asyncio.to_thread(upgrade, db_url)
    assert await asyncio.to_thread(_seed_and_read, db_url, "read") == ("", "", "", "", "", 0)
