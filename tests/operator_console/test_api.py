"""The API's edges: login, roles, bad input, health, the OpenAPI document, WebSocket origin."""

from __future__ import annotations

import pytest
from aiohttp import WSServerHandshakeError

from tests.conftest import Harness


async def test_given_no_login_when_calling_the_api_then_401(harness: Harness) -> None:
    resp = await harness.client.get("/api/v1/calls")
    assert resp.status == 401
    assert (await resp.json())["error_id"] == "unauthorized"


async def test_given_a_wrong_password_when_logging_in_then_401(harness: Harness) -> None:
    resp = await harness.client.post(
        "/api/v1/login", json={"username": "operator", "password": "wrong"}
    )
    assert resp.status == 401


async def test_given_a_merchant_when_calling_operator_endpoints_then_403(
    harness: Harness,
) -> None:
    body = await harness.call("GET", "/calls", as_user="merchant1", expect=403)
    assert body["error_id"] == "forbidden"
    await harness.call("GET", "/residents/1", as_user="merchant1", expect=403)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"category": "medicine", "resident_id": "abc"}, "resident_id"),
        ({"description": "no category"}, "category"),
        ({"category": "medicine", "extra": 1}, "extra"),
        ({"category": "x" * 500}, "category"),
    ],
)
async def test_given_a_malformed_body_when_creating_a_ticket_then_422_names_the_field(
    harness: Harness, payload: dict[str, object], field: str
) -> None:
    body = await harness.call("POST", "/tickets", json=payload, expect=422)
    assert body["error_id"] == "invalid_input"
    assert field in {d["field"] for d in body["details"]}


async def test_given_invalid_json_when_posting_then_422(harness: Harness) -> None:
    body = await harness.call(
        "POST",
        "/tickets",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
        expect=422,
    )
    assert body["error_id"] == "invalid_input"


async def test_given_an_unknown_category_when_creating_a_ticket_then_422(
    harness: Harness,
) -> None:
    body = await harness.call("POST", "/tickets", json={"category": "nope"}, expect=422)
    assert "nope" in body["message"]


async def test_given_a_missing_ticket_when_reading_then_404(harness: Harness) -> None:
    body = await harness.call("GET", "/tickets/99999", expect=404)
    assert body["error_id"] == "not_found"


async def test_given_a_cookie_session_without_csrf_when_posting_then_403(
    harness: Harness,
) -> None:
    client = harness.client
    resp = await client.post(
        "/api/v1/login", json={"username": "operator", "password": "demo-pass-123"}
    )
    csrf = (await resp.json())["csrf"]
    refused = await client.post("/api/v1/tickets", json={"category": "medicine"})
    assert refused.status == 403
    accepted = await client.post(
        "/api/v1/tickets", json={"category": "medicine"}, headers={"X-CSRF-Token": csrf}
    )
    assert accepted.status == 201


async def test_healthz_reports_every_dependency(harness: Harness) -> None:
    resp = await harness.client.get("/healthz")
    body = await resp.json()
    assert resp.status == 200
    assert set(body["checks"]) == {"database", "telephony", "scheduler"}
    assert body["checks"]["telephony"]["backend"] == "memory"


async def test_openapi_document_lists_every_route(harness: Harness) -> None:
    resp = await harness.client.get("/api/v1/openapi.json")
    doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    assert "/api/v1/tickets/{ticket_id}/dispatch" in doc["paths"]
    assert "TicketBody" in doc["components"]["schemas"]


async def test_given_a_foreign_origin_when_opening_the_websocket_then_refused(
    harness: Harness,
) -> None:
    token = await harness.login("operator")
    with pytest.raises(WSServerHandshakeError) as refused:
        await harness.client.ws_connect(
            "/api/v1/ws",
            headers={"Authorization": f"Bearer {token}", "Origin": "https://evil.example"},
        )
    assert refused.value.status == 403
    own = harness.services.settings.public_url
    ws = await harness.client.ws_connect(
        "/api/v1/ws", headers={"Authorization": f"Bearer {token}", "Origin": own}
    )
    await ws.close()
