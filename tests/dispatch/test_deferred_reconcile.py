"""A call that waited for the line while the line never went down is placed by the owner's
periodic reconcile, once.

On a standby the port's "line unavailable" also means "no owner took the command within
the relay timeout": the owner's link stayed up the whole time, so no `telephony.up` ever
comes to place the waiting call. The periodic reconcile does (every backend dedupes by ref,
so a call placed meanwhile is not placed again)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from dispatch.config import DispatchConfig
from operator_console.app import create_app, services_key
from providers.base import TelephonyUnavailable
from providers.memory import MemoryPBX
from tests.conftest import DEMO_PASSWORD, eventually, make_settings


class NoOwnerOnce(MemoryPBX):
    """The memory PBX whose first originate is refused as a standby's relay refuses it when
    no owner took the command in time; the link itself stays up."""

    def __init__(self) -> None:
        super().__init__(time_scale=1.0, ring_timeout_s=300)
        self.unowned: list[str] = []
        self.originated: list[str] = []

    async def originate(self, *, ref: str, number: str, **kw: Any) -> None:
        if not self.unowned:
            self.unowned.append(ref)
            raise TelephonyUnavailable("no process owns the PBX link right now")
        self.originated.append(ref)
        await super().originate(ref=ref, number=number, **kw)


@pytest.mark.parametrize("seeded_db_url", ["sqlite", "postgresql"], indirect=True)
async def test_given_a_deferred_call_and_the_line_up_when_reconciling_then_placed_once(
    tmp_path: Path, seeded_db_url: str
) -> None:
    pbx = NoOwnerOnce()
    app = create_app(
        make_settings(tmp_path, seeded_db_url),
        telephony=pbx,
        dispatch_config=DispatchConfig(match_seed=7, offer_timeout_s=600, parallel_offers=1),
    )
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        resp = await client.post(
            "/api/v1/login", json={"username": "operator", "password": DEMO_PASSWORD}
        )
        headers = {"Authorization": f"Bearer {(await resp.json())['token']}"}
        resp = await client.post(
            "/api/v1/tickets", json={"category": "medicine", "resident_id": 1}, headers=headers
        )
        ticket = await resp.json()
        resp = await client.post(
            f"/api/v1/tickets/{ticket['id']}/dispatch", json={}, headers=headers
        )
        assert resp.status == 200, await resp.text()

        async def timeline() -> list[str]:
            resp = await client.get(f"/api/v1/tickets/{ticket['id']}", headers=headers)
            return [e["name"] for e in (await resp.json())["timeline"]]

        async def waiting() -> bool:
            return "offer.waiting" in await timeline()

        await eventually(waiting)
        [ref] = pbx.unowned
        assert pbx.originated == [] and pbx.health().up
        reconciler = app[services_key].dispatch.reconciler
        await reconciler.reconcile()  # the owner's periodic round
        assert pbx.originated == [ref]
        assert [c["ref"] for c in pbx.snapshot() if c["direction"] == "out"] == [ref]
        assert "offer.resumed" in await timeline()
        await reconciler.reconcile()
        assert pbx.originated == [ref]  # never twice
        assert [c["ref"] for c in pbx.snapshot() if c["direction"] == "out"] == [ref]
    finally:
        await client.close()
