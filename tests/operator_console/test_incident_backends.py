"""The outage announcement on the real adapters: the app with the Asterisk adapter
against the fake AMI server (an inbound channel, its FastAGI session) and with the
Twilio adapter behind signed webhooks. A caller of a grid with an open water incident
hears it, slowly, after the greeting and before the menu; a caller of another grid does
not. SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from dispatch.timers import ManualTimers
from eventlog.clock import ManualClock
from ivr.prompts import render
from operator_console.app import create_app
from providers.asterisk.config import AsteriskConfig
from providers.asterisk.telephony import AsteriskTelephony
from tests.conftest import MORNING, Harness, make_settings
from tests.dispatch.test_incidents import GRID_PHONES, OTHER_GRID_PHONE
from tests.operator_console.test_outage_backends import app_on, line_event
from tests.providers.asterisk.fake_ami import FakeAgiChannel, FakeAMI, channel_event
from tests.providers.twilio.twilio_fakes import (
    ACCOUNT,
    PLATFORM,
    TOKEN,
    Doc,
    FakeTwilioApi,
    TwilioSide,
)


async def _water_outage_in_grid_one(h: Harness) -> None:
    # the utility phoned it in: an incident with no call linked yet
    created = await h.call(
        "POST", "/incidents", json={"category": "water", "grid_code": "BG01"}, expect=201
    )
    assert created["state"] == "open"


async def _agi_streams(tel: AsteriskTelephony, ami: FakeAMI, phone: str, uid: str) -> list[str]:
    """An inbound hotline channel from `phone`; the files its FastAGI session streams up
    to the first wait for a key."""
    await ami.send(channel_event("Newchannel", f"PJSIP/trunk-{uid}", uid, CallerIDNum=phone))
    ref = f"ast-{uid}"
    agi = FakeAgiChannel(tel.agi_port, ref=ref, channel=f"PJSIP/trunk-{uid}", uniqueid=uid)
    await agi.connect()

    def reply(command: str) -> str | None:
        if command.startswith("WAIT FOR DIGIT"):
            return None  # the caller hangs up at the menu
        return "200 result=0 endpos=8000" if command.startswith("STREAM") else "200 result=1"

    await agi.serve(reply)
    await agi.close()
    return [c.split()[2] for c in agi.commands if c.startswith("STREAM FILE")]


async def test_given_a_water_incident_when_a_grid_caller_rings_on_asterisk_then_announced(
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
        agi_wait_s=2.0,
        action_timeout_s=0.5,
        connect_timeout_s=0.5,
        backoff_initial_s=0.02,
        backoff_max_s=0.1,
        startup_wait_s=2.0,
    )
    tel = AsteriskTelephony(config)
    try:
        async with app_on(tmp_path, seeded_db_url, tel) as h:
            await line_event(h, "telephony.up")
            await _water_outage_in_grid_one(h)
            streams = await _agi_streams(tel, ami, GRID_PHONES[3], "700.1")
            assert [s.rsplit("/", 1)[-1] for s in streams[-3:]] == [
                "hotline.greeting_known",
                "hotline.incident.water.slow",  # the slow rendering, on first hearing
                "hotline.menu",
            ]
            other = await _agi_streams(tel, ami, OTHER_GRID_PHONE, "700.2")
            assert not [s for s in other if "incident" in s]
            assert other[-1].endswith("hotline.menu")
    finally:
        await ami.close()


async def test_given_a_water_incident_when_a_grid_caller_rings_on_twilio_then_announced(
    tmp_path: Path, seeded_db_url: str
) -> None:
    async with FakeTwilioApi() as api:
        settings = make_settings(
            tmp_path,
            seeded_db_url,
            telephony="twilio",
            public_url="https://care.example.org",
            twilio_account_sid=ACCOUNT,
            twilio_auth_token=TOKEN,
            twilio_from_number=PLATFORM,
            twilio_api_base_url=api.url,
        )
        clock = ManualClock(MORNING)
        timers = ManualTimers(clock)
        app = create_app(settings, clock=clock, timers=timers)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        try:
            h = Harness(client, None, clock, timers, {})  # type: ignore[arg-type]
            await line_event(h, "telephony.up")
            await _water_outage_in_grid_one(h)
            twilio = TwilioSide(client)
            doc = await _first_words(twilio, "CA7001", GRID_PHONES[3])
            said = doc.said()
            news = render("hotline.incident.water", "zh-CN", {"incident_grid": "第一网格"})
            assert news in said, said
            assert said.index(news) < said.index(render("hotline.menu", "zh-CN"))
            slow = next(s for s in doc.says() if "".join(s.itertext()).strip() == news)
            assert slow.find("prosody") is not None  # said slowly
            other = await _first_words(twilio, "CA7002", OTHER_GRID_PHONE)
            assert not [s for s in other.said() if "停水" in s]
        finally:
            await client.close()


async def _first_words(twilio: TwilioSide, sid: str, phone: str) -> Doc:
    """An inbound call's TwiML up to the first thing said (following the wait loop)."""
    doc = await twilio.voice(sid, From=phone, To="12349")
    for _ in range(50):
        if doc.said() or doc.redirect() is None:
            break
        doc = await twilio.follow(doc, sid)
    assert doc.said(), doc.xml
    return doc
