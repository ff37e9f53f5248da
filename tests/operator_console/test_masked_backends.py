"""Masked calls through the whole app on the real adapters, SQLite and PostgreSQL (issue
16): the merchant asks from their page; on Asterisk (the fake AMI server) the merchant's
phone is originated first with the hotline's caller ID, then the resident's, and the
resident's channel is sent into the masked bridge context to meet the merchant's; on
Twilio (the loopback REST API and signed webhooks) both legs are created from the platform
number and meet in one conference. And the resident presses 4 on the hotline: the merchant
is rung from the hotline and joined with the caller. Either side hanging up hangs up the
other. No number is in anything the merchant receives, nor in any event."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from providers.asterisk.config import AsteriskConfig
from providers.asterisk.telephony import AsteriskTelephony
from tests.conftest import Harness, eventually
from tests.dispatch.test_cascade import live_offer_count, names, new_ticket
from tests.dispatch.test_masked import (
    leaks,
    masked_events,
    merchant_login,
    resident_digits,
    timeline_has,
)
from tests.operator_console.test_callout_backends import app_on, up
from tests.operator_console.test_whole_path import ticket_state
from tests.providers.asterisk.fake_ami import FakeAgiChannel, FakeAMI, channel_event, frame
from tests.providers.twilio.twilio_fakes import (
    ACCOUNT,
    PLATFORM,
    PUBLIC,
    TOKEN,
    Doc,
    FakeTwilioApi,
    TwilioSide,
)


async def accepted(h: Harness) -> int:
    """A medicine order for resident 1, accepted from the console."""
    tid = await new_ticket(h, "medicine")
    await h.call("POST", f"/tickets/{tid}/dispatch", json={})
    offer, *_ = await live_offer_count(h, tid, 1)  # urgent: maybe two at once
    await h.call("POST", f"/offers/{offer['id']}/accept")
    await ticket_state(h, tid, "accepted")
    return tid


def digits_of(number: str) -> str:
    return number.removeprefix("+86").lstrip("0")


async def _true(value: object) -> bool:
    return bool(value)


async def test_given_asterisk_when_the_merchant_connects_then_two_originates_and_a_masked_bridge(
    tmp_path: Path, seeded_db_url: str
) -> None:
    ami = await FakeAMI().start()
    config = AsteriskConfig(
        host="127.0.0.1", port=ami.port, username="yijing", secret="s3cret",
        dial_template="PJSIP/{number}@trunk", agi_host="127.0.0.1", agi_port=0,
        agi_wait_s=0.2, action_timeout_s=0.5, connect_timeout_s=0.5,
        backoff_initial_s=0.02, backoff_max_s=0.1, startup_wait_s=2.0,
    )  # fmt: skip
    try:
        async with app_on(tmp_path, seeded_db_url, AsteriskTelephony(config)) as h:
            await up(h)
            tid = await accepted(h)
            shop, shop_phone = await merchant_login(h, tid)
            digits = await resident_digits(h)
            started = await h.call(
                "POST", f"/merchant/orders/{tid}/connect", as_user=shop, json={}, expect=201
            )

            def originates_to(number: str) -> list[dict[str, list[str]]]:
                # the masked call's, not the offer call the merchant had before
                return [
                    a for a in ami.named("Originate")
                    if number in a["Channel"][0] and "YIJING_REF=mk-" in a["Variable"][0]
                ]  # fmt: skip

            await eventually(lambda: _true(originates_to(shop_phone)))
            (first,) = originates_to(shop_phone)
            assert first["CallerID"] == ['"Yijing" <12349>']
            assert first["Context"] == ["yijing-outbound"]
            ref = first["Variable"][0].removeprefix("YIJING_REF=")
            assert ref.startswith("mk-")
            merchant, m_uid = "PJSIP/trunk-00000021", "910.1"
            var = {"ChanVariable": f"YIJING_REF={ref}", "Context": "yijing-outbound"}
            await ami.send(
                channel_event("Newchannel", merchant, m_uid, ChannelState="0", **var)
                + frame(Event="OriginateResponse", ActionID=f"yijing-originate/{ref}",
                        Response="Success", Channel=merchant, Reason="4", Uniqueid=m_uid)
            )  # fmt: skip

            # the merchant answered: now the resident, from the hotline's number too
            def to_resident() -> list[dict[str, list[str]]]:
                return [
                    a for a in ami.named("Originate") if any(d in a["Channel"][0] for d in digits)
                ]

            await eventually(lambda: _true(to_resident()))
            (second,) = to_resident()
            assert second["CallerID"] == ['"Yijing" <12349>']
            r_ref = second["Variable"][0].removeprefix("YIJING_REF=")
            assert r_ref == f"{ref}-r"
            resident, r_uid = "PJSIP/trunk-00000022", "910.2"
            var = {"ChanVariable": f"YIJING_REF={r_ref}", "Context": "yijing-outbound"}
            await ami.send(
                channel_event("Newchannel", resident, r_uid, ChannelState="0", **var)
                + frame(Event="OriginateResponse", ActionID=f"yijing-originate/{r_ref}",
                        Response="Success", Channel=resident, Reason="4", Uniqueid=r_uid)
            )  # fmt: skip

            # the resident's channel goes to the masked bridge, to meet the merchant's
            async def redirected() -> Any:
                return [r for r in ami.named("Redirect") if r["Channel"] == [resident]]

            (redirect,) = await eventually(redirected)
            assert redirect["Context"] == ["yijing-bridge"]
            setvar = [s for s in ami.named("Setvar") if s["Channel"] == [resident]]
            assert setvar[-1]["Variable"] == ["YIJING_PEER_CHANNEL"]
            assert setvar[-1]["Value"] == [merchant]
            await timeline_has(h, tid, "masked.connected")
            # nothing sent about the merchant's leg, nor the join, has the resident's number
            about_merchant = [a for a in ami.actions if a is not second]
            assert leaks(about_merchant, digits) == []

            # the resident hangs up: the merchant's channel is hung up
            await ami.send(channel_event("Hangup", resident, r_uid, Cause="16"))

            async def merchant_hung_up() -> Any:
                return [a for a in ami.named("Hangup") if a["Channel"] == [merchant]]

            await eventually(merchant_hung_up)
            detail = await timeline_has(h, tid, "masked.ended")
            masked = [n for n in names(detail) if n.startswith("masked.")]
            assert masked == ["masked.started", "masked.connected", "masked.ended"]
            orders = await h.call("GET", "/merchant/orders", as_user=shop)
            assert leaks(started, digits) == [] and leaks(orders, digits) == []
            assert leaks([e.data for e in await masked_events(h, tid)], digits) == []
    finally:
        await ami.close()


async def follow_until(twilio: TwilioSide, doc: Doc, sid: str, verb: str) -> Doc:
    """Follow a call's hold loop until its TwiML has `verb`."""
    current = [doc]

    async def check() -> Doc | None:
        if verb in current[0].verbs():
            return current[0]
        current[0] = await twilio.follow(current[0], sid)
        return None

    found: Doc = await eventually(check)
    return found


