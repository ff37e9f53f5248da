"""`yijing user add` goes through the registry's use case: the login and its
`user.created` event commit together (the actor names the CLI), and a taken name or a
merchant login without its merchant is refused with a message, on both databases."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from eventlog.bus import EventBus
from eventlog.clock import SystemClock
from eventlog.db import make_engine, make_sessionmaker
from eventlog.store import Store
from operator_console.cli import main


async def test_given_the_cli_when_it_adds_logins_then_each_has_its_event_and_a_taken_name_is_refused(  # noqa: E501
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("YIJING_DATABASE_URL", db_url)
    monkeypatch.setenv("YIJING_DATA_DIR", str(tmp_path))
    # the deploy step first: on PostgreSQL the other commands only check the revision
    assert await asyncio.to_thread(main, ["db", "upgrade"]) == 0
    capfd.readouterr()
    password = "a-long-password"
    add = ["user", "add", "xiaowang", "--role", "supervisor", "--password", password]
    assert await asyncio.to_thread(main, add) == 0
    assert "user xiaowang (supervisor) added" in capfd.readouterr().out
    assert await asyncio.to_thread(main, add) == 1
    assert "username xiaowang is taken" in capfd.readouterr().err
    shop = ["user", "add", "shop", "--role", "merchant", "--password", password]
    assert await asyncio.to_thread(main, shop) == 1
    assert "merchant login needs merchant_id" in capfd.readouterr().err

    engine = make_engine(db_url)
    try:
        events = await Store(make_sessionmaker(engine), EventBus(), SystemClock()).events_since(0)
    finally:
        await engine.dispose()
    assert [(e["name"], e["data"]) for e in events] == [("user.created", {"role": "supervisor"})]
    assert events[0]["actor"].startswith("cli:")
    assert password not in repr(events)
