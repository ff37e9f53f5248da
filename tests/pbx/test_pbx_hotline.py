"""A resident on a real Asterisk: the caller card, the operator bridge, the hang-up."""

from __future__ import annotations

from pathlib import Path

from tests.pbx.harness import Pbx, Yijing
from tests.pbx.steps import a_call, call_in, call_state, event_named, wants_operator


async def test_given_a_resident_presses_0_when_an_operator_answers_then_card_and_bridge(
    pbx: Pbx, yijing: Yijing, tmp_path: Path
) -> None:
    caller = await call_in(pbx, tmp_path / "resident", wants_operator())
    call = await a_call(yijing, "queued")
    assert call["registered"] is True and call["resident_name"]
    card = await yijing.api("GET", f"/residents/{call['resident_id']}?reason=call")
    assert card["address"] and card["contacts"]

    answered = await yijing.api("POST", f"/calls/{call['id']}/answer")
    assert answered["state"] == "connected"
    desk = answered["operator_id"]
    await event_named(yijing, "call.bridged", subject_id=call["id"], peer=f"operator:{desk}")
    # the desk phone's SIP channel is up on Asterisk, bridged with the resident's
    assert any(name.startswith(f"SIP/{desk}-") for name in pbx.channels())

    await yijing.api("POST", f"/calls/{call['id']}/hangup")
    await call_state(yijing, call["id"], "wrap_up", "ended")
    assert await caller.wait(60) == 0, caller.stats()
