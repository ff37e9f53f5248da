"""The consult (warm) transfer through the whole app on the real adapters, SQLite and
PostgreSQL: the same desk behaviour as on the simulated PBX (tests/dispatch/test_consult.py):
consult then complete or cancel, a colleague who never answers, a caller who hangs up
meanwhile. On Asterisk (the fake AMI server and a FastAGI session on loopback: the AMI
actions Asterisk would carry out, the events it reports back) and on Twilio (the REST fake
on loopback: the desk conference's participants; Twilio's signed webhooks)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from providers.asterisk.config import AsteriskConfig
from providers.asterisk.telephony import AsteriskTelephony
from registry.models import User
from tests.conftest import Harness, eventually
from tests.dispatch.test_hold_transfer import add_operator, call_row, names, state, user
from tests.operator_console.test_callout_backends import app_on, up
from tests.providers.asterisk.fake_ami import FakeAgiChannel, FakeAMI, channel_event, frame
from tests.providers.twilio.twilio_fakes import ACCOUNT, PLATFORM, TOKEN, FakeTwilioApi, TwilioSide

CALLER, CALLER_UID = "PJSIP/trunk-00000041", "940.1"
REF = f"ast-{CALLER_UID}"


@dataclass
class Desk:
    """A caller connected to `me` at the desk, on Asterisk, and a free colleague `b`."""

    h: Harness
    ami: FakeAMI
    call: dict[str, Any]
    me: User
    b: User

    @property
    def desk_a(self) -> str:
        return f"PJSIP/{self.me.id}-00000042"

    @property
    def desk_b(self) -> str:
        return f"PJSIP/{self.b.id}-00000043"


async def _true(value: object) -> bool:
    return bool(value)


def _named(ami: FakeAMI, action: str, **match: str) -> list[dict[str, list[str]]]:
    return [a for a in ami.named(action) if all(a.get(k) == [v] for k, v in match.items())]


@asynccontextmanager
async def connected(tmp_path: Path, db_url: str) -> AsyncIterator[Desk]:
    """A caller rings the hotline (the greeting over FastAGI), waits for an operator, and
    "operator" answers; Asterisk bridges the caller with their desk phone."""
    ami = await FakeAMI().start()
    config = AsteriskConfig(
        host="127.0.0.1", port=ami.port, username="yijing", secret="s3cret",
        dial_template="PJSIP/{number}@trunk", agi_host="127.0.0.1", agi_port=0,
        agi_wait_s=2.0, action_timeout_s=0.5, connect_timeout_s=0.5,
        backoff_initial_s=0.02, backoff_max_s=0.1, startup_wait_s=2.0,
    )  # fmt: skip
    tel = AsteriskTelephony(config)
    try:
        async with app_on(tmp_path, db_url, tel) as h:
            await up(h)
            b = await add_operator(h, "b")
            await h.call("POST", "/operator/state", json={"action": "login"}, as_user="b")
            await ami.send(
                channel_event("Newchannel", CALLER, CALLER_UID, CallerIDNum="13800000001",
                              Context="yijing-hotline", Exten="12349")
            )  # fmt: skip
            agi = FakeAgiChannel(tel.agi_port, ref=REF, channel=CALLER, uniqueid=CALLER_UID)
            await agi.connect()

            def reply(command: str) -> str:
                # a caller the registry does not know is queued for an operator at once
                if command.startswith(("STREAM", "GET", "WAIT")):
                    return "200 result=0 endpos=8000"
                return "200 result=1"

            serving = asyncio.create_task(agi.serve(reply, limit=200))

            async def queued() -> Any:
                calls = await h.call("GET", "/calls")
                rows = calls if isinstance(calls, list) else calls.get("items", [])
                return [c for c in rows if c.get("state") == "queued"]

            (waiting,) = await eventually(queued)
            call = await h.call("POST", f"/calls/{waiting['id']}/answer")
            me = await user(h, "operator")
            await eventually(lambda: _true(_named(ami, "Redirect", Channel=CALLER)))
            desk = Desk(h, ami, call, me, b)
            await ami.send(
                channel_event("Newchannel", desk.desk_a, "940.2", Linkedid=CALLER_UID,
                              Context="yijing-operators", Exten=str(me.id))
                + channel_event("BridgeEnter", desk.desk_a, "940.2", BridgeUniqueid="bA")
                + channel_event("BridgeEnter", CALLER, CALLER_UID, BridgeUniqueid="bA")
            )  # fmt: skip

            async def bridged() -> bool:
                return "call.bridged" in await names(h, call["id"])

            await eventually(bridged)
            try:
                yield desk
            finally:
                serving.cancel()
                await agi.close()
    finally:
        await ami.close()


async def start_consult(d: Desk) -> None:
    """`operator` asks to consult `b` with a note: Yijing Originates b's desk device."""
    body = {"to_operator": d.b.id, "note": "想先问问同事"}
    await d.h.call("POST", f"/calls/{d.call['id']}/consult", json=body)
    await eventually(lambda: _true(_named(d.ami, "Originate", Channel=f"PJSIP/{d.b.id}")))
    events = await d.h.services.store.events_for("call", d.call["id"])
    started = next(e for e in events if e["name"] == "call.consult_started")
    assert started["data"]["note"] == "想先问问同事"


