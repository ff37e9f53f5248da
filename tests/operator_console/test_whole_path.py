"""The walking skeleton end to end: a resident's ring to a rated visit, through the HTTP
API, the memory PBX and the WebSocket, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import WSMsgType
from sqlalchemy import select

from registry.models import AccessLog
from tests.conftest import Harness, eventually

RESIDENT_PHONE = "+862354000001"  # resident 1 of the demo community (a landline)


async def press_when_asked(h: Harness, ref: str, digit: str) -> None:
    """Wait for the phone's IVR to ask, then press a key."""
    await waiting_for_keys(h, ref)
    await h.pbx.press(ref, digit)


async def queued_call(h: Harness) -> dict[str, Any]:
    """Wait until the hotline has a queued call and return it."""

    async def check() -> Any:
        calls = await h.call("GET", "/calls")
        return next((c for c in calls if c["state"] == "queued"), None)

    return await eventually(check)


async def ringing_out(h: Harness, exclude: set[str] = frozenset()) -> Any:  # type: ignore[assignment]
    """Wait for an outbound simulated call that is ringing."""

    async def check() -> Any:
        return next(
            (
                c
                for c in h.pbx.snapshot()
                if c["direction"] == "out" and c["state"] == "ringing" and c["ref"] not in exclude
            ),
            None,
        )

    return await eventually(check)


async def waiting_for_keys(h: Harness, ref: str) -> None:
    """Wait until the simulated phone's IVR waits for a key."""

    async def check() -> bool:
        call = h.pbx.calls.get(ref)
        return bool(call and call.waiting_digits)

    await eventually(check)


async def ticket_state(h: Harness, ticket_id: int, state: str) -> dict[str, Any]:
    """Wait for a ticket to reach a state."""

    async def check() -> Any:
        ticket = await h.call("GET", f"/tickets/{ticket_id}")
        return ticket if ticket["state"] == state else None

    return await eventually(check)


async def test_given_a_registered_resident_when_the_whole_path_runs_then_the_visit_is_rated(
    harness: Harness,
) -> None:
    h = harness
    token = await h.login("operator")
    ws = await h.client.ws_connect(
        "/api/v1/ws?since=0", headers={"Authorization": f"Bearer {token}"}
    )
    received: list[dict[str, Any]] = []

    async def read_ws() -> None:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                received.append(json.loads(msg.data))

    reader = asyncio.create_task(read_ws())

    # 1. the resident rings, is greeted by name, presses 0 for an operator and is queued
    ref = await h.pbx.dial_in(RESIDENT_PHONE)
    await press_when_asked(h, ref, "0")
    call = await queued_call(h)
    assert "您好" in h.pbx.calls[ref].transcript[0]
    assert call["registered"] is True
    assert call["resident_name"]
    assert "+8623" in call["number"] and "****" in call["number"]

    # 2. the operator answers; a second operator is refused
    answered = await h.call("POST", f"/calls/{call['id']}/answer")
    assert answered["state"] == "connected"
    refused = await h.call("POST", f"/calls/{call['id']}/answer", as_user="supervisor", expect=409)
    assert refused["error_id"] == "illegal_transition"

    # 3. the resident card, and its read in the access log
    card = await h.call("GET", f"/residents/{call['resident_id']}?reason=call")
    assert card["contacts"] and card["address"] and card["groups"]
    assert "*" in card["id_number"]
    async with h.services.store.read() as session:
        logged = (await session.execute(select(AccessLog))).scalars().all()
    assert [(a.username, a.resident_id, a.reason) for a in logged] == [
        ("operator", call["resident_id"], "call")
    ]

    # 4. the need, and the ranked merchants with reasons
    ticket = await h.call(
        "POST",
        "/tickets",
        json={"category": "medicine", "description": "硝苯地平一盒", "call_id": call["id"]},
        expect=201,
    )
    assert ticket["state"] == "new" and ticket["resident_id"] == call["resident_id"]
    ranked = await h.call("GET", f"/tickets/{ticket['id']}/candidates")
    eligible = [c for c in ranked if c["eligible"]]
    assert len(eligible) >= 2
    assert all(c["why"] for c in ranked)

    # 5. dispatch: the first merchant declines, the second accepts
    await h.call("POST", f"/tickets/{ticket['id']}/dispatch", json={})
    first = await ringing_out(h)
    await h.pbx.answer(first["ref"])
    await waiting_for_keys(h, first["ref"])
    transcript = " ".join(h.pbx.calls[first["ref"]].transcript)
    assert "送药" in transcript and "硝苯地平一盒" in transcript
    assert RESIDENT_PHONE[-8:] not in transcript  # the merchant never hears the number
    await h.pbx.press(first["ref"], "2")

    second = await ringing_out(h, exclude={first["ref"]})
    assert second["number"] != first["number"]
    await h.pbx.answer(second["ref"])
    await waiting_for_keys(h, second["ref"])
    await h.pbx.press(second["ref"], "1")
    accepted = await ticket_state(h, ticket["id"], "accepted")
    assert [o["state"] for o in accepted["offers"]] == ["declined", "accepted"]
    assert accepted["merchant_id"] == accepted["offers"][1]["merchant_id"]

    # 6. the operator hangs up and wraps up
    await h.call("POST", f"/calls/{call['id']}/hangup")
    await eventually(lambda: _call_state(h, call["id"], "wrap_up"))
    await h.call("POST", f"/calls/{call['id']}/wrap-up", json={"disposition": "dispatched"})

    # 7. done; the survey call comes after its delay, and the resident presses 1
    await h.call("POST", f"/tickets/{ticket['id']}/complete")
    await h.settle()
    fired = await h.timers.advance(61)
    assert f"survey:{ticket['id']}" in fired
    survey = await ringing_out(h, exclude={first["ref"], second["ref"]})
    assert survey["number"] == RESIDENT_PHONE
    await h.pbx.answer(survey["ref"])
    await waiting_for_keys(h, survey["ref"])
    await h.pbx.press(survey["ref"], "1")
    closed = await ticket_state(h, ticket["id"], "closed")
    assert closed["rating"] == "satisfied"

    # 8. every step reached the WebSocket, in order, and the ticket's timeline
    timeline = [e["name"] for e in closed["timeline"]]
    for name in (
        "ticket.created",
        "ticket.matching",
        "offer.placed",
        "offer.declined",
        "offer.accepted",
        "ticket.accepted",
        "ticket.completed",
        "survey.calling",
        "ticket.rated",
        "ticket.closed",
    ):
        assert name in timeline, name
    await eventually(lambda: _has(received, "ticket.closed"))
    names = [e["name"] for e in received]
    assert (
        names.index("call.offered")
        < names.index("call.queued")
        < names.index("call.connected")
        < names.index("ticket.created")
        < names.index("ticket.closed")
    )
    seqs = [e["seq"] for e in received]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    await ws.close()
    reader.cancel()


