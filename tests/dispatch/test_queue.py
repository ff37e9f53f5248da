"""The hotline queue: emergencies first, repeat callers up, call-backs keep their place,
abandoned callers get a callback ticket, and only one operator wins a call."""

from __future__ import annotations

from typing import Any

from tests.conftest import Harness, eventually

PHONES = ["+862354000001", "+862354000002", "+862354000003"]


async def wait_queued(h: Harness, n: int) -> list[dict[str, Any]]:
    """Wait until n calls are queued; returns the queue in order."""

    async def check() -> Any:
        calls = [c for c in await h.call("GET", "/calls") if c["state"] == "queued"]
        return calls if len(calls) == n else None

    return await eventually(check)


async def press(h: Harness, ref: str, digit: str) -> None:
    """Press a key once the IVR asks."""

    async def asking() -> bool:
        call = h.pbx.calls.get(ref)
        return bool(call and call.waiting_digits)

    await eventually(asking)
    await h.pbx.press(ref, digit)


async def test_given_a_routine_caller_waiting_when_an_emergency_calls_then_it_goes_first(
    harness: Harness,
) -> None:
    h = harness
    routine = await h.pbx.dial_in(PHONES[0])
    await press(h, routine, "0")
    await wait_queued(h, 1)
    urgent = await h.pbx.dial_in(PHONES[1])
    await press(h, urgent, "1")  # 有紧急情况请按 1
    queue = await wait_queued(h, 2)
    assert [c["emergency"] for c in queue] == [True, False]
    assert queue[0]["number"].endswith("0002")


async def test_given_a_caller_who_hung_up_when_ringing_again_then_moves_up(
    harness: Harness,
) -> None:
    h = harness
    first = await h.pbx.dial_in(PHONES[0])
    await press(h, first, "0")
    await wait_queued(h, 1)
    again = await h.pbx.dial_in(PHONES[1])
    await press(h, again, "0")
    await wait_queued(h, 2)
    await h.pbx.party_hangup(again)  # gives up ...
    await wait_queued(h, 1)
    back = await h.pbx.dial_in(PHONES[1])  # ... and rings again
    await press(h, back, "0")
    queue = await wait_queued(h, 2)
    assert queue[0]["number"].endswith("0002")


async def test_given_a_caller_in_the_queue_when_hanging_up_then_abandoned_with_callback_ticket(
    harness: Harness,
) -> None:
    h = harness
    ref = await h.pbx.dial_in(PHONES[0])
    await press(h, ref, "0")
    (call,) = await wait_queued(h, 1)
    await h.pbx.party_hangup(ref)

    async def callback() -> Any:
        tickets = await h.call("GET", "/tickets?state=open")
        return [t for t in tickets if t["category_code"] == "callback"]

    (ticket,) = await eventually(callback)
    assert ticket["call_id"] == call["id"] and ticket["resident_id"] == call["resident_id"]
    assert ticket["created_at"] == call["queued_at"]  # keeps the caller's place
    detail = await h.call("GET", f"/calls/{call['id']}")
    assert detail["state"] == "abandoned"


async def test_given_a_waiting_caller_when_offered_a_call_back_and_pressing_1_then_ticket(
    harness: Harness,
) -> None:
    h = harness
    ref = await h.pbx.dial_in(PHONES[0])
    await press(h, ref, "0")
    (call,) = await wait_queued(h, 1)
    fired = await h.timers.advance(31)
    assert f"queue:{call['id']}" in fired
    await press(h, ref, "1")
    transcript = " ".join(h.pbx.calls[ref].transcript)
    assert "您前面还有零位来电" in transcript or "您前面还有0位来电" in transcript

    async def ended() -> Any:
        return (await h.call("GET", f"/calls/{call['id']}"))["state"] == "ended"

    await eventually(ended)
    tickets = await h.call("GET", "/tickets?state=open")
    assert [(t["category_code"], t["created_at"]) for t in tickets] == [
        ("callback", call["queued_at"])
    ]


async def test_given_a_waiting_caller_when_no_key_after_the_announcement_then_still_waiting(
    harness: Harness,
) -> None:
    h = harness
    h.pbx.time_scale = 0.01  # the call-back offer's wait for a key passes quickly
    ref = await h.pbx.dial_in(PHONES[0])
    await press(h, ref, "0")
    (call,) = await wait_queued(h, 1)
    await h.timers.advance(31)

    async def rescheduled() -> bool:
        return f"queue:{call['id']}" in await h.timers.keys()

    await eventually(rescheduled)
    assert (await h.call("GET", f"/calls/{call['id']}"))["state"] == "queued"
    answered = await h.call("POST", f"/calls/{call['id']}/answer")
    assert answered["state"] == "connected"
    await h.call("POST", f"/calls/{call['id']}/answer", as_user="supervisor", expect=409)
