"""A phone outage on the real adapters: the app with the Asterisk adapter against the fake
AMI server (link refused), and with the Twilio adapter against the loopback REST API
(answering 503). An order dispatched meanwhile waits, counts against nobody, and its call
is placed once, with its own ref, when the backend is back. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from dispatch.config import DispatchConfig
from dispatch.timers import ManualTimers
from eventlog.clock import ManualClock
from operator_console.app import create_app
from providers.asterisk.config import AsteriskConfig
from providers.asterisk.telephony import AsteriskTelephony
from providers.base import Telephony
from providers.twilio import TwilioConfig, TwilioTelephony
from tests.conftest import MORNING, Harness, eventually, make_settings
from tests.dispatch.test_cascade import new_ticket
from tests.providers.asterisk.fake_ami import FakeAMI
from tests.providers.twilio.twilio_fakes import ACCOUNT, PLATFORM, PUBLIC, TOKEN, FakeTwilioApi


@asynccontextmanager
async def app_on(tmp_path: Path, db_url: str, backend: Telephony) -> AsyncIterator[Harness]:
    """The usual test app (manual clock and timers) on a real telephony adapter."""
    clock = ManualClock(MORNING)
    timers = ManualTimers(clock)
    app = create_app(
        make_settings(tmp_path, db_url),
        telephony=backend,
        clock=clock,
        timers=timers,
        dispatch_config=DispatchConfig(match_seed=7, offer_timeout_s=90, parallel_offers_urgent=1),
    )
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield Harness(client, None, clock, timers, {})  # type: ignore[arg-type]
    finally:
        await client.close()


async def line_event(h: Harness, name: str) -> Any:
    async def check() -> Any:
        events = await h.call("GET", "/events?since=0")
        return [e for e in events if e["name"] == name]

    return await eventually(check)


async def waiting_offer(h: Harness, tid: int) -> Any:
    """The ticket's one offer, waiting for the line: live, never failed."""
    await h.call("POST", f"/tickets/{tid}/dispatch", json={})

    async def waiting() -> Any:
        detail = await h.call("GET", f"/tickets/{tid}")
        return detail if "offer.waiting" in [e["name"] for e in detail["timeline"]] else None

    detail = await eventually(waiting)
    assert detail["state"] == "offering"
    assert [o["state"] for o in detail["offers"]] == ["placed"]
    [offer] = list(await h.services.dispatch.offers.offers(tid))
    record = await h.call("GET", f"/merchants/{offer.merchant_id}/record")
    assert record["offers"] == 0
    return offer


async def resumed(h: Harness, tid: int) -> Any:
    """The ticket once its waiting offer has been resumed (`offer.resumed`)."""

    async def check() -> Any:
        detail = await h.call("GET", f"/tickets/{tid}")
        return detail if "offer.resumed" in [e["name"] for e in detail["timeline"]] else None

    return await eventually(check)


async def test_given_the_ami_link_refused_when_dispatching_then_the_offer_waits_then_placed_once(
    tmp_path: Path, seeded_db_url: str
) -> None:
    ami = await FakeAMI().start()
    config = AsteriskConfig(
        host="127.0.0.1",
        port=ami.port,
        username="yijing",
        secret="s3cret",
        dial_template="PJSIP/{number}@trunk",
        agi_host="127.0.0.1",
        agi_port=0,
        action_timeout_s=0.5,
        connect_timeout_s=0.5,
        backoff_initial_s=0.02,
        backoff_max_s=0.1,
        startup_wait_s=2.0,
    )
    try:
        async with app_on(tmp_path, seeded_db_url, AsteriskTelephony(config)) as h:
            await line_event(h, "telephony.up")
            await ami.go_away()  # Asterisk restarts: the link drops, reconnects are refused
            await line_event(h, "telephony.down")
            tid = await new_ticket(h)

            offer = await waiting_offer(h, tid)

            assert ami.named("Originate") == []
            await ami.come_back()
            await eventually(lambda: _async(len(ami.named("Originate")) == 1))
            [originate] = ami.named("Originate")
            assert originate["Variable"] == [f"YIJING_REF={offer.call_ref}"]
            # the offer's clock restarts once the placed call is recorded (after Originate)
            detail = await resumed(h, tid)
            assert [o["state"] for o in detail["offers"]] == ["placed"]
            assert len(ami.named("Originate")) == 1
    finally:
        await ami.close()


async def test_given_the_twilio_api_failing_when_dispatching_then_the_offer_waits_then_placed_once(
    tmp_path: Path, seeded_db_url: str
) -> None:
    async with FakeTwilioApi() as api:
        config = TwilioConfig(
            account_sid=ACCOUNT,
            auth_token=TOKEN,
            public_url=PUBLIC,
            from_number=PLATFORM,
            api_base_url=api.url,
            handoff_wait_s=0.0,
            probe_initial_s=0.02,
            probe_max_s=0.1,
        )
        async with app_on(tmp_path, seeded_db_url, TwilioTelephony(config)) as h:
            await line_event(h, "telephony.up")
            api.outage_status = 503  # a Twilio incident: every request answered 503
            tid = await new_ticket(h)

            offer = await waiting_offer(h, tid)

            await line_event(h, "telephony.down")
            assert api.sids_created == []
            api.outage_status = None
            await eventually(lambda: _async(len(api.sids_created) == 1))
            placed = [r for r in api.calls_created() if r.form["Url"].endswith(offer.call_ref)]
            assert len(placed) == 2  # the refused attempt and the placed call: one ref
            assert placed[-1].form["Url"] == f"{PUBLIC}/voice?ref={offer.call_ref}"
            detail = await h.call("GET", f"/tickets/{tid}")
            assert [o["state"] for o in detail["offers"]] == ["placed"]
            assert "offer.failed" not in [e["name"] for e in detail["timeline"]]


async def _async(value: bool) -> bool:
    return value
