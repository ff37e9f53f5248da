"""A resident on a real Asterisk: the caller card, the operator bridge, the hang-up."""

from __future__ import annotations

import socket
from typing import Any

from tests.pbx.harness import Pbx, Press, Yijing, eventually, free_port, resident_scenario, sipp

RESIDENT = "+862354000001"  # resident 1 of the demo community (a landline)


async def queued(app: Yijing, number_tail: str = "") -> dict[str, Any]:
    """The first queued call."""

    async def check() -> Any:
        calls = await app.api("GET", "/calls")
        return next((c for c in calls if c["state"] == "queued"), None)

    return await eventually(check, within=60, what="a queued call")


async def call_state(app: Yijing, call_id: int, *states: str, within: float = 30) -> Any:
    """Wait for a call to reach one of `states`."""

    async def check() -> Any:
        call = await app.api("GET", f"/calls/{call_id}")
        return call if call["state"] in states else None

    return await eventually(check, within=within, what=f"call {call_id} in {states}")


async def event_named(app: Yijing, name: str, **data: Any) -> dict[str, Any]:
    """Wait for an event of that name whose data has those values."""

    async def check() -> Any:
        for event in await app.events():
            if event["name"] == name and all(event["data"].get(k) == v for k, v in data.items()):
                return event
        return None

    return await eventually(check, within=30, what=f"event {name} {data}")


def pressing_zero(pbx: Pbx, folder: Any) -> Any:
    """A resident who presses 0 (an operator) until the menu hears it: 0 means nothing
    once they wait, so the repeats are harmless."""
    return resident_scenario(folder, [Press("0", 1500)] + [Press("0", 2500)] * 8)


async def test_given_a_resident_presses_0_when_an_operator_answers_then_card_and_bridge(
    pbx: Pbx, yijing: Yijing, tmp_path: Any
) -> None:
    caller = await sipp(
        pressing_zero(pbx, tmp_path / "resident"),
        port=free_port(socket.SOCK_DGRAM),
        target=f"127.0.0.1:{pbx.sip_port}",
        callers=[RESIDENT],
    )
    call = await queued(yijing)
    assert call["registered"] is True and call["resident_name"]
    card = await yijing.api("GET", f"/residents/{call['resident_id']}?reason=call")
    assert card["address"] and card["contacts"]

    answered = await yijing.api("POST", f"/calls/{call['id']}/answer")
    assert answered["state"] == "connected"
    desk = answered["operator_id"]
    bridged = await event_named(yijing, "call.bridged", peer=f"operator:{desk}")
    assert bridged["subject_id"] == str(call["id"])
    # the desk phone's SIP channel is up on Asterisk, bridged with the resident's
    assert any(name.startswith(f"SIP/{desk}-") for name in pbx.channels())

    await yijing.api("POST", f"/calls/{call['id']}/hangup")
    await call_state(yijing, call["id"], "wrap_up", "ended")
    assert await caller.wait(60) == 0, caller.stats()
