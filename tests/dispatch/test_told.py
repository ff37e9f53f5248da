"""The resident is told who is coming: after a merchant accepts, a short call with the
shop's name, the time and the code word; 9 repeats, no answer is tried once more, the
quiet hours of the night wait for the morning (unless the visit is under way by then)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventlog.clock import LOCAL_TZ
from ivr import speech
from tests.conftest import Harness, eventually
from tests.dispatch.test_cascade import live_offer_count, names, new_ticket
from tests.operator_console.test_whole_path import (
    RESIDENT_PHONE,
    ringing_out,
    ticket_state,
    waiting_for_keys,
)


def tell(h: Harness) -> None:
    """Turn the call on (the root turns it on by default; the test harness does not)."""
    h.services.dispatch.config.tell_resident = True


async def accepted_by_phone(h: Harness) -> tuple[int, dict[str, Any]]:
    """A medicine order the first merchant accepts by pressing 1 on the offer call."""
    tid = await new_ticket(h, "medicine")
    await h.call("POST", f"/tickets/{tid}/dispatch", json={})
    offer = await ringing_out(h)
    await h.pbx.answer(offer["ref"])
    await waiting_for_keys(h, offer["ref"])
    await h.pbx.press(offer["ref"], "1")
    return tid, await ticket_state(h, tid, "accepted")


async def accepted_from_console(h: Harness) -> tuple[int, set[str]]:
    """A medicine order accepted from the console; the calls the PBX had before the accept."""
    tid = await new_ticket(h, "medicine")
    await h.call("POST", f"/tickets/{tid}/dispatch", json={})
    [offer] = await live_offer_count(h, tid, 1)
    seen = {c["ref"] for c in h.pbx.snapshot()}
    await h.call("POST", f"/offers/{offer['id']}/accept")
    return tid, seen


def merchant_of(detail: dict[str, Any]) -> str:
    accepted = [e for e in detail["timeline"] if e["name"] == "offer.accepted"]
    return str(accepted[-1]["data"]["merchant"])


async def told_rings(h: Harness, seen: set[str]) -> dict[str, Any]:
    call = dict(await ringing_out(h, exclude=seen))
    seen.add(call["ref"])
    return call


async def timeline_has(h: Harness, tid: int, name: str) -> dict[str, Any]:
    async def check() -> Any:
        detail = await h.call("GET", f"/tickets/{tid}")
        return detail if name in names(detail) else None

    return dict(await eventually(check))


async def test_given_a_merchant_accepts_by_phone_then_the_resident_hears_who_when_and_the_code(
    harness: Harness,
) -> None:
    h = harness
    tell(h)
    tid, detail = await accepted_by_phone(h)
    shop = merchant_of(detail)
    seen = {c["ref"] for c in h.pbx.snapshot() if c["number"] != RESIDENT_PHONE}
    call = await told_rings(h, seen)
    assert call["number"] == RESIDENT_PHONE
    await h.pbx.answer(call["ref"])
    await waiting_for_keys(h, call["ref"])
    spoken = " ".join(h.pbx.calls[call["ref"]].transcript)
    assert shop in spoken
    assert speech.code(detail["code_word"]) in spoken
    assert "前到" in spoken  # by when, as a time
    # 9 hears it all again; then silence ends the call, heard
    h.pbx.time_scale = 0.01
    await h.pbx.press(call["ref"], "9")
    done = await timeline_has(h, tid, "resident.heard")
    transcript = h.pbx.calls[call["ref"]].transcript
    assert sum(shop in line for line in transcript) == 2
    assert sum(speech.code(detail["code_word"]) in line for line in transcript) == 2
    told = [e for e in done["timeline"] if e["name"] == "resident.told"]
    assert told[-1]["data"]["merchant"] == shop
    assert told[-1]["data"]["told"] == ["merchant", "deadline", "code_word"]
    heard = [e for e in done["timeline"] if e["name"] == "resident.heard"]
    assert heard[-1]["data"]["outcome"] == "heard"
    # the merchant's calls never carried the resident's number
    for sim in h.pbx.calls.values():
        if sim.number != RESIDENT_PHONE:
            assert RESIDENT_PHONE[-8:] not in " ".join(sim.transcript)


async def test_given_the_told_call_when_0_is_pressed_then_an_operator_call_back_is_due(
    harness: Harness,
) -> None:
    h = harness
    tell(h)
    tid, _ = await accepted_by_phone(h)
    seen = {c["ref"] for c in h.pbx.snapshot() if c["number"] != RESIDENT_PHONE}
    call = await told_rings(h, seen)
    await h.pbx.answer(call["ref"])
    await waiting_for_keys(h, call["ref"])
    await h.pbx.press(call["ref"], "0")
    await timeline_has(h, tid, "resident.heard")

    async def callback_task() -> Any:
        tickets = await h.call("GET", "/tickets")
        return next((t for t in tickets if t["category_code"] == "callback"), None)

    task = await eventually(callback_task)
    assert task["resident_id"] == 1


async def test_given_no_answer_when_told_then_one_retry_later_then_not_reached(
    harness: Harness,
) -> None:
    h = harness
    tell(h)
    tid, seen = await accepted_from_console(h)
    first = await told_rings(h, seen)
    assert first["number"] == RESIDENT_PHONE
    await h.pbx.party_hangup(first["ref"])  # rings out, nobody picks up
    await timeline_has(h, tid, "resident.told_retry")
    assert f"told:{tid}" in await h.timers.advance(601)
    second = await told_rings(h, seen)
    assert second["number"] == RESIDENT_PHONE
    await h.pbx.party_hangup(second["ref"])
    detail = await timeline_has(h, tid, "resident.not_reached")
    timeline = names(detail)
    assert timeline.count("resident.calling") == 2
    assert "resident.told" not in timeline and "resident.heard" not in timeline
    assert f"told:{tid}" not in h.timers.pending


async def test_given_a_late_evening_accept_then_the_resident_is_told_in_the_morning(
    harness: Harness,
) -> None:
    h = harness
    tell(h)
    # 08:00: the quiet hours end at 08:30, the medicine is due within the hour (09:00)
    h.clock.set(datetime(2026, 11, 22, 8, 0, tzinfo=LOCAL_TZ))
    tid, seen = await accepted_from_console(h)
    later = await timeline_has(h, tid, "resident.told_later")
    at = [e for e in later["timeline"] if e["name"] == "resident.told_later"][-1]["data"]["at"]
    morning = datetime.fromisoformat(at).astimezone(LOCAL_TZ)
    assert (morning.day, morning.hour, morning.minute) == (22, 8, 30)
    await h.settle()
    assert not [c for c in h.pbx.snapshot() if c["ref"] not in seen]  # nobody rang at night
    assert f"told:{tid}" in await h.timers.advance(31 * 60)
    call = await told_rings(h, seen)
    assert call["number"] == RESIDENT_PHONE


async def test_given_a_night_accept_when_the_merchant_arrived_by_morning_then_nothing_is_told(
    harness: Harness,
) -> None:
    h = harness
    tell(h)
    h.clock.set(datetime(2026, 11, 21, 21, 30, tzinfo=LOCAL_TZ))
    tid, _ = await accepted_from_console(h)
    await timeline_has(h, tid, "resident.told_later")
    await h.call("POST", f"/tickets/{tid}/arrive")
    seen = {c["ref"] for c in h.pbx.snapshot()}
    await h.timers.advance(12 * 3600)
    detail = await timeline_has(h, tid, "resident.not_told")
    not_told = [e for e in detail["timeline"] if e["name"] == "resident.not_told"]
    assert not_told[-1]["data"]["reason"] == "in_service"
    assert "resident.calling" not in names(detail)
    assert not [c for c in h.pbx.snapshot() if c["ref"] not in seen]


async def test_given_the_call_is_off_when_a_merchant_accepts_then_the_resident_is_not_called(
    harness: Harness,
) -> None:
    h = harness
    _, seen = await accepted_from_console(h)
    await h.settle()
    assert not [c for c in h.pbx.snapshot() if c["ref"] not in seen]
