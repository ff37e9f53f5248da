"""The console's own API modules on SQLite and PostgreSQL: merchant orders (the code login
is in test_merchant_login_api), the wallboard summary, the ticket board, and the
WebSocket's Origin check."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from operator_console.i18n import script_words
from tests.conftest import Harness, eventually
from tests.operator_console.test_merchant_login_api import code_by_call, verify
from tests.operator_console.test_whole_path import RESIDENT_PHONE, press_when_asked, queued_call


async def test_given_an_offer_when_the_merchant_declines_on_the_page_then_the_cascade_moves(
    harness: Harness,
) -> None:
    h = harness
    ticket = await h.call(
        "POST", "/tickets", json={"category": "medicine", "resident_id": 1}, expect=201
    )
    await h.call("POST", f"/tickets/{ticket['id']}/dispatch", json={"merchant_ids": [1]})
    h.tokens["m1"] = (await (await verify(h, await code_by_call(h))).json())["token"]

    async def offered() -> Any:
        orders = await h.call("GET", "/merchant/orders", as_user="m1")
        return orders["offers"]

    offers = await eventually(offered)
    assert offers[0]["ticket_id"] == ticket["id"] and offers[0]["address"]
    assert "phone" not in str(offers[0]).lower()
    await h.call("POST", f"/merchant/offers/{offers[0]['offer_id']}/decline", as_user="m1")
    await h.settle()

    async def moved_on() -> Any:
        t = await h.call("GET", f"/tickets/{ticket['id']}")
        return t if len(t["offers"]) >= 2 or t["state"] == "unassigned" else None

    after = await eventually(moved_on)
    assert after["offers"][0]["merchant_id"] == 1 and after["offers"][0]["state"] == "declined"
    # another merchant's offer is not this merchant's to decline
    if len(after["offers"]) > 1:
        other = after["offers"][1]["id"]
        await h.call("POST", f"/merchant/offers/{other}/decline", as_user="m1", expect=404)


async def test_given_a_queued_call_and_tickets_when_the_wallboard_is_read_then_it_counts_them(
    harness: Harness,
) -> None:
    h = harness
    await h.call("GET", "/wallboard", as_user="operator", expect=403)
    empty = await h.call("GET", "/wallboard", as_user="supervisor")
    assert empty["waiting"] == 0 and empty["today"]["within_60s"] is None

    ref = await h.pbx.dial_in(RESIDENT_PHONE)
    await press_when_asked(h, ref, "0")
    call = await queued_call(h)
    h.clock.advance(30)
    await h.call("POST", "/tickets", json={"category": "groceries", "resident_id": 2}, expect=201)
    board = await h.call("GET", "/wallboard", as_user="supervisor")
    assert board["waiting"] == 1 and board["longest_wait_s"] >= 30
    assert board["tickets_by_state"] == {"new": 1} and board["open_tickets"] == 1

    await h.call("POST", f"/calls/{call['id']}/answer")
    board = await h.call("GET", "/wallboard", as_user="supervisor")
    assert board["waiting"] == 0
    assert board["today"]["within_60s"] == 1.0 and board["today"]["offered"] == 1
    assert board["operators_by_state"] == {"on_call": 1}

    h.clock.advance(3 * 3600)  # past the groceries deadline
    assert (await h.call("GET", "/wallboard", as_user="supervisor"))["overdue"] == 1


async def test_given_tickets_when_the_board_is_filtered_then_only_matching_ones_show(
    harness: Harness,
) -> None:
    h = harness
    mine = await h.call(
        "POST", "/tickets", json={"category": "medicine", "resident_id": 1}, expect=201
    )
    theirs = await h.call(
        "POST",
        "/tickets",
        json={"category": "groceries", "resident_id": 2},
        as_user="supervisor",
        expect=201,
    )
    everything = await h.call("GET", "/board")
    assert {t["id"] for t in everything} == {mine["id"], theirs["id"]}
    assert all(t["resident_name"] and t["grid_code"] and t["category_zh"] for t in everything)
    assert [t["id"] for t in await h.call("GET", "/board?scope=mine")] == [mine["id"]]
    assert [t["id"] for t in await h.call("GET", "/board?category=groceries")] == [theirs["id"]]
    grid = everything[0]["grid_code"]
    assert all(t["grid_code"] == grid for t in await h.call("GET", f"/board?grid={grid}"))
    assert [t["id"] for t in await h.call("GET", "/board?resident_id=1")] == [mine["id"]]
    assert await h.call("GET", "/board?state=closed") == []
    await h.call("GET", "/board?scope=nope", expect=422)
    await h.call("GET", "/board?state=nope", expect=422)


async def test_given_an_operator_when_they_pause_with_a_reason_then_their_state_says_so(
    harness: Harness,
) -> None:
    h = harness
    assert (await h.call("GET", "/operator/state"))["state"] == "logged_out"
    await h.call("POST", "/operator/state", json={"action": "login"})
    await h.call("POST", "/operator/state", json={"action": "pause", "reason": "meal"})
    state = await h.call("GET", "/operator/state")
    assert {k: state[k] for k in ("state", "reason", "call_id", "offer_expires_at")} == {
        "state": "paused",
        "reason": "meal",
        "call_id": None,
        "offer_expires_at": None,
    }


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [("http://evil.example", False), ("http://127.0.0.1:8080", True), (None, True)],
)
async def test_given_a_websocket_when_the_origin_is_foreign_then_it_is_refused(
    harness: Harness, origin: str | None, allowed: bool
) -> None:
    h = harness
    token = await h.login("operator")
    headers = {"Authorization": f"Bearer {token}"}
    if origin:
        headers["Origin"] = origin
    if allowed:
        ws = await h.client.ws_connect("/api/v1/ws?since=0", headers=headers)
        await ws.close()
    else:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await h.client.ws_connect("/api/v1/ws?since=0", headers=headers)
        assert refused.value.status == 403


def test_given_the_console_words_then_both_languages_have_the_same_keys() -> None:
    assert set(script_words("zh-CN")) == set(script_words("en"))
