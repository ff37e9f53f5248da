"""A live stream lives only as long as its session, on SQLite and PostgreSQL: a logout, an
admin disabling the login or setting a new password, or a session ended elsewhere (another
process, expiry) closes the WebSocket, and nothing more is sent on it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType
from sqlalchemy import delete, func, select
from sqlmodel import col

from eventlog.models import Event
from operator_console import ws as ws_module
from operator_console.models import LoginSession
from tests.conftest import Harness


async def stream(h: Harness, token: str) -> ClientWebSocketResponse:
    """An open live stream for a session, from the newest event on (the harness is
    settled: the backend's `telephony.up` is in the log before the test starts)."""
    async with h.services.store.read() as session:
        newest = (await session.execute(select(func.max(col(Event.seq))))).scalar() or 0
    ws = await h.client.ws_connect(
        f"/api/v1/ws?since={newest}", headers={"Authorization": f"Bearer {token}"}
    )
    await asyncio.sleep(0.05)
    return ws


async def closed_within(ws: ClientWebSocketResponse, seconds: float) -> Any:
    """The close message, if the server closes the stream in time (texts are a failure)."""
    msg = await asyncio.wait_for(ws.receive(), seconds)
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED), msg
    return msg


async def user_id(h: Harness, username: str) -> int:
    users = await h.call("GET", "/users", as_user="demo")
    return int(next(u["id"] for u in users if u["username"] == username))


async def test_given_an_open_stream_when_its_session_logs_out_then_it_closes_at_once(
    harness: Harness,
) -> None:
    h = harness
    token = await h.login("operator")
    ws = await stream(h, token)

    await h.call("POST", "/logout", as_user="operator")

    msg = await closed_within(ws, 2)
    assert msg.data == ws_module.SESSION_ENDED
    # and what happens next is not sent to it
    await h.call(
        "POST", "/tickets", as_user="supervisor", json={"category": "medicine"}, expect=201
    )
    assert ws.closed


async def test_given_an_open_stream_when_an_admin_disables_the_login_then_it_closes(
    harness: Harness,
) -> None:
    h = harness
    token = await h.login("operator")
    ws = await stream(h, token)
    other = await stream(h, await h.login("supervisor"))

    await h.call(
        "PATCH", f"/users/{await user_id(h, 'operator')}", as_user="demo", json={"active": False}
    )

    await closed_within(ws, 2)
    await h.call(
        "POST", "/tickets", as_user="supervisor", json={"category": "medicine"}, expect=201
    )
    # another user's stream goes on
    names = []
    while "ticket.created" not in names:
        msg = await asyncio.wait_for(other.receive(), 2)
        assert msg.type == WSMsgType.TEXT, msg
        names.append(json.loads(msg.data)["name"])
    assert names == ["user.updated", "ticket.created"]
    await other.close()


async def test_given_an_open_stream_when_an_admin_sets_a_new_password_then_it_closes(
    harness: Harness,
) -> None:
    h = harness
    ws = await stream(h, await h.login("operator"))

    await h.call(
        "POST",
        f"/users/{await user_id(h, 'operator')}/password",
        as_user="demo",
        json={"password": "another-pass-1"},
    )

    await closed_within(ws, 2)


async def test_given_a_session_ended_by_another_process_then_the_stream_closes_soon(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    monkeypatch.setattr(ws_module, "RECHECK_S", 0.2)
    ws = await stream(h, await h.login("operator"))

    # another process (or expiry) ends it: only the database knows
    async with h.services.store.read() as session:
        await session.execute(delete(LoginSession))

    await closed_within(ws, 3)
