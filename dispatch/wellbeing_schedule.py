"""When a resident's wellbeing round is due, and how its calls are named (pure rules of
`dispatch.wellbeing`, no I/O)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from dispatch.models import WellbeingPlan
from eventlog.clock import LOCAL_TZ


def round_ref(round_id: int | None, leg: str) -> str:
    """A round's call ref: `wb-3-1` (the resident, try 1), `wb-3-c0` (contact 0),
    `wb-3-r1` (the report call, try 1)."""
    return f"wb-{round_id}-{leg}"


def round_id_of(ref: str) -> int | None:
    """The round id in a wellbeing call's ref, else None."""
    parts = ref.split(".", 1)[0].split("-")
    return int(parts[1]) if len(parts) == 3 and parts[0] == "wb" and parts[1].isdigit() else None


def leg_of(ref: str) -> str:
    """Which call of the round a ref names: `1` (a try), `c0` (a contact), `r1` (a report)."""
    return ref.split(".", 1)[0].split("-")[2]


def is_away(plan: WellbeingPlan, day: date) -> dict[str, str] | None:
    """The away period `day` falls in, or None."""
    iso = day.isoformat()
    for period in plan.away:
        if period.get("from", "") <= iso <= period.get("until", ""):
            return period
    return None


def due_at(plan: WellbeingPlan, day: date) -> datetime:
    """When the day's call is due: the end of the window (local time)."""
    return datetime.combine(day, plan.window_end, tzinfo=LOCAL_TZ)


def next_due(plan: WellbeingPlan, after: datetime, *, today_done: bool) -> datetime | None:
    """The next time a round is due from `after` on (None: no weekday chosen)."""
    today = after.astimezone(LOCAL_TZ).date()
    for offset in range(8):
        day = today + timedelta(days=offset)
        if day.isoweekday() not in plan.days or (offset == 0 and today_done):
            continue
        return max(due_at(plan, day), after) if offset == 0 else due_at(plan, day)
    return None
