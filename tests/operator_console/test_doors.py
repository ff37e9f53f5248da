"""The console's doors, on SQLite and PostgreSQL: login CSRF (Origin and content type),
the Origin of every unsafe request and of the WebSocket compared with the public URL only,
the security headers on every answer, secure cookies behind https, and the phone
simulator for the demo's admin only (and never in production)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import WSServerHandshakeError
from pydantic import ValidationError

from operator_console.settings import Settings
from tests.conftest import DEMO_PASSWORD, Harness, started_harness

CREDENTIALS = {"username": "operator", "password": DEMO_PASSWORD}
EVIL = "https://evil.example"


async def test_given_a_text_plain_login_from_another_site_then_refused_without_a_cookie(
    harness: Harness,
) -> None:
    h = harness
    # what a form on another site can make a browser send, with no preflight
    body = f'{{"username": "operator", "password": "{DEMO_PASSWORD}"}}'
    for headers, status in (
        ({"Content-Type": "text/plain", "Origin": EVIL}, 403),
        ({"Content-Type": "application/json", "Origin": EVIL}, 403),
        ({"Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site"}, 403),
        ({"Content-Type": "text/plain"}, 415),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
        ({"Content-Type": "application/json", "Origin": "null"}, 403),
    ):
        h.client.session.cookie_jar.clear()
        resp = await h.client.post("/api/v1/login", data=body, headers=headers)
        assert resp.status == status, (headers, await resp.text())
        assert "Set-Cookie" not in resp.headers, headers
        assert len(h.client.session.cookie_jar) == 0
    own = h.services.settings.public_url
    resp = await h.client.post("/api/v1/login", json=CREDENTIALS, headers={"Origin": own})
    assert resp.status == 200 and "yijing_session" in resp.headers.get("Set-Cookie", "")


async def test_given_a_foreign_origin_on_any_unsafe_request_then_403(harness: Harness) -> None:
    h = harness
    for method, path in (
        ("POST", "/tickets"),
        ("POST", "/logout"),
        ("PATCH", "/residents/1"),
        ("PUT", "/catalog/medicine"),
        ("POST", "/merchant-login/request"),
    ):
        body = await h.call(
            method, path, as_user="demo", json={}, headers={"Origin": EVIL}, expect=403
        )
        assert body["error_id"] == "forbidden", (path, body)
    # merely reading is not refused
    await h.call("GET", "/calls", headers={"Origin": EVIL})


async def test_given_an_origin_equal_to_the_host_but_not_the_public_url_then_no_websocket(
    harness: Harness,
) -> None:
    h = harness
    token = await h.login("operator")
    host = str(h.client.make_url("/")).rstrip("/")
    assert host != h.services.settings.public_url
    with pytest.raises(WSServerHandshakeError) as refused:
        await h.client.ws_connect(
            "/api/v1/ws", headers={"Authorization": f"Bearer {token}", "Origin": host}
        )
    assert refused.value.status == 403


async def test_every_answer_wears_the_security_headers(harness: Harness) -> None:
    h = harness
    token = await h.login("operator")
    for path, headers in (
        ("/login", {}),
        ("/", {"Authorization": f"Bearer {token}"}),
        ("/static/common.js", {}),
        ("/api/v1/calls", {"Authorization": f"Bearer {token}"}),
        ("/api/v1/calls", {}),  # a 401
        ("/api/v1/nothing-here", {}),  # a 404 from the router
        ("/healthz", {}),
    ):
        resp = await h.client.get(path, headers=headers, allow_redirects=False)
        csp = resp.headers.get("Content-Security-Policy", "")
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert "unsafe-inline" not in csp
        assert resp.headers.get("X-Content-Type-Options") == "nosniff", path
        if not path.startswith("/static/"):
            assert resp.headers.get("Cache-Control") == "no-store", path
    page = await (await h.client.get("/login")).text()
    assert "<script>" not in page  # no inline script: every script is a file under /static


@pytest.fixture
async def behind_https(tmp_path: Path, seeded_db_url: str) -> AsyncIterator[Harness]:
    """The app as served at an https public URL (behind a TLS proxy)."""
    async with started_harness(tmp_path, seeded_db_url, public_url="https://yijing.example") as h:
        yield h


async def test_given_an_https_public_url_then_cookies_are_secure_by_default(
    behind_https: Harness,
) -> None:
    h = behind_https
    resp = await h.client.post(
        "/api/v1/login", json=CREDENTIALS, headers={"Origin": "https://yijing.example"}
    )
    assert resp.status == 200
    cookie = resp.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "max-age" in resp.headers.get("Strict-Transport-Security", "")
    assert Settings(public_url="https://x.example").secure_cookies is True
    assert Settings(public_url="http://127.0.0.1:8080").secure_cookies is False
    assert Settings(public_url="https://x.example", secure_cookies=False).secure_cookies is False


async def test_given_the_memory_pbx_then_only_the_demo_admin_reaches_the_simulator(
    harness: Harness,
) -> None:
    h = harness
    paths = ("/sim/calls", "/sim/phones", "/sim/messages")
    for user in ("operator", "supervisor"):
        for path in paths:
            body = await h.call("GET", path, as_user=user, expect=403)
            assert body["error_id"] == "forbidden"
        await h.call("POST", "/sim/dial", as_user=user, json={"number": "12345"}, expect=403)
        await h.call("POST", "/sim/link", as_user=user, json={"up": False}, expect=403)
        await h.call("POST", "/sim/calls/x/answer", as_user=user, expect=403)
    for path in paths:
        await h.call("GET", path, as_user="demo")
    await h.call("GET", "/sim/calls", as_user="merchant1", expect=403)
    h.client.session.cookie_jar.clear()
    assert (await h.client.get("/api/v1/sim/calls")).status == 401
    # the menu shows the simulator to who may use it
    for user, shown in (("operator", False), ("demo", True)):
        page = await (
            await h.client.get("/", headers={"Authorization": f"Bearer {h.tokens[user]}"})
        ).text()
        assert ('href="/simulator"' in page) is shown, user
    resp = await h.client.get(
        "/simulator", headers={"Authorization": f"Bearer {h.tokens['operator']}"}
    )
    assert resp.status == 403


def test_given_production_then_the_memory_pbx_is_refused() -> None:
    with pytest.raises(ValidationError, match="YIJING_TELEPHONY=asterisk or twilio"):
        Settings(environment="production", secret_key="a-real-secret-for-this-test")
    settings = Settings(
        environment="production",
        secret_key="a-real-secret-for-this-test",
        telephony="asterisk",
        asterisk_secret="ami-secret",
    )
    assert settings.simulator is False
