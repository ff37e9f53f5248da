"""Migrations once per deploy: a database's revision against this Yijing's scripts, the
start that refuses a database behind or ahead (`YIJING_MIGRATE=check`, PostgreSQL's
default) or migrates it (`auto`, SQLite's), and `yijing db check` / `db upgrade`, on both
databases (each test on a database of its own)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from eventlog.db import sync_url
from operator_console.app import create_app
from operator_console.cli import main
from operator_console.migrate import SchemaMismatch, alembic_config, schema_state, upgrade
from providers.memory import MemoryPBX
from tests.conftest import make_settings, started_harness

ROOT = Path(__file__).resolve().parents[2]
HEAD = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()[0]
OLDER = "0015_wellbeing"
FUTURE = "0099_from_a_newer_yijing"


def _stamp(url: str, revision: str) -> None:
    """Set the database's recorded revision, as a newer Yijing's migration would."""
    engine = create_engine(sync_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    finally:
        engine.dispose()


async def _at(url: str, revision: str) -> str:
    """The database migrated to `revision`; a revision the scripts lack is stamped."""
    await asyncio.to_thread(upgrade, url, HEAD if revision == FUTURE else revision)
    if revision == FUTURE:
        await asyncio.to_thread(_stamp, url, FUTURE)
    return url


async def test_given_databases_at_each_revision_when_checked_then_each_state_is_named(
    db_url: str,
) -> None:
    empty = await asyncio.to_thread(schema_state, db_url)
    assert (empty.status, empty.current, empty.head, empty.ok) == ("empty", (), (HEAD,), False)
    assert "run `yijing db upgrade`" in empty.message

    await _at(db_url, OLDER)
    behind = await asyncio.to_thread(schema_state, db_url)
    assert (behind.status, behind.current) == ("behind", (OLDER,))
    assert OLDER in behind.message and HEAD in behind.message
    assert "run `yijing db upgrade`" in behind.message

    await _at(db_url, HEAD)
    current = await asyncio.to_thread(schema_state, db_url)
    assert (current.status, current.current, current.ok) == ("current", (HEAD,), True)

    await _at(db_url, FUTURE)
    ahead = await asyncio.to_thread(schema_state, db_url)
    assert (ahead.status, ahead.current) == ("ahead", (FUTURE,))
    assert FUTURE in ahead.message and HEAD in ahead.message
    assert "upgrade this Yijing" in ahead.message


def test_given_no_sqlite_file_when_checked_then_empty_and_no_file_is_made(tmp_path: Path) -> None:
    db = tmp_path / "none.db"
    assert schema_state(f"sqlite+aiosqlite:///{db}").status == "empty"
    assert not db.exists()


@pytest.mark.parametrize("revision", ["empty", OLDER, FUTURE])
async def test_given_check_mode_when_the_app_starts_on_a_database_not_at_head_then_it_refuses(
    tmp_path: Path, db_url: str, revision: str
) -> None:
    if revision != "empty":
        await _at(db_url, revision)
    before = await asyncio.to_thread(schema_state, db_url)
    app = create_app(make_settings(tmp_path, db_url, migrate="check"), telephony=MemoryPBX())
    client = TestClient(TestServer(app, host="127.0.0.1"))
    hint = "upgrade this Yijing" if revision == FUTURE else "run `yijing db upgrade`"
    with pytest.raises(SchemaMismatch, match=hint.replace("`", ".")):
        await client.start_server()
    await client.close()
    # nothing was migrated or seeded: the database is as it was
    assert await asyncio.to_thread(schema_state, db_url) == before


async def test_given_check_mode_when_the_app_starts_on_a_database_at_head_then_it_serves(
    tmp_path: Path, seeded_db_url: str
) -> None:
    async with started_harness(tmp_path, seeded_db_url, migrate="check") as h:
        assert (await h.client.get("/healthz")).status == 200


async def test_given_auto_mode_when_the_app_starts_on_an_older_database_then_it_upgrades(
    tmp_path: Path, db_url: str
) -> None:
    await _at(db_url, OLDER)
    async with started_harness(tmp_path, db_url, migrate="auto") as h:
        assert (await h.client.get("/healthz")).status == 200
    assert (await asyncio.to_thread(schema_state, db_url)).status == "current"


async def test_given_auto_mode_when_the_database_is_ahead_then_the_app_refuses_too(
    tmp_path: Path, db_url: str
) -> None:
    await _at(db_url, FUTURE)
    app = create_app(make_settings(tmp_path, db_url, migrate="auto"), telephony=MemoryPBX())
    client = TestClient(TestServer(app, host="127.0.0.1"))
    with pytest.raises(SchemaMismatch, match="upgrade this Yijing"):
        await client.start_server()
    await client.close()
    assert (await asyncio.to_thread(schema_state, db_url)).current == (FUTURE,)


def test_given_no_migrate_setting_when_configuring_then_sqlite_migrates_and_postgresql_checks(
    tmp_path: Path,
) -> None:
    assert make_settings(tmp_path, "sqlite+aiosqlite:///x.db").migrate == "auto"
    assert make_settings(tmp_path, "postgresql+asyncpg://h/db").migrate == "check"
    assert make_settings(tmp_path, "postgresql+asyncpg://h/db", migrate="auto").migrate == "auto"
    assert make_settings(tmp_path, "sqlite+aiosqlite:///x.db", migrate="check").migrate == "check"


@pytest.fixture
def cli_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The `yijing` command's environment pointed at this test's database."""
    monkeypatch.setenv("YIJING_DATABASE_URL", db_url)
    monkeypatch.setenv("YIJING_DATA_DIR", str(tmp_path / "data"))
    return db_url


