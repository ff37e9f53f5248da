"""Offer cascades, parallel offers, deadlines, escalation, no-shows, check-ins and repeat
orders, through the API with the memory PBX, a manual clock and manual timers."""

from __future__ import annotations

import asyncio
from typing import Any

from providers.base import OriginateFailure
from providers.memory.pbx import Script
from tests.conftest import Harness, eventually
from tests.operator_console.test_whole_path import ringing_out, ticket_state, waiting_for_keys


async def new_ticket(h: Harness, category: str = "medicine", resident_id: int = 1) -> int:
    ticket = await h.call(
        "POST", "/tickets", json={"category": category, "resident_id": resident_id}, expect=201
    )
    return int(ticket["id"])


async def offers(h: Harness, ticket_id: int) -> list[dict[str, Any]]:
    return list((await h.call("GET", f"/tickets/{ticket_id}"))["offers"])


async def live_offer_count(h: Harness, ticket_id: int, n: int) -> list[dict[str, Any]]:
    async def check() -> Any:
        live = [o for o in await offers(h, ticket_id) if o["state"] in ("placed", "ringing")]
        return live if len(live) >= n else None

    return list(await eventually(check))


async def advance(h: Harness, seconds: float) -> list[str]:
    """Move the clock; the fired keys, without the periodic reconciler's."""
    return [k for k in await h.timers.advance(seconds) if not k.startswith("reconcile")]


def names(detail: dict[str, Any]) -> list[str]:
    return [e["name"] for e in detail["timeline"]]


async def test_given_busy_no_answer_timeout_and_decline_when_offering_then_the_cascade_moves_on(
    harness: Harness,
) -> None:
    h = harness
    tid = await new_ticket(h)
    await h.call("POST", f"/tickets/{tid}/dispatch", json={})
    seen: set[str] = set()

    first = await ringing_out(h)
    seen.add(first["ref"])
    await h.pbx.reject(first["ref"], OriginateFailure.BUSY)

    second = await ringing_out(h, exclude=seen)
    seen.add(second["ref"])
    await h.pbx.party_hangup(second["ref"])  # rang out: no answer

    third = await ringing_out(h, exclude=seen)
    seen.add(third["ref"])
    await h.settle()
    [live] = await live_offer_count(h, tid, 1)
    fired = await h.timers.advance(91)  # nobody picks up within the offer timeout
    assert f"offer:{live['id']}" in fired

    fourth = await ringing_out(h, exclude=seen)
    await h.pbx.answer(fourth["ref"])
    await waiting_for_keys(h, fourth["ref"])
    await h.pbx.press(fourth["ref"], "2")
    fifth = await ringing_out(h, exclude={*seen, fourth["ref"]})
    await h.pbx.answer(fifth["ref"])
    await waiting_for_keys(h, fifth["ref"])
    await h.pbx.press(fifth["ref"], "1")

    detail = await ticket_state(h, tid, "accepted")
    assert [o["state"] for o in detail["offers"]] == [
        "busy",
        "no_answer",
        "expired",
        "declined",
        "accepted",
    ]
    assert len({o["merchant_id"] for o in detail["offers"]}) == 5  # nobody asked twice
    assert detail["merchant_id"] == detail["offers"][-1]["merchant_id"]


async def test_given_every_merchant_busy_when_dispatching_then_unassigned_and_operators_alerted(
    harness: Harness,
) -> None:
    h = harness
    for mid in range(1, 60):
        h.pbx.script(f"+86139{mid:08d}", Script(action="busy"))
    tid = await new_ticket(h)
    await h.call("POST", f"/tickets/{tid}/dispatch", json={})
    detail = await ticket_state(h, tid, "unassigned")
    assert detail["offers"] and all(o["state"] == "busy" for o in detail["offers"])
    timeline = names(detail)
    assert timeline.count("alert.unassigned") == 1
    assert timeline.index("alert.unassigned") > timeline.index("offer.busy")


async def test_given_parallel_urgent_offers_when_two_accept_at_once_then_one_wins_other_409(
    harness: Harness,
) -> None:
    h = harness
    h.services.dispatch.config.parallel_offers_urgent = 2
    tid = await new_ticket(h, "medicine")  # urgent
    await h.call("POST", f"/tickets/{tid}/dispatch", json={})
    a, b = await live_offer_count(h, tid, 2)
    results = await asyncio.gather(
        h.call("POST", f"/offers/{a['id']}/accept", expect=None),
        h.call("POST", f"/offers/{b['id']}/accept", as_user="supervisor", expect=None),
    )
    winners = [r for r in results if "ticket_id" in r]
    losers = [r for r in results if r.get("error_id") == "illegal_transition"]
    assert len(winners) == 1 and len(losers) == 1, results
    await h.settle()
    detail = await h.call("GET", f"/tickets/{tid}")
    states = sorted(o["state"] for o in detail["offers"])
    assert states == ["accepted", "withdrawn"]
    winner = next(o for o in detail["offers"] if o["state"] == "accepted")
    assert detail["merchant_id"] == winner["merchant_id"]
    assert names(detail).count("ticket.accepted") == 1
    # the loser's phone stops ringing
    assert all(c["state"] == "ended" for c in h.pbx.snapshot() if c["direction"] == "out")


