"""The desk's context over HTTP, on SQLite and PostgreSQL: quick registration of an unknown
caller (the number comes from the call, never from the browser), one ticket per call, and
logging out signs the desk off."""

from __future__ import annotations

from typing import Any

from tests.conftest import Harness, eventually
from tests.dispatch.test_hold_transfer import names, state
from tests.dispatch.test_queue import wait_queued

UNKNOWN = "+8613912345678"


async def answered_unknown(h: Harness) -> dict[str, Any]:
    """An unregistered number rings (straight to the queue) and the operator answers."""
    await h.pbx.dial_in(UNKNOWN)
    (queued,) = await wait_queued(h, 1)
    call: dict[str, Any] = await h.call("POST", f"/calls/{queued['id']}/answer")

    async def bridged() -> bool:
        return "call.bridged" in await names(h, call["id"])

    await eventually(bridged)
    return call


async def test_given_an_unknown_caller_at_the_desk_when_registered_quickly_then_the_call_is_theirs(
    harness: Harness,
) -> None:
    h = harness
    call = await answered_unknown(h)
    assert call["resident_id"] is None
    url = f"/calls/{call['id']}/register"
    # the browser never names the number: a phone in the body is refused
    body = await h.call(
        "POST", url, json={"name": "新老人", "grid_code": "BG01", "phone": "+8613900000009"},
        expect=422,
    )  # fmt: skip
    assert body["error_id"] == "invalid_input"
    # another operator may not register someone else's caller
    await h.call("POST", url, as_user="supervisor", json={"name": "x", "grid_code": "BG01"},
                 expect=403)  # fmt: skip
    card = await h.call(
        "POST", url, json={"name": "新老人", "address": "白公路 9 号", "grid_code": "BG01"},
        expect=201,
    )  # fmt: skip
    assert card["name"] == "新老人" and card["grid_code"] == "BG01"
    assert [p["number"] for p in card["phones"]] == [UNKNOWN]
    # the call now knows its caller, and so does the next call from that number
    after = await h.call("GET", f"/calls/{call['id']}")
    assert after["resident_id"] == card["id"] and after["registered"] is True
    assert "call.identified" in await names(h, call["id"])
    # a second registration of the same call is refused: the caller is known now
    body = await h.call("POST", url, json={"name": "又一个", "grid_code": "BG01"}, expect=409)
    assert body["error_id"] == "conflict"


async def test_given_a_call_with_a_ticket_when_a_second_ticket_is_made_then_409(
    harness: Harness,
) -> None:
    h = harness
    call = await answered_unknown(h)
    need = {"category": "groceries", "description": "大米", "call_id": call["id"]}
    first = await h.call("POST", "/tickets", json=need, expect=201)
    body = await h.call("POST", "/tickets", json={**need, "description": ""}, expect=409)
    assert body["error_id"] == "ticket_exists"
    assert f"#{first['id']}" in body["message"]
    assert body["details"] == {"ticket_id": first["id"]}
    tickets = await h.call("GET", "/tickets")
    assert [t["id"] for t in tickets if t["call_id"] == call["id"]] == [first["id"]]


async def test_given_an_operator_on_duty_when_logging_out_then_the_desk_is_signed_off(
    harness: Harness,
) -> None:
    h = harness
    await h.call("POST", "/operator/state", json={"action": "login"})
    assert (await state(h, "operator"))[0] == "available"
    await h.call("POST", "/logout", json={})
    h.tokens.pop("operator")
    assert (await state(h, "operator"))[0] == "logged_out"
    # the next caller is not reserved to a desk nobody sits at
    await h.pbx.dial_in(UNKNOWN)
    (queued,) = await wait_queued(h, 1)
    await h.settle()
    assert (await h.call("GET", f"/calls/{queued['id']}"))["operator_id"] is None
    assert (await state(h, "operator"))[0] == "logged_out"


async def test_given_an_operator_in_wrap_up_when_logging_out_then_the_call_ends_and_the_desk_too(
    harness: Harness,
) -> None:
    h = harness
    call = await answered_unknown(h)
    await h.call("POST", f"/calls/{call['id']}/hangup")
    await eventually(lambda: _in(h, "wrap_up"))
    await h.call("POST", "/logout", json={})
    h.tokens.pop("operator")
    assert await state(h, "operator") == ("logged_out", None)
    assert (await h.call("GET", f"/calls/{call['id']}"))["state"] == "ended"


async def test_given_an_operator_on_a_call_when_logging_out_then_409_and_still_at_the_desk(
    harness: Harness,
) -> None:
    h = harness
    call = await answered_unknown(h)
    body = await h.call("POST", "/logout", json={}, expect=409)
    assert body["error_id"] == "on_call" and body["details"] == {"call_id": call["id"]}
    # the session is still good and the caller still with the operator
    assert await state(h, "operator") == ("on_call", call["id"])


async def _in(h: Harness, wanted: str) -> bool:
    return (await state(h, "operator"))[0] == wanted
