"""Offers on a real Asterisk: the merchant's phone is dialled through `[yijing-dialout]`
(E.164 numbers, SIP), accepts with 1, declines with 2, or never answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.pbx.harness import Pbx, Press, Yijing, eventually
from tests.pbx.steps import connected_call, event_named, merchants, order, ticket_state

ACCEPTS = [Press("1", 2000)] * 30  # 1 until the menu hears it (then the call ends)
DECLINES = [Press("2", 2000)] * 30


async def test_given_a_dispatched_order_when_the_merchant_presses_1_then_accepted(
    pbx: Pbx, yijing: Yijing, tmp_path: Path
) -> None:
    phone = await merchants(pbx, tmp_path / "m", "accepts", ACCEPTS)
    _, call = await connected_call(pbx, yijing, tmp_path / "r")
    ticket = await order(yijing, call)
    # the merchant's number is E.164 (+86...): `[yijing-dialout]` must match it
    accepted = await ticket_state(yijing, ticket["id"], "accepted")
    assert accepted["merchant_id"]
    # the merchant heard the code word, then the offer call ended, and nothing of it
    # stays live on Asterisk (its Local legs included)
    await event_named(yijing, "offer.accepted")

    async def all_hung_up() -> bool:
        return not any(n.startswith("Local/") for n in pbx.channels())

    await eventually(all_hung_up, within=60, what="the offer call hung up")
    await phone.stop()


async def test_given_a_merchant_who_declines_when_the_next_accepts_then_the_cascade_moves_on(
    pbx: Pbx, yijing: Yijing, tmp_path: Path
) -> None:
    no = await merchants(pbx, tmp_path / "no", "declines", DECLINES, answer_after_ms=1500)
    _, call = await connected_call(pbx, yijing, tmp_path / "r")
    ticket = await order(yijing, call)
    first = await event_named(yijing, "offer.answered")
    # the next offer rings a phone that accepts
    yes = await merchants(pbx, tmp_path / "yes", "accepts", ACCEPTS)
    await event_named(yijing, "offer.declined", subject_id=first["subject_id"])
    accepted = await ticket_state(yijing, ticket["id"], "accepted")
    assert accepted["merchant_id"] != first["data"].get("merchant_id")
    await no.stop()
    await yes.stop()


async def test_given_a_merchant_who_never_answers_when_the_ring_times_out_then_next_offer(
    pbx: Pbx, yijing: Yijing, tmp_path: Path
) -> None:
    await merchants(pbx, tmp_path / "deaf", "rings", [], answer=False)
    _, call = await connected_call(pbx, yijing, tmp_path / "r")
    await order(yijing, call)
    unanswered = await event_named(yijing, "offer.no_answer", within=60)

    async def next_offer() -> Any:
        placed = [e for e in await yijing.events() if e["name"] == "offer.placed"]
        return [e for e in placed if e["seq"] > unanswered["seq"]]

    assert await eventually(next_offer, within=30, what="the cascade's next offer")
