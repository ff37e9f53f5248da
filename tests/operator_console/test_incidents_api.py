"""The incidents API's doors: 401 without a login, 403 for a role that may not, 404 for
what is not there (or not the merchant's), 409 for a race or a state that does not allow
it, 422 for bad input; a merchant sees its own incident's ticket and never a number."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import Harness
from tests.dispatch.test_incidents import (
    GRID_PHONES,
    OTHER_GRID_PHONE,
    call_id,
    keypad_water,
    ringing_out,
)
from tests.operator_console.test_whole_path import press_when_asked, ticket_state


async def _incident(h: Harness, phones: list[str]) -> dict[str, Any]:
    ids = [await call_id(h, await keypad_water(h, p)) for p in phones]
    created: dict[str, Any] = await h.call(
        "POST", "/incidents", json={"category": "water", "call_ids": ids}, expect=201
    )
    return created


async def test_given_no_login_or_the_wrong_role_then_401_and_403(harness: Harness) -> None:
    h = harness
    for method, path in [
        ("GET", "/incidents"),
        ("GET", "/incidents/proposals"),
        ("GET", "/incidents/1"),
        ("POST", "/incidents"),
        ("POST", "/incidents/1/calls"),
        ("POST", "/incidents/1/dispatch"),
        ("POST", "/incidents/1/fixed"),
    ]:
        resp = await h.client.request(method, "/api/v1" + path, json={})
        assert resp.status == 401, (method, path)
    await h.call(
        "POST",
        "/users",
        as_user="demo",
        json={"username": "shop9", "role": "merchant", "merchant_id": 2, "password": "shop-pass-9"},
        expect=201,
    )
    await h.login("shop9", "shop-pass-9")
    for method, path in [
        ("GET", "/incidents"),
        ("GET", "/incidents/proposals"),
        ("POST", "/incidents"),
        ("POST", "/incidents/1/calls"),
        ("POST", "/incidents/1/dispatch"),
    ]:
        body = await h.call(method, path, as_user="shop9", json={}, expect=403)
        assert body["error_id"] == "forbidden", body
    # supervisors work incidents like operators
    await h.call("GET", "/incidents", as_user="supervisor")


async def test_given_bad_input_then_422_naming_the_problem(harness: Harness) -> None:
    h = harness
    first = await call_id(h, await keypad_water(h, GRID_PHONES[0]))
    other = await call_id(h, await keypad_water(h, OTHER_GRID_PHONE))
    for bad in [
        {"category": "medicine", "call_ids": [first]},  # not an outage
        {"category": "water", "call_ids": []},
        {"category": "water"},
        {"category": "water", "call_ids": [first], "extra": 1},
        {"category": "water", "call_ids": ["x"]},
        {"category": "water", "call_ids": [first], "grid_code": "NOPE"},
        {"category": "water", "call_ids": [first, other]},  # two grids
    ]:
        await h.call("POST", "/incidents", json=bad, expect=422)
    incident = await h.call(
        "POST", "/incidents", json={"category": "water", "call_ids": [first]}, expect=201
    )
    await h.call("POST", f"/incidents/{incident['id']}/calls", json={"call_id": other}, expect=422)
    await h.call("POST", f"/incidents/{incident['id']}/calls", json={}, expect=422)
    await h.call("GET", "/incidents/abc", expect=422)


async def test_given_missing_things_then_404(harness: Harness) -> None:
    h = harness
    await h.call("GET", "/incidents/9999", expect=404)
    await h.call("POST", "/incidents/9999/dispatch", json={}, expect=404)
    await h.call("POST", "/incidents/9999/fixed", json={}, expect=404)
    await h.call("POST", "/incidents/9999/calls", json={"call_id": 1}, expect=404)
    await h.call("POST", "/incidents", json={"category": "gas", "call_ids": [9999]}, expect=404)


async def test_given_races_and_done_states_then_409(harness: Harness) -> None:
    h = harness
    incident = await _incident(h, GRID_PHONES[:2])
    [linked, *_] = [c["call_id"] for c in incident["calls"]]
    # a second incident for the same grid and fault: link to the first one instead
    body = await h.call(
        "POST", "/incidents", json={"category": "water", "call_ids": [linked]}, expect=409
    )
    assert body["error_id"] == "conflict"
    # the same call twice
    await h.call("POST", f"/incidents/{incident['id']}/calls", json={"call_id": linked}, expect=409)
    await h.call("POST", f"/incidents/{incident['id']}/dispatch", json={})
    await h.call("POST", f"/incidents/{incident['id']}/dispatch", json={}, expect=409)
    tickets = [
        t for t in await h.call("GET", "/tickets?state=open") if t["category_code"] == "water"
    ]
    assert len(tickets) == 1  # the refused second dispatch left no ticket behind
    wall = await h.call("GET", "/wallboard", as_user="supervisor")
    assert wall["incidents_open"] == 1  # the wallboard counts outages open now
    await h.call("POST", f"/incidents/{incident['id']}/fixed", json={})
    await h.call("POST", f"/incidents/{incident['id']}/fixed", json={}, expect=409)
    assert (await h.call("GET", "/wallboard", as_user="supervisor"))["incidents_open"] == 0
    late = await call_id(h, await keypad_water(h, GRID_PHONES[2]))
    await h.call("POST", f"/incidents/{incident['id']}/calls", json={"call_id": late}, expect=409)


async def test_given_the_utility_holds_the_ticket_then_it_sees_only_that_and_may_fix_it(
    harness: Harness,
) -> None:
    h = harness
    incident = await _incident(h, GRID_PHONES[:3])
    incident = await h.call("POST", f"/incidents/{incident['id']}/dispatch", json={})
    offer_call = await ringing_out(h)
    await h.pbx.answer(offer_call["ref"])
    await press_when_asked(h, offer_call["ref"], "1")
    ticket = await ticket_state(h, incident["ticket_id"], "accepted")
    utility = ticket["merchant_id"]
    for name, merchant in (("utility", utility), ("shop", 2 if utility != 2 else 3)):
        await h.call(
            "POST",
            "/users",
            as_user="demo",
            json={
                "username": name,
                "role": "merchant",
                "merchant_id": merchant,
                "password": "shop-pass-1",
            },
            expect=201,
        )
        await h.login(name, "shop-pass-1")
    # another merchant: as if there were no such incident
    await h.call("GET", f"/incidents/{incident['id']}", as_user="shop", expect=404)
    await h.call("POST", f"/incidents/{incident['id']}/fixed", as_user="shop", json={}, expect=404)
    seen = await h.call("GET", f"/incidents/{incident['id']}", as_user="utility")
    assert seen["affected"] == 3 and seen["ticket"]["id"] == incident["ticket_id"]
    assert "calls" not in seen and "+86" not in str(seen)  # no caller, no number
    fixed = await h.call("POST", f"/incidents/{incident['id']}/fixed", as_user="utility", json={})
    assert fixed["state"] == "fixed"
    await ticket_state(h, incident["ticket_id"], "closed")
    staff_view = await h.call("GET", f"/incidents/{incident['id']}")
    assert all("+86" not in c["number"] or "*" in c["number"] for c in staff_view["calls"])


async def test_given_two_operators_at_once_then_one_wins_and_the_other_gets_409(
    harness: Harness,
) -> None:
    """Two desks click the same proposal, or link the same call, in the same instant: one
    wins, the other is told so (409), never a 500, and nothing is linked twice."""
    h = harness
    ids = [await call_id(h, await keypad_water(h, p)) for p in GRID_PHONES[:2]]
    both = [
        h.call(
            "POST",
            "/incidents",
            json={"category": "water", "call_ids": ids},
            expect=None,
        )
        for _ in range(2)
    ]
    answers = await asyncio.gather(*both)
    assert sorted(a.get("error_id", "made") for a in answers) == ["conflict", "made"], answers
    [incident] = await h.call("GET", "/incidents")
    late = await call_id(h, await keypad_water(h, GRID_PHONES[2]))
    twice = [
        h.call(
            "POST",
            f"/incidents/{incident['id']}/calls",
            json={"call_id": late},
            expect=None,
        )
        for _ in range(2)
    ]
    answers = await asyncio.gather(*twice)
    assert sorted(a.get("error_id", "linked") for a in answers) == ["conflict", "linked"], answers
    detail = await h.call("GET", f"/incidents/{incident['id']}")
    assert sorted(c["call_id"] for c in detail["calls"]) == sorted([*ids, late])
