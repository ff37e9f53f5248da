"""A booked visit's window (pure): the ticket's local date and times as moments, and what
the calls say of it. Read by the ranking, the offer call, the reminders and the booking.

A ticket's window is `booked_on` from `booked_from` to `booked_until`, local times in
Asia/Shanghai on one day (`booked_until` "24:00" is not allowed: the window ends by 23:59).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from dispatch.models import Ticket
from eventlog.clock import LOCAL_TZ


@dataclass(frozen=True, slots=True)
class Window:
    """A booked window as aware moments."""

    start: datetime
    end: datetime

    @property
    def day(self) -> date:
        """The local date."""
        return self.start.astimezone(LOCAL_TZ).date()

    def public(self) -> dict[str, str]:
        """The window on the API: date, from, until (local)."""
        start, end = self.start.astimezone(LOCAL_TZ), self.end.astimezone(LOCAL_TZ)
        return {"date": start.date().isoformat(), "from": f"{start:%H:%M}",
                "until": f"{end:%H:%M}"}  # fmt: skip


def window(on: date, start: time, end: time) -> Window:
    """The window of a local date and two local times."""
    return Window(
        datetime.combine(on, start, tzinfo=LOCAL_TZ), datetime.combine(on, end, tzinfo=LOCAL_TZ)
    )


def window_of(ticket: Ticket) -> Window | None:
    """A ticket's booked window, None for a visit as soon as possible."""
    if ticket.booked_on is None or ticket.booked_from is None or ticket.booked_until is None:
        return None
    return window(ticket.booked_on, ticket.booked_from, ticket.booked_until)


def slot_context(ticket: Ticket) -> dict[str, Any]:
    """What the flows read of a booked window: `slot_weekday` "1".."7" (ISO; one prompt
    per weekday, as every backend renders it alike), `slot_day` (a date), `slot_start` and
    `slot_end` (local times). Empty for a visit as soon as possible."""
    found = window_of(ticket)
    if found is None:
        return {}
    start, end = found.start.astimezone(LOCAL_TZ), found.end.astimezone(LOCAL_TZ)
    return {
        "slot_weekday": str(start.isoweekday()),
        "slot_day": start.date(),
        "slot_start": start.time(),
        "slot_end": end.time(),
    }
