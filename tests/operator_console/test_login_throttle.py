"""Staff password logins under attack, on SQLite and PostgreSQL: throttled per account and
per client address with a 429 and `Retry-After`, persisted, listed for admins; argon2
off the event loop with no database connection held; the console stays fast meanwhile."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from operator_console import auth
from tests.conftest import DEMO_PASSWORD, Harness, eventually, started_harness


async def attempt(
    h: Harness, username: str, password: str, client: str | None = None
) -> tuple[int, dict[str, Any], Any]:
    """One login as a browser without a session; returns (status, body, headers)."""
    h.client.session.cookie_jar.clear()
    headers = {"X-Forwarded-For": client} if client else {}
    resp = await h.client.post(
        "/api/v1/login", json={"username": username, "password": password}, headers=headers
    )
    return resp.status, await resp.json(), resp.headers


async def until(predicate: Any) -> Any:
    """Poll a plain condition until it holds."""

    async def check() -> object:
        return predicate()

    return await eventually(check)


def unpaced(h: Harness) -> Harness:
    """Take the rate of password checks for new addresses (`others_per_s`, 4 a second past
    a burst of 8) out of the way of a test of the per-account and per-client throttles,
    which makes more attempts than that in a row: with the test session's cheap hashes
    they come faster than argon2's production cost once spaced them (and Busy, 503, is not
    what these tests are about; the last test of this file is)."""
    from operator_console.api import password_login_key

    logins = h.client.app[password_login_key]  # type: ignore[index]
    logins.limits = dataclasses.replace(logins.limits, others_per_s=1000.0)
    return h


@pytest.fixture
async def proxied(tmp_path: Path, seeded_db_url: str) -> AsyncIterator[Harness]:
    """The app behind a trusted proxy (clients told apart by X-Forwarded-For), small limits."""
    async with started_harness(
        tmp_path, seeded_db_url, trust_proxy=True, login_per_account=3, login_per_client=4
    ) as h:
        yield h


async def test_given_wrong_passwords_up_to_the_limit_when_the_right_one_comes_then_429(
    harness: Harness,
) -> None:
    h = unpaced(harness)
    for _ in range(10):
        status, body, _ = await attempt(h, "operator", "wrong-password")
        assert status == 401, body

    status, body, headers = await attempt(h, "operator", DEMO_PASSWORD)

    assert status == 429, body
    assert body["error_id"] == "rate_limited"
    retry = int(headers["Retry-After"])
    assert 0 < retry <= 900 and body["details"]["retry_after_s"] == retry
    # once the oldest failure has left the window, the right password works again
    h.clock.advance(retry + 1)
    status, body, _ = await attempt(h, "operator", DEMO_PASSWORD)
    assert status == 200, body


async def test_given_a_right_password_then_earlier_failures_stop_counting(
    proxied: Harness,
) -> None:
    h = proxied
    for _ in range(2):
        assert (await attempt(h, "operator", "nope", "203.0.113.1"))[0] == 401
    assert (await attempt(h, "operator", DEMO_PASSWORD, "203.0.113.1"))[0] == 200
    for _ in range(2):
        assert (await attempt(h, "operator", "nope", "203.0.113.2"))[0] == 401
    assert (await attempt(h, "operator", DEMO_PASSWORD, "203.0.113.2"))[0] == 200


async def test_given_one_client_trying_many_names_then_that_client_is_throttled(
    proxied: Harness,
) -> None:
    h = unpaced(proxied)
    for name in ("a1", "a2", "a3", "a4"):
        assert (await attempt(h, name, "guess", "198.51.100.9"))[0] == 401
    status, body, headers = await attempt(h, "supervisor", DEMO_PASSWORD, "198.51.100.9")
    assert status == 429 and "Retry-After" in headers, body
    # another address is not throttled, and names that are no account are throttled too
    # (a throttle only accounts got would tell which names exist)
    assert (await attempt(h, "supervisor", DEMO_PASSWORD, "198.51.100.10"))[0] == 200
    for client in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        assert (await attempt(h, "nobody", "guess", client))[0] == 401
    assert (await attempt(h, "nobody", "guess", "192.0.2.4"))[0] == 429


async def test_given_throttled_logins_when_the_app_restarts_then_the_throttle_holds(
    tmp_path: Path, seeded_db_url: str
) -> None:
    async with started_harness(tmp_path, seeded_db_url, login_per_account=2) as h:
        for _ in range(2):
            assert (await attempt(h, "operator", "wrong"))[0] == 401
    async with started_harness(tmp_path, seeded_db_url, login_per_account=2) as h:
        assert (await attempt(h, "operator", DEMO_PASSWORD))[0] == 429


async def test_given_failed_logins_then_an_admin_sees_them_and_nobody_else(
    proxied: Harness,
) -> None:
    h = proxied
    await attempt(h, "operator", "wrong", "203.0.113.5")
    await attempt(h, "no-such-name", "wrong", "203.0.113.6")

    rows = await h.call("GET", "/login-failures", as_user="demo")

    latest, first = rows[0], rows[1]
    assert latest["username"] == "" and latest["outcome"] == "unknown_user"
    assert latest["client"] == "203.0.113.6"
    assert first["username"] == "operator" and first["outcome"] == "wrong_password"
    assert first["client"] == "203.0.113.5" and first["counts"] is True
    # the password typed is never kept, nor a name that is no account's
    assert "no-such-name" not in str(rows) and "wrong" not in str([r["username"] for r in rows])
    await h.call("GET", "/login-failures", as_user="supervisor", expect=403)
    only = await h.call("GET", "/login-failures?username=operator", as_user="demo")
    assert [r["outcome"] for r in only] == ["wrong_password"]


async def test_given_an_admin_sets_a_new_password_then_the_account_is_no_longer_throttled(
    proxied: Harness,
) -> None:
    h = proxied
    for client in ("203.0.113.7", "203.0.113.8", "203.0.113.9"):
        assert (await attempt(h, "operator", "wrong", client))[0] == 401
    assert (await attempt(h, "operator", DEMO_PASSWORD, "203.0.113.10"))[0] == 429
    users = await h.call("GET", "/users", as_user="demo")
    operator = next(u for u in users if u["username"] == "operator")

    await h.call(
        "POST",
        f"/users/{operator['id']}/password",
        as_user="demo",
        json={"password": "new-pass-123"},
    )

    assert (await attempt(h, "operator", "new-pass-123", "203.0.113.10"))[0] == 200


async def test_given_a_password_being_checked_then_no_database_connection_is_held(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    pool = h.services.engine.pool
    # at rest only PostgreSQL's process lock holds a connection of its own
    idle = 1 if h.services.engine.dialect.name == "postgresql" else 0
    await eventually(lambda: _at_rest(pool, idle))
    held: list[int] = []
    verify = auth.verify_password

    def watched(stored: str, password: str) -> bool:
        held.append(pool.checkedout())
        return verify(stored, password)

    monkeypatch.setattr(auth, "verify_password", watched)
    assert (await attempt(h, "operator", "wrong"))[0] == 401
    assert (await attempt(h, "operator", DEMO_PASSWORD))[0] == 200

    assert held == [idle, idle]


async def _at_rest(pool: Any, idle: int) -> bool:
    return bool(pool.checkedout() == idle)


async def test_given_a_flood_of_wrong_passwords_then_healthz_and_an_operator_stay_fast(
    tmp_path: Path, seeded_db_url: str
) -> None:
    """Each wrong password costs argon2 (~0.15 s of CPU); on the event loop, 12 of them in
    flight held every other request for seconds."""
    async with started_harness(tmp_path, seeded_db_url, trust_proxy=True) as h:
        await _flood(h)


async def _flood(h: Harness) -> None:
    from operator_console import auth

    token = await h.login("operator")
    hashed_on: set[int] = set()
    verify = auth.verify_password

    def recording(stored: str, password: str) -> bool:
        hashed_on.add(threading.get_ident())
        return verify(stored, password)

    auth.verify_password = recording  # type: ignore[assignment]
    try:
        await _flood_with(h, token, hashed_on)
    finally:
        auth.verify_password = verify  # type: ignore[assignment]


async def _flood_with(h: Harness, token: str, hashed_on: set[int]) -> None:
    auth_header = {"Authorization": f"Bearer {token}"}

    async def probe(path: str, headers: dict[str, str]) -> float:
        start = time.perf_counter()
        resp = await h.client.get(path, headers=headers)
        assert resp.status == 200
        await resp.read()
        return time.perf_counter() - start

    quiet = [await probe("/healthz", {}) for _ in range(5)]
    # real accounts (an unknown name costs a hash too now, but did not before), under
    # their limits: every one of these is a password to check
    accounts = ("operator", "supervisor", "demo")
    flood = [
        asyncio.create_task(attempt(h, accounts[i % 3], "guess", f"10.9.{i}.1")) for i in range(12)
    ]
    await asyncio.sleep(0.05)
    busy: list[float] = []
    for _ in range(8):
        busy.append(await probe("/healthz", {}))
        busy.append(await probe("/api/v1/calls", auth_header))
    statuses = [status for status, _, _ in await asyncio.gather(*flood)]

    assert set(statuses) <= {401, 503}
    # on the event loop the first probe waited for every hash (about 2 s): no hash may run
    # on the loop's thread (how fast the probes are is for bench/login_flood.py to say)
    assert hashed_on and threading.get_ident() not in hashed_on, (quiet, busy)


async def test_given_a_flood_from_new_addresses_then_a_known_address_still_logs_in(
    proxied: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hashing thread's queue is bounded (503 past it); an address someone logged in
    from lately has a lane of its own, so the flood does not turn its logins away."""
    from operator_console.api import password_login_key

    h = proxied
    assert (await attempt(h, "supervisor", DEMO_PASSWORD, "198.51.100.30"))[0] == 200
    logins = h.client.app[password_login_key]  # type: ignore[index]
    monkeypatch.setattr(logins, "limits", dataclasses.replace(logins.limits, max_waiting=2))
    verify = auth.verify_password

    def slow(stored: str, password: str) -> bool:
        time.sleep(0.3)
        return verify(stored, password)

    monkeypatch.setattr(auth, "verify_password", slow)
    flood = [asyncio.create_task(attempt(h, f"bot{i}", "guess", f"10.8.0.{i}")) for i in range(6)]
    # two are in the lane (its bound), the four turned away have their answer
    await until(lambda: sum(t.done() for t in flood) >= 4)

    status, body, _ = await attempt(h, "supervisor", DEMO_PASSWORD, "198.51.100.30")

    assert status == 200, body
    answers = sorted(s for s, _, _ in await asyncio.gather(*flood))
    assert answers.count(401) == 2 and answers.count(503) == 4, answers
