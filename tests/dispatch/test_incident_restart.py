"""A restart between "fixed" and the callbacks: each linked caller is called back exactly
once, whether their callback was placed, recorded but waiting for the line, or not yet
recorded when the process died (SQLite and PostgreSQL, the real scheduler after the
restart)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import time
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from dispatch.config import DispatchConfig
from dispatch.timers import ManualTimers, Timers
from eventlog.clock import ManualClock, SystemClock
from operator_console.app import create_app, services_key
from tests.conftest import MORNING, eventually, make_settings
from tests.dispatch.test_incidents import GRID_PHONES
from tests.dispatch.test_restart import RecordingPBX, api

NEVER = time(23, 59, 59, 999999)
CONFIG = DispatchConfig(
    match_seed=7, offer_timeout_s=600, incident_callback_batch=1, incident_callback_gap_s=1
)


@asynccontextmanager
async def life(
    tmp_path: Path,
    db_url: str,
    pbx: RecordingPBX,
    clock: ManualClock | SystemClock,
    timers: Timers | None = None,
    *,
    quiet: bool = True,
    channels: int = CONFIG.outbound_channels,
) -> AsyncIterator[TestClient[Any, Any]]:
    config = CONFIG if quiet else replace(CONFIG, quiet_start=NEVER, quiet_end=time(0))
    app = create_app(
        make_settings(tmp_path, db_url),
        telephony=pbx,
        clock=clock,
        timers=timers,
        dispatch_config=replace(config, outbound_channels=channels),
    )
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def _keypad_water(client: TestClient[Any, Any], pbx: RecordingPBX, phone: str) -> str:
    ref = await pbx.dial_in(phone)
    for digit in "511":

        async def asking() -> bool:
            call = pbx.calls.get(ref)
            return bool(call and call.waiting_digits)

        await eventually(asking)
        await pbx.press(ref, digit)
    return ref


async def test_given_a_restart_between_fixed_and_the_callbacks_then_each_is_placed_once(
    tmp_path: Path, seeded_db_url: str
) -> None:
    dialled: list[str] = []
    clock = ManualClock(MORNING)
    timers = ManualTimers(clock)
    pbx = RecordingPBX(dialled)
    async with life(tmp_path, seeded_db_url, pbx, clock, timers) as one:
        refs = [await _keypad_water(one, pbx, phone) for phone in GRID_PHONES[:3]]

        async def call_ids() -> Any:
            calls = await api(one, "GET", "/tickets")
            ids = [t["call_id"] for t in calls if t["category_code"] == "water"]
            return ids if len(ids) == 3 else None

        ids = await eventually(call_ids)
        assert len(refs) == 3
        incident = await api(one, "POST", "/incidents", json={"category": "water", "call_ids": ids})
        await api(one, "POST", f"/incidents/{incident['id']}/fixed", json={})
        await timers.advance(0)  # the first callback is placed ...
        await eventually(lambda: _dialled(dialled, 1))
        pbx.set_link(False)
        await timers.advance(1)  # ... the second is recorded and waits for the line ...

        async def waiting() -> bool:
            detail = await api(one, "GET", f"/incidents/{incident['id']}")
            return bool(detail["callbacks"].get("placed") == 2)

        await eventually(waiting)
        # ... and the process dies before the third (its timer lived in this process only)
    first_life = Counter(n for n in dialled if n in GRID_PHONES)
    assert sorted(first_life.values()) == [1]

    # the real scheduler runs on real time; no quiet hours, whatever the hour of the run
    async with life(
        tmp_path, seeded_db_url, RecordingPBX(dialled), SystemClock(), quiet=False
    ) as two:
        await eventually(lambda: _dialled(dialled, 3), within=15)
        keys = two.app[services_key].timers  # type: ignore[index]

        async def settled() -> bool:
            detail = await api(two, "GET", f"/incidents/{incident['id']}")
            return f"incident:{incident['id']}" not in await keys.keys() and not detail[
                "callbacks"
            ].get("pending")

        await eventually(settled, within=15)
    assert Counter(n for n in dialled if n in GRID_PHONES) == dict.fromkeys(GRID_PHONES[:3], 1)


async def _dialled(dialled: list[str], n: int) -> bool:
    return len([x for x in dialled if x in GRID_PHONES]) >= n
