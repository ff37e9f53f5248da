"""Kill and restart: no ticket, offer or deadline lost, no merchant called twice for one
offer, overdue deadlines fire once. Real APScheduler job store on SQLite and PostgreSQL,
two apps one after the other on the same database; and the reconciler with manual timers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from dispatch.config import DispatchConfig
from eventlog.clock import LOCAL_TZ, SystemClock
from operator_console.app import create_app, services_key
from providers.memory import MemoryPBX
from tests.conftest import DEMO_PASSWORD, Harness, eventually, make_settings
from tests.dispatch.test_cascade import live_offer_count, new_ticket


class ShiftedClock(SystemClock):
    """The real time moved by an offset: deadlines computed now fall due soon."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


def next_morning() -> ShiftedClock:
    """Real time moved forward to the next 10:00 in Shanghai, when every pharmacy is open.

    Moving forward only keeps every timer in the future of the real scheduler's clock.
    """
    now = datetime.now(LOCAL_TZ)
    target = now.replace(hour=10, minute=0, second=0, microsecond=0)
    if target < now:
        target += timedelta(days=1)
    return ShiftedClock(target - now)


class RecordingPBX(MemoryPBX):
    """The memory PBX that remembers every originate it was asked for."""

    def __init__(self, log: list[str]) -> None:
        super().__init__(time_scale=1.0, ring_timeout_s=300)
        self.log = log

    async def originate(self, *, ref: str, number: str, **kw: Any) -> None:
        self.log.append(number)
        await super().originate(ref=ref, number=number, **kw)


@asynccontextmanager
async def app_on(
    tmp_path: Path, seeded_db_url: str, pbx: MemoryPBX, clock: SystemClock | None = None
) -> AsyncIterator[TestClient[Any, Any]]:
    """One process's life: the app with the real scheduler on the database."""
    app = create_app(
        make_settings(tmp_path, seeded_db_url),
        telephony=pbx,
        clock=clock,
        dispatch_config=DispatchConfig(match_seed=7, offer_timeout_s=600, parallel_offers=1),
    )
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def api(client: TestClient[Any, Any], method: str, path: str, **kw: Any) -> Any:
    resp = await client.post(
        "/api/v1/login", json={"username": "operator", "password": DEMO_PASSWORD}
    )
    token = (await resp.json())["token"]
    resp = await client.request(
        method, "/api/v1" + path, headers={"Authorization": f"Bearer {token}"}, **kw
    )
    assert resp.status < 300, await resp.text()
    return await resp.json()


async def test_given_an_offer_ringing_when_the_process_dies_then_the_next_start_moves_on_once(
    tmp_path: Path, seeded_db_url: str
) -> None:
    called: list[str] = []
    morning = next_morning()
    async with app_on(tmp_path, seeded_db_url, RecordingPBX(called), clock=morning) as one:
        ticket = await api(
            one, "POST", "/tickets", json={"category": "groceries", "resident_id": 1}
        )
        await api(one, "POST", f"/tickets/{ticket['id']}/dispatch", json={})
        await eventually(lambda: _has_call(one))
        keys = await one.app[services_key].timers.keys()  # type: ignore[index]
        first = (await api(one, "GET", f"/tickets/{ticket['id']}"))["offers"][0]
        assert {f"deadline:{ticket['id']}", f"offer:{first['id']}"} <= keys
        # killed between the offer call and the merchant's answer (or accept and write)
    async with app_on(tmp_path, seeded_db_url, RecordingPBX(called), clock=morning) as two:
        services = two.app[services_key]  # type: ignore[index]

        async def moved_on() -> Any:
            detail = await api(two, "GET", f"/tickets/{ticket['id']}")
            return detail if len(detail["offers"]) == 2 else None

        detail = await eventually(moved_on)
        assert [o["state"] for o in detail["offers"]] == ["expired", "placed"] or [
            o["state"] for o in detail["offers"]
        ] == ["expired", "ringing"]
        assert len(called) == 2 and called[0] != called[1]  # nobody called twice
        keys = await services.timers.keys()
        assert f"deadline:{ticket['id']}" in keys  # survived the restart in the job store
        assert f"offer:{detail['offers'][1]['id']}" in keys
        assert f"offer:{first['id']}" not in keys


