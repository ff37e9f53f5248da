"""Click-to-call through the whole app on the real adapters, SQLite and PostgreSQL: on
Asterisk (the fake AMI server: the exact Originate on the wire, then the desk's and the
number's legs as Asterisk reports them) and on Twilio (the loopback REST API: the call to
the operator's Twilio Client; then Twilio's signed webhooks). The callout is on the
desk, its timeline and its wrap-up, as on the simulated PBX."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlmodel import col

from dispatch.config import DispatchConfig
from dispatch.timers import ManualTimers
from eventlog.clock import ManualClock
from operator_console.app import create_app
from providers.asterisk.config import AsteriskConfig
from providers.asterisk.telephony import AsteriskTelephony
from providers.base import Telephony
from registry.models import ResidentPhone
from tests.conftest import MORNING, Harness, eventually, make_settings
from tests.operator_console.test_callouts_api import call_state
from tests.providers.asterisk.fake_ami import FakeAMI, channel_event, frame
from tests.providers.twilio.twilio_fakes import (
    ACCOUNT,
    PLATFORM,
    PUBLIC,
    TOKEN,
    Doc,
    FakeTwilioApi,
    TwilioSide,
)


@asynccontextmanager
async def app_on(
    tmp_path: Path, db_url: str, backend: Telephony | None = None, **settings: Any
) -> AsyncIterator[Harness]:
    """The usual test app (manual clock and timers) on a real adapter."""
    clock = ManualClock(MORNING)
    timers = ManualTimers(clock)
    app = create_app(
        make_settings(tmp_path, db_url, **settings),
        telephony=backend,
        clock=clock,
        timers=timers,
        dispatch_config=DispatchConfig(match_seed=7, ring_timeout_s=25),
    )
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield Harness(client, None, clock, timers, {})  # type: ignore[arg-type]
    finally:
        await client.close()


async def up(h: Harness) -> None:
    async def check() -> bool:
        return bool((await h.call("GET", "/telephony"))["up"])

    await eventually(check)


async def mobile_of(h: Harness, resident_id: int) -> str:
    async with h.services.store.read() as session:
        numbers = (
            await session.execute(
                select(ResidentPhone)
                .where(col(ResidentPhone.resident_id) == resident_id)
                .order_by(col(ResidentPhone.kind) != "mobile", col(ResidentPhone.id))
            )
        ).scalars().all()  # fmt: skip
    return numbers[0].number


async def _true(value: object) -> bool:
    return bool(value)


async def test_given_asterisk_when_an_operator_calls_out_then_originate_desk_then_dial(
    tmp_path: Path, seeded_db_url: str
) -> None:
    ami = await FakeAMI().start()
    config = AsteriskConfig(
        host="127.0.0.1", port=ami.port, username="yijing", secret="s3cret",
        dial_template="PJSIP/{number}@trunk", agi_host="127.0.0.1", agi_port=0,
        action_timeout_s=0.5, connect_timeout_s=0.5, backoff_initial_s=0.02,
        backoff_max_s=0.1, startup_wait_s=2.0,
    )  # fmt: skip
    try:
        async with app_on(tmp_path, seeded_db_url, AsteriskTelephony(config)) as h:
            await up(h)
            number = await mobile_of(h, 1)
            call = await h.call(
                "POST", "/callouts", json={"target": "resident", "id": 1}, expect=201
            )
            me = call["operator_id"]
            await eventually(lambda: _true(ami.named("Originate")))
            (originate,) = ami.named("Originate")
            assert {k: v for k, v in originate.items() if k != "ActionID"} == {
                "Action": ["Originate"],
                "Async": ["true"],
                "CallerID": ['"Yijing" <12349>'],
                "Channel": [f"PJSIP/{me}"],
                "Context": ["yijing-callout"],
                "Exten": ["s"],
                "Priority": ["1"],
                "Timeout": ["25000"],
                "Variable": [
                    f"YIJING_REF={call['ref']}",
                    f"YIJING_CALLOUT_DIAL=PJSIP/{number}@trunk",
                    "YIJING_CALLOUT_RING_S=25",
                ],
            }
            desk, uid = f"PJSIP/{me}-00000010", "900.1"
            var = {"ChanVariable": f"YIJING_REF={call['ref']}", "Context": "yijing-callout"}
            dial = {"DestChannel": "PJSIP/trunk-00000011", "DestUniqueid": "900.2",
                    "Context": "yijing-callout", "Exten": "s"}  # fmt: skip
            await ami.send(
                channel_event("Newchannel", desk, uid, ChannelState="0", **var)
                + frame(Event="OriginateResponse", ActionID=f"yijing-originate/{call['ref']}",
                        Response="Success", Channel=desk, Reason="4", Uniqueid=uid)
                + channel_event("DialState", desk, uid, DialStatus="RINGING", **dial)
                + channel_event("DialEnd", desk, uid, DialStatus="ANSWER", **dial)
            )  # fmt: skip
            await call_state(h, call["id"], "connected")
            await ami.send(channel_event("Hangup", desk, uid, Cause="16"))
            await call_state(h, call["id"], "wrap_up")
            await h.call("POST", f"/callouts/{call['id']}/wrap-up", json={"outcome": "talked"})
            detail = await call_state(h, call["id"], "ended")
            names = [e["name"] for e in detail["timeline"]]
            assert names == ["call.callout", "call.bridged", "call.ringing", "call.answered",
                             "call.ended", "call.wrapped_up"]  # fmt: skip
            assert number not in str(detail)
    finally:
        await ami.close()


async def test_given_twilio_when_an_operator_calls_out_then_client_first_then_dial(
    tmp_path: Path, seeded_db_url: str
) -> None:
    async with (
        FakeTwilioApi() as api,
        app_on(
            tmp_path,
            seeded_db_url,
            telephony="twilio",
            public_url="https://care.example.org",
            twilio_account_sid=ACCOUNT,
            twilio_auth_token=TOKEN,
            twilio_from_number=PLATFORM,
            twilio_api_base_url=api.url,
        ) as h,
    ):
        assert PUBLIC == "https://care.example.org/twilio"
        twilio = TwilioSide(h.client)
        await up(h)
        number = await mobile_of(h, 1)
        call = await h.call("POST", "/callouts", json={"target": "resident", "id": 1}, expect=201)
        await eventually(lambda: _true(api.calls_created()))
        (created,) = api.calls_created()
        assert created.form["To"] == f"client:operator_{call['operator_id']}"
        assert created.form["From"] == PLATFORM
        assert created.form["Url"] == f"{PUBLIC}/voice?ref={call['ref']}"
        assert created.form["Timeout"] == "25"
        sid = api.sids_created[-1]

        doc = await twilio.voice(sid, ref=call["ref"])  # the operator picked up
        dialled = doc.root.find("Dial/Number")
        assert dialled is not None and (dialled.text or "").strip() == number
        callout = {"CallSid": "CA_far", "AccountSid": ACCOUNT}
        for status in ("ringing", "in-progress"):
            code, _ = await twilio.post(
                "callout", {**callout, "CallStatus": status}, query={"ref": call["ref"]}
            )
            assert code == 204
        await call_state(h, call["id"], "connected")
        code, body = await twilio.post(
            "dial", {"CallSid": sid, "AccountSid": ACCOUNT, "DialCallStatus": "completed"},
            query={"ref": call["ref"]},
        )  # fmt: skip
        assert code == 200 and Doc(body).verbs() == ["Hangup"]
        assert await twilio.status(sid, "completed", ref=call["ref"]) == 204
        await call_state(h, call["id"], "wrap_up")
        await h.call("POST", f"/callouts/{call['id']}/wrap-up", json={"outcome": "talked"})
        detail = await call_state(h, call["id"], "ended")
        names = [e["name"] for e in detail["timeline"]]
        assert names == ["call.callout", "call.bridged", "call.ringing", "call.answered",
                         "call.ended", "call.wrapped_up"]  # fmt: skip