async def test_given_the_cli_when_checking_and_upgrading_then_it_says_where_and_exits_by_state(
    cli_env: str, capfd: pytest.CaptureFixture[str]
) -> None:
    assert await asyncio.to_thread(main, ["db", "check"]) == 1
    assert "no Yijing schema yet" in capfd.readouterr().err

    await _at(cli_env, OLDER)
    assert await asyncio.to_thread(main, ["db", "check"]) == 1
    assert f"at revision {OLDER}, this Yijing needs {HEAD}" in capfd.readouterr().err

    assert await asyncio.to_thread(main, ["db", "upgrade"]) == 0
    assert f"database upgraded from {OLDER} to {HEAD}" in capfd.readouterr().out
    assert await asyncio.to_thread(main, ["db", "check"]) == 0
    assert f"latest revision ({HEAD})" in capfd.readouterr().out
    assert await asyncio.to_thread(main, ["db", "upgrade"]) == 0
    assert "nothing to do" in capfd.readouterr().out

    await asyncio.to_thread(_stamp, cli_env, FUTURE)
    assert await asyncio.to_thread(main, ["db", "check"]) == 1
    assert "upgrade this Yijing" in capfd.readouterr().err
    assert await asyncio.to_thread(main, ["db", "upgrade"]) == 1
    assert "upgrade this Yijing" in capfd.readouterr().err
    assert (await asyncio.to_thread(schema_state, cli_env)).current == (FUTURE,)


async def test_given_an_empty_database_when_upgraded_by_the_cli_then_it_says_from_empty(
    cli_env: str, capfd: pytest.CaptureFixture[str]
) -> None:
    assert await asyncio.to_thread(main, ["db", "upgrade"]) == 0
    assert f"database upgraded from an empty database to {HEAD}" in capfd.readouterr().out


async def test_given_check_mode_when_an_admin_command_meets_an_older_database_then_it_refuses(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("YIJING_MIGRATE", "check")
    await _at(cli_env, OLDER)
    add = ["user", "add", "xiaowang", "--password", "a-long-password"]
    assert await asyncio.to_thread(main, add) == 1
    assert "run `yijing db upgrade`" in capfd.readouterr().err
    assert (await asyncio.to_thread(schema_state, cli_env)).current == (OLDER,)


async def test_given_check_mode_when_yijing_run_meets_an_older_database_then_it_exits_with_the_message(  # noqa: E501
    db_url: str, tmp_path: Path
) -> None:
    await _at(db_url, OLDER)
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("YIJING_")}
    env.update(
        YIJING_ENVIRONMENT="test",
        YIJING_DATABASE_URL=db_url,
        YIJING_DATA_DIR=str(tmp_path / "data"),
        YIJING_SECRET_KEY="test-secret-key-not-for-production",
        YIJING_MIGRATE="check",
        YIJING_PORT="0",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "operator_console.cli",
        "run",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stderr = err.decode()
    assert proc.returncode == 1, stderr
    assert f"yijing: the database is at revision {OLDER}, this Yijing needs {HEAD}" in stderr
    assert "run `yijing db upgrade`" in stderr
    assert "Traceback" not in stderr
