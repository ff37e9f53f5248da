"""The figures from the event log: a synthetic year with the seed county's proportions
(8,569 received, 99.4% closed, 99.6% solved, 97.2% rated, 99.2% satisfied) comes back
exactly, from the pure report, from the database on both dialects and from the API."""

from __future__ import annotations

import random
from dataclasses import asdict
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import insert

from dispatch.figures import GROUPINGS, Ev, Report, load_report, report
from eventlog.clock import LOCAL_TZ
from eventlog.models import Event
from tests import history as hist
from tests.conftest import MORNING, Harness

BREAKDOWNS = ("day", "category", "grid")

YEAR_START = datetime(2025, 1, 1, tzinfo=LOCAL_TZ)
YEAR_END = datetime(2026, 1, 1, tzinfo=LOCAL_TZ)
RECEIVED, SOLVED, CANCELLED, RATED, SATISFIED, BASIC = 8569, 8484, 34, 8246, 7900, 280
CATEGORIES = ["medicine"] * 5 + ["groceries"] * 3 + ["meal", "repair", "doctor", "water"]


def synthetic_year(seed: int = 5) -> list[Ev]:
    """Events of one year of tickets; ticket i's fate follows fixed counts, times vary."""
    rng = random.Random(seed)
    events: list[tuple[datetime, Ev]] = []
    seconds = int((YEAR_END - YEAR_START).total_seconds()) - 86400 * 2
    for i in range(RECEIVED):
        tid = str(i + 1)
        created = YEAR_START + timedelta(seconds=rng.randrange(seconds))
        deadline = created + timedelta(minutes=60)
        merchant = rng.randint(1, 40)

        def add(
            name: str, after_s: float, tid: str = tid, created: datetime = created, **data: Any
        ) -> datetime:
            at = created + timedelta(seconds=after_s)
            events.append((at, Ev(name, tid, at, data)))
            return at

        add(
            "ticket.created",
            0,
            category=rng.choice(CATEGORIES),
            grid=f"BG0{rng.randint(1, 6)}",
            deadline_at=deadline.isoformat(),
        )
        if i < SOLVED:
            add("ticket.accepted", rng.randint(30, 600), merchant_id=merchant)
            late = i % 50 == 0
            add("ticket.arrived", 3700 if late else rng.randint(900, 3000))
            if late:
                add("ticket.escalated", 3600, level="operator")
            add("ticket.completed", 4000)
            if i < RATED:
                rating = (
                    "satisfied"
                    if i < SATISFIED
                    else "basically_satisfied"
                    if i < SATISFIED + BASIC
                    else "not_satisfied"
                )
                add("ticket.rated", 5000, rating=rating)
            add("ticket.closed", 5001, rated=i < RATED)
        elif i < SOLVED + CANCELLED:
            add("ticket.cancelled", 120, reason="resident cancelled")
        else:
            add("ticket.accepted", 300, merchant_id=merchant)
            add("ticket.no_show", 3600, merchant_id=merchant)
    events.sort(key=lambda pair: pair[0])
    return [e for _, e in events]


def check_seed_figures(total: dict[str, Any]) -> None:
    assert total["received"] == 8569
    assert total["closed"] == 8518
    assert total["closure_rate"] == 99.4
    assert total["solved_rate"] == 99.6
    assert total["rated_rate"] == 97.2
    assert total["satisfied_rate"] == 99.2
    assert total["no_shows"] == RECEIVED - SOLVED - CANCELLED
    assert total["escalated"] == len(range(0, SOLVED, 50))
    assert total["deadlines_met"] == SOLVED - len(range(0, SOLVED, 50))


def test_given_the_seed_countys_year_when_reporting_then_the_figures_come_back_exactly() -> None:
    rep = report(synthetic_year(), start=YEAR_START, end=YEAR_END, by="category")
    total = rep.public()["total"]
    check_seed_figures(total)
    assert sum(g.received for g in rep.groups) == RECEIVED
    assert {g.key for g in rep.groups} == set(CATEGORIES)
    assert total["time_to_accept_s"] is not None and 30 <= total["time_to_accept_s"] <= 600
    csv_lines = rep.csv().splitlines()
    assert csv_lines[0].startswith("key,received,closed") and csv_lines[-1].startswith("total")


def test_given_a_half_year_when_reporting_then_only_its_tickets_count() -> None:
    events = synthetic_year()
    half = datetime(2025, 7, 1, tzinfo=LOCAL_TZ)
    first = report(events, start=YEAR_START, end=half).total.received
    second = report(events, start=half, end=YEAR_END).total.received
    assert first + second == RECEIVED and 0 < first < RECEIVED


def test_given_calls_when_reporting_then_the_call_centre_shares_follow() -> None:
    at = YEAR_START + timedelta(days=3)
    events = []
    for i in range(10):
        cid = f"c{i}"
        events.append(Ev("call.offered", cid, at, {}))
        events.append(Ev("call.queued", cid, at, {}))
        if i < 8:
            events.append(Ev("call.connected", cid, at, {"wait_s": [10, 100, 200][i % 3]}))
        else:
            events.append(Ev("call.abandoned", cid, at, {}))
    calls = report(events, start=YEAR_START, end=YEAR_END).calls
    # waits 10,100,200,10,100,200,10,100 -> 3 within 60 s, 6 within 180 s of 10 queued
    assert (calls.answered_60s_rate, calls.answered_180s_rate, calls.abandoned_rate) == (
        30.0,
        60.0,
        20.0,
    )