async def consult_answered(d: Desk) -> None:
    """`operator` consults `b`; b's desk rings and answers; Asterisk joins the two."""
    await start_consult(d)
    await d.ami.send(
        channel_event("BridgeLeave", CALLER, CALLER_UID, BridgeUniqueid="bA")
        + channel_event("BridgeLeave", d.desk_a, "940.2", BridgeUniqueid="bA")
        + channel_event("Newchannel", d.desk_b, "940.3", ChannelState="0",
                        Context="yijing-consult", Exten="s")
        + channel_event("VarSet", d.desk_b, "940.3", Context="yijing-consult", Exten="s",
                        Variable="YIJING_CONSULT_FOR", Value=REF)
        + frame(Event="OriginateResponse", ActionID=f"yijing-consult/{REF}",
                Response="Success", Channel=d.desk_b, Reason="4", Uniqueid="940.3")
    )  # fmt: skip

    async def talking() -> bool:
        return (await call_row(d.h, d.call["id"])).state == "consulting"

    await eventually(talking)
    assert _named(d.ami, "Bridge", Channel1=d.desk_a, Channel2=d.desk_b)


def _consult_names(timeline: list[str]) -> list[str]:
    return [n for n in timeline if n.startswith("call.consult") or n == "call.transferred"]


async def test_given_asterisk_when_a_consult_is_completed_then_b_has_the_caller(
    tmp_path: Path, seeded_db_url: str
) -> None:
    async with connected(tmp_path, seeded_db_url) as d:
        h = d.h
        await consult_answered(d)
        assert await state(h, "b") == ("on_call", d.call["id"])

        await h.call("POST", f"/calls/{d.call['id']}/consult/complete")

        await eventually(lambda: _true(_named(d.ami, "Bridge", Channel1=CALLER)))
        assert _named(d.ami, "Bridge", Channel1=CALLER, Channel2=d.desk_b)
        assert _named(d.ami, "Hangup", Channel=d.desk_a)  # the first operator released
        await d.ami.send(
            channel_event("BridgeEnter", d.desk_b, "940.3", BridgeUniqueid="bB")
            + channel_event("BridgeEnter", CALLER, CALLER_UID, BridgeUniqueid="bB")
        )
        row = await call_row(h, d.call["id"])
        assert row.state == "connected" and row.operator_id == d.b.id
        assert await state(h, "operator") == ("wrap_up", d.call["id"])
        assert await state(h, "b") == ("on_call", d.call["id"])
        assert _consult_names(await names(h, d.call["id"])) == [
            "call.consult_started", "call.consult_answered", "call.consult_completed",
            "call.transferred",
        ]  # fmt: skip


async def test_given_asterisk_when_a_consult_is_cancelled_then_the_caller_is_back_with_a(
    tmp_path: Path, seeded_db_url: str
) -> None:
    async with connected(tmp_path, seeded_db_url) as d:
        h = d.h
        await consult_answered(d)

        await h.call("POST", f"/calls/{d.call['id']}/consult/cancel")

        await eventually(lambda: _true(_named(d.ami, "Bridge", Channel1=CALLER)))
        assert _named(d.ami, "Bridge", Channel1=CALLER, Channel2=d.desk_a)
        await eventually(lambda: _true(_named(d.ami, "Hangup", Channel=d.desk_b)))
        row = await call_row(h, d.call["id"])
        assert row.state == "connected" and row.operator_id == d.me.id
        assert await state(h, "b") == ("available", None)
        assert await state(h, "operator") == ("on_call", d.call["id"])
        assert _consult_names(await names(h, d.call["id"])) == [
            "call.consult_started", "call.consult_answered", "call.consult_cancelled",
        ]  # fmt: skip


