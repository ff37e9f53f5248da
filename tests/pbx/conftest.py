"""The real-PBX tier: one Asterisk 20 per test session (per xdist worker), Yijing per test.

Every test here is marked `asterisk`. Where no Asterisk can be had (no source, no build:
`make system` builds it), the tier is skipped and says why in the summary; on the
project's machines it always runs.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.conftest import SeededTemplates
from tests.pbx.harness import (
    Pbx,
    Press,
    SippRun,
    Yijing,
    answering_scenario,
    find_asterisk,
    prompt_build,
    sipp,
    stop_leftover_sipp,
)


@pytest.fixture(autouse=True)
async def no_sipp_left_running() -> AsyncIterator[None]:
    """Each test's SIPp processes end (and are reaped) inside that test's event loop."""
    yield
    await stop_leftover_sipp()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tier's tests, so `-m asterisk` / `-m "not asterisk"` select them."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.asterisk)


@pytest.fixture(scope="session")
def pbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pbx]:
    """The session's Asterisk, configured as INSTALL.md says, on loopback ports of its own."""
    home, reason = find_asterisk()
    if home is None:
        pytest.skip(f"asterisk tier: {reason}")
    run = tmp_path_factory.mktemp("asterisk")
    prompts = prompt_build(run / "prompts")
    server = Pbx(home=home, run_dir=run, prompts_dir=prompts)
    server.configure()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def around_the_clock(db: Path) -> None:
    """Every demo merchant open day and night: the tier runs on the real clock, at any
    hour CI happens to start it, and a cascade needs more than the one all-night pharmacy."""
    hours = json.dumps({str(day): [["00:00", "23:59"]] for day in range(7)})
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("UPDATE merchant SET hours = ?, holidays = '{}'", (hours,))
        conn.commit()


@pytest.fixture
async def desk(pbx: Pbx, tmp_path: Path) -> AsyncIterator[SippRun]:
    """Every operator's desk phone: answers each call at once and keeps it up."""
    run = await sipp(answering_scenario(tmp_path / "desk", "desk"), port=pbx.desk_port)
    yield run
    await run.stop()


@pytest.fixture
async def yijing(
    pbx: Pbx, tmp_path: Path, seeded_templates: SeededTemplates, desk: SippRun
) -> AsyncIterator[Yijing]:
    """Yijing with the asterisk backend, on a copy of the seeded demo database (SQLite:
    the tier is about the PBX; the database tiers run elsewhere)."""
    template = await seeded_templates.url("sqlite")
    db = tmp_path / "yijing.db"
    shutil.copyfile(template.removeprefix("sqlite+aiosqlite:///"), db)
    around_the_clock(db)
    app = Yijing(
        pbx=pbx,
        folder=tmp_path / "yijing",
        db_url=f"sqlite+aiosqlite:///{db}",
        settings={
            "YIJING_OFFER_TIMEOUT_S": "60",
            "YIJING_RING_TIMEOUT_S": "10",
            "YIJING_QUEUE_ANNOUNCE_S": "30",
            # the tier's desk phones are chan_sip peers named by the operator's id
            "YIJING_ASTERISK_DESK_TEMPLATE": "SIP/{endpoint}",
        },
    )
    await app.start()
    try:
        yield app
    finally:
        with contextlib.suppress(Exception):
            await app.close()
        # nothing of this test may ring on into the next one
        pbx.command("channel request hangup all")


__all__ = ["Press"]
