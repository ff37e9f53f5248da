"""Incidents on the memory PBX, on SQLite and PostgreSQL: three water calls from one grid
become one incident with one ticket; a later caller hears the outage announced before the
menu and still reaches an operator; the utility's keypad "done" calls every caller back,
once each, paced."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from dispatch.models import Call, Offer
from ivr.prompts import render
from providers.base import OriginateFailure
from tests.conftest import Harness, eventually
from tests.dispatch.test_queue import wait_queued
from tests.operator_console.test_whole_path import press_when_asked, ringing_out, ticket_state

#: residents 6, 12, 18, 24 and 30 of the demo community all live in 第一网格 (BG01)
GRID_PHONES = ["+862354000006", "+862354000012", "+862354000018", "+862354000024"]
OTHER_GRID_PHONE = "+862354000007"  # resident 7: 第二网格


async def keypad_water(h: Harness, phone: str) -> str:
    """A resident reports a water fault by keypad (5 utility, 1 water, 1 confirm)."""
    ref = await h.pbx.dial_in(phone)
    for digit in "511":
        await press_when_asked(h, ref, digit)
    return ref


async def call_id(h: Harness, ref: str) -> int:
    async with h.services.store.read() as session:
        found = await session.scalar(select(col(Call.id)).where(col(Call.ref) == ref))
    assert found is not None
    return int(found)


async def offer_calls(h: Harness) -> int:
    async with h.services.store.read() as session:
        return int(await session.scalar(select(func.count()).select_from(Offer)) or 0)


async def incident_state(h: Harness, incident_id: int, state: str) -> dict[str, Any]:
    async def check() -> Any:
        detail = await h.call("GET", f"/incidents/{incident_id}")
        return detail if detail["state"] == state else None

    result: dict[str, Any] = await eventually(check)
    return result


async def three_water_calls(h: Harness) -> list[int]:
    """Three residents of 第一网格 report the water cut by keypad; their call ids."""
    refs = [await keypad_water(h, phone) for phone in GRID_PHONES[:3]]
    ids = [await call_id(h, ref) for ref in refs]

    async def three_tickets() -> Any:
        tickets = await h.call("GET", "/tickets?state=open")
        return tickets if len([t for t in tickets if t["category_code"] == "water"]) == 3 else None

    await eventually(three_tickets)
    return ids


async def test_given_three_water_calls_from_a_grid_when_linked_then_one_ticket_and_callbacks(
    harness: Harness,
) -> None:
    h = harness
    ids = await three_water_calls(h)
    # the service proposes them as one incident
    [proposal] = await h.call("GET", "/incidents/proposals")
    assert (proposal["grid_code"], proposal["category"], proposal["calls"]) == ("BG01", "water", 3)
    assert sorted(proposal["call_ids"]) == sorted(ids)

    incident = await h.call(
        "POST",
        "/incidents",
        json={"category": "water", "call_ids": proposal["call_ids"]},
        expect=201,
    )
    assert (incident["state"], incident["linked"], incident["affected"]) == ("open", 3, 3)
    assert await h.call("GET", "/incidents/proposals") == []
    # the callers' own tickets are merged: the utility is not offered the fault three times
    open_tickets = await h.call("GET", "/tickets?state=open")
    assert [t for t in open_tickets if t["category_code"] == "water"] == []

    offers_before = await offer_calls(h)
    incident = await h.call("POST", f"/incidents/{incident['id']}/dispatch", json={})
    assert incident["state"] == "dispatched"
    ticket = await h.call("GET", f"/tickets/{incident['ticket_id']}")
    assert "已有3户" in ticket["description"]

    # the utility takes it by keypad
    offer_call = await ringing_out(h)
    await h.pbx.answer(offer_call["ref"])
    await press_when_asked(h, offer_call["ref"], "1")
    await ticket_state(h, incident["ticket_id"], "accepted")
    assert await offer_calls(h) == offers_before + 1  # one offer for the whole outage

    # a fourth caller of the grid hears the outage first, and may still reach an operator
    fourth = await h.pbx.dial_in(GRID_PHONES[3])
    await eventually(lambda: _asking(h, fourth))
    heard = h.pbx.calls[fourth]
    announcement = render("hotline.incident.water", heard.lang, {"incident_grid": "第一网格"})
    menu = render("hotline.menu", heard.lang, {})
    assert announcement in heard.transcript
    assert heard.transcript.index(announcement) < heard.transcript.index(menu)
    await press_when_asked(h, fourth, "0")
    [queued] = await wait_queued(h, 1)
    # the operator links it with one click
    incident = await h.call(
        "POST", f"/incidents/{incident['id']}/calls", json={"call_id": queued["id"]}
    )
    assert (incident["linked"], incident["affected"]) == (4, 4)
    # a caller of another grid hears no announcement
    other = await h.pbx.dial_in(OTHER_GRID_PHONE)
    await eventually(lambda: _asking(h, other))
    assert not any(
        "停水" in line or "water is cut" in line for line in h.pbx.calls[other].transcript
    )
    await h.pbx.party_hangup(other)

    # the utility reports it fixed by keypad (the completion check-in)
    done = await h.call(
        "POST",
        f"/tickets/{incident['ticket_id']}/check-in",
        json={"kind": "completion"},
        expect=202,
    )
    await h.pbx.answer(done["call_ref"])
    await press_when_asked(h, done["call_ref"], "1")
    await incident_state(h, incident["id"], "fixed")
    # its callers are called back below: no survey call on top, the ticket closes
    await ticket_state(h, incident["ticket_id"], "closed")

    # callbacks go out two at a time (the pacing), each number once
    seen = {c["ref"] for c in h.pbx.snapshot()}
    await h.timers.advance(0)
    first_batch = await _new_callbacks(h, seen, 2)
    assert f"incident:{incident['id']}" in h.timers.pending  # the rest wait their turn
    await h.timers.advance(h.services.dispatch.config.incident_callback_gap_s)
    second_batch = await _new_callbacks(h, seen, 2)
    callbacks = first_batch + second_batch
    assert sorted(c["number"] for c in callbacks) == sorted(GRID_PHONES)

    # two hear the news to the end, one hangs up after hearing it, one never answers
    for call in callbacks[:3]:
        await h.pbx.answer(call["ref"])
    for call in callbacks[:2]:
        await press_when_asked(h, call["ref"], "1")  # not 9: the goodbye follows
    await eventually(lambda: _asking(h, callbacks[2]["ref"]))
    fixed_news = h.pbx.calls[callbacks[2]["ref"]]
    assert (
        render("incident.fixed.water", fixed_news.lang, {"incident_grid": "第一网格"})
        in fixed_news.transcript
    )
    await h.pbx.party_hangup(callbacks[2]["ref"])
    await h.pbx.reject(callbacks[3]["ref"], OriginateFailure.NO_ANSWER)

    # nobody answered the fourth: tried once more later (not at once, not in a loop)
    async def retry_waits() -> Any:
        detail = await h.call("GET", f"/incidents/{incident['id']}")
        return detail if detail["callbacks"] == {"told": 3, "pending": 1} else None

    await eventually(retry_waits)
    await h.timers.advance(h.services.dispatch.config.incident_callback_gap_s)
    assert await _callback_refs(h) == {c["ref"] for c in callbacks}  # not due yet
    await h.timers.advance(h.services.dispatch.config.incident_callback_retry_s)
    [again] = await _new_callbacks(h, seen, 1)
    assert (again["number"], again["ref"]) == (callbacks[3]["number"], f"{callbacks[3]['ref']}.t2")
    await h.pbx.reject(again["ref"], OriginateFailure.BUSY)

    final = await incident_state(h, incident["id"], "callbacks_done")
    assert final["callbacks"] == {"told": 3, "failed": 1}
    await h.timers.advance(3600)
    assert len(await _callback_refs(h)) == 5  # four callers, one of them tried twice
    names = [e["name"] for e in await h.services.store.events_for("incident", incident["id"])]
    assert names[0] == "incident.opened" and names[-1] == "incident.callbacks_done"
    assert names.count("incident.callback") == 5


async def _callback_refs(h: Harness) -> set[str]:
    return {c["ref"] for c in h.pbx.snapshot() if c["ref"].startswith("incident-")}


async def _asking(h: Harness, ref: str) -> bool:
    call = h.pbx.calls.get(ref)
    return bool(call and call.waiting_digits)


async def _new_callbacks(h: Harness, seen: set[str], n: int) -> list[dict[str, Any]]:
    async def check() -> Any:
        found = [
            c for c in h.pbx.snapshot() if c["ref"].startswith("incident-") and c["ref"] not in seen
        ]
        return found if len(found) >= n else None

    found: list[dict[str, Any]] = await eventually(check)
    assert len(found) == n, found
    seen.update(c["ref"] for c in found)
    return found


async def test_given_an_open_incident_when_a_grid_caller_keys_the_same_fault_then_joined(
    harness: Harness,
) -> None:
    h = harness
    first = await keypad_water(h, GRID_PHONES[0])
    incident = await h.call(
        "POST",
        "/incidents",
        json={"category": "water", "call_ids": [await call_id(h, first)]},
        expect=201,
    )
    later = await keypad_water(h, GRID_PHONES[1])

    async def joined() -> Any:
        detail = await h.call("GET", f"/incidents/{incident['id']}")
        return detail if detail["linked"] == 2 else None

    detail = await eventually(joined)
    later_id = await call_id(h, later)
    assert later_id in [c["call_id"] for c in detail["calls"]]
    # no ticket of its own (counted by call: the first caller's keypad ticket may be taken
    # over by the incident meanwhile, which changed a count of open tickets under load)
    every = await h.call("GET", "/tickets?state=all")
    assert [t["id"] for t in every if t["call_id"] == later_id] == []
    # what the caller was told is what happened: joined to the outage, called back once
    # it is fixed; not "a merchant will call you back", which nobody would
    heard = h.pbx.calls[later]
    joined_words = render("hotline.incident_joined", heard.lang, {})
    assert joined_words in heard.transcript
    assert render("hotline.need_taken", heard.lang, {}) not in heard.transcript
    # a caller of the same grid keying another utility gets a ticket and hears so
    gas = await h.pbx.dial_in(GRID_PHONES[2])
    for digit in "531":
        await press_when_asked(h, gas, digit)
    assert render("hotline.need_taken", heard.lang, {}) in h.pbx.calls[gas].transcript
    assert joined_words not in h.pbx.calls[gas].transcript


async def test_given_an_incident_fixed_by_the_operator_without_a_ticket_then_callbacks(
    harness: Harness,
) -> None:
    h = harness
    ids = await three_water_calls(h)
    incident = await h.call(
        "POST", "/incidents", json={"category": "water", "call_ids": ids}, expect=201
    )
    await h.call("POST", f"/incidents/{incident['id']}/fixed", as_user="supervisor", json={})
    await h.call("POST", f"/incidents/{incident['id']}/fixed", json={}, expect=409)
    seen = {c["ref"] for c in h.pbx.snapshot()}
    await h.timers.advance(0)
    await h.timers.advance(h.services.dispatch.config.incident_callback_gap_s)
    callbacks = await _new_callbacks(h, seen, 3)
    assert sorted(c["number"] for c in callbacks) == sorted(GRID_PHONES[:3])


async def test_given_no_menu_mode_when_a_grid_caller_rings_then_the_outage_comes_first(
    harness: Harness,
) -> None:
    h = harness
    h.services.dispatch.config.hotline_menu = False  # residents go straight to an operator
    await h.call("POST", "/incidents", json={"category": "gas", "grid_code": "BG01"}, expect=201)
    ref = await h.pbx.dial_in(GRID_PHONES[0])
    await wait_queued(h, 1)
    heard = h.pbx.calls[ref]
    news = render("hotline.incident.gas", heard.lang, {"incident_grid": "第一网格"})
    to_operator = render("hotline.to_operator", heard.lang, {})
    assert heard.transcript.index(news) < heard.transcript.index(to_operator)


async def test_given_a_call_linked_while_its_keypad_ticket_is_made_then_the_outage_has_it(
    harness: Harness, monkeypatch: Any
) -> None:
    """The operator links a caller to a new incident in the instant between the keypad's
    "is there an outage?" check and the caller's own ticket: that ticket is the incident's
    too (cancelled as merged), never a second order to the utility."""
    h = harness
    incidents = h.services.dispatch.incidents
    checked = incidents.join_keypad

    async def operator_links_meanwhile(call: Any, category: str) -> bool:
        joined = await checked(call, category)  # no outage yet: False
        await h.call(
            "POST", "/incidents", json={"category": "water", "call_ids": [call.id]}, expect=201
        )
        return joined

    monkeypatch.setattr(incidents, "join_keypad", operator_links_meanwhile)
    ref = await keypad_water(h, GRID_PHONES[0])
    cid = await call_id(h, ref)

    async def settled() -> Any:
        tickets = [t for t in await h.call("GET", "/tickets?state=all") if t["call_id"] == cid]
        return tickets if tickets and tickets[0]["state"] == "cancelled" else None

    [ticket] = await eventually(settled)
    assert "merged into incident" in str(await h.call("GET", f"/tickets/{ticket['id']}"))
    open_water = [
        t for t in await h.call("GET", "/tickets?state=open") if t["category_code"] == "water"
    ]
    assert open_water == []  # nothing dispatched on its own; the incident sends its one
    assert await offer_calls(h) == 0
