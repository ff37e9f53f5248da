"""Restarts on a real Asterisk: Yijing killed with SIGKILL while callers come and go, and
Asterisk restarted under a ringing offer. Calls that ended while nobody watched are
closed with a recorded cause; an outage is nobody's failure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.pbx.harness import Pbx, Press, Yijing, eventually
from tests.pbx.steps import (
    a_call,
    call_in,
    call_state,
    connected_call,
    event_named,
    merchants,
    order,
)

FINAL = ("ended", "abandoned", "callback")


async def callback_for(app: Yijing, call_id: int) -> Any:
    """The callback ticket of a call, when there is one."""
    tickets = await app.api("GET", "/tickets")
    items = tickets["items"] if isinstance(tickets, dict) else tickets
    return next((t for t in items if t.get("call_id") == call_id), None)


async def end_cause(app: Yijing, call_id: int) -> str:
    """The cause recorded when the call ended."""

    async def check() -> Any:
        for event in await app.events():
            ended = event["name"] in ("call.ended", "call.abandoned")
            if ended and str(event["subject_id"]) == str(call_id):
                return event["data"].get("cause")
        return None

    return str(await eventually(check, what=f"call {call_id} ended"))


async def test_given_yijing_killed_in_the_ivr_when_the_caller_hangs_up_then_closed_at_start(
    pbx: Pbx, yijing: Yijing, tmp_path: Path
) -> None:
    caller = await call_in(pbx, tmp_path / "r", [], hang_up_after_ms=9000)
    call = await a_call(yijing, "ivr")
    yijing.kill()
    assert await caller.wait(60) == 0, caller.stats()  # hung up while Yijing was away
    await yijing.start()
    await call_state(yijing, call["id"], *FINAL)
    assert await end_cause(yijing, call["id"]) == "lost"
    # cut off in the menu: they may never ring again by themselves
    assert await eventually(lambda: callback_for(yijing, call["id"]), what="a callback")


async def test_given_yijing_killed_with_a_caller_queued_when_they_hang_up_then_no_answer(
    pbx: Pbx, yijing: Yijing, tmp_path: Path
) -> None:
    presses = [Press("0", 1500)] + [Press("0", 2500)] * 6
    caller = await call_in(pbx, tmp_path / "r", presses, hang_up_after_ms=12000)
    call = await a_call(yijing, "queued")
    yijing.kill()
    assert await caller.wait(90) == 0, caller.stats()
    await yijing.start()
    await call_state(yijing, call["id"], *FINAL)
    assert await end_cause(yijing, call["id"]) == "lost"
    # nobody can answer a caller who is gone
    refused = await yijing.api("POST", f"/calls/{call['id']}/answer", expect=409)
    assert refused["error_id"]


async def test_given_an_offer_ringing_when_asterisk_restarts_then_no_merchant_failed(
    pbx: Pbx, yijing: Yijing, tmp_path: Path
) -> None:
    await merchants(pbx, tmp_path / "deaf", "rings", [], answer=False)
    await yijing.api("POST", "/operator/state", json={"action": "login"})
    _, call = await connected_call(pbx, yijing, tmp_path / "r")
    await order(yijing, call)
    ringing = await event_named(yijing, "offer.ringing")
    before = len(await yijing.events())
    pbx.restart()

    async def back_up() -> bool:
        status = await yijing.api("GET", "/telephony")
        return bool(status["up"])

    await eventually(back_up, within=60, what="the AMI link back")
    offer_id = ringing["data"]["offer_id"]

    async def rang_again() -> Any:
        later = (await yijing.events())[before:]
        again = [
            e for e in later if e["name"] == "offer.resumed" and e["data"]["offer_id"] == offer_id
        ]
        return later[: later.index(again[0])] if again else None

    # the offer that rang through the restart waits for the line and is placed anew
    # (`offer.resumed`), and nothing between the restart and then counts against a merchant
    meanwhile = await eventually(rang_again, within=60, what="the offer ringing again")
    failures = [
        e for e in meanwhile if e["name"] in ("offer.failed", "offer.busy", "offer.no_answer")
    ]
    assert failures == [], failures


async def test_given_a_caller_queued_when_asterisk_restarts_then_lost_and_called_back(
    pbx: Pbx, yijing: Yijing, tmp_path: Path
) -> None:
    caller = await call_in(pbx, tmp_path / "r", [Press("0", 1500)] + [Press("0", 2500)] * 6)
    call = await a_call(yijing, "queued")
    pbx.restart()
    # the restart hung the caller up: nobody can answer them, and they are called back
    await call_state(yijing, call["id"], *FINAL, within=60)
    assert await eventually(lambda: callback_for(yijing, call["id"]), what="a callback")
    refused = await yijing.api("POST", f"/calls/{call['id']}/answer", expect=409)
    assert refused["error_id"]
    await caller.stop()

    async def back_up() -> bool:
        status = await yijing.api("GET", "/telephony")
        return bool(status["up"])

    await eventually(back_up, within=60, what="the AMI link back")
    # and the hotline takes the next caller as before
    await call_in(pbx, tmp_path / "next", [Press("0", 1500)] + [Press("0", 2500)] * 6)
    await eventually(
        lambda: _queued_other(yijing, call["id"]), within=60, what="the next caller queued"
    )


async def _queued_other(app: Yijing, before: int) -> Any:
    return next(
        (c for c in await app.api("GET", "/calls") if c["state"] == "queued" and c["id"] != before),
        None,
    )


async def test_given_yijing_killed_in_the_menu_when_back_then_the_caller_waits_with_announcements(
    pbx: Pbx, yijing: Yijing, tmp_path: Path
) -> None:
    """Cut off from the menu by a crash, the caller stays on (music); once Yijing is back
    they are an ordinary waiting caller: an operator may answer, the place announcement
    and its call-back offer play (its 1 is the proof)."""
    await yijing.stop()
    yijing.settings["YIJING_QUEUE_ANNOUNCE_S"] = "3"
    await yijing.start()
    # no key in the menu (Yijing dies first); 1s from 12 s on, heard only by an announcement
    caller = await call_in(pbx, tmp_path / "r", [Press("1", 12000)] + [Press("1", 2000)] * 40)
    call = await a_call(yijing, "ivr")
    yijing.kill()
    await yijing.start()
    await event_named(yijing, "call.callback_requested", subject_id=call["id"], within=120)
    await call_state(yijing, call["id"], "callback", "ended", "abandoned")
    assert await caller.wait(60) == 0, caller.stats()
