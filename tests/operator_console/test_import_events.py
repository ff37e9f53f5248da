"""A registry import leaves one `registry.imported` entry in the event log, written in the
same transaction as the rows: counts, the file's hash, the import id and the actor, and
nothing personal. A dry run or a rejected file writes no entry."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from eventlog.bus import EventBus
from eventlog.clock import SystemClock
from eventlog.db import make_engine, make_sessionmaker
from eventlog.models import Event
from eventlog.store import Store
from operator_console.cli import main
from operator_console.migrate import upgrade
from registry.models import Resident
from registry.usecases import run_import
from tests.conftest import Harness

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "registry"

#: every personal word in the fixture files: names, phones, addresses, notes
PERSONAL = [
    "龚翠兰",
    "欧建国",
    "李明",
    "周芳",
    "欧小红",
    "500233194103051236",
    "02354449999",
    "1370000",
    "巴王路",
    "滨江路",
    "硝苯地平",
    "高血压",
    "百草堂",
    "老王水电",
    "白公路",
    "忠州大道",
    "13900000001",
    "张主任",
    "residents_good",
    "merchants_good",
]


def assert_nothing_personal(event: dict[str, Any]) -> None:
    """No word of the file's rows, nor its name, in the entry."""
    text = json.dumps(event, ensure_ascii=False)
    for word in PERSONAL:
        assert word not in text, word


async def _upload(h: Harness, kind: str, name: str, *, dry_run: bool, expect: int) -> Any:
    form = aiohttp.FormData()
    form.add_field("file", (FIXTURES / name).read_bytes(), filename=name)
    form.add_field("dry_run", "true" if dry_run else "false")
    return await h.call(
        "POST", f"/registry/import/{kind}", as_user="demo", data=form, expect=expect
    )


async def _imports(h: Harness) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    since = 0
    while page := await h.call("GET", f"/events?since={since}", as_user="demo"):
        found += [e for e in page if e["name"] == "registry.imported"]
        since = page[-1]["seq"]
    return found


async def test_given_uploads_when_dry_run_bad_and_real_then_only_real_runs_leave_one_entry(
    harness: Harness,
) -> None:
    h = harness
    dry = await _upload(h, "residents", "residents_good.csv", dry_run=True, expect=200)
    assert dry["import_id"] is None
    await _upload(h, "residents", "residents_bad.csv", dry_run=False, expect=422)
    assert await _imports(h) == []

    real = await _upload(h, "residents", "residents_good.csv", dry_run=False, expect=200)
    again = await _upload(h, "residents", "residents_good.csv", dry_run=False, expect=200)
    merchants = await _upload(h, "merchants", "merchants_good.csv", dry_run=False, expect=200)

    entries = await _imports(h)
    assert [e["subject_id"] for e in entries] == [
        real["import_id"],
        again["import_id"],
        merchants["import_id"],
    ]
    digest = hashlib.sha256((FIXTURES / "residents_good.csv").read_bytes()).hexdigest()
    first, second, third = entries
    assert first["subject"] == "import" and first["actor"] == "demo"
    assert first["data"] == {
        "kind": "residents",
        "rows": 2,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "file_sha256": digest,
        "source": "console",
    }
    assert (second["data"]["created"], second["data"]["unchanged"]) == (0, 2)
    assert third["data"]["kind"] == "merchants" and third["data"]["created"] == 2
    for entry in entries:
        assert_nothing_personal(entry)


async def test_given_unknown_grids_when_a_file_is_imported_then_no_row_and_no_entry_is_kept(
    migrated_db_url: str,
) -> None:
    await asyncio.to_thread(upgrade, migrated_db_url)
    engine = make_engine(migrated_db_url)
    try:
        sessions = make_sessionmaker(engine)
        store = Store(sessions, EventBus(), SystemClock())
        data = (FIXTURES / "residents_good.csv").read_bytes()
        # the grids the file names do not exist in an empty registry: the rows are bad,
        # so nothing may be written, no entry either
        report, import_id = await run_import(
            store,
            kind="residents",
            name="r.csv",
            data=data,
            dry_run=False,
            actor="admin",
            source="console",
        )
        assert not report.ok and import_id is None
        async with sessions() as session:
            events = (await session.execute(select(func.count()).select_from(Event))).scalar()
            rows = (await session.execute(select(func.count()).select_from(Resident))).scalar()
        assert (events, rows) == (0, 0)
    finally:
        await engine.dispose()


def test_given_the_cli_when_importing_then_one_entry_names_the_cli_user_and_no_person(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "yijing.db"
    url = f"sqlite+aiosqlite:///{db}"
    monkeypatch.setenv("YIJING_DATABASE_URL", url)
    monkeypatch.setenv("YIJING_DATA_DIR", str(tmp_path))
    merchants = FIXTURES / "merchants_good.csv"
    # grids come from the demo registry; a bare database has none, so seed it first
    assert main(["db", "upgrade"]) == 0
    asyncio.run(_seed_grids(url))
    assert main(["import", "merchants", str(merchants), "--dry-run"]) == 0
    assert asyncio.run(_entries(url)) == []
    assert main(["import", "merchants", str(merchants)]) == 0
    out = capsys.readouterr().out
    entries = asyncio.run(_entries(url))
    assert len(entries) == 1
    entry = entries[0]
    assert f"import id {entry['subject_id']}" in out
    assert entry["actor"].startswith("cli:")
    assert entry["data"]["source"] == "cli"
    assert (entry["data"]["kind"], entry["data"]["created"]) == ("merchants", 2)
    assert entry["data"]["file_sha256"] == hashlib.sha256(merchants.read_bytes()).hexdigest()
    assert_nothing_personal(entry)


async def _seed_grids(url: str) -> None:
    from registry import repository as repo
    from registry.demo import generate

    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            await repo.add_community(session, community=generate(residents=5))
            await session.commit()
    finally:
        await engine.dispose()


async def _entries(url: str) -> list[dict[str, Any]]:
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            rows = (
                await session.execute(
                    select(Event).where(Event.name == "registry.imported").order_by(Event.seq)
                )
            ).scalars()
            return [
                {"subject_id": e.subject_id, "actor": e.actor, "data": e.data, "name": e.name}
                for e in rows
            ]
    finally:
        await engine.dispose()
