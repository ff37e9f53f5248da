"""Ratings people trust (issue 16): a merchant disputes a rating or a no-show of their own
ticket, a supervisor upholds or overturns it, and an overturned one stops counting in the
scorecard and the figures; the merchant never learns who rated."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select, update
from sqlmodel import col

from dispatch.models import Ticket
from eventlog.models import Event
from registry.models import Resident, ResidentPhone
from tests import history as hist
from tests.conftest import Harness
from tests.operator_console.test_wallboard_api import seeded

M = "merchant1"  # merchant 1 of the history: tickets 1 and 3 rated, 6 a no-show


async def dispute(
    h: Harness, ticket_id: int, kind: str, *, expect: int = 201, reason: str = "顾客不在家"
) -> Any:
    return await h.call(
        "POST",
        f"/merchant/tickets/{ticket_id}/disputes",
        as_user=M,
        json={"kind": kind, "reason": reason},
        expect=expect,
    )


async def decide(h: Harness, dispute_id: int, how: str, *, expect: int = 200, **kw: Any) -> Any:
    return await h.call(
        "POST",
        f"/disputes/{dispute_id}/{how}",
        as_user=kw.pop("as_user", "supervisor"),
        json={"note": "已核实"},
        expect=expect,
    )


async def test_given_own_rating_when_the_merchant_disputes_then_open_once_and_404_for_others(
    harness: Harness,
) -> None:
    h = await seeded(harness)
    opened = await dispute(h, 3, "rating")
    assert (opened["ticket_id"], opened["kind"], opened["state"]) == (3, "rating", "open")
    assert opened["reason"] == "顾客不在家" and opened["decided_at"] is None
    # twice: 409, with the first dispute named
    again = await dispute(h, 3, "rating", expect=409)
    assert again["error_id"] == "dispute_exists"
    assert again["details"] == {"dispute_id": opened["id"], "state": "open"}
    # another merchant's ticket (4, 5 are merchant 2's), or none at all: 404
    for other in (4, 5, 999):
        assert (await dispute(h, other, "rating", expect=404))["error_id"] == "not_found"
    # their own ticket without a rating (7), or without a no-show of theirs (1): 409
    assert (await dispute(h, 7, "rating", expect=409))["error_id"] == "nothing_to_dispute"
    assert (await dispute(h, 1, "no_show", expect=409))["error_id"] == "nothing_to_dispute"
    # bad bodies: 422 naming the field
    for body in (
        {"kind": "rating", "reason": ""},
        {"kind": "rating", "reason": "   "},
        {"kind": "rating", "reason": "x" * 301},
        {"kind": "price", "reason": "x"},
    ):
        bad = await h.call("POST", "/merchant/tickets/1/disputes", as_user=M, json=body, expect=422)
        assert bad["error_id"] == "invalid_input" and bad["details"][0]["field"]
    # staff do not dispute: that is the merchant's page
    await h.call(
        "POST",
        "/merchant/tickets/3/disputes",
        as_user="supervisor",
        json={"kind": "rating", "reason": "x"},
        expect=403,
    )
    # the event names ids only: never the reason
    async with h.services.store.read() as session:
        events = (
            (await session.execute(select(Event).where(col(Event.name) == "dispute.opened")))
            .scalars()
            .all()
        )
    assert [e.data for e in events] == [
        {"dispute_id": opened["id"], "kind": "rating", "merchant_id": 1}
    ]
    assert events[0].subject_id == "3"


async def test_given_two_disputes_when_one_is_overturned_and_one_upheld_then_counts_follow(
    harness: Harness,
) -> None:
    h = await seeded(harness)
    card = await h.call("GET", f"/merchants/{hist.MERCHANT}/record?days=7", as_user="supervisor")
    assert (card["rated"], card["no_shows"], card["disputed"]) == (2, 1, 0)
    before = (await h.call("GET", "/figures?days=7", as_user="supervisor"))["total"]
    assert (before["rated"], before["satisfied"], before["no_shows"]) == (4, 3, 1)
    assert (before["disputed"], before["overturned"]) == (0, 0)

    rating = await dispute(h, 3, "rating")
    no_show = await dispute(h, 6, "no_show", reason="到了门口没人开门")
    listed = await h.call("GET", "/disputes", as_user="supervisor")
    assert [(d["id"], d["kind"], d["merchant"]) for d in listed] == [
        (rating["id"], "rating", hist.MERCHANT_NAME),
        (no_show["id"], "no_show", hist.MERCHANT_NAME),
    ]
    # staff see what was rated and by whom
    assert listed[0]["rating"] == "basically_satisfied" and listed[0]["rated_by"] == "resident"
    # an operator may see nothing of it, and decides nothing
    await h.call("GET", "/disputes", as_user="operator", expect=403)
    await decide(h, rating["id"], "overturn", as_user="operator", expect=403)
    await decide(h, rating["id"], "overturn", as_user=M, expect=403)

    overturned = await decide(h, rating["id"], "overturn")
    assert overturned["state"] == "overturned" and overturned["note"] == "已核实"
    upheld = await decide(h, no_show["id"], "uphold")
    assert upheld["state"] == "upheld"
    # a decision is final
    twice = await decide(h, rating["id"], "uphold", expect=409)
    assert twice["error_id"] == "dispute_decided" and twice["details"] == {"state": "overturned"}
    await decide(h, 999, "uphold", expect=404)
    assert await h.call("GET", "/disputes", as_user="supervisor") == []
    decided = await h.call("GET", "/disputes?state=all", as_user="demo")
    assert {d["state"] for d in decided} == {"overturned", "upheld"}
    await h.call("GET", "/disputes?state=maybe", as_user="supervisor", expect=422)

    # the scorecard: the overturned rating no longer counts, the upheld no-show does
    card = await h.call("GET", f"/merchants/{hist.MERCHANT}/record?days=7", as_user="supervisor")
    assert card["ratings"] == {"satisfied": 1, "basically_satisfied": 0, "not_satisfied": 0}
    assert (card["rated"], card["satisfied"], card["no_shows"]) == (1, 1, 1)
    assert (card["disputed"], card["disputes_open"], card["upheld"], card["overturned"]) == (
        2,
        0,
        1,
        1,
    )
    orders = {o["ticket_id"]: o["dispute"] for o in card["recent_orders"]}
    assert orders == {1: None, 3: "overturned", 7: None, 6: "upheld"}
    # the figures: rated 4 -> 3, satisfied 3 -> 2, the no-show stands
    after = (await h.call("GET", "/figures?days=7", as_user="supervisor"))["total"]
    assert (after["rated"], after["satisfied"], after["no_shows"]) == (3, 2, 1)
    assert (after["disputed"], after["overturned"]) == (2, 1)
    # the original rating stays in the log, and each step is there with ids only
    async with h.services.store.read() as session:
        rows = (
            await session.execute(
                select(col(Event.name), col(Event.data))
                .where(col(Event.subject) == "ticket", col(Event.subject_id) == "3")
                .order_by(col(Event.seq))
            )
        ).all()
        ticket = await session.get(Ticket, 3)
    names = [n for n, _ in rows]
    assert "ticket.rated" in names and names[-2:] == ["dispute.opened", "dispute.overturned"]
    assert rows[-1][1] == {"dispute_id": rating["id"], "kind": "rating", "merchant_id": 1}
    assert ticket is not None and ticket.rating == "basically_satisfied"


async def test_given_an_overturned_no_show_then_it_stops_counting(harness: Harness) -> None:
    h = await seeded(harness)
    ranking = h.services.dispatch.ranking
    async with h.services.store.read() as session:
        cached = await ranking.stats.get(session, [hist.MERCHANT])
    assert cached[hist.MERCHANT].no_shows == 1  # the ranking holds the record in memory
    opened = await dispute(h, 6, "no_show")
    await decide(h, opened["id"], "overturn")
    card = await h.call("GET", f"/merchants/{hist.MERCHANT}/record?days=7", as_user="supervisor")
    assert (card["no_shows"], card["accepted"], card["overturned"]) == (0, 4, 1)
    total = (await h.call("GET", "/figures?days=7", as_user="supervisor"))["total"]
    assert (total["no_shows"], total["overturned"]) == (0, 1)
    # the ranking's record of the merchant follows: its cache was told after the commit
    async with h.services.store.read() as session:
        cached = await ranking.stats.get(session, [hist.MERCHANT])
    assert cached[hist.MERCHANT].no_shows == 0


async def test_given_a_family_rating_when_the_merchant_reads_anything_then_no_rater_identity(
    harness: Harness,
) -> None:
    h = await seeded(harness)
    async with h.services.store.tx() as tx:
        resident = (await tx.session.execute(select(Resident).limit(1))).scalars().one()
        phones = (
            (
                await tx.session.execute(
                    select(col(ResidentPhone.number)).where(
                        col(ResidentPhone.resident_id) == resident.id
                    )
                )
            )
            .scalars()
            .all()
        )
        await tx.session.execute(
            update(Ticket)
            .where(col(Ticket.id) == 1)
            .values(resident_id=resident.id, rated_by="family")
        )
    await dispute(h, 1, "rating")
    seen = [
        await h.call("GET", "/merchant/ratings", as_user=M),
        await h.call("GET", "/merchant/orders", as_user=M),
        await h.call("GET", f"/merchants/{hist.MERCHANT}/record?days=7", as_user=M),
        await h.call("GET", "/tickets?state=all", as_user=M),
    ]
    text = json.dumps(seen, ensure_ascii=False)
    assert "rated_by" not in text and "family" not in text and "resident" not in text
    assert resident.name not in text
    for number in phones:
        assert number not in text and number[-8:] not in text
    # the rating itself is there (the merchant may dispute it), by day, not by the hour
    mine = {(i["ticket_id"], i["kind"]): i for i in seen[0]}
    assert set(mine) == {(1, "rating"), (3, "rating"), (6, "no_show")}
    assert mine[(1, "rating")]["rating"] == "satisfied"
    assert mine[(1, "rating")]["dispute"]["state"] == "open"
    assert len(mine[(1, "rating")]["day"]) == 10
    # the ticket's detail and timeline (where the rated event names the family) are staff's
    await h.call("GET", "/tickets/1", as_user=M, expect=403)
    await h.call("GET", "/disputes", as_user=M, expect=403)
    # staff still see who rated
    staff = await h.call("GET", "/disputes", as_user="supervisor")
    assert staff[0]["rated_by"] == "family"
