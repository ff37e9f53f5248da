"""A restart mid-notice: each recipient is dialled once. The calls the dead process had
placed are `lost` (they may have rung: not placed again); the others waited in the
outbound engine's queue in the database, and the next process places them, once each."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from dispatch.timers import ManualTimers
from eventlog.clock import ManualClock, SystemClock
from tests.conftest import DEMO_PASSWORD, MORNING, eventually
from tests.dispatch.test_campaigns import NOTICE, PILOT
from tests.dispatch.test_incident_restart import life
from tests.dispatch.test_restart import RecordingPBX


async def as_user(
    client: TestClient[Any, Any], user: str, method: str, path: str, **kw: Any
) -> Any:
    resp = await client.post("/api/v1/login", json={"username": user, "password": DEMO_PASSWORD})
    token = (await resp.json())["token"]
    resp = await client.request(
        method, "/api/v1" + path, headers={"Authorization": f"Bearer {token}"}, **kw
    )
    assert resp.status < 300, await resp.text()
    return await resp.json()


async def test_given_a_restart_mid_notice_then_each_recipient_is_dialled_once(
    tmp_path: Path, seeded_db_url: str
) -> None:
    dialled: list[str] = []
    clock = ManualClock(MORNING)
    timers = ManualTimers(clock)
    pbx = RecordingPBX(dialled)
    # two outbound channels: two are placed, the others wait in the queue
    async with life(tmp_path, seeded_db_url, pbx, clock, timers, channels=2) as one:
        await as_user(one, "demo", "POST", "/grids", json={"code": "T1", "name": "试点网格"})
        phones: list[list[str]] = []
        for rid in PILOT:
            card = await as_user(one, "demo", "GET", f"/residents/{rid}?reason=edit")
            phones.append([p["number"] for p in card["phones"]])
            body = {"grid_code": "T1", "version": str(card["revision"])}
            await as_user(one, "demo", "PATCH", f"/residents/{rid}", json=body)
        made = await as_user(one, "supervisor", "POST", "/campaigns", json=NOTICE)
        await timers.advance(0)  # the first two are placed, then the process dies

        async def two_dialled() -> bool:
            return len(dialled) >= 2

        await eventually(two_dialled)
    assert len(dialled) == 2

    # the real scheduler runs on real time; no quiet hours, whatever the hour of the run
    async with life(
        tmp_path, seeded_db_url, RecordingPBX(dialled), SystemClock(), quiet=False
    ) as two:

        async def all_called() -> Any:
            p = await as_user(two, "supervisor", "GET", f"/campaigns/{made['id']}")
            return p if p["called"] == 5 and p["outcomes"]["lost"] == 2 else None

        await eventually(all_called, within=30)
    # one number of each recipient (a mobile first), each dialled once
    assert len(dialled) == 5 and set(Counter(dialled).values()) == {1}, dialled
    assert all(len(set(numbers) & set(dialled)) == 1 for numbers in phones), dialled