async def test_given_a_year_in_the_log_when_a_supervisor_asks_then_the_api_reports_it(
    harness: Harness,
) -> None:
    h = harness
    rows = [
        {
            "name": e.name,
            "subject": "ticket",
            "subject_id": e.subject_id,
            "occurred_at": e.occurred_at,
            "actor": "system",
            "data": e.data,
        }
        for e in synthetic_year()
    ]
    async with h.services.store.read() as session:
        for i in range(0, len(rows), 5000):
            await session.execute(insert(Event), rows[i : i + 5000])
    body = await h.call(
        "GET", "/figures?from=2025-01-01&to=2025-12-31&by=grid", as_user="supervisor"
    )
    check_seed_figures(body["total"])
    assert {g["key"] for g in body["groups"]} == {f"BG0{i}" for i in range(1, 7)}
    await h.call("GET", "/figures?from=2025-01-01&to=2025-12-31", expect=403)
    bad = await h.call(
        "GET", "/figures?from=2025-13-01&to=2025-12-31", as_user="supervisor", expect=422
    )
    assert bad["error_id"] == "invalid_input"


# -- breakdowns: by day, category and grid ----------------------------------------------------
COUNTS = ("received", "closed", "solved", "rated", "satisfied", "not_satisfied", "no_shows")


def check_groups_add_up(rep: Report) -> None:
    """Every count summed over the groups is the period's total."""
    for name in COUNTS:
        assert sum(getattr(g, name) for g in rep.groups) == getattr(rep.total, name), name


def week_of_history() -> tuple[list[Ev], datetime, datetime]:
    """The known history's events and the last 7 local days up to MORNING."""
    rows = hist.history(MORNING)
    events = [Ev(e["name"], e["subject_id"], e["occurred_at"], e["data"]) for e in rows.events]
    today = MORNING.astimezone(LOCAL_TZ).date()
    start = datetime.combine(today - timedelta(days=6), time(0), tzinfo=LOCAL_TZ)
    return events, start, start + timedelta(days=7)


def test_given_the_known_history_when_reporting_by_day_then_each_local_day_has_its_counts() -> None:
    events, start, end = week_of_history()
    rep = report(events, start=start, end=end, by="day")
    days = [(start + timedelta(days=i)).date().isoformat() for i in range(7)]
    assert [g.key for g in rep.groups] == days
    assert [(g.received, g.closed) for g in rep.groups] == hist.WEEK_BY_DAY
    assert {k: getattr(rep.total, k) for k in hist.WEEK if k != "satisfied_rate"} == {
        k: v for k, v in hist.WEEK.items() if k != "satisfied_rate"
    }
    assert rep.total.satisfied_rate == hist.WEEK["satisfied_rate"]
    # yesterday: 2 of 3 rated visits satisfied; today 1 of 1
    assert [g.satisfied_rate for g in rep.groups][-2:] == [66.7, 100.0]
    check_groups_add_up(rep)


def test_given_the_known_history_when_reporting_by_category_and_grid_then_counts_are_exact() -> (
    None
):
    events, start, end = week_of_history()
    by_category = report(events, start=start, end=end, by="category")
    assert {g.key: (g.received, g.closed) for g in by_category.groups} == hist.WEEK_BY_CATEGORY
    by_grid = report(events, start=start, end=end, by="grid")
    assert {g.key: (g.received, g.closed) for g in by_grid.groups} == hist.WEEK_BY_GRID
    for rep in (by_category, by_grid):
        assert rep.total == report(events, start=start, end=end).total
        check_groups_add_up(rep)


def test_given_a_day_boundary_when_grouping_by_day_then_the_shanghai_date_counts() -> None:
    # 23:59 and 00:01 Shanghai time are 15:59 and 16:01 UTC of the same UTC day
    late = datetime(2025, 3, 1, 23, 59, tzinfo=LOCAL_TZ)
    events = [
        Ev("ticket.created", "a", late, {"category": "meal", "grid": "BG01"}),
        Ev("ticket.created", "b", late + timedelta(minutes=2), {"category": "meal"}),
    ]
    start = datetime(2025, 3, 1, tzinfo=LOCAL_TZ)
    rep = report(events, start=start, end=start + timedelta(days=3), by="day")
    assert [(g.key, g.received) for g in rep.groups] == [
        ("2025-03-01", 1),
        ("2025-03-02", 1),
        ("2025-03-03", 0),
    ]


def test_given_the_seed_countys_year_when_grouped_every_way_then_groups_add_up_to_the_total() -> (
    None
):
    events = synthetic_year()
    for by in GROUPINGS:
        rep = report(events, start=YEAR_START, end=YEAR_END, by=by)
        check_seed_figures(asdict(rep.total))
        check_groups_add_up(rep)
    by_day = report(events, start=YEAR_START, end=YEAR_END, by="day")
    assert len(by_day.groups) == 365 and by_day.groups[0].key == "2025-01-01"


async def test_given_the_history_in_the_database_when_loading_by_day_category_grid_then_exact(
    harness: Harness,
) -> None:
    async with harness.services.store.read() as session:
        await hist.insert_history(session, hist.history(MORNING))
    _, start, end = week_of_history()
    async with harness.services.store.read() as session:
        reps = {by: await load_report(session, start=start, end=end, by=by) for by in BREAKDOWNS}
    assert [(g.received, g.closed) for g in reps["day"].groups] == hist.WEEK_BY_DAY
    assert {g.key: (g.received, g.closed) for g in reps["category"].groups} == (
        hist.WEEK_BY_CATEGORY
    )
    assert {g.key: (g.received, g.closed) for g in reps["grid"].groups} == hist.WEEK_BY_GRID
    for rep in reps.values():
        assert rep.total.received == hist.WEEK["received"]
        assert rep.total.satisfied_rate == hist.WEEK["satisfied_rate"]
        check_groups_add_up(rep)
