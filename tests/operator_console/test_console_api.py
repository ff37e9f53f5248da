"""The console's own API modules on SQLite and PostgreSQL: merchant code login and orders,
the wallboard summary, the ticket board, and the WebSocket's Origin check."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest

from operator_console.i18n import _TEXTS
from operator_console.merchant_api import outbox_key
from tests.conftest import Harness, eventually
from tests.operator_console.test_whole_path import RESIDENT_PHONE, press_when_asked, queued_call

MERCHANT_1_PHONE = "+8613900000001"


async def request_code(h: Harness, phone: str = MERCHANT_1_PHONE) -> str:
    """Ask for a code (as a browser without a session) and read it from the demo outbox."""
    h.client.session.cookie_jar.clear()
    resp = await h.client.post("/api/v1/merchant-login/request", json={"phone": phone})
    assert resp.status == 200
    assert await resp.json() == {"sent": True, "expires_in_s": 600}
    outbox = h.client.app[outbox_key]  # type: ignore[index]
    found = re.search(r"\d{6}", outbox[0]["text"]) if outbox else None
    assert found is not None
    return found.group()


async def verify(h: Harness, code: str, phone: str = MERCHANT_1_PHONE) -> aiohttp.ClientResponse:
    """Try a code as a browser without a session."""
    h.client.session.cookie_jar.clear()
    return await h.client.post("/api/v1/merchant-login/verify", json={"phone": phone, "code": code})


async def test_given_a_registered_merchant_phone_when_the_code_is_right_then_a_session_starts(
    harness: Harness,
) -> None:
    h = harness
    code = await request_code(h)
    outbox = h.client.app[outbox_key]  # type: ignore[index]
    assert MERCHANT_1_PHONE[-8:] not in str(list(outbox))
    events = await h.call("GET", "/events?since=0")
    sent = [e for e in events if e["name"] == "merchant.login_code_sent"]
    assert sent and code not in str(sent) and MERCHANT_1_PHONE[-8:] not in str(sent)

    wrong = "000000" if code != "000000" else "111111"
    assert (await verify(h, wrong)).status == 401
    resp = await verify(h, code)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["user"]["role"] == "merchant" and body["user"]["merchant_id"] == 1
    assert "HttpOnly" in resp.headers["Set-Cookie"]
    # a code works once
    assert (await verify(h, code)).status == 401
    h.tokens["m1"] = body["token"]
    orders = await h.call("GET", "/merchant/orders", as_user="m1")
    assert orders == {"merchant": orders["merchant"], "offers": [], "orders": []}
    await h.call("GET", "/calls", as_user="m1", expect=403)


async def test_given_a_code_when_five_wrong_tries_are_made_then_it_is_spent(
    harness: Harness,
) -> None:
    h = harness
    code = await request_code(h)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        assert (await verify(h, wrong)).status == 401
    assert (await verify(h, code)).status == 401


async def test_given_an_unknown_phone_when_a_code_is_asked_then_the_answer_is_the_same(
    harness: Harness,
) -> None:
    h = harness
    resp = await h.client.post("/api/v1/merchant-login/request", json={"phone": "13812345678"})
    assert resp.status == 200 and (await resp.json())["sent"] is True
    assert not h.client.app[outbox_key]  # type: ignore[index]


async def test_given_an_offer_when_the_merchant_declines_on_the_page_then_the_cascade_moves(
    harness: Harness,
) -> None:
    h = harness
    ticket = await h.call(
        "POST", "/tickets", json={"category": "medicine", "resident_id": 1}, expect=201
    )
    await h.call("POST", f"/tickets/{ticket['id']}/dispatch", json={"merchant_ids": [1]})
    h.tokens["m1"] = (await (await verify(h, await request_code(h))).json())["token"]

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
    assert await h.call("GET", "/operator/state") == {
        "state": "paused",
        "reason": "meal",
        "call_id": None,
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
    assert set(_TEXTS["zh-CN"]) == set(_TEXTS["en"])
