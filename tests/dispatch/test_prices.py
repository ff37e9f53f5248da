"""Price notes and consent (issue 16): the operator sees each candidate's price note, the
offer call and the resident's call say who pays, and a self-paid category that asks for
the resident's consent is not dispatched before the consent is on the ticket."""

from __future__ import annotations

from typing import Any

from ivr.prompts import render
from tests.conftest import Harness, eventually
from tests.dispatch.test_cascade import names, new_ticket
from tests.dispatch.test_told import accepted_by_phone, tell, timeline_has, told_rings
from tests.operator_console.test_whole_path import (
    RESIDENT_PHONE,
    press_when_asked,
    ringing_out,
    waiting_for_keys,
)

#: what the demo's medicine price note (subsidised, 5 yuan) sounds like
SUBSIDISED_5 = "这是补贴服务，个人自付五元。"


async def test_given_a_medicine_ticket_when_ranked_then_each_candidate_carries_its_price_note(
    harness: Harness,
) -> None:
    h = harness
    tid = await new_ticket(h, "medicine")
    ranked = await h.call("GET", f"/tickets/{tid}/candidates")
    assert ranked
    assert {c["price"]["kind"] for c in ranked} == {"subsidised"}
    assert {c["price"]["yuan"] for c in ranked} == {5}
    assert {c["price"]["note"] for c in ranked} == {"政府补贴 自付5元"}


async def test_given_an_admin_edits_a_merchants_price_then_the_candidates_show_the_new_one(
    harness: Harness,
) -> None:
    h = harness
    tid = await new_ticket(h, "medicine")
    first = (await h.call("GET", f"/tickets/{tid}/candidates"))[0]
    mid = first["merchant_id"]
    detail = await h.call("GET", f"/merchants/{mid}", as_user="demo")
    services = [
        {**s, "price_kind": "free", "price_yuan": None, "price_note": "本月免费送药"}
        if s["category"] == "medicine"
        else s
        for s in detail["services"]
    ]
    await h.call(
        "PATCH",
        f"/merchants/{mid}",
        as_user="demo",
        json={"services": services, "version": detail["version"]},
    )
    again = await h.call("GET", f"/merchants/{mid}", as_user="demo")
    [medicine] = [s for s in again["services"] if s["category"] == "medicine"]
    assert (medicine["price_kind"], medicine["price_yuan"]) == ("free", None)
    bad = [{"category": "medicine", "price_kind": "cheap"}]
    await h.call(
        "PATCH",
        f"/merchants/{mid}",
        as_user="demo",
        json={"services": bad, "version": again["version"]},
        expect=422,
    )

    async def shown() -> Any:
        ranked = await h.call("GET", f"/tickets/{tid}/candidates")
        mine = next(c for c in ranked if c["merchant_id"] == mid)
        return mine if mine["price"]["kind"] == "free" else None

    mine = await eventually(shown)
    assert mine["price"] == {"kind": "free", "yuan": None, "note": "本月免费送药"}


async def test_given_an_offer_call_when_answered_then_the_merchant_hears_who_pays_and_how_much(
    harness: Harness,
) -> None:
    h = harness
    tid = await new_ticket(h, "medicine")
    await h.call("POST", f"/tickets/{tid}/dispatch", json={})
    offer = await ringing_out(h)
    await h.pbx.answer(offer["ref"])
    await waiting_for_keys(h, offer["ref"])
    transcript = h.pbx.calls[offer["ref"]].transcript
    # after the order, before the keys
    assert SUBSIDISED_5 in transcript
    assert transcript.index(SUBSIDISED_5) < next(
        i for i, line in enumerate(transcript) if "接单请按 1" in line
    )


async def test_given_a_merchant_accepts_then_the_resident_is_told_the_price_too(
    harness: Harness,
) -> None:
    h = harness
    tell(h)
    tid, _ = await accepted_by_phone(h)
    seen = {c["ref"] for c in h.pbx.snapshot() if c["number"] != RESIDENT_PHONE}
    call = await told_rings(h, seen)
    assert call["number"] == RESIDENT_PHONE
    await h.pbx.answer(call["ref"])
    await waiting_for_keys(h, call["ref"])
    transcript = h.pbx.calls[call["ref"]].transcript
    assert SUBSIDISED_5 in transcript
    detail = await timeline_has(h, tid, "resident.told")
    told = [e for e in detail["timeline"] if e["name"] == "resident.told"]
    assert told[-1]["data"]["price"] == "subsidised_yuan"