async def test_given_twilio_when_the_merchant_connects_then_both_created_and_met_in_a_conference(
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
        twilio = TwilioSide(h.client)
        await up(h)
        tid = await accepted(h)
        shop, shop_phone = await merchant_login(h, tid)
        digits = await resident_digits(h)
        started = await h.call(
            "POST", f"/merchant/orders/{tid}/connect", as_user=shop, json={}, expect=201
        )

        def created_to(pred: Any) -> list[tuple[str, Any]]:
            return [
                (api.sids_created[i], r)
                for i, r in enumerate(api.calls_created())
                if pred(r.form["To"])
            ]

        def masked_to(to: str) -> bool:
            return to == shop_phone

        def ref_of(created: Any) -> str:
            return str(created.form["Url"]).rsplit("ref=", 1)[1]

        await eventually(
            lambda: _true([c for c in created_to(masked_to) if ref_of(c[1]).startswith("mk-")])
        )
        ((m_sid, first),) = [c for c in created_to(masked_to) if ref_of(c[1]).startswith("mk-")]
        assert first.form["From"] == PLATFORM
        ref = first.form["Url"].rsplit("ref=", 1)[1]
        assert first.form["Url"] == f"{PUBLIC}/voice?ref={ref}"
        m_doc = await twilio.voice(m_sid, ref=ref)  # the merchant picked up

        async def hears_connecting() -> Any:
            doc = m_doc if "Say" in m_doc.verbs() else await twilio.follow(m_doc, m_sid)
            return doc if any("接通下单的老人" in s for s in doc.said()) else None

        m_doc = await eventually(hears_connecting)

        def to_resident(to: str) -> bool:
            return digits_of(to) in digits

        await eventually(lambda: _true(created_to(to_resident)))
        ((r_sid, second),) = created_to(to_resident)
        assert second.form["From"] == PLATFORM
        r_ref = second.form["Url"].rsplit("ref=", 1)[1]
        r_doc = await follow_until(twilio, await twilio.voice(r_sid, ref=r_ref), r_sid, "Dial")
        m_doc = await follow_until(twilio, m_doc, m_sid, "Dial")
        rooms = []
        for doc in (r_doc, m_doc):
            dial = doc.root.find("Dial")
            assert dial is not None and dial.get("callerId") == PLATFORM
            conference = dial.find("Conference")
            assert conference is not None
            rooms.append((conference.text or "").strip())
        assert rooms[0] == rooms[1] and ref in rooms[0] and r_ref in rooms[0]
        # what Twilio is told about the merchant's leg never carries the resident's number
        assert leaks([m_doc.xml, first.form], digits) == []
        await timeline_has(h, tid, "masked.connected")

        # the merchant hangs up: the resident's call is completed over REST
        assert await twilio.status(m_sid, "completed", ref=ref) == 204

        async def resident_completed() -> Any:
            return [
                u for u in api.calls_updated()
                if r_sid in u.path and u.form.get("Status") == "completed"
            ]  # fmt: skip

        await eventually(resident_completed)
        detail = await timeline_has(h, tid, "masked.ended")
        masked = [e for e in detail["timeline"] if e["name"].startswith("masked.")]
        assert [e["name"] for e in masked] == ["masked.started", "masked.connected", "masked.ended"]
        assert masked[2]["data"]["hung_up_by"] == "merchant"
        orders = await h.call("GET", "/merchant/orders", as_user=shop)
        assert leaks(started, digits) == [] and leaks(orders, digits) == []
        assert leaks([e.data for e in await masked_events(h, tid)], digits) == []
        assert json.dumps(started)  # the answer is plain JSON


async def test_given_asterisk_when_the_resident_presses_4_then_the_merchant_meets_their_channel(
    tmp_path: Path, seeded_db_url: str
) -> None:
    """Through the hotline: the status menu over FastAGI, 4, the merchant originated with
    the hotline's caller ID, and the resident's own channel (whose caller ID is their real
    number) is the one sent into the masked bridge, which puts the hotline's on it."""
    ami = await FakeAMI().start()
    config = AsteriskConfig(
        host="127.0.0.1", port=ami.port, username="yijing", secret="s3cret",
        dial_template="PJSIP/{number}@trunk", agi_host="127.0.0.1", agi_port=0,
        agi_wait_s=0.2, action_timeout_s=0.5, connect_timeout_s=0.5,
        backoff_initial_s=0.02, backoff_max_s=0.1, startup_wait_s=2.0,
    )  # fmt: skip
    tel = AsteriskTelephony(config)
    try:
        async with app_on(tmp_path, seeded_db_url, tel) as h:
            await up(h)
            tid = await accepted(h)
            _, shop_phone = await merchant_login(h, tid)
            digits = await resident_digits(h)
            caller, uid = "PJSIP/trunk-00000031", "920.1"
            await ami.send(
                channel_event("Newchannel", caller, uid, CallerIDNum="02354000001",
                              Context="yijing-hotline", Exten="12349")
            )  # fmt: skip
            agi = FakeAgiChannel(tel.agi_port, ref=f"ast-{uid}", channel=caller, uniqueid=uid)
            await agi.connect()

            def reply(command: str) -> str:
                if "status.menu_merchant" in command:
                    return "200 result=52 endpos=4000"  # '4' pressed during the menu
                return (
                    "200 result=0 endpos=8000" if command.startswith("STREAM") else "200 result=1"
                )

            await asyncio.wait_for(agi.serve(reply), 10)
            assert 'STREAM FILE yijing/zh-CN/masked.calling_merchant ""' in agi.commands
            assert agi.commands[-1] == "SET VARIABLE YIJING_TRANSFER stay"

            def to_shop() -> list[dict[str, list[str]]]:
                return [
                    a for a in ami.named("Originate")
                    if shop_phone in a["Channel"][0] and "YIJING_REF=mk-" in a["Variable"][0]
                ]  # fmt: skip

            await eventually(lambda: _true(to_shop()))
            (placed,) = to_shop()
            assert placed["CallerID"] == ['"Yijing" <12349>']
            assert leaks(placed, digits) == []
            ref = placed["Variable"][0].removeprefix("YIJING_REF=")
            merchant, m_uid = "PJSIP/trunk-00000032", "920.2"
            var = {"ChanVariable": f"YIJING_REF={ref}", "Context": "yijing-outbound"}
            await ami.send(
                channel_event("Newchannel", merchant, m_uid, ChannelState="0", **var)
                + frame(Event="OriginateResponse", ActionID=f"yijing-originate/{ref}",
                        Response="Success", Channel=merchant, Reason="4", Uniqueid=m_uid)
            )  # fmt: skip

            async def redirected() -> Any:
                return [r for r in ami.named("Redirect") if r["Channel"] == [caller]]

            (redirect,) = await eventually(redirected)
            assert redirect["Context"] == ["yijing-bridge"]
            setvar = [s for s in ami.named("Setvar") if s["Channel"] == [caller]]
            assert setvar[-1]["Value"] == [merchant]
            await timeline_has(h, tid, "masked.connected")
            # the merchant hangs up: the resident's channel is hung up
            await ami.send(channel_event("Hangup", merchant, m_uid, Cause="16"))

            async def caller_hung_up() -> Any:
                return [a for a in ami.named("Hangup") if a["Channel"] == [caller]]

            await eventually(caller_hung_up)
            detail = await timeline_has(h, tid, "masked.ended")
            masked = [e for e in detail["timeline"] if e["name"].startswith("masked.")]
            assert [e["name"] for e in masked] == [
                "masked.started",
                "masked.connected",
                "masked.ended",
            ]
            assert masked[0]["data"]["initiated_by"] == "resident"
            assert leaks([e.data for e in await masked_events(h, tid)], digits) == []
            await agi.close()
    finally:
        await ami.close()


async def test_given_twilio_when_the_resident_presses_4_then_the_merchant_joins_their_conference(
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
        twilio = TwilioSide(h.client)
        await up(h)
        tid = await accepted(h)
        _, shop_phone = await merchant_login(h, tid)
        digits = await resident_digits(h)
        hold = await twilio.voice("CA-RESIDENT", From="+862354000001", To="12349")

        async def menu() -> Any:
            doc = hold if hold.gather() is not None else await twilio.follow(hold, "CA-RESIDENT")
            return doc if doc.gather() is not None else None

        waiting = await twilio.gather(await eventually(menu), "CA-RESIDENT", "4")
        assert any("正在为您接通商家" in s for s in waiting.said())

        def masked_calls() -> list[tuple[str, Any]]:
            return [
                (api.sids_created[i], r)
                for i, r in enumerate(api.calls_created())
                if r.form["To"] == shop_phone and "ref=mk-" in r.form["Url"]
            ]

        await eventually(lambda: _true(masked_calls()))
        ((m_sid, created),) = masked_calls()
        assert created.form["From"] == PLATFORM
        ref = created.form["Url"].rsplit("ref=", 1)[1]
        m_doc = await follow_until(twilio, await twilio.voice(m_sid, ref=ref), m_sid, "Dial")
        r_doc = await follow_until(twilio, waiting, "CA-RESIDENT", "Dial")
        rooms = []
        for doc in (m_doc, r_doc):
            dial = doc.root.find("Dial")
            assert dial is not None and dial.get("callerId") == PLATFORM
            conference = dial.find("Conference")
            assert conference is not None
            rooms.append((conference.text or "").strip())
        assert rooms[0] == rooms[1] and ref in rooms[0]
        assert leaks([m_doc.xml, created.form], digits) == []
        await timeline_has(h, tid, "masked.connected")
        # the resident hangs up: the merchant's call is completed over REST
        assert await twilio.status("CA-RESIDENT", "completed") == 204

        async def merchant_completed() -> Any:
            return [
                u for u in api.calls_updated()
                if m_sid in u.path and u.form.get("Status") == "completed"
            ]  # fmt: skip

        await eventually(merchant_completed)
        detail = await timeline_has(h, tid, "masked.ended")
        masked = [e for e in detail["timeline"] if e["name"].startswith("masked.")]
        assert [e["name"] for e in masked] == ["masked.started", "masked.connected", "masked.ended"]
        assert masked[2]["data"]["hung_up_by"] == "resident"
