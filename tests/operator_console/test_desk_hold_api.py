"""The desk's hold, resume and transfer routes over HTTP on SQLite and PostgreSQL: roles,
bad input, refusals (404/409/422) in the API's error shape, the happy path with the live
WebSocket feed, the transfer targets, and the routes in the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import WSMsgType

from tests.conftest import Harness, eventually
from tests.dispatch.test_hold_transfer import add_operator, answered, state


async def test_given_no_login_or_wrong_role_then_401_and_403(harness: Harness) -> None:
    h = harness
    paths = ("/calls/1/hold", "/calls/1/unhold", "/calls/1/transfer")
    for path in paths:
        resp = await h.client.post("/api/v1" + path, json={})
        assert resp.status == 401 and (await resp.json())["error_id"] == "unauthorized"
    assert (await h.client.get("/api/v1/transfer-targets")).status == 401
    for path in paths:
        body = await h.call(
            "POST", path, as_user="merchant1", json={"to": "supervisor"}, expect=403
        )
        assert body["error_id"] == "forbidden"
    await h.call("GET", "/transfer-targets", as_user="merchant1", expect=403)


async def test_given_bad_requests_then_404_409_422_with_the_error_shape(harness: Harness) -> None:
    h = harness
    body = await h.call("POST", "/calls/999/hold", expect=404)
    assert body["error_id"] == "not_found"
    await h.call("POST", "/calls/abc/hold", expect=422)
    call, _ = await answered(h)
    url = f"/calls/{call['id']}"
    # not on hold yet
    body = await h.call("POST", f"{url}/unhold", expect=409)
    assert body["error_id"] == "illegal_transition"
    # another operator's call
    body = await h.call("POST", f"{url}/hold", as_user="supervisor", expect=403)
    assert body["details"]["reason"] == "another_operator"
    bad: list[dict[str, Any]] = [
        {},
        {"to": "supervisor", "to_user_id": 3},
        {"to": "admin"},
        {"to_user_id": 0},
        {"to_user_id": "x"},
        {"to": "supervisor", "x": 1},
    ]
    for payload in bad:
        body = await h.call("POST", f"{url}/transfer", json=payload, expect=422)
        assert body["error_id"] == "invalid_input", payload
    # the supervisor is logged out: a clear 409, and the call is untouched
    body = await h.call("POST", f"{url}/transfer", json={"to": "supervisor"}, expect=409)
    assert body["error_id"] == "conflict" and "supervisor" in body["message"]
    assert (await h.call("GET", url))["operator_id"] == call["operator_id"]
    body = await h.call("POST", f"{url}/transfer", json={"to_user_id": 999}, expect=404)
    assert body["error_id"] == "not_found"


async def test_given_a_caller_when_held_resumed_and_transferred_then_the_feed_shows_it(
    harness: Harness,
) -> None:
    h = harness
    token = await h.login("operator")
    ws = await h.client.ws_connect(
        "/api/v1/ws?since=0", headers={"Authorization": f"Bearer {token}"}
    )
    seen: list[dict[str, Any]] = []

    async def read() -> None:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                seen.append(json.loads(msg.data))

    reader = asyncio.create_task(read())
    try:
        other = await add_operator(h, "operator2")
        call, _ = await answered(h)
        # logged in after the answer, so the queue never offered them that caller
        await h.call("POST", "/operator/state", json={"action": "login"}, as_user="supervisor")
        h.clock.advance(1)
        await h.call("POST", "/operator/state", json={"action": "login"}, as_user="operator2")
        url = f"/calls/{call['id']}"

        targets = await h.call("GET", "/transfer-targets")
        boss = (await h.call("GET", "/me", as_user="supervisor"))["user"]["id"]
        # available people other than oneself, idle longest first
        assert [t["user_id"] for t in targets["operators"]] == [boss, other.id]
        assert [t["name"] for t in targets["supervisors"]] == ["班长老张"]

        held = await h.call("POST", f"{url}/hold")
        assert held["state"] == "on_hold" and held["held_at"]
        listed = {c["id"]: c for c in await h.call("GET", "/calls")}
        assert listed[call["id"]]["state"] == "on_hold"
        resumed = await h.call("POST", f"{url}/unhold")
        assert resumed["state"] == "connected" and resumed["held_at"] is None
        await h.call("POST", f"{url}/hold")

        moved = await h.call("POST", f"{url}/transfer", json={"to_user_id": other.id})
        assert (moved["state"], moved["operator_id"]) == ("connected", other.id)
        assert await state(h, "operator2") == ("on_call", call["id"])
        assert (await state(h, "operator"))[0] == "wrap_up"
        # the caller is operator2's now: the first operator may not move them on (403)
        refused = await h.call("POST", f"{url}/transfer", json={"to": "supervisor"}, expect=403)
        assert refused["details"]["reason"] == "another_operator"
        # ... the supervisor takes it from operator2
        await h.call("POST", f"{url}/transfer", json={"to": "supervisor"}, as_user="operator2")
        assert (await state(h, "supervisor"))[0] == "on_call"

        async def fed() -> Any:
            names = [e["name"] for e in seen if e["subject"] == "call"]
            wanted = ["call.held", "call.resumed", "call.held", "call.transferred"]
            return names.count("call.transferred") == 2 and all(n in names for n in wanted)

        await eventually(fed)
        # and the call's own timeline tells the same story, who did what
        timeline = (await h.call("GET", url))["timeline"]
        desk = [(e["name"], e["actor"]) for e in timeline if e["name"] != "call.bridged"]
        assert desk[-5:] == [
            ("call.held", "operator"),
            ("call.resumed", "operator"),
            ("call.held", "operator"),
            ("call.transferred", "operator"),
            ("call.transferred", "operator2"),
        ]
    finally:
        await ws.close()
        await reader


async def test_the_desk_routes_are_in_the_openapi_document(harness: Harness) -> None:
    doc = await harness.call("GET", "/openapi.json")
    paths = doc["paths"]
    for route in ("hold", "unhold", "transfer"):
        assert "post" in paths[f"/api/v1/calls/{{call_id}}/{route}"]
    assert "get" in paths["/api/v1/transfer-targets"]
    schema = doc["components"]["schemas"]["TransferBody"]
    assert set(schema["properties"]) == {"to_user_id", "to", "note"}
