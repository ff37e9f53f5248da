""" "Same as last time" (key 9 in the hotline menu) repeats the resident's latest ordinary
order: an emergency, or a call back, made since is not an order the menu can repeat."""

from __future__ import annotations

from typing import Any

import pytest

from ivr.prompts import render
from tests.conftest import Harness, eventually
from tests.dispatch.test_queue import PHONES, press


@pytest.mark.parametrize("latest", ["emergency", "callback"])
async def test_given_an_order_then_another_kind_of_ticket_when_pressing_9_then_the_order_repeats(
    harness: Harness, latest: str
) -> None:
    h = harness
    await h.call("POST", "/tickets", json={"category": "groceries", "resident_id": 1}, expect=201)
    await h.call("POST", "/tickets", json={"category": latest, "resident_id": 1}, expect=201)
    ref = await h.pbx.dial_in(PHONES[0])
    await press(h, ref, "3")  # the groceries are still open: their status first, 3 the menu
    await press(h, ref, "9")  # "same as last time": the groceries
    await press(h, ref, "1")
    transcript = h.pbx.calls[ref].transcript
    assert render("hotline.confirm.groceries", "zh-CN") in transcript
    assert render("hotline.no_last", "zh-CN") not in transcript

    async def repeated() -> Any:
        tickets = await h.call("GET", "/tickets?state=all")
        return [t for t in tickets if t["category_code"] == "groceries" and t["repeat_of"]]

    await eventually(repeated)