async def test_given_a_self_paid_repair_when_dispatched_without_consent_then_409_until_recorded(
    harness: Harness,
) -> None:
    h = harness
    tid = await new_ticket(h, "repair")
    ticket = await h.call("GET", f"/tickets/{tid}")
    assert ticket["needs_consent"] is True and ticket["consented_at"] is None
    refused = await h.call("POST", f"/tickets/{tid}/dispatch", json={}, expect=409)
    assert refused["error_id"] == "consent_required"
    assert (await h.call("GET", f"/tickets/{tid}"))["state"] == "new"
    # a merchant cannot record it; an empty "who" is refused
    await h.call(
        "POST", f"/tickets/{tid}/consent", json={"who": "老人本人"}, as_user="merchant1", expect=403
    )
    await h.call("POST", f"/tickets/{tid}/consent", json={"who": ""}, expect=422)

    consented = await h.call("POST", f"/tickets/{tid}/consent", json={"who": "老人本人"})
    assert consented["consent_by"] == "老人本人" and consented["consented_at"]
    detail = await h.call("GET", f"/tickets/{tid}")
    [event] = [e for e in detail["timeline"] if e["name"] == "ticket.consented"]
    assert event["data"]["who"] == "老人本人"
    assert event["actor"] == "operator"

    dispatched = await h.call("POST", f"/tickets/{tid}/dispatch", json={})
    assert dispatched["state"] != "new"
    assert "ticket.matching" in names(await h.call("GET", f"/tickets/{tid}"))


async def test_given_a_category_without_consent_when_dispatched_then_no_consent_is_asked(
    harness: Harness,
) -> None:
    h = harness
    tid = await new_ticket(h, "medicine")
    assert (await h.call("GET", f"/tickets/{tid}"))["needs_consent"] is False
    await h.call("POST", f"/tickets/{tid}/dispatch", json={})


async def test_given_a_keypad_repair_then_it_waits_for_consent_and_an_operator_calls_back(
    harness: Harness,
) -> None:
    h = harness
    ref = await h.pbx.dial_in(RESIDENT_PHONE)
    await press_when_asked(h, ref, "6")  # a home repair
    await press_when_asked(h, ref, "1")  # confirm the read-back

    async def waiting() -> Any:
        tickets = await h.call("GET", "/tickets?state=open")
        return tickets if {t["category_code"] for t in tickets} >= {"repair", "callback"} else None

    tickets = await eventually(waiting)
    [repair] = [t for t in tickets if t["category_code"] == "repair"]
    assert repair["state"] == "new" and repair["consented_at"] is None
    assert "ticket.awaiting_consent" in names(await h.call("GET", f"/tickets/{repair['id']}"))
    assert not [c for c in h.pbx.snapshot() if c["direction"] == "out"]  # no merchant rung


async def test_given_a_repair_waiting_for_consent_when_the_resident_calls_and_presses_1_then_sent(
    harness: Harness,
) -> None:
    h = harness
    tid = await new_ticket(h, "repair")
    await h.call("POST", f"/tickets/{tid}/dispatch", json={}, expect=409)
    ref = await h.pbx.dial_in(RESIDENT_PHONE)
    await waiting_for_keys(h, ref)
    heard = " ".join(h.pbx.calls[ref].transcript)
    assert "自费服务" in heard and "同意付费请按 1" in heard
    await h.pbx.press(ref, "1")
    detail = await timeline_has(h, tid, "ticket.matching")
    assert detail["consent_by"] == "老人本人（按键）" and detail["consented_at"]
    [event] = [e for e in detail["timeline"] if e["name"] == "ticket.consented"]
    assert (event["actor"], event["data"]["by"]) == ("resident", "key")
    assert render("status.consented", "zh-CN") in h.pbx.calls[ref].transcript
    await ringing_out(h, exclude={ref})  # the first merchant's offer call
