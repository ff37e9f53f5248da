"""IVR flows rendered as TwiML turn by turn, the handoff with dispatch, and bridging."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from ivr.flow import Flow
from ivr.flows import HOTLINE_NO_MENU, MERCHANT_ACCEPTED, MERCHANT_OFFER, SURVEY
from ivr.prompts import render
from providers.base import (
    CallAnswered,
    CallBridged,
    CallOffered,
    DigitPressed,
    FlowFinished,
    PromptPlayed,
    TelephonyEvent,
)
from tests.providers.twilio.twilio_fakes import PLATFORM, PUBLIC, Doc, Rig

OFFER = {
    "category": "送药上门",
    "description": "降压药两盒",
    "address": "白公路3号2单元",
    "deadline": "15:30",
    "code_word": "松柏",
}
REF = "offer-9"


async def start(
    rig: Rig, flow: Flow, context: Mapping[str, Any], lang: str = "zh-CN"
) -> tuple[str, Doc]:
    """An outbound call answered; dispatch reacts to CallAnswered; Twilio fetches the TwiML."""
    await rig.adapter.originate(ref=REF, number="+8613900000009")
    sid = rig.api.sids_created[-1]
    await rig.twilio.status(sid, "in-progress", ref=REF)
    assert await rig.events.take() == [CallAnswered(REF)]
    await rig.adapter.run_flow(REF, flow, context=context, lang=lang)
    return sid, await rig.twilio.voice(sid, ref=REF)


def played(events: list[TelephonyEvent]) -> list[str]:
    return [e.prompt for e in events if isinstance(e, PromptPlayed)]


def finished(events: list[TelephonyEvent]) -> list[FlowFinished]:
    return [e for e in events if isinstance(e, FlowFinished)]


async def test_offer_first_turn_is_intro_then_menu_in_a_gather(rig: Rig) -> None:
    _, doc = await start(rig, MERCHANT_OFFER, OFFER)

    assert doc.verbs() == ["Say", "Gather", "Redirect"]
    intro, menu = doc.says()
    assert intro.get("language") == "cmn-CN"
    assert intro.text == render("offer.intro", "zh-CN", OFFER)
    assert "白公路3号2单元" in (intro.text or "")
    gather = doc.gather()
    assert gather is not None
    assert gather.attrib == {
        "input": "dtmf",
        "numDigits": "1",
        "timeout": "8",
        "action": f"{PUBLIC}/gather?ref={REF}&turn=1",
        "method": "POST",
        "actionOnEmptyResult": "true",
        "finishOnKey": "",
    }
    assert list(gather) == [menu]
    assert menu.text == render("offer.menu", "zh-CN")
    assert doc.redirect() == f"{PUBLIC}/gather?ref={REF}&turn=1"
    events = await rig.events.take()
    assert played(events) == ["offer.intro", "offer.menu"]
    assert events[0] == PromptPlayed(REF, "offer.intro", intro.text or "")


async def test_offer_accept_waits_silently_for_the_service_then_says_the_code(rig: Rig) -> None:
    sid, doc = await start(rig, MERCHANT_OFFER, OFFER)
    await rig.events.take()

    after = await rig.twilio.gather(doc, sid, "1")

    # nothing said until the acceptance is committed: the call waits in the hold loop
    assert after.verbs() == ["Redirect"] and after.said() == []
    events = await rig.events.take()
    assert finished(events) == [FlowFinished(REF, "merchant_offer", "accepted", OFFER)]
    assert (await rig.twilio.voice(sid, ref=REF)).verbs() == ["Pause", "Redirect"]
    await rig.adapter.run_flow(REF, MERCHANT_ACCEPTED, context={"code_word": "4827"})
    told = await rig.twilio.voice(sid, ref=REF)
    assert told.verbs() == ["Say", "Hangup"]
    assert told.said() == [render("offer.accepted", "zh-CN", {"code_word": "4827"})]


async def test_offer_accept_with_no_next_flow_hangs_up_after_the_handoff_limit(rig: Rig) -> None:
    rig.adapter.config = dataclasses.replace(rig.adapter.config, handoff_max_s=0.0)
    sid, doc = await start(rig, MERCHANT_OFFER, OFFER)
    await rig.twilio.gather(doc, sid, "1")
    assert (await rig.twilio.voice(sid, ref=REF)).verbs() == ["Pause", "Redirect"]
    await asyncio.sleep(0.01)
    assert (await rig.twilio.voice(sid, ref=REF)).verbs() == ["Hangup"]


@pytest.mark.parametrize(("digit", "prompt", "outcome"), [("2", "offer.declined", "declined")])
async def test_offer_accept_and_decline(rig: Rig, digit: str, prompt: str, outcome: str) -> None:
    sid, doc = await start(rig, MERCHANT_OFFER, OFFER)
    await rig.events.take()

    after = await rig.twilio.gather(doc, sid, digit)

    assert after.verbs() == ["Say", "Hangup"]
    assert after.said() == [render(prompt, "zh-CN", OFFER)]
    events = await rig.events.take()
    assert events[0] == DigitPressed(REF, digit)
    assert played(events) == [prompt]
    assert finished(events) == [FlowFinished(REF, "merchant_offer", outcome, OFFER)]
    # The call is done: a late poll only hangs up.
    assert (await rig.twilio.voice(sid, ref=REF)).verbs() == ["Hangup"]


async def test_offer_no_input_repeats_slower_twice_then_gives_up(rig: Rig) -> None:
    sid, doc = await start(rig, MERCHANT_OFFER, OFFER)
    await rig.events.take()

    for turn in (2, 3):
        doc = await rig.twilio.gather(doc, sid, None)
        assert doc.verbs() == ["Say", "Gather", "Redirect"]
        gather = doc.gather()
        assert gather is not None and [n.tag for n in gather] == ["Pause", "Say"]
        assert doc.said() == [render("ivr.no_input", "zh-CN"), render("offer.menu", "zh-CN")]
        slow = doc.says()[1].find("prosody")
        assert slow is not None and slow.get("rate") == "85%"
        assert doc.gather_action() == f"{PUBLIC}/gather?ref={REF}&turn={turn}"
    doc = await rig.twilio.gather(doc, sid, None)

    assert doc.verbs() == ["Say", "Hangup"]
    assert doc.said() == [render("offer.no_input", "zh-CN")]
    events = await rig.events.take()
    assert not any(isinstance(e, DigitPressed) for e in events)
    assert finished(events) == [FlowFinished(REF, "merchant_offer", "no_input", OFFER)]


async def test_offer_9_says_it_all_again(rig: Rig) -> None:
    sid, doc = await start(rig, MERCHANT_OFFER, OFFER)

    doc = await rig.twilio.gather(doc, sid, "9")

    assert doc.said() == [render("offer.intro", "zh-CN", OFFER), render("offer.menu", "zh-CN")]
    assert doc.gather_action() == f"{PUBLIC}/gather?ref={REF}&turn=2"
    doc = await rig.twilio.gather(doc, sid, "1")
    assert finished(await rig.events.take())[0].outcome == "accepted"


async def test_offer_wrong_key_says_so_and_asks_again(rig: Rig) -> None:
    sid, doc = await start(rig, MERCHANT_OFFER, OFFER)
    doc = await rig.twilio.gather(doc, sid, "5")
    assert doc.said()[0] == render("ivr.wrong_key", "zh-CN")
    assert doc.gather() is not None


@pytest.mark.parametrize(
    ("digit", "rating"),
    [("1", "satisfied"), ("2", "basically_satisfied"), ("3", "not_satisfied")],
)
async def test_survey_ratings(rig: Rig, digit: str, rating: str) -> None:
    context = {"category": "上门护理"}
    sid, doc = await start(rig, SURVEY, context)
    assert doc.said() == [
        render("survey.intro", "zh-CN", context),
        render("survey.menu", "zh-CN"),
    ]

    doc = await rig.twilio.gather(doc, sid, digit)

    assert doc.verbs() == ["Say", "Hangup"]
    assert doc.said() == [render("survey.thanks", "zh-CN")]
    (done,) = finished(await rig.events.take())
    assert done == FlowFinished(REF, "survey", "rated", {"category": "上门护理", "rating": rating})


async def test_retried_gather_is_answered_again_without_a_second_step(rig: Rig) -> None:
    sid, doc = await start(rig, SURVEY, {"category": "x"})
    await rig.events.take()

    first = await rig.twilio.gather(doc, sid, "1")
    again = await rig.twilio.gather(doc, sid, "1")

    assert first.xml == again.xml
    events = await rig.events.take()
    assert events.count(DigitPressed(REF, "1")) == 1
    assert len(finished(events)) == 1


async def test_stale_gather_after_the_flow_moved_on_does_not_step_it(rig: Rig) -> None:
    sid, doc = await start(rig, MERCHANT_OFFER, OFFER)
    second = await rig.twilio.gather(doc, sid, None)
    await rig.twilio.gather(second, sid, None)
    await rig.events.take()

    # turn 1 again, with another answer: neither a digit nor a step is taken.
    await rig.twilio.gather(doc, sid, "1")

    assert await rig.events.take() == []


@pytest.mark.parametrize(("english", "expected"), [("en-GB", "en-GB"), ("en-US", "en-US")])
async def test_english_flow_says_english(
    make_rig: Callable[..., Any], english: str, expected: str
) -> None:
    rig: Rig = await make_rig(english_language=english)
    _, doc = await start(rig, SURVEY, {"category": "nursing"}, lang="en")
    assert {say.get("language") for say in doc.says()} == {expected}
    assert doc.said()[0] == render("survey.intro", "en", {"category": "nursing"})


async def test_audio_base_url_plays_built_prompts_and_says_the_rest(
    make_rig: Callable[..., Any],
) -> None:
    rig: Rig = await make_rig(audio_base_url="https://audio.example.org/prompts/")
    sid, doc = await start(rig, MERCHANT_OFFER, OFFER)

    # The intro names an address: no recording can say it.
    assert doc.verbs() == ["Say", "Gather", "Redirect"]
    gather = doc.gather()
    assert gather is not None
    assert [(n.tag, n.text) for n in gather] == [
        ("Play", "https://audio.example.org/prompts/zh-CN/offer.menu.wav")
    ]
    doc = await rig.twilio.gather(doc, sid, None)
    assert [n.text for n in doc.root.iter("Play")] == [
        "https://audio.example.org/prompts/zh-CN/ivr.no_input.wav",
        "https://audio.example.org/prompts/zh-CN/offer.menu.slow.wav",
    ]


# -- the handoff with dispatch ---------------------------------------------------------


async def test_voice_before_run_flow_holds_then_serves_the_flow(rig: Rig) -> None:
    await rig.adapter.originate(ref=REF, number="+8613900000009")
    sid = rig.api.sids_created[-1]

    hold = await rig.twilio.voice(sid, ref=REF)

    assert hold.verbs() == ["Pause", "Redirect"]
    assert hold.redirect() == f"{PUBLIC}/voice?ref={REF}"
    assert await rig.events.take() == [CallAnswered(REF)]
    await rig.adapter.run_flow(REF, SURVEY, context={"category": "x"})
    doc = await rig.twilio.follow(hold, sid)
    assert doc.gather() is not None
    assert played(await rig.events.take()) == ["survey.intro", "survey.menu"]


async def test_voice_waits_briefly_for_run_flow(make_rig: Callable[..., Any]) -> None:
    rig: Rig = await make_rig(handoff_wait_s=5.0)
    await rig.adapter.originate(ref=REF, number="+8613900000009")
    sid = rig.api.sids_created[-1]

    began = time.monotonic()
    fetching = asyncio.create_task(rig.twilio.voice(sid, ref=REF))
    await rig.events.wait_for(CallAnswered(REF))
    await rig.adapter.run_flow(REF, SURVEY, context={"category": "x"})
    doc = await fetching

    assert time.monotonic() - began < 2.0
    assert doc.gather() is not None


async def test_voice_wait_is_bounded(make_rig: Callable[..., Any]) -> None:
    rig: Rig = await make_rig(handoff_wait_s=0.05)
    await rig.adapter.originate(ref=REF, number="+8613900000009")

    doc = await rig.twilio.voice(rig.api.sids_created[-1], ref=REF)

    assert doc.verbs() == ["Pause", "Redirect"]


async def test_call_that_never_gets_a_command_is_hung_up(make_rig: Callable[..., Any]) -> None:
    rig: Rig = await make_rig(handoff_max_s=0.0)
    await rig.adapter.originate(ref=REF, number="+8613900000009")
    sid = rig.api.sids_created[-1]

    first = await rig.twilio.voice(sid, ref=REF)
    await asyncio.sleep(0.01)
    second = await rig.twilio.follow(first, sid)

    assert second.verbs() == ["Hangup"]


async def test_hangup_while_waiting_answers_hangup(make_rig: Callable[..., Any]) -> None:
    rig: Rig = await make_rig(handoff_wait_s=5.0)
    await rig.adapter.originate(ref=REF, number="+8613900000009")
    fetching = asyncio.create_task(rig.twilio.voice(rig.api.sids_created[-1], ref=REF))
    await rig.events.wait_for(CallAnswered(REF))

    await rig.adapter.hangup(REF)

    assert (await fetching).verbs() == ["Hangup"]
    assert rig.api.calls_updated()[-1].form["Status"] == "completed"


async def test_voice_for_unknown_ref_hangs_up(rig: Rig) -> None:
    doc = await rig.twilio.voice("CA77", ref="forgotten")
    assert doc.verbs() == ["Hangup"]
    assert await rig.events.calls() == []


# -- hotline, transfer and bridging ----------------------------------------------------


async def inbound_on_hold(rig: Rig, sid: str = "CA500") -> Doc:
    """A resident calls the hotline and dispatch runs the hotline flow: the call waits."""
    hold = await rig.twilio.voice(sid, From="+8613800000500", To="12349")
    assert await rig.events.take() == [CallOffered(sid, "+8613800000500", "12349")]
    await rig.adapter.run_flow(sid, HOTLINE_NO_MENU, context={"name": "张阿姨"})
    doc = await rig.twilio.follow(hold, sid)
    assert doc.verbs() == ["Say", "Say", "Redirect"]
    assert doc.said() == [
        render("hotline.greeting_known", "zh-CN", {"name": "张阿姨"}),
        render("hotline.to_operator", "zh-CN"),
    ]
    assert doc.redirect() == f"{PUBLIC}/voice?ref={sid}"
    events = await rig.events.take()
    assert finished(events) == [
        FlowFinished(sid, "hotline_no_menu", "transfer", {"name": "张阿姨"})
    ]
    return doc


async def test_hotline_transfers_to_hold_then_meets_the_operator_in_a_desk_conference(
    make_rig: Callable[..., Any],
) -> None:
    rig: Rig = await make_rig(handoff_max_s=0.0)
    doc = await inbound_on_hold(rig)
    # A handed-on call waits as long as it takes (handoff_max_s does not apply).
    for _ in range(3):
        doc = await rig.twilio.follow(doc, "CA500")
        assert doc.verbs() == ["Pause", "Redirect"]

    await rig.adapter.bridge("CA500", peer="op-7")
    doc = await rig.twilio.follow(doc, "CA500")

    # the operator is rung into the caller's own conference over REST ...
    (added,) = rig.api.participants_added()
    assert added.path.endswith("/Conferences/yijing-desk-CA500/Participants.json")
    assert added.form["To"] == "client:op-7"
    assert added.form["From"] == PLATFORM
    assert added.form["Label"] == "operator-1"
    assert added.form["EndConferenceOnExit"] == "true"
    assert added.form["StatusCallback"] == f"{PUBLIC}/participant?ref=CA500&label=operator-1"
    # ... and the caller joins it, labelled, hearing the hold prompt until the operator is in
    assert doc.verbs() == ["Dial"]
    dial = doc.root.find("Dial")
    assert dial is not None
    assert dial.get("callerId") == PLATFORM
    assert dial.get("action") == f"{PUBLIC}/dial?ref=CA500"
    (room,) = list(dial)
    assert (room.tag, room.text) == ("Conference", "yijing-desk-CA500")
    assert room.get("participantLabel") == "caller"
    assert room.get("endConferenceOnExit") == "true"
    assert room.get("waitUrl") == f"{PUBLIC}/hold?ref=CA500"
    assert await rig.events.take() == [CallBridged("CA500", "op-7")]

    status, body = await rig.twilio.post(
        "dial", {"CallSid": "CA500", "DialCallStatus": "completed"}, query={"ref": "CA500"}
    )
    assert status == 200 and Doc(body).verbs() == ["Hangup"]


async def test_operator_that_does_not_answer_puts_caller_back_on_hold(rig: Rig) -> None:
    doc = await inbound_on_hold(rig)
    await rig.adapter.bridge("CA500", peer="op-7")
    await rig.twilio.follow(doc, "CA500")

    status, _ = await rig.twilio.post(
        "participant",
        {"CallSid": rig.api.sids_created[-1], "CallStatus": "no-answer"},
        query={"ref": "CA500", "label": "operator-1"},
    )

    assert status == 204
    (pulled,) = rig.api.calls_updated()
    assert pulled.path.endswith("/Calls/CA500.json")
    assert dict(pulled.form) == {"Url": f"{PUBLIC}/voice?ref=CA500", "Method": "POST"}
    doc = await rig.twilio.voice("CA500", ref="CA500")
    assert doc.verbs() == ["Pause", "Redirect"]


@pytest.mark.parametrize(
    ("template", "peer", "address"),
    [
        ("sip:{peer}@pbx.example.org", "op-7", "sip:op-7@pbx.example.org"),
        ("+862300001111", "op-7", "+862300001111"),
        ("client:{peer}", "+8613900000099", "+8613900000099"),
        ("client:{peer}", "operator:2", "client:operator_2"),
        ("sip:desk{id}@pbx.example.org", "operator:12", "sip:desk12@pbx.example.org"),
    ],
)
async def test_bridge_targets(
    make_rig: Callable[..., Any], template: str, peer: str, address: str
) -> None:
    rig: Rig = await make_rig(operator_endpoint=template)
    doc = await inbound_on_hold(rig)
    await rig.adapter.bridge("CA500", peer=peer)

    doc = await rig.twilio.follow(doc, "CA500")

    dial = doc.root.find("Dial")
    assert dial is not None and dial.get("callerId") == PLATFORM
    (added,) = rig.api.participants_added()
    assert (added.form["To"], added.form["From"]) == (address, PLATFORM)


async def test_resident_and_merchant_meet_in_a_conference_without_numbers(rig: Rig) -> None:
    resident = await inbound_on_hold(rig)
    await rig.adapter.originate(ref="merchant-1", number="+8613900000001")
    merchant_sid = rig.api.sids_created[-1]
    merchant = await rig.twilio.voice(merchant_sid, ref="merchant-1")
    await rig.events.take()

    await rig.adapter.bridge("CA500", peer="merchant-1")
    a = await rig.twilio.follow(resident, "CA500")
    b = await rig.twilio.follow(merchant, merchant_sid)

    rooms = []
    for doc in (a, b):
        dial = doc.root.find("Dial")
        assert dial is not None and dial.get("callerId") == PLATFORM
        (conference,) = list(dial)
        assert conference.tag == "Conference"
        rooms.append(conference.text)
        assert "+8613800000500" not in doc.xml and "+8613900000001" not in doc.xml
    assert rooms[0] == rooms[1]
    assert set(await rig.events.take()) == {
        CallBridged("CA500", "merchant-1"),
        CallBridged("merchant-1", "CA500"),
    }
