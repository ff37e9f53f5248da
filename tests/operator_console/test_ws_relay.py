"""The live stream of one process shows what another process wrote (PostgreSQL: the
relay's LISTEN/NOTIFY; a second store on an engine of its own stands for the other
process, which takes no instance lock), in order, after the backlog from `since=seq`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from eventlog.bus import EventBus
from eventlog.clock import ManualClock
from eventlog.db import make_engine, make_sessionmaker
from eventlog.store import Store
from tests.conftest import Harness


@pytest.mark.parametrize("seeded_db_url", ["postgresql"], indirect=True)
async def test_given_an_open_stream_when_another_process_writes_then_the_client_gets_it(
    harness: Harness, seeded_db_url: str
) -> None:
    h = harness
    svc = h.services
    other_engine = make_engine(seeded_db_url)
    try:
        other = Store(make_sessionmaker(other_engine), EventBus(), ManualClock())
        # the app follows other processes' events itself (its composition root)
        latest = (await h.call("GET", "/events/latest"))["seq"]
        async with other.tx() as tx:
            tx.emit("test.remote", "system", "before")  # in the backlog
        token = await h.login("operator")
        ws = await h.client.ws_connect(
            f"/api/v1/ws?since={latest}", headers={"Authorization": f"Bearer {token}"}
        )
        first = await _next(ws)
        assert first["subject_id"] == "before"
        async with other.tx() as tx:
            tx.emit("test.remote", "system", "live-1")
            tx.emit("test.remote", "system", "live-2")
        live = [await _next(ws), await _next(ws)]
        assert [e["subject_id"] for e in live] == ["live-1", "live-2"]
        assert first["seq"] < live[0]["seq"] < live[1]["seq"]
        # the app's bus has it too (its caches follow other processes' changes)
        assert svc.store.published_seq == live[1]["seq"]
        await ws.close()
    finally:
        await other_engine.dispose()


async def _next(ws: Any) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), 15)
    event: dict[str, Any] = json.loads(msg.data)
    return event
