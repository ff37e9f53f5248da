"""A small, known history of tickets for the figures, the charts and the scorecard tests:
ticket, offer and event rows as the dispatch services write them, relative to "now".

Eight tickets over the last twelve local days (Asia/Shanghai), on the demo catalog, grids
and merchants (merchant 1 is 康华大药房(1号店), a pharmacy):

    id  days ago  category   grid  story
    1   0         medicine   BG01  merchant 1 accepts, arrives in 25 min, satisfied
    2   0         groceries  BG02  nobody accepts: unassigned (open)
    3   1         medicine   BG01  merchant 1, arrives in 40 min, basically satisfied
    4   1         meal       BG03  merchant 1 declines; merchant 2 arrives in 20 min, satisfied
    5   1         repair     BG02  merchant 2, arrives in 50 min, not satisfied
    6   3         medicine   BG01  merchant 1 accepts but never comes (no-show); cancelled
    7   3         medicine   BG04  merchant 1, arrives in 30 min, closed without a rating
    8   12        doctor     BG05  merchant 3, arrives in 15 min, satisfied

The expectations below are worked out by hand from this table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from eventlog.clock import LOCAL_TZ

MERCHANT = 1
MERCHANT_NAME = "康华大药房(1号店)"


@dataclass(frozen=True)
class Story:
    """One ticket of the history."""

    id: int
    days_ago: int
    category: str
    grid: str
    merchant: int | None = None
    arrive_min: int | None = None
    rating: str | None = None
    declined_by: int | None = None
    no_show: bool = False
    open: bool = False


STORIES = [
    Story(1, 0, "medicine", "BG01", 1, 25, "satisfied"),
    Story(2, 0, "groceries", "BG02", open=True),
    Story(3, 1, "medicine", "BG01", 1, 40, "basically_satisfied"),
    Story(4, 1, "meal", "BG03", 2, 20, "satisfied", declined_by=1),
    Story(5, 1, "repair", "BG02", 2, 50, "not_satisfied"),
    Story(6, 3, "medicine", "BG01", 1, no_show=True),
    Story(7, 3, "medicine", "BG04", 1, 30, None),
    Story(8, 12, "doctor", "BG05", 3, 15, "satisfied"),
]

#: the last 7 local days, today included
WEEK = {
    "received": 7,
    "closed": 6,
    "solved": 5,
    "rated": 4,
    "satisfied": 3,
    "satisfied_rate": 75.0,
    "no_shows": 1,
}
#: received / closed per day of the week, oldest first (days without tickets are zeros)
WEEK_BY_DAY = [(0, 0), (0, 0), (0, 0), (2, 2), (0, 0), (3, 3), (2, 1)]
WEEK_BY_CATEGORY = {"groceries": (1, 0), "meal": (1, 1), "medicine": (4, 4), "repair": (1, 1)}
WEEK_BY_GRID = {"BG01": (3, 3), "BG02": (2, 1), "BG03": (1, 1), "BG04": (1, 1)}
#: merchant 1 over the week: offers decided 5 (4 taken, one of them a no-show, 1 declined)
MERCHANT_WEEK = {
    "offers": 5,
    "accepted": 4,
    "acceptance_rate": 80.0,
    "no_shows": 1,
    # arrivals 25, 40 and 30 minutes after accepting
    "median_s": 30 * 60.0,
    "p90_s": 38 * 60.0,
    "ratings": {"satisfied": 1, "basically_satisfied": 1, "not_satisfied": 0},
    # newest offer first; tickets 6 and 7 were offered at the same minute (higher id first)
    "recent": [1, 3, 7, 6],
}


@dataclass
class Rows:
    """Rows for the ticket, offer and event tables, in insertion order."""

    tickets: list[dict[str, Any]] = field(default_factory=list)
    offers: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


def created_at(story: Story, now: datetime) -> datetime:
    """When the ticket came in: 08:00 local on its day, or an hour ago if that is earlier."""
    day = now.astimezone(LOCAL_TZ).date() - timedelta(days=story.days_ago)
    at = datetime.combine(day, time(8), tzinfo=LOCAL_TZ)
    midnight = datetime.combine(day, time(0), tzinfo=LOCAL_TZ)
    return max(midnight + timedelta(seconds=1), min(at, now - timedelta(hours=1)))


def history(now: datetime, *, first_id: int = 1) -> Rows:
    """The rows of the history, ticket ids from `first_id` (offer ids are left to the db)."""
    rows = Rows()
    for s in STORIES:
        tid = first_id + s.id - 1
        t0 = created_at(s, now)

        def at(minutes: float, t0: datetime = t0) -> datetime:
            return t0 + timedelta(minutes=minutes)

        def event(name: str, minutes: float, tid: int = tid, **data: Any) -> None:
            rows.events.append(
                {
                    "name": name,
                    "subject": "ticket",
                    "subject_id": str(tid),
                    "occurred_at": at(minutes),
                    "actor": "system",
                    "data": data,
                }
            )

        def offer(merchant: int, state: str, decided: float, tid: int = tid) -> None:
            rows.offers.append(
                {
                    "ticket_id": tid,
                    "merchant_id": merchant,
                    "rank": len([o for o in rows.offers if o["ticket_id"] == tid]),
                    "state": state,
                    "call_ref": f"seed-{tid}-{merchant}",
                    "phone": f"+86139{merchant:08d}",
                    "placed_at": at(decided - 1),
                    "decided_at": at(decided),
                }
            )

        ticket: dict[str, Any] = {
            "id": tid,
            "category_code": s.category,
            "state": "closed",
            "created_at": t0,
            "deadline_at": at(120),
            "description": "",
            **dict.fromkeys(
                (
                    "merchant_id",
                    "accepted_at",
                    "arrived_at",
                    "completed_at",
                    "rated_at",
                    "closed_at",
                    "rating",
                    "rated_by",
                )
            ),
        }
        event(
            "ticket.created",
            0,
            category=s.category,
            grid=s.grid,
            urgency="routine",
            deadline_at=at(120).isoformat(),
        )
        if s.open:
            ticket["state"] = "unassigned"
            event("ticket.unassigned", 5)
        elif s.no_show:
            assert s.merchant is not None
            offer(s.merchant, "no_show", 2)
            event("ticket.accepted", 2, merchant_id=s.merchant)
            event("ticket.no_show", 120, merchant_id=s.merchant)
            event("ticket.cancelled", 130, reason="resident cancelled")
            ticket["state"] = "cancelled"
            ticket["closed_at"] = at(130)
        else:
            assert s.merchant is not None and s.arrive_min is not None
            if s.declined_by is not None:
                offer(s.declined_by, "declined", 1)
            offer(s.merchant, "accepted", 2)
            event("ticket.accepted", 2, merchant_id=s.merchant)
            event("ticket.arrived", 2 + s.arrive_min, merchant_id=s.merchant)
            event("ticket.completed", 70, merchant_id=s.merchant)
            ticket.update(
                merchant_id=s.merchant,
                accepted_at=at(2),
                arrived_at=at(2 + s.arrive_min),
                completed_at=at(70),
                closed_at=at(90),
            )
            if s.rating is not None:
                event("ticket.rated", 80, rating=s.rating, merchant_id=s.merchant)
                ticket.update(rating=s.rating, rated_at=at(80), rated_by="resident")
            event("ticket.closed", 90, rated=s.rating is not None)
        rows.tickets.append(ticket)
    rows.events.sort(key=lambda e: e["occurred_at"])
    return rows


async def insert_history(session: Any, rows: Rows) -> None:
    """Write the rows through an async session; on PostgreSQL move the ticket id sequence
    past them so tickets made later in the test get fresh ids."""
    from sqlalchemy import insert, text

    from dispatch.models import Offer, Ticket
    from eventlog.models import Event

    await session.execute(insert(Ticket), rows.tickets)
    await session.execute(insert(Offer), rows.offers)
    await session.execute(insert(Event), rows.events)
    if session.bind.dialect.name == "postgresql":
        await session.execute(
            text(
                "SELECT setval(pg_get_serial_sequence('ticket', 'id'),"
                " (SELECT max(id) FROM ticket))"
            )
        )
