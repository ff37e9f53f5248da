"""The keypad order on a real Asterisk: a resident keys 2 (medicine) and 1 (that is right)
without an operator; the ticket is made and dispatched on its own, a merchant's 1 takes it.

The presses are timed against the built prompts (greeting about 5 s, the menu 23 s, the
read-back 6.6 s plus a 10 s wait): 2 lands inside the menu, 1 inside the read-back, with
seconds to spare either way. A press outside a prompt that listens is dropped by Asterisk,
never taken for another choice, so a late or early press fails the test rather than
ordering the wrong thing."""

from __future__ import annotations

import wave
from pathlib import Path

from tests.pbx.harness import Pbx, Press, Yijing
from tests.pbx.steps import call_in, event_named, merchants, ticket_state
from tests.pbx.test_pbx_offers import ACCEPTS

MENU_AT_MS = 10_000  # after the answer: the greeting is over, the menu is still playing
CONFIRM_AFTER_MS = 3_000  # after the 2: the read-back is playing


def seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


async def test_given_a_resident_keys_medicine_when_a_merchant_accepts_then_a_ticket_by_keypad(
    pbx: Pbx, yijing: Yijing, tmp_path: Path
) -> None:
    zh = pbx.prompts_dir / "zh-CN"
    # the timing's premise, checked on the files Asterisk plays
    assert seconds(zh / "hotline.greeting_known.part1.wav") + 3 < MENU_AT_MS / 1000
    assert seconds(zh / "hotline.menu.wav") > MENU_AT_MS / 1000 + 5
    assert seconds(zh / "hotline.confirm.medicine.wav") > CONFIRM_AFTER_MS / 1000 + 1

    phone = await merchants(pbx, tmp_path / "m", "accepts", ACCEPTS)
    caller = await call_in(
        pbx, tmp_path / "r", [Press("2", MENU_AT_MS), Press("1", CONFIRM_AFTER_MS)]
    )
    served = await event_named(yijing, "call.self_served", within=60, category="medicine")
    call = await yijing.api("GET", f"/calls/{served['subject_id']}")
    assert call["state"] == "ended" and call["resident_id"]
    # the ticket is the caller's, made by nobody at a desk, and dispatched at once
    tickets = await yijing.api("GET", "/tickets")
    items = tickets["items"] if isinstance(tickets, dict) else tickets
    [ticket] = [t for t in items if t.get("call_id") == call["id"]]
    assert ticket["category_code"] == "medicine"
    accepted = await ticket_state(yijing, ticket["id"], "accepted")
    assert accepted["merchant_id"]
    # the flow said what happens next and hung up: the resident got our BYE
    assert await caller.wait(60) == 0, caller.stats()
    await phone.stop()
