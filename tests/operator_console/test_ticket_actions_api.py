"""Acting on a ticket from anywhere, over HTTP on SQLite and PostgreSQL: a note on its
timeline, handing it to another operator (the board's "mine" follows), ringing one of the
resident's phones by id, a ticket without a live call, and a transfer that carries the
sender's note with the caller's resident and ticket. Merchants may do none of it (403);
refusals are 409/422 with codes the browser words in zh-CN and English."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlmodel import col

from dispatch.models import Ticket
from operator_console.i18n import LANGS, texts
from registry.models import ResidentPhone, Role
from tests.conftest import Harness
from tests.dispatch.test_hold_transfer import add_operator, answered, state
from tests.operator_console.test_callouts_api import pbx_call, resident_numbers, shows_none_of

ROUTES = (
    ("POST", "/tickets/1/notes", {"text": "家属来电"}),
    ("POST", "/tickets/1/assign", {"user_id": 1}),
    ("GET", "/assignees", None),
    ("GET", "/residents/1/phones", None),
)


async def walk_in(h: Harness, as_user: str = "operator") -> dict[str, Any]:
    """A ticket made without a call, as the walk-in form makes it."""
    body = {"category": "medicine", "description": "【家属上门】 买药", "resident_id": 1}
    ticket: dict[str, Any] = await h.call(
        "POST", "/tickets", json=body, as_user=as_user, expect=201
    )
    return ticket


async def user_id(h: Harness, username: str) -> int:
    me = await h.call("GET", "/me", as_user=username)
    return int(me["user"]["id"])


async def test_given_no_login_or_a_merchant_then_401_and_403(harness: Harness) -> None:
    h = harness
    for method, path, payload in ROUTES:
        resp = await h.client.request(method, "/api/v1" + path, json=payload)
        assert resp.status == 401, path
    for method, path, payload in ROUTES:
        body = await h.call(method, path, as_user="merchant1", json=payload, expect=403)
        assert body["error_id"] == "forbidden", path


async def test_given_a_walk_in_ticket_when_noted_then_the_note_is_on_its_timeline(
    harness: Harness,
) -> None:
    h = harness
    ticket = await walk_in(h)
    assert ticket["call_id"] is None and ticket["resident_id"] == 1
    # the desk that made it looks after it
    assert ticket["assigned_to"] == await user_id(h, "operator")
    url = f"/tickets/{ticket['id']}"
    note = await h.call("POST", f"{url}/notes", json={"text": "女儿下午在家"}, expect=201)
    assert note == {"ticket_id": ticket["id"], "note": "女儿下午在家", "actor": "operator"}
    # a supervisor may note too; a cancelled ticket still takes notes
    await h.call("POST", f"{url}/cancel", json={"reason": "老人自行解决"})
    later = {"text": "已回电确认"}
    await h.call("POST", f"{url}/notes", json=later, as_user="supervisor", expect=201)
    timeline = (await h.call("GET", url))["timeline"]
    notes = [(e["actor"], e["data"]["note"]) for e in timeline if e["name"] == "ticket.note"]
    assert notes == [("operator", "女儿下午在家"), ("supervisor", "已回电确认")]
    cancelled = [e for e in timeline if e["name"] == "ticket.cancelled"]
    assert cancelled[0]["data"]["reason"] == "老人自行解决"
    for bad in ({}, {"text": ""}, {"text": "x" * 501}, {"text": "a", "x": 1}):
        body = await h.call("POST", f"{url}/notes", json=bad, expect=422)
        assert body["error_id"] == "invalid_input", bad
    assert (await h.call("POST", "/tickets/999999/notes", json={"text": "a"}, expect=404))[
        "error_id"
    ] == "not_found"


async def test_given_a_ticket_when_reassigned_then_its_new_operators_board_has_it(
    harness: Harness,
) -> None:
    h = harness
    other = await add_operator(h, "operator2")
    ticket = await walk_in(h)
    url = f"/tickets/{ticket['id']}"
    mine = [t["id"] for t in await h.call("GET", "/board?scope=mine")]
    assert ticket["id"] in mine

    people = await h.call("GET", "/assignees")
    roles = {p["role"] for p in people}
    assert "merchant" not in roles and {"operator", "supervisor"} <= roles
    assert other.id in [p["user_id"] for p in people]

    moved = await h.call("POST", f"{url}/assign", json={"user_id": other.id})
    assert moved["assigned_to"] == other.id
    assert ticket["id"] not in [t["id"] for t in await h.call("GET", "/board?scope=mine")]
    theirs = await h.call("GET", "/board?scope=mine", as_user="operator2")
    assert ticket["id"] in [t["id"] for t in theirs]
    timeline = (await h.call("GET", url))["timeline"]
    (event,) = [e for e in timeline if e["name"] == "ticket.assigned"]
    assert event["actor"] == "operator"
    assert event["data"] | {"from_user_id": None} == {
        "from_user_id": None,
        "to_user_id": other.id,
        "to_operator": "operator2",
    }
    assert event["data"]["from_user_id"] == await user_id(h, "operator")

    # refusals: theirs already (409), a merchant or nobody (422), a closed ticket (409)
    again = await h.call("POST", f"{url}/assign", json={"user_id": other.id}, expect=409)
    assert again["error_id"] == "already_assigned" and again["details"]["name"] == "operator2"
    async with h.services.store.read() as session:
        from registry.models import User

        merchant = (
            await session.execute(select(User).where(col(User.role) == Role.MERCHANT))
        ).scalars().first()  # fmt: skip
        assert merchant is not None
    for target in (merchant.id, 999999):
        body = await h.call("POST", f"{url}/assign", json={"user_id": target}, expect=422)
        assert body["error_id"] == "not_assignable"
    await h.call("POST", f"{url}/assign", json={"user_id": "x"}, expect=422)
    await h.call("POST", f"{url}/cancel", json={"reason": "重复登记"}, as_user="operator2")
    boss = await user_id(h, "supervisor")
    closed = await h.call("POST", f"{url}/assign", json={"user_id": boss}, expect=409)
    assert closed["error_id"] == "ticket_closed"
    async with h.services.store.read() as session:
        row = await session.get(Ticket, ticket["id"])
        assert row is not None and row.assigned_to == other.id
    # every refusal has its words in both languages
    for lang in LANGS:
        words = texts(lang)
        for code in ("already_assigned", "not_assignable", "ticket_closed"):
            assert words[f"e_{code}"], (lang, code)


async def test_given_a_resident_with_two_phones_then_each_is_rung_by_its_id(
    harness: Harness,
) -> None:
    h = harness
    async with h.services.store.tx() as tx:
        tx.session.add(ResidentPhone(resident_id=1, number="+862354440001", kind="landline"))
    secrets_ = await resident_numbers(h, 1)
    phones = await h.call("GET", "/residents/1/phones")
    assert len(phones) >= 2 and phones[-1]["kind"] == "landline"
    assert shows_none_of(phones, secrets_)
    landline = phones[-1]
    call = await h.call(
        "POST", "/callouts", json={"target": "resident_phone", "id": landline["id"]}, expect=201
    )
    assert call["resident_id"] == 1 and shows_none_of(call, secrets_)
    sim = await pbx_call(h, call["ref"], "ringing")
    assert sim.number == "+862354440001"
    assert await state(h, "operator") == ("on_call", call["id"])
    missing = {"target": "resident_phone", "id": 999999}
    await h.call("POST", "/callouts", json=missing, as_user="supervisor", expect=404)


async def test_given_a_transfer_with_a_note_then_its_event_carries_note_resident_and_ticket(
    harness: Harness,
) -> None:
    h = harness
    other = await add_operator(h, "operator2")
    call, _ = await answered(h)
    url = f"/calls/{call['id']}"
    ticket = await h.call(
        "POST", "/tickets", json={"category": "medicine", "call_id": call["id"]}, expect=201
    )
    await h.call("POST", "/operator/state", json={"action": "login"}, as_user="operator2")
    too_long = {"to_user_id": other.id, "note": "x" * 201}
    body = await h.call("POST", f"{url}/transfer", json=too_long, expect=422)
    assert body["details"][0]["type"] == "string_too_long"
    note = {"to_user_id": other.id, "note": " 老人要求先联系女儿 "}
    await h.call("POST", f"{url}/transfer", json=note)
    assert await state(h, "operator2") == ("on_call", call["id"])
    # the receiving desk reads it from the call it now has
    seen = await h.call("GET", url, as_user="operator2")
    (event,) = [e for e in seen["timeline"] if e["name"] == "call.transferred"]
    assert event["data"]["note"] == "老人要求先联系女儿"
    assert event["data"]["from_operator"] == "话务员小李"
    assert event["data"]["resident_id"] == seen["resident_id"] is not None
    assert event["data"]["ticket_id"] == ticket["id"] == seen["ticket_id"]
    # a transfer without a note still works, with an empty one
    await h.call("POST", "/operator/state", json={"action": "login"}, as_user="supervisor")
    await h.call("POST", f"{url}/transfer", json={"to": "supervisor"}, as_user="operator2")
    timeline = (await h.call("GET", url, as_user="supervisor"))["timeline"]
    assert [e["data"]["note"] for e in timeline if e["name"] == "call.transferred"] == [
        "老人要求先联系女儿",
        "",
    ]
