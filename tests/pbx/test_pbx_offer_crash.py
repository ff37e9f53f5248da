"""Yijing killed with SIGKILL while a merchant hears an offer: at start the dead offer call
is closed (cause `lost`) and the cascade moves on at once, not after the offer's timeout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.pbx.harness import Pbx, Press, Yijing, eventually
from tests.pbx.steps import call_state, connected_call, event_named, merchants, order


async def test_given_yijing_killed_in_an_offer_flow_when_it_starts_then_the_cascade_moves_on(
    pbx: Pbx, yijing: Yijing, tmp_path: Path
) -> None:
    await yijing.stop()
    yijing.settings["YIJING_OFFER_TIMEOUT_S"] = "600"  # only a closed call can move it on
    await yijing.start()
    # answers and never presses: the offer flow keeps the merchant on the line
    await merchants(pbx, tmp_path / "m", "listens", [Press("5", 60_000)])
    _, call = await connected_call(pbx, yijing, tmp_path / "r")
    await order(yijing, call)
    answered = await event_named(yijing, "offer.answered", within=60)
    offer_id = answered["data"]["offer_id"]
    offer_calls = [c for c in await yijing.api("GET", "/calls") if c["direction"] == "out"]
    yijing.kill()

    async def merchant_line_gone() -> bool:
        return not any(name.startswith("Local/") for name in pbx.channels())

    # the dialplan hangs up an offer call whose Yijing went away mid-flow
    await eventually(merchant_line_gone, within=60, what="the offer call hung up")
    await yijing.start()
    for c in offer_calls:
        await call_state(yijing, c["id"], "ended", "abandoned", "failed")

    async def moved_on() -> Any:
        events = await yijing.events()
        placed = [
            e for e in events if e["name"] == "offer.placed" and e["data"]["offer_id"] != offer_id
        ]
        return placed

    assert await eventually(moved_on, within=60, what="the next offer placed")