@pytest.mark.parametrize("reason", ["3", "5"], ids=["no answer", "busy"])
async def test_given_asterisk_when_b_never_answers_then_the_caller_is_back_with_a(
    tmp_path: Path, seeded_db_url: str, reason: str
) -> None:
    async with connected(tmp_path, seeded_db_url) as d:
        h = d.h
        await start_consult(d)

        await d.ami.send(
            frame(Event="OriginateResponse", ActionID=f"yijing-consult/{REF}",
                  Response="Failure", Channel=f"PJSIP/{d.b.id}", Reason=reason,
                  Uniqueid="<unknown>")
        )  # fmt: skip

        async def failed() -> bool:
            return "call.consult_failed" in await names(h, d.call["id"])

        await eventually(failed)
        # the desk resumes the caller: bridged again with the first operator's waiting leg
        await eventually(lambda: _true(_named(d.ami, "Bridge", Channel1=CALLER)))
        assert _named(d.ami, "Bridge", Channel1=CALLER, Channel2=d.desk_a)
        row = await call_row(h, d.call["id"])
        assert row.state == "connected" and row.operator_id == d.me.id
        assert await state(h, "b") == ("available", None)
        assert await state(h, "operator") == ("on_call", d.call["id"])


async def test_given_asterisk_when_the_caller_hangs_up_during_a_consult_then_both_freed(
    tmp_path: Path, seeded_db_url: str
) -> None:
    async with connected(tmp_path, seeded_db_url) as d:
        h = d.h
        await consult_answered(d)

        await d.ami.send(channel_event("Hangup", CALLER, CALLER_UID, Cause="16"))

        async def ended() -> bool:
            return (await call_row(h, d.call["id"])).state == "wrap_up"

        await eventually(ended)
        assert await state(h, "operator") == ("wrap_up", d.call["id"])
        assert await state(h, "b") == ("available", None)
        await eventually(lambda: _true(len(_named(d.ami, "Hangup")) >= 2))
        hung = {a["Channel"][0] for a in _named(d.ami, "Hangup")}
        assert {d.desk_a, d.desk_b} <= hung


# -- Twilio: the desk conference, the REST fake on loopback, signed webhooks ---------------


@dataclass
class Room:
    """A caller in their desk conference with `me`, on Twilio, and a free colleague `b`."""

    h: Harness
    api: FakeTwilioApi
    twilio: TwilioSide
    call: dict[str, Any]
    me: User
    b: User

    async def participant(self, label: str, sid: str, status: str) -> None:
        """Twilio's signed status callback of a participant of the caller's room."""
        code, _ = await self.twilio.post(
            "participant",
            {"CallSid": sid, "CallStatus": status, "AccountSid": ACCOUNT},
            query={"ref": TWILIO_CALLER, "label": label},
        )
        assert code == 204


TWILIO_CALLER = "CA-CONSULT"


@asynccontextmanager
async def in_the_room(tmp_path: Path, db_url: str) -> AsyncIterator[Room]:
    """A caller rings the hotline, waits for an operator, and "operator" answers: Twilio
    rings their client into the caller's desk conference and the caller joins it."""
    async with (
        FakeTwilioApi() as api,
        app_on(
            tmp_path, db_url, telephony="twilio", public_url="https://care.example.org",
            twilio_account_sid=ACCOUNT, twilio_auth_token=TOKEN,
            twilio_from_number=PLATFORM, twilio_api_base_url=api.url,
        ) as h,
    ):  # fmt: skip
        twilio = TwilioSide(h.client)
        await up(h)
        b = await add_operator(h, "b")
        await h.call("POST", "/operator/state", json={"action": "login"}, as_user="b")
        doc = await twilio.voice(TWILIO_CALLER, From="+8613800000777", To="12349")

        async def queued() -> Any:
            rows = await h.call("GET", "/calls")
            return [c for c in rows if c.get("state") == "queued"]

        async def hold_loop() -> Any:
            nonlocal doc
            if not await queued():
                doc = await twilio.follow(doc, TWILIO_CALLER)
            return await queued()

        (waiting,) = await eventually(hold_loop)
        call = await h.call("POST", f"/calls/{waiting['id']}/answer")
        me = await user(h, "operator")

        async def in_conference() -> Any:
            nonlocal doc
            doc = await twilio.follow(doc, TWILIO_CALLER) if doc.redirect() else doc
            return "Dial" in doc.verbs()

        await eventually(in_conference)

        async def bridged() -> bool:
            return "call.bridged" in await names(h, call["id"])

        await eventually(bridged)
        yield Room(h, api, twilio, call, me, b)