async def _has_call(client: TestClient[Any, Any]) -> bool:
    pbx = client.app[services_key].telephony  # type: ignore[index]
    return any(c["direction"] == "out" for c in pbx.snapshot())


async def test_given_a_deadline_due_while_down_when_started_then_it_fires_exactly_once(
    tmp_path: Path, seeded_db_url: str
) -> None:
    # the first life runs 60 minutes minus 2 s behind: the medicine deadline is 2 s away
    behind = ShiftedClock(-timedelta(minutes=60) + timedelta(seconds=2))
    async with app_on(tmp_path, seeded_db_url, RecordingPBX([]), clock=behind) as one:
        ticket = await api(one, "POST", "/tickets", json={"category": "medicine", "resident_id": 1})
        other = await api(one, "POST", "/tickets", json={"category": "groceries", "resident_id": 2})
        # a crash between the commit and the scheduling: the second ticket has no timer
        await one.app[services_key].timers.cancel(f"deadline:{other['id']}")  # type: ignore[index]
    await asyncio.sleep(2.5)
    async with app_on(tmp_path, seeded_db_url, RecordingPBX([])) as two:
        services = two.app[services_key]  # type: ignore[index]

        async def escalated() -> Any:
            events = await services.store.events_for("ticket", ticket["id"])
            return [e for e in events if e["name"] == "ticket.escalated"]

        await eventually(escalated)
        await asyncio.sleep(0.5)  # a second firing would show by now
        assert len(await escalated()) == 1
        detail = await api(two, "GET", f"/tickets/{ticket['id']}")
        assert detail["escalation_level"] == 1
        keys = await services.timers.keys()
        assert f"escalate:{ticket['id']}" in keys and f"deadline:{ticket['id']}" not in keys
        assert f"deadline:{other['id']}" in keys  # the reconciler put it back


async def test_given_gaps_when_reconciling_then_timers_are_repaired_and_orphans_cancelled(
    harness: Harness,
) -> None:
    h = harness
    reconciler = h.services.dispatch.reconciler
    tid = await new_ticket(h, "medicine")
    await h.call("POST", f"/tickets/{tid}/dispatch", json={})
    [offer] = await live_offer_count(h, tid, 1)
    await h.timers.cancel(f"offer:{offer['id']}")
    await h.timers.cancel(f"deadline:{tid}")
    await h.timers.schedule("deadline:99999", h.clock.now())
    report = await reconciler.reconcile()
    assert report["scheduled"] == 2 and report["cancelled"] == 1
    assert {f"offer:{offer['id']}", f"deadline:{tid}"} <= set(h.timers.pending)
    assert "deadline:99999" not in h.timers.pending
    assert await reconciler.reconcile() == {
        "scheduled": 0,
        "cancelled": 0,
        "lost_calls": 0,
        "closed": 0,
        "dispatched": 0,
        "skipped": 0,
    }


async def test_given_a_call_the_backend_forgot_when_starting_then_its_offer_expires_once(
    harness: Harness,
) -> None:
    h = harness
    tid = await new_ticket(h, "medicine")
    await h.call("POST", f"/tickets/{tid}/dispatch", json={})
    await live_offer_count(h, tid, 1)
    calls = [c for c in h.pbx.snapshot() if c["direction"] == "out"]
    placed: list[str] = []
    original = h.pbx.originate

    async def recording(**kw: Any) -> None:
        placed.append(kw["ref"])
        await original(**kw)

    h.pbx.originate = recording  # type: ignore[method-assign]
    h.pbx.calls.clear()  # the backend restarted and knows nothing
    report = await h.services.dispatch.reconciler.reconcile(startup=True)
    await h.settle()
    assert report["lost_calls"] == 1
    detail = await h.call("GET", f"/tickets/{tid}")
    assert detail["offers"][0]["state"] == "expired"
    assert len(detail["offers"]) == 2
    assert calls[0]["ref"] not in placed and len(placed) == 1  # never re-originated