async def test_given_a_late_ticket_when_the_clock_passes_then_operator_then_supervisor(
    harness: Harness,
) -> None:
    h = harness
    tid = await new_ticket(h, "medicine")  # 60 minutes
    assert await advance(h, 59 * 60) == []
    assert f"deadline:{tid}" in await advance(h, 61)
    detail = await h.call("GET", f"/tickets/{tid}")
    assert detail["escalation_level"] == 1 and detail["escalated"] is True
    assert detail["escalation_reason"] == "not accepted by the deadline"
    assert "alert.escalated" in names(detail)
    # +50% of the 60 minute window after the deadline: the supervisor
    assert await advance(h, 29 * 60) == []
    assert f"escalate:{tid}" in await advance(h, 60)
    detail = await h.call("GET", f"/tickets/{tid}")
    assert detail["escalation_level"] == 2
    levels = [e["data"]["level"] for e in detail["timeline"] if e["name"] == "ticket.escalated"]
    assert levels == ["operator", "supervisor"]


async def test_given_an_accepted_merchant_who_never_arrives_then_no_show_and_re_offer(
    harness: Harness,
) -> None:
    h = harness
    tid = await new_ticket(h, "medicine")
    await h.call("POST", f"/tickets/{tid}/dispatch", json={})
    [offer] = await live_offer_count(h, tid, 1)
    await h.call("POST", f"/offers/{offer['id']}/accept")
    await h.settle()
    await h.timers.advance(60 * 60 + 1)
    await h.settle()
    detail = await h.call("GET", f"/tickets/{tid}")
    assert detail["state"] == "offering" and detail["merchant_id"] is None
    assert [o["state"] for o in detail["offers"]][:1] == ["no_show"]
    assert len(detail["offers"]) == 2
    assert detail["offers"][1]["merchant_id"] != offer["merchant_id"]
    assert {"ticket.no_show", "ticket.escalated"} <= set(names(detail))
    record = await h.call("GET", f"/merchants/{offer['merchant_id']}/record")
    assert record["no_shows"] == 1 and record["no_show_tickets"][0]["ticket_id"] == tid
    ranked = await h.call("GET", f"/tickets/{tid}/candidates")
    no_show_merchant = next(c for c in ranked if c["merchant_id"] == offer["merchant_id"])
    assert {"code": "no_shows", "n": 1} in no_show_merchant["why"]


async def test_given_an_accepted_ticket_when_the_merchant_keys_arrival_and_completion(
    harness: Harness,
) -> None:
    h = harness
    tid = await new_ticket(h, "medicine")
    await h.call("POST", f"/tickets/{tid}/dispatch", json={})
    [offer] = await live_offer_count(h, tid, 1)
    await h.call("POST", f"/offers/{offer['id']}/accept")
    await h.settle()
    for kind, state in (("arrival", "in_service"), ("completion", "completed")):
        ref = (await h.call("POST", f"/tickets/{tid}/check-in", json={"kind": kind}, expect=202))[
            "call_ref"
        ]
        await h.pbx.answer(ref)
        await waiting_for_keys(h, ref)
        await h.pbx.press(ref, "1")
        detail = await ticket_state(h, tid, state)
    assert detail["arrived_at"] and detail["completed_at"]
    actors = {e["name"]: e["actor"] for e in detail["timeline"]}
    assert actors["ticket.arrived"] == "merchant" and actors["ticket.completed"] == "merchant"


async def test_given_a_completed_order_when_repeated_then_the_usual_merchant_is_offered_first(
    harness: Harness,
) -> None:
    h = harness
    tid = await new_ticket(h, "medicine")
    await h.call("POST", f"/tickets/{tid}/dispatch", json={})
    [offer] = await live_offer_count(h, tid, 1)
    # the operator picks the resident's usual pharmacy: the second in the ranking
    ranked = [c for c in await h.call("GET", f"/tickets/{tid}/candidates") if c["eligible"]]
    await h.call("POST", f"/offers/{offer['id']}/accept")
    await h.call("POST", f"/tickets/{tid}/complete")
    usual = offer["merchant_id"]
    assert ranked
    again = await h.call("POST", f"/tickets/{tid}/repeat", expect=201)
    assert again["repeat_of"] == tid and again["category_code"] == "medicine"
    [first] = await live_offer_count(h, again["id"], 1)
    assert first["merchant_id"] == usual
    ranked = await h.call("GET", f"/tickets/{again['id']}/candidates")
    assert ranked[0]["merchant_id"] == usual and {"code": "usual_pharmacy"} in ranked[0]["why"]