async def start_room_consult(r: Room) -> str:
    """`operator` consults `b`: b's client rung into the room; returns b's call SID."""
    body = {"to_operator": r.b.id, "note": "想先问问同事"}
    await r.h.call("POST", f"/calls/{r.call['id']}/consult", json=body)

    def consult_added() -> list[Any]:
        return [p for p in r.api.participants_added() if p.form["Label"].startswith("consult-")]

    await eventually(lambda: _true(consult_added()))
    (added,) = consult_added()
    assert added.form["To"] == f"client:operator_{r.b.id}"
    return r.api.sids_created[-1]


async def room_consult_answered(r: Room) -> str:
    sid = await start_room_consult(r)
    await r.participant("consult-2", sid, "in-progress")

    async def talking() -> bool:
        return (await call_row(r.h, r.call["id"])).state == "consulting"

    await eventually(talking)
    return sid


def _held(r: Room, hold: bool) -> list[Any]:
    return [
        u for u in r.api.participants_updated()
        if u.path.endswith("/Participants/caller.json") and u.form.get("Hold") == str(hold).lower()
    ]  # fmt: skip


async def test_given_twilio_when_a_consult_is_completed_then_b_has_the_caller(
    tmp_path: Path, seeded_db_url: str
) -> None:
    async with in_the_room(tmp_path, seeded_db_url) as r:
        h = r.h
        first = r.api.sids_created[0]
        await room_consult_answered(r)
        assert _held(r, True) and await state(h, "b") == ("on_call", r.call["id"])

        await h.call("POST", f"/calls/{r.call['id']}/consult/complete")

        await eventually(lambda: _true(_held(r, False)))
        done = [u for u in r.api.calls_updated() if u.path.endswith(f"/Calls/{first}.json")]
        assert done and done[0].form["Status"] == "completed"  # the first operator's leg
        row = await call_row(h, r.call["id"])
        assert row.state == "connected" and row.operator_id == r.b.id
        assert await state(h, "operator") == ("wrap_up", r.call["id"])
        assert _consult_names(await names(h, r.call["id"])) == [
            "call.consult_started", "call.consult_answered", "call.consult_completed",
            "call.transferred",
        ]  # fmt: skip


async def test_given_twilio_when_a_consult_is_cancelled_then_the_caller_is_back_with_a(
    tmp_path: Path, seeded_db_url: str
) -> None:
    async with in_the_room(tmp_path, seeded_db_url) as r:
        h = r.h
        colleague = await room_consult_answered(r)

        await h.call("POST", f"/calls/{r.call['id']}/consult/cancel")

        await eventually(lambda: _true(_held(r, False)))
        done = [u for u in r.api.calls_updated() if u.path.endswith(f"/Calls/{colleague}.json")]
        assert done and done[0].form["Status"] == "completed"
        row = await call_row(h, r.call["id"])
        assert row.state == "connected" and row.operator_id == r.me.id
        assert await state(h, "b") == ("available", None)
        assert await state(h, "operator") == ("on_call", r.call["id"])


async def test_given_twilio_when_b_never_answers_then_the_caller_is_back_with_a(
    tmp_path: Path, seeded_db_url: str
) -> None:
    async with in_the_room(tmp_path, seeded_db_url) as r:
        h = r.h
        colleague = await start_room_consult(r)

        await r.participant("consult-2", colleague, "no-answer")

        async def failed() -> bool:
            return "call.consult_failed" in await names(h, r.call["id"])

        await eventually(failed)
        await eventually(lambda: _true(_held(r, False)))
        row = await call_row(h, r.call["id"])
        assert row.state == "connected" and row.operator_id == r.me.id
        assert await state(h, "b") == ("available", None)


async def test_given_twilio_when_the_caller_hangs_up_during_a_consult_then_both_freed(
    tmp_path: Path, seeded_db_url: str
) -> None:
    async with in_the_room(tmp_path, seeded_db_url) as r:
        h = r.h
        colleague = await room_consult_answered(r)

        assert await r.twilio.status(TWILIO_CALLER, "completed") == 204

        async def ended() -> bool:
            return (await call_row(h, r.call["id"])).state == "wrap_up"

        await eventually(ended)
        assert await state(h, "b") == ("available", None)

        def colleague_ended() -> list[Any]:
            return [u for u in r.api.calls_updated() if u.path.endswith(f"/Calls/{colleague}.json")]

        await eventually(lambda: _true(colleague_ended()))