async def _call_state(h: Harness, call_id: int, state: str) -> bool:
    return bool((await h.call("GET", f"/calls/{call_id}"))["state"] == state)


async def _has(received: list[dict[str, Any]], name: str) -> bool:
    return any(e["name"] == name for e in received)


async def test_given_an_unknown_number_when_it_calls_then_it_is_queued_as_not_registered(
    harness: Harness,
) -> None:
    h = harness
    await h.pbx.dial_in("13912345678")  # no menu: straight to an operator
    call = await queued_call(h)
    assert call["registered"] is False and call["resident_id"] is None
    assert "resident_name" not in call
    # the operator can still take the call and record a need without a resident
    await h.call("POST", f"/calls/{call['id']}/answer")
    ticket = await h.call(
        "POST", "/tickets", json={"category": "groceries", "call_id": call["id"]}, expect=201
    )
    assert ticket["resident_id"] is None


async def test_given_no_merchant_can_serve_when_dispatching_then_the_ticket_waits_unassigned(
    harness: Harness,
) -> None:
    h = harness
    # 03:00 in Shanghai: only the night-window merchants are open; none does repairs
    h.clock.set(h.clock.now().replace(hour=19))
    ticket = await h.call(
        "POST", "/tickets", json={"category": "repair", "resident_id": 1}, expect=201
    )
    ranked = await h.call("GET", f"/tickets/{ticket['id']}/candidates")
    assert ranked and not any(c["eligible"] for c in ranked)
    assert any(w["code"] == "closed_until" for c in ranked for w in c["why"])
    # a self-paid repair: the resident's consent comes first
    await h.call("POST", f"/tickets/{ticket['id']}/consent", json={"who": "老人本人"})
    await h.call("POST", f"/tickets/{ticket['id']}/dispatch", json={})
    detail = await ticket_state(h, ticket["id"], "unassigned")
    assert "alert.unassigned" in [e["name"] for e in detail["timeline"]]


async def test_given_a_keypad_need_when_confirmed_then_a_ticket_is_dispatched_automatically(
    harness: Harness,
) -> None:
    h = harness
    ref = await h.pbx.dial_in(RESIDENT_PHONE)
    await press_when_asked(h, ref, "2")  # medicine
    await press_when_asked(h, ref, "1")  # confirm the read-back
    offer_call = await ringing_out(h)
    tickets = await h.call("GET", "/tickets?state=open")
    assert [(t["category_code"], t["state"], t["created_by"]) for t in tickets] == [
        ("medicine", "offering", "system")
    ]
    assert offer_call["direction"] == "out"
    calls = await h.call("GET", "/calls")
    assert calls == []  # the call ended in the menu: nobody waits for an operator
