"""The consult routes over HTTP on SQLite and PostgreSQL: roles and ownership (401, 403,
409, 422), consult then complete through the API, and 409 `consult_unsupported` where the
telephony backend has no consult capability."""

from __future__ import annotations

from typing import Any

from tests.conftest import Harness, eventually
from tests.dispatch.test_consult import WithoutConsult
from tests.dispatch.test_hold_transfer import add_operator, answered, call_row, state

PATHS = ("/calls/1/consult", "/calls/1/consult/complete", "/calls/1/consult/cancel")


async def test_given_no_login_or_wrong_role_then_401_and_403(harness: Harness) -> None:
    h = harness
    for path in PATHS:
        resp = await h.client.post("/api/v1" + path, json={"to_operator": 2})
        assert resp.status == 401 and (await resp.json())["error_id"] == "unauthorized"
    for path in PATHS:
        body = await h.call("POST", path, as_user="merchant1", json={"to_operator": 2}, expect=403)
        assert body["error_id"] == "forbidden"


async def test_given_someone_elses_call_or_bad_input_then_403_404_409_422(
    harness: Harness,
) -> None:
    h = harness
    b = await add_operator(h, "b")
    await h.call("POST", "/operator/state", json={"action": "login"}, as_user="b")
    await h.call("POST", "/calls/999/consult", json={"to_operator": b.id}, expect=404)
    call, _ = await answered(h)
    url = f"/calls/{call['id']}"
    # only the call's own operator
    for path in ("/consult", "/consult/complete", "/consult/cancel"):
        body = await h.call("POST", url + path, as_user="b", json={"to_operator": b.id}, expect=403)
        assert body["details"]["reason"] == "another_operator"
    bad: list[dict[str, Any]] = [{}, {"to_operator": 0}, {"to_operator": "x"}, {"x": 1}]
    for payload in bad:
        body = await h.call("POST", f"{url}/consult", json=payload, expect=422)
        assert body["error_id"] == "invalid_input", payload
    # nothing to complete or cancel yet
    for path in ("/consult/complete", "/consult/cancel"):
        body = await h.call("POST", url + path, expect=409)
        assert body["error_id"] == "conflict" and "no consult" in body["message"]
    # a colleague who is not free
    await h.call("POST", "/operator/state", json={"action": "pause"}, as_user="b")
    body = await h.call("POST", f"{url}/consult", json={"to_operator": b.id}, expect=409)
    assert body["error_id"] == "conflict" and "not free" in body["message"]
    assert (await call_row(h, call["id"])).state == "connected"


async def test_given_a_consult_over_http_when_completed_then_b_has_the_caller(
    harness: Harness,
) -> None:
    h = harness
    b = await add_operator(h, "b")
    await h.call("POST", "/operator/state", json={"action": "login"}, as_user="b")
    call, ref = await answered(h)
    url = f"/calls/{call['id']}"

    started = await h.call("POST", f"{url}/consult", json={"to_operator": b.id, "note": "急"})
    assert started["state"] in ("consult_ringing", "consulting")

    async def talking() -> bool:
        return (await h.call("GET", url))["state"] == "consulting"

    await eventually(talking)
    # B's desk has the call with the caller's context (its timeline carries the note)
    assert await state(h, "b") == ("on_call", call["id"])
    seen = await h.call("GET", url, as_user="b")
    note = [e for e in seen["timeline"] if e["name"] == "call.consult_started"]
    assert note and note[0]["data"]["note"] == "急"

    done = await h.call("POST", f"{url}/consult/complete")
    assert done["state"] == "connected" and done["operator_id"] == b.id
    assert await state(h, "operator") == ("wrap_up", call["id"])

    async def with_b() -> bool:
        return h.pbx.calls[ref].peer == f"operator:{b.id}" and h.pbx.calls[ref].state == "bridged"

    await eventually(with_b)


async def test_given_a_backend_without_consult_when_consulting_then_409_consult_unsupported(
    harness: Harness,
) -> None:
    h = harness
    b = await add_operator(h, "b")
    await h.call("POST", "/operator/state", json={"action": "login"}, as_user="b")
    call, _ = await answered(h)
    h.services.dispatch.core.fx.telephony = WithoutConsult(h.pbx)

    body = await h.call(
        "POST", f"/calls/{call['id']}/consult", json={"to_operator": b.id}, expect=409
    )

    assert body["error_id"] == "consult_unsupported"
    assert "transfer" in body["message"] and body["details"]["backend"] == "memory"
    assert (await call_row(h, call["id"])).state == "connected"
    assert await state(h, "b") == ("available", None)
