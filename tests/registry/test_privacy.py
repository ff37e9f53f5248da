"""No resident name, address or condition reaches the application log while importing
and searching (the access log, a table for admins, is where reads are recorded)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.importing import import_residents
from registry.search import SearchIndex, search_residents

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "registry"
PERSONAL = ["龚翠兰", "欧建国", "巴王路12号", "滨江路8号", "高血压", "糖尿病", "李明"]


async def test_given_debug_logging_when_importing_and_searching_then_no_personal_data_is_logged(
    sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    # our own modules at DEBUG, everything else at the INFO the CLI runs with (aiosqlite
    # logs every statement with its parameters at DEBUG; the CLI keeps it at INFO)
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="registry")
    data = (FIXTURES / "residents_good.csv").read_bytes()
    async with sessions() as session:
        for dry_run in (True, False):
            await import_residents(
                session, name="residents_good.csv", data=data, dry_run=dry_run, actor="t"
            )
        bad = (FIXTURES / "residents_bad.csv").read_bytes()
        await import_residents(session, name="bad.csv", data=bad, dry_run=False, actor="t")
        index = SearchIndex()
        for query in ("龚翠兰", "gcl", "巴王路12号", "1234", "高血压"):
            await search_residents(index, session, query=query)
    messages = [r.getMessage() for r in caplog.records]
    assert any("import residents" in m for m in messages)  # the log did capture something
    for message in messages:
        for word in [*PERSONAL, "龚一", "龚三"]:
            assert word not in message, message
