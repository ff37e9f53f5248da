"""A restart in the middle of a wellbeing round places no call twice and forgets none
(SQLite and PostgreSQL): a try cut off by the restart counts as a try and the next one
follows; a round that fell due while the process was down starts when it is back."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from dispatch.config import DispatchConfig
from dispatch.models import Call
from dispatch.timers import ManualTimers
from eventlog.clock import ManualClock
from operator_console.app import create_app, services_key
from tests.conftest import MORNING, eventually, make_settings
from tests.dispatch.test_restart import RecordingPBX, api

PLAN = {"window_start": "10:00", "window_end": "10:30"}
DUE_S = 30 * 60


@asynccontextmanager
async def life(
    tmp_path: Path, db_url: str, pbx: RecordingPBX, at: datetime
) -> AsyncIterator[tuple[TestClient[Any, Any], ManualTimers]]:
    """One process's life on the database: its own clock (from `at`) and timers."""
    clock = ManualClock(at)
    timers = ManualTimers(clock)
    app = create_app(
        make_settings(tmp_path, db_url),
        telephony=pbx,
        clock=clock,
        timers=timers,
        dispatch_config=DispatchConfig(match_seed=7),
    )
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client, timers
    finally:
        await client.close()


async def resident_phone(client: TestClient[Any, Any]) -> str:
    detail = await api(client, "GET", "/residents/1")
    phones = detail.get("phones") or []
    number = phones[0]["number"] if phones and isinstance(phones[0], dict) else phones[0]
    return str(number)


async def wellbeing_refs(client: TestClient[Any, Any]) -> list[str]:
    store = client.app[services_key].store  # type: ignore[index]
    async with store.read() as session:
        refs = (
            await session.execute(
                select(Call.ref).where(Call.purpose == "wellbeing").order_by(Call.id)  # type: ignore[call-overload,arg-type]
            )
        ).scalars()
        return [str(r) for r in refs]


async def ringing(pbx: RecordingPBX, ref_count: int) -> str:
    async def check() -> str | None:
        rung = [c for c in pbx.snapshot() if c["ref"].startswith("wb-")]
        live = [c["ref"] for c in rung if c["state"] == "ringing"]
        return live[-1] if len(rung) >= ref_count and live else None

    result: str = await eventually(check)
    return result


async def today(client: TestClient[Any, Any]) -> dict[str, Any]:
    rounds = (await api(client, "GET", "/residents/1/wellbeing"))["rounds"]
    return dict(rounds[0]) if rounds else {}


async def test_given_a_restart_while_a_try_rings_then_each_try_is_placed_once(
    tmp_path: Path, seeded_db_url: str
) -> None:
    dialled: list[str] = []
    pbx = RecordingPBX(dialled)
    async with life(tmp_path, seeded_db_url, pbx, MORNING) as (one, timers):
        phone = await resident_phone(one)
        await api(one, "PUT", "/residents/1/wellbeing", json=PLAN)
        await timers.advance(DUE_S)
        first = await ringing(pbx, 1)
        await pbx.party_hangup(first)  # nobody answers the first try

        async def retry_due() -> bool:
            return bool((await today(one)).get("attempts") == 1) and "wellbeing:1" in (
                await timers.keys()
            )

        await eventually(retry_due)
        await timers.advance(301)
        await ringing(pbx, 2)  # the second try rings when the process dies
        stopped_at = timers.clock.now()
    assert Counter(dialled)[phone] == 2

    pbx_two = RecordingPBX(dialled)
    async with life(tmp_path, seeded_db_url, pbx_two, stopped_at) as (two, timers_two):
        # the start-up check finds the second try gone with the old process: a try spent
        await eventually(lambda: _state_with_retry(two))
        assert Counter(dialled)[phone] == 2  # nothing placed again at start
        await timers_two.advance(301)
        third = await ringing(pbx_two, 1)
        await pbx_two.answer(third)

        async def asking() -> bool:
            call = pbx_two.calls.get(third)
            return bool(call and call.waiting_digits)

        await eventually(asking)
        await pbx_two.press(third, "1")

        async def checked_in() -> dict[str, Any] | None:
            rnd = await today(two)
            return rnd if rnd.get("state") == "checked_in" else None

        rnd = await eventually(checked_in)
        assert rnd["attempts"] == 3
        refs = await wellbeing_refs(two)
    assert Counter(dialled)[phone] == 3
    assert len(refs) == len(set(refs)) == 3


async def _state_with_retry(client: TestClient[Any, Any]) -> bool:
    rnd = await today(client)
    return (
        rnd.get("state") == "calling"
        and rnd.get("attempts") == 2
        and not any(ref.endswith("-3") for ref in await wellbeing_refs(client))
    )


async def test_given_the_process_down_when_a_round_falls_due_then_it_starts_once_back(
    tmp_path: Path, seeded_db_url: str
) -> None:
    dialled: list[str] = []
    async with life(tmp_path, seeded_db_url, RecordingPBX(dialled), MORNING) as (one, _):
        phone = await resident_phone(one)
        await api(one, "PUT", "/residents/1/wellbeing", json=PLAN)
    # the timer lived in that process only; the next one starts after the window's end
    later = ManualClock(MORNING)
    later.advance(DUE_S + 60)
    pbx = RecordingPBX(dialled)
    async with life(tmp_path, seeded_db_url, pbx, later.now()) as (_, timers):
        assert "wellbeing:1" in await timers.keys()  # the reconciler wants it back
        await timers.advance(0)
        await ringing(pbx, 1)
        await timers.advance(0)  # firing again changes nothing
    assert Counter(dialled)[phone] == 1
