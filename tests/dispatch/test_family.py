"""The family is told: each contact hears about the events they chose, by text or a short
call, not at night (emergencies at once); the ticket's timeline says who was told what,
and a restart never tells anyone twice."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from dispatch.config import DispatchConfig
from dispatch.timers import ManualTimers
from eventlog.clock import LOCAL_TZ, ManualClock
from operator_console.app import create_app
from tests.conftest import (
    DEMO_PASSWORD,
    MORNING,
    Harness,
    eventually,
    make_settings,
    started_harness,
)
from tests.dispatch.test_cascade import names
from tests.dispatch.test_emergency import emergency_call
from tests.dispatch.test_told import accepted_from_console, merchant_of, timeline_has
from tests.operator_console.test_whole_path import ticket_state, waiting_for_keys
from tests.providers.twilio.twilio_fakes import ACCOUNT, TOKEN, FakeTwilioApi

SON = "+8613800001111"
DAUGHTER = "+8613800002222"


def contact(
    name: str, phone: str, events: list[str], by: str = "text", **kw: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "relation": name[-1],
        "phones": [phone],
        "notify_events": events,
        "notify_by": by,
        **kw,
    }


async def family(h: Harness, *contacts: dict[str, Any], rid: int = 1) -> list[dict[str, Any]]:
    """Give resident `rid` these contacts (through the API) and turn the notices on."""
    h.services.dispatch.config.tell_family = True
    card = await h.call("PATCH", f"/residents/{rid}", json={"contacts": list(contacts)})
    return list(card["contacts"])


def texts_to(h: Harness, number: str) -> list[str]:
    return [t.text for t in h.pbx.texts if t.number == number]


async def texted(h: Harness, number: str, n: int = 1) -> list[str]:
    async def check() -> Any:
        got = texts_to(h, number)
        return got if len(got) >= n else None

    return list(await eventually(check))


async def timeline(h: Harness, tid: int) -> list[dict[str, Any]]:
    return list((await h.call("GET", f"/tickets/{tid}"))["timeline"])


def family_events(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["name"] == name]


def night_until(h: Harness, end: datetime) -> None:
    """Quiet hours from 21:00 until `end` (local): whatever happens before it is night."""
    config = h.services.dispatch.config
    config.quiet_start = time(21, 0)
    config.quiet_end = end.astimezone(LOCAL_TZ).time().replace(second=0, microsecond=0)


async def test_given_a_contact_who_chose_accepted_by_text_when_accepted_then_texted_the_shop(
    harness: Harness,
) -> None:
    h = harness
    son, daughter = await family(
        h, contact("李儿子", SON, ["accepted"]), contact("李女儿", DAUGHTER, ["late"])
    )
    tid, _ = await accepted_from_console(h)
    detail = await ticket_state(h, tid, "accepted")
    await h.timers.advance(0)
    [text] = await texted(h, SON)
    assert merchant_of(detail) in text and "接单" in text
    assert not re.search(r"\d{7,}", text.replace(" ", "")), text  # no phone number at all
    merchant = await h.call("GET", f"/merchants/{detail['merchant_id']}")
    assert all(p[-8:] not in text for p in merchant["phones"])
    # the daughter chose only late orders: nothing
    assert texts_to(h, DAUGHTER) == []
    told = await timeline_has(h, tid, "family.told")
    [event] = family_events(told["timeline"], "family.told")
    assert event["contact_id"] == son["id"] and event["about"] == "accepted"
    assert event["by"] == "text" and event["who"] == "子"
    about = {
        e["data"].get("contact_id") for e in told["timeline"] if e["name"].startswith("family")
    }
    assert about == {son["id"]} and daughter["id"] not in about


async def test_given_a_no_show_at_night_when_the_morning_comes_then_the_contact_is_texted_then(
    harness: Harness,
) -> None:
    h = harness
    await family(h, contact("李儿子", SON, ["no_show"]))
    tid, _ = await accepted_from_console(h)
    detail = await ticket_state(h, tid, "accepted")
    deadline = datetime.fromisoformat(detail["deadline_at"])
    night_until(h, deadline + timedelta(hours=1))
    await h.timers.advance((deadline - h.clock.now()).total_seconds() + 1)
    events = (await timeline_has(h, tid, "family.deferred"))["timeline"]
    assert "ticket.no_show" in [e["name"] for e in events]
    [deferred] = family_events(events, "family.deferred")
    assert deferred["about"] == "no_show"
    await h.timers.advance(1800)
    assert texts_to(h, SON) == []  # still night
    await h.timers.advance(1800)
    [text] = await texted(h, SON)
    assert "未按时上门" in text
    await timeline_has(h, tid, "family.told")


async def test_given_a_no_show_at_night_when_cancelled_before_morning_then_no_old_news_sent(
    harness: Harness,
) -> None:
    h = harness
    await family(h, contact("李儿子", SON, ["no_show"]))
    tid, _ = await accepted_from_console(h)
    detail = await ticket_state(h, tid, "accepted")
    deadline = datetime.fromisoformat(detail["deadline_at"])
    night_until(h, deadline + timedelta(hours=1))
    await h.timers.advance((deadline - h.clock.now()).total_seconds() + 1)
    await timeline_has(h, tid, "family.deferred")
    await h.call("POST", f"/tickets/{tid}/cancel", json={"reason": "家属自己送去了"})
    await h.timers.advance(3600)
    [skipped] = family_events(
        (await timeline_has(h, tid, "family.not_told"))["timeline"], "family.not_told"
    )
    assert skipped["about"] == "no_show" and skipped["state"] == "cancelled"
    assert texts_to(h, SON) == []


async def test_given_a_contact_who_chose_late_when_a_no_show_then_told_once_about_it(
    harness: Harness,
) -> None:
    h = harness
    await family(h, contact("李儿子", SON, ["late", "no_show"], notify_quiet=False))
    tid, _ = await accepted_from_console(h)
    detail = await ticket_state(h, tid, "accepted")
    deadline = datetime.fromisoformat(detail["deadline_at"])
    await h.timers.advance((deadline - h.clock.now()).total_seconds() + 1)
    await h.timers.advance(0)
    await texted(h, SON)
    await timeline_has(h, tid, "family.told")
    events = await timeline(h, tid)
    assert [e["about"] for e in family_events(events, "family.due")] == ["no_show"]
    assert len(texts_to(h, SON)) == 1


async def test_given_an_emergency_at_night_when_flagged_then_the_contact_is_texted_at_once(
    harness: Harness,
) -> None:
    h = harness
    await family(h, contact("李儿子", SON, ["emergency"]))
    night_until(h, h.clock.now() + timedelta(hours=2))
    _, call = await emergency_call(h)

    async def due() -> Any:
        events = (await h.call("GET", f"/calls/{call['id']}"))["timeline"]
        return events if "family.due" in [e["name"] for e in events] else None

    events = await eventually(due)
    assert "family.deferred" not in [e["name"] for e in events]
    await h.timers.advance(0)
    [text] = await texted(h, SON)
    assert "紧急求助" in text


async def test_given_a_contact_told_by_call_when_accepted_then_a_slow_call_says_the_shop(
    harness: Harness,
) -> None:
    h = harness
    await family(h, contact("李儿子", SON, ["accepted"], by="call"))
    tid, _ = await accepted_from_console(h)
    detail = await ticket_state(h, tid, "accepted")
    await h.timers.advance(0)

    async def ringing() -> Any:
        return next(
            (c for c in h.pbx.snapshot() if c["number"] == SON and c["state"] == "ringing"), None
        )

    call = await eventually(ringing)
    await timeline_has(h, tid, "family.calling")
    await h.pbx.answer(call["ref"])
    await waiting_for_keys(h, call["ref"])
    spoken = " ".join(h.pbx.calls[call["ref"]].transcript)
    assert merchant_of(detail) in spoken
    assert texts_to(h, SON) == []
    told = await timeline_has(h, tid, "family.told")
    [event] = family_events(told["timeline"], "family.told")
    assert event["by"] == "call" and event["about"] == "accepted"


async def test_given_a_text_the_carrier_refuses_when_told_then_the_contact_is_called_instead(
    harness: Harness,
) -> None:
    h = harness
    h.pbx.landlines.add(SON)
    await family(h, contact("李儿子", SON, ["accepted"]))
    tid, _ = await accepted_from_console(h)
    await ticket_state(h, tid, "accepted")
    await h.timers.advance(0)

    async def ringing() -> Any:
        return next((c for c in h.pbx.snapshot() if c["number"] == SON), None)

    await eventually(ringing)
    names_now = names(await timeline_has(h, tid, "family.calling"))
    assert "family.texting" in names_now and "family.told" not in names_now


async def test_given_a_notice_delivered_when_the_app_restarts_and_its_timer_fires_again_then_once(
    tmp_path: Path, seeded_db_url: str
) -> None:
    async with started_harness(tmp_path, seeded_db_url) as one:
        await family(one, contact("李儿子", SON, ["accepted"]))
        tid, _ = await accepted_from_console(one)
        await ticket_state(one, tid, "accepted")
        await one.timers.advance(0)
        await texted(one, SON)
        await timeline_has(one, tid, "family.told")
    # a new process with a PBX that remembers nothing; the persisted timer fires again
    async with started_harness(tmp_path, seeded_db_url) as two:
        two.services.dispatch.config.tell_family = True
        await two.services.dispatch.router.on_timer(f"family:{tid}")
        await two.settle()
        assert texts_to(two, SON) == []
        events = await timeline(two, tid)
        assert len(family_events(events, "family.told")) == 1
        assert len(family_events(events, "family.texting")) == 1


async def test_given_a_deferred_notice_whose_timer_was_lost_when_reconciled_then_sent_once(
    harness: Harness,
) -> None:
    h = harness
    await family(h, contact("李儿子", SON, ["accepted"]))
    night_until(h, h.clock.now() + timedelta(hours=1))
    tid, _ = await accepted_from_console(h)
    await timeline_has(h, tid, "family.deferred")

    async def scheduled() -> bool:
        return f"family:{tid}" in h.timers.pending

    await eventually(scheduled)
    await h.timers.cancel(f"family:{tid}")  # lost with a process that died after the commit
    await h.services.dispatch.reconciler.reconcile()
    assert f"family:{tid}" in h.timers.pending
    await h.timers.advance(3600)
    await texted(h, SON)
    await timeline_has(h, tid, "family.told")
    await h.services.dispatch.reconciler.reconcile()
    assert f"family:{tid}" not in h.timers.pending  # delivered: nothing more to wait for
    assert len(texts_to(h, SON)) == 1


async def test_given_unknown_notice_preferences_when_saved_then_422_with_a_clear_message(
    harness: Harness,
) -> None:
    h = harness
    bad = await h.call(
        "PATCH",
        "/residents/1",
        json={"contacts": [contact("李儿子", SON, ["accepted", "birthday"])]},
        expect=422,
    )
    assert "birthday" in str(bad) and "no_show" in str(bad)
    assert "unknown_notify_event" in str(bad)  # the code the console words its error by
    bad = await h.call(
        "PATCH",
        "/residents/1",
        json={"contacts": [contact("李儿子", SON, ["accepted"], by="pigeon")]},
        expect=422,
    )
    assert "pigeon" in str(bad)
    [saved] = await family(h, contact("李儿子", SON, ["emergency", "accepted"], notify_quiet=False))
    assert saved["notify_events"] == ["accepted", "emergency"]
    assert saved["notify_by"] == "text" and saved["notify_quiet"] is False
    card = await h.call("GET", "/residents/1?reason=check")
    assert card["contacts"][0]["notify_events"] == ["accepted", "emergency"]


async def test_given_twilio_when_a_contact_is_told_by_text_then_it_goes_through_messages_api(
    tmp_path: Path, seeded_db_url: str
) -> None:
    async with FakeTwilioApi() as api:  # Twilio's REST API on loopback
        clock = ManualClock(MORNING)
        timers = ManualTimers(clock)
        settings = make_settings(
            tmp_path,
            seeded_db_url,
            telephony="twilio",
            public_url="https://care.example.org",
            twilio_account_sid=ACCOUNT,
            twilio_auth_token=TOKEN,
            twilio_from_number="+862312349000",
            twilio_api_base_url=api.url,
            twilio_sms=True,
        )
        app = create_app(
            settings,
            clock=clock,
            timers=timers,
            dispatch_config=DispatchConfig(match_seed=7, tell_family=True),
        )
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        try:
            resp = await client.post(
                "/api/v1/login", json={"username": "operator", "password": DEMO_PASSWORD}
            )
            auth = {"Authorization": f"Bearer {(await resp.json())['token']}"}

            async def call(method: str, path: str, **kw: Any) -> Any:
                resp = await client.request(method, "/api/v1" + path, headers=auth, **kw)
                assert resp.status < 300, await resp.text()
                return await resp.json()

            await call(
                "PATCH", "/residents/1", json={"contacts": [contact("李儿子", SON, ["accepted"])]}
            )
            ticket = await call("POST", "/tickets", json={"category": "medicine", "resident_id": 1})
            await call("POST", f"/tickets/{ticket['id']}/dispatch", json={})

            async def offer() -> Any:
                offers = (await call("GET", f"/tickets/{ticket['id']}"))["offers"]
                return offers[0] if offers else None

            first = await eventually(offer)
            await call("POST", f"/offers/{first['id']}/accept")
            await timers.advance(0)

            async def sent() -> Any:
                return api.messages_sent() or None

            (message,) = await eventually(sent)
            detail = await call("GET", f"/tickets/{ticket['id']}")
            assert message.form["To"] == SON
            assert merchant_of(detail) in message.form["Body"]
            assert "family.told" in names(detail)
        finally:
            await client.close()


async def test_given_a_backend_that_cannot_text_when_a_contact_chose_text_then_they_are_called(
    harness: Harness,
) -> None:
    h = harness
    h.services.dispatch.family.messaging = None  # as on Asterisk: no Messaging capability
    await family(h, contact("李儿子", SON, ["accepted"]))
    tid, _ = await accepted_from_console(h)
    await ticket_state(h, tid, "accepted")
    await h.timers.advance(0)

    async def ringing() -> Any:
        return next((c for c in h.pbx.snapshot() if c["number"] == SON), None)

    await eventually(ringing)
    calling = family_events(
        (await timeline_has(h, tid, "family.calling"))["timeline"], "family.calling"
    )
    assert [c["by"] for c in calling] == ["call"]
    assert texts_to(h, SON) == []
