"""The figures the community is judged by, computed from the event log alone.

Mutable ticket columns are never read: a report for last year gives the same numbers
today and next year, and replays from an export.

A report covers the tickets received (`ticket.created`) in [start, end); what happened to
them is read from every later event, so a ticket received on 31 December and closed on
2 January counts as closed. Definitions:

- received (受理): tickets created in the period.
- closed (办结): received tickets that were closed (`ticket.closed`) or cancelled
  (`ticket.cancelled`); closure rate = closed / received.
- solved (解决): closed tickets whose visit was completed (`ticket.completed`); a cancelled
  ticket, or one closed without a completed visit, is closed but not solved;
  solved rate (解决率) = solved / closed.
- rated (评价): solved tickets rated by the resident or a family contact (`ticket.rated`);
  rated rate (评价率) = rated / solved (only a completed visit gets a survey call).
- satisfied rate (满意率) = (satisfied + basically satisfied) / rated.
- time to accept / arrive: median seconds from `ticket.created` to the first
  `ticket.accepted` / `ticket.arrived`.
- deadlines met: solved tickets whose merchant arrived (or, without an arrival report,
  completed) at or before the deadline the ticket was created with; rate over solved.
- escalated: tickets with at least one `ticket.escalated`; to_supervisor: those that
  reached the supervisor. no_shows: `ticket.no_show`s; disputed, overturned: `dispute.*`.

Call-centre figures cover inbound hotline calls offered (`call.offered`) in the period:
answered within 60 s / 180 s is the share of calls that waited for an operator
(`call.queued`) and were connected (`call.connected`, its `wait_s`) within that time;
abandoned share is the share of offered calls that ended as `call.abandoned`.

Emergencies cover the offered calls flagged `emergency.flagged`: time to a human is from
`call.offered` to `emergency.taken` (an operator answered, an on-call phone or a contact
pressed 1, or the 120 call was answered), its median and 90th percentile over the taken
ones; answered within 15 s is the share of emergencies taken that fast; overflows are
those that reached the on-call list or the contacts (`emergency.overflow` or
`emergency.help_called`); 120 connections count `emergency.connected_120`.

Wellbeing calls (`dispatch.wellbeing`) cover the rounds due (`wellbeing.due`) on the
period's local days, per day and in all: checked in (a key on the call, or a hotline
call in the window: `checked_in_by_hotline`), away, asked for help on the call, missed
(every try failed: the care circle was alerted), taken by a contact (and by what kind of
contact: family, neighbour, grid_worker, ...), escalated to the operators; the time from
the missed check-in to a human contact is from `wellbeing.missed` to `wellbeing.taken`
(a contact pressed 1), its median and 90th percentile.

Rates are percentages rounded to one decimal, None when the denominator is zero.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from eventlog.clock import LOCAL_TZ
from eventlog.models import Event

#: a merchant's dispute of a rating or no-show, and an overturned one (it stops counting)
DISPUTE_EVENTS = ("dispute.opened", "dispute.overturned")
TICKET_EVENTS = (
    "ticket.created",
    "ticket.accepted",
    "ticket.arrived",
    "ticket.completed",
    "ticket.rated",
    "ticket.closed",
    "ticket.cancelled",
    "ticket.escalated",
    "ticket.no_show",
    *DISPUTE_EVENTS,
)
CALL_EVENTS = ("call.offered", "call.queued", "call.connected", "call.abandoned")
EMERGENCY_EVENTS = (
    "emergency.flagged",
    "emergency.taken",
    "emergency.overflow",
    "emergency.help_called",
    "emergency.connected_120",
)
WELLBEING_EVENTS = (
    "wellbeing.due",
    "wellbeing.checked_in",
    "wellbeing.away",
    "wellbeing.help",
    "wellbeing.missed",
    "wellbeing.taken",
    "wellbeing.escalated",
)
#: the Chinese hotline standard's answer time for an emergency
EMERGENCY_ANSWER_S = 15.0
GROUPINGS = ("day", "category", "grid", "merchant", "month")
SATISFIED = frozenset({"satisfied", "basically_satisfied"})
#: the survey's answers, best first (keys 1, 2, 3)
RATINGS = ("satisfied", "basically_satisfied", "not_satisfied")


@dataclass(frozen=True, slots=True)
class Ev:
    """The part of an event row the figures read."""

    name: str
    subject_id: str
    occurred_at: datetime
    data: dict[str, Any]


@dataclass(slots=True)
class TicketFacts:
    """One ticket's story as the event log tells it."""

    id: str
    created_at: datetime
    category: str = ""
    grid: str = ""
    deadline_at: datetime | None = None
    merchant_id: int | None = None
    accepted_at: datetime | None = None
    arrived_at: datetime | None = None
    completed_at: datetime | None = None
    closed: bool = False
    rating: str | None = None
    escalation: int = 0
    no_shows: int = 0
    disputed: int = 0
    overturned: int = 0


def pct(part: int, whole: int) -> float | None:
    """A percentage rounded to one decimal; None when the whole is zero."""
    return None if whole == 0 else round(100.0 * part / whole, 1)


def _median(values: Sequence[float]) -> float | None:
    return None if not values else round(statistics.median(values), 1)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation, rounded to 0.1; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo), 1)


@dataclass(slots=True)
class Figures:
    """The figures of one group (or of the whole period)."""

    key: str
    received: int = 0
    closed: int = 0
    closure_rate: float | None = None
    solved: int = 0
    solved_rate: float | None = None
    rated: int = 0
    rated_rate: float | None = None
    satisfied: int = 0
    satisfied_rate: float | None = None
    not_satisfied: int = 0
    time_to_accept_s: float | None = None
    time_to_arrive_s: float | None = None
    deadlines_met: int = 0
    deadlines_met_rate: float | None = None
    escalated: int = 0
    to_supervisor: int = 0
    no_shows: int = 0
    disputed: int = 0
    overturned: int = 0


@dataclass(slots=True)
class CallFigures:
    """The call-centre figures of the period."""

    offered: int = 0
    queued: int = 0
    answered_60s: int = 0
    answered_60s_rate: float | None = None
    answered_180s: int = 0
    answered_180s_rate: float | None = None
    abandoned: int = 0
    abandoned_rate: float | None = None


@dataclass(slots=True)
class EmergencyFigures:
    """The emergency calls of the period."""

    emergencies: int = 0
    taken: int = 0
    time_to_human_median_s: float | None = None
    time_to_human_p90_s: float | None = None
    answered_15s: int = 0
    answered_15s_rate: float | None = None
    overflows: int = 0
    connected_120: int = 0


@dataclass(slots=True)
class WellbeingFigures:
    """One local day's wellbeing rounds (or the period's, `key` "total")."""

    key: str
    due: int = 0
    checked_in: int = 0
    checked_in_by_hotline: int = 0
    away: int = 0
    asked_help: int = 0
    missed: int = 0
    taken: int = 0
    #: contact kind -> rounds a contact of that kind took
    taken_by: dict[str, int] = field(default_factory=dict)
    escalated: int = 0
    missed_to_human_median_s: float | None = None
    missed_to_human_p90_s: float | None = None


@dataclass(slots=True)
class WellbeingReport:
    """The wellbeing rounds of a period: in all, and per local day."""

    total: WellbeingFigures = field(default_factory=lambda: WellbeingFigures("total"))
    days: list[WellbeingFigures] = field(default_factory=list)


@dataclass(slots=True)
class Report:
    """A period's figures: the total, optional groups, and the call centre."""

    start: datetime
    end: datetime
    by: str | None
    total: Figures
    groups: list[Figures] = field(default_factory=list)
    calls: CallFigures = field(default_factory=CallFigures)
    emergencies: EmergencyFigures = field(default_factory=EmergencyFigures)
    wellbeing: WellbeingReport = field(default_factory=WellbeingReport)

    def public(self) -> dict[str, Any]:
        """JSON shape for the API."""
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "by": self.by,
            "total": asdict(self.total),
            "groups": [asdict(g) for g in self.groups],
            "calls": asdict(self.calls),
            "emergencies": asdict(self.emergencies),
            "wellbeing": asdict(self.wellbeing),
        }

    def csv(self) -> str:
        """One row per group (the total last), for spreadsheets."""
        out = io.StringIO()
        names = list(asdict(self.total))
        writer = csv.writer(out)
        writer.writerow(names)
        for row in [*self.groups, self.total]:
            values = asdict(row)
            writer.writerow(["" if values[n] is None else values[n] for n in names])
        return out.getvalue()


def ticket_facts(events: Iterable[Ev], *, start: datetime, end: datetime) -> list[TicketFacts]:
    """The tickets received in [start, end) and what became of them (events in seq order)."""
    facts: dict[str, TicketFacts] = {}
    for e in events:
        if e.name == "ticket.created":
            if start <= e.occurred_at < end:
                deadline = e.data.get("deadline_at")
                facts[e.subject_id] = TicketFacts(
                    id=e.subject_id,
                    created_at=e.occurred_at,
                    category=str(e.data.get("category") or ""),
                    grid=str(e.data.get("grid") or ""),
                    deadline_at=datetime.fromisoformat(deadline) if deadline else None,
                )
            continue
        t = facts.get(e.subject_id)
        if t is None:
            continue
        match e.name:
            case "ticket.accepted":
                t.merchant_id = e.data.get("merchant_id")
                t.accepted_at = t.accepted_at or e.occurred_at
            case "ticket.arrived":
                t.arrived_at = t.arrived_at or e.occurred_at
            case "ticket.completed":
                t.completed_at = e.occurred_at
            case "ticket.rated":
                t.rating = e.data.get("rating")
            case "ticket.closed" | "ticket.cancelled":
                t.closed = True
            case "ticket.escalated":
                level = 2 if e.data.get("level") == "supervisor" else 1
                t.escalation = max(t.escalation, level)
            case "ticket.no_show":
                t.no_shows += 1
                t.merchant_id = None
            case "dispute.opened":
                t.disputed += 1
            case "dispute.overturned":  # the rating or no-show stops counting (it stays logged)
                t.overturned += 1
                t.rating = None if e.data.get("kind") == "rating" else t.rating
                t.no_shows -= e.data.get("kind") == "no_show" and t.no_shows > 0
    return list(facts.values())


def figures(key: str, tickets: Iterable[TicketFacts]) -> Figures:
    """The figures of a set of tickets."""
    f = Figures(key)
    accept_s: list[float] = []
    arrive_s: list[float] = []
    for t in tickets:
        f.received += 1
        if t.accepted_at is not None:
            accept_s.append((t.accepted_at - t.created_at).total_seconds())
        if t.arrived_at is not None:
            arrive_s.append((t.arrived_at - t.created_at).total_seconds())
        f.escalated += t.escalation > 0
        f.to_supervisor += t.escalation > 1
        f.no_shows += t.no_shows
        f.disputed, f.overturned = f.disputed + t.disputed, f.overturned + t.overturned
        if not t.closed:
            continue
        f.closed += 1
        if t.completed_at is None:
            continue
        f.solved += 1
        reached = t.arrived_at or t.completed_at
        if t.deadline_at is not None and reached <= t.deadline_at:
            f.deadlines_met += 1
        if t.rating is not None:
            f.rated += 1
            f.satisfied += t.rating in SATISFIED
            f.not_satisfied += t.rating == "not_satisfied"
    f.closure_rate = pct(f.closed, f.received)
    f.solved_rate = pct(f.solved, f.closed)
    f.rated_rate = pct(f.rated, f.solved)
    f.satisfied_rate = pct(f.satisfied, f.rated)
    f.deadlines_met_rate = pct(f.deadlines_met, f.solved)
    f.time_to_accept_s = _median(accept_s)
    f.time_to_arrive_s = _median(arrive_s)
    return f


def call_figures(events: Iterable[Ev], *, start: datetime, end: datetime) -> CallFigures:
    """The call-centre figures of the inbound calls offered in [start, end)."""
    offered: set[str] = set()
    queued: set[str] = set()
    waits: dict[str, float] = {}
    abandoned: set[str] = set()
    for e in events:
        if e.name == "call.offered":
            if start <= e.occurred_at < end:
                offered.add(e.subject_id)
        elif e.subject_id not in offered:
            continue
        elif e.name == "call.queued":
            queued.add(e.subject_id)
        elif e.name == "call.connected":
            waits.setdefault(e.subject_id, float(e.data.get("wait_s") or 0.0))
        elif e.name == "call.abandoned":
            abandoned.add(e.subject_id)
    c = CallFigures(offered=len(offered), queued=len(queued), abandoned=len(abandoned))
    c.answered_60s = sum(1 for k, w in waits.items() if k in queued and w <= 60)
    c.answered_180s = sum(1 for k, w in waits.items() if k in queued and w <= 180)
    c.answered_60s_rate = pct(c.answered_60s, c.queued)
    c.answered_180s_rate = pct(c.answered_180s, c.queued)
    c.abandoned_rate = pct(c.abandoned, c.offered)
    return c


def emergency_figures(events: Iterable[Ev], *, start: datetime, end: datetime) -> EmergencyFigures:
    """The emergency figures of the inbound calls offered in [start, end)."""
    offered: dict[str, datetime] = {}
    flagged: set[str] = set()
    taken: dict[str, float] = {}
    overflow: set[str] = set()
    to_120: set[str] = set()
    for e in events:
        if e.name == "call.offered":
            if start <= e.occurred_at < end:
                offered[e.subject_id] = e.occurred_at
        elif e.subject_id not in offered:
            continue
        elif e.name == "emergency.flagged":
            flagged.add(e.subject_id)
        elif e.name == "emergency.taken":
            seconds = (e.occurred_at - offered[e.subject_id]).total_seconds()
            taken.setdefault(e.subject_id, seconds)
        elif e.name in ("emergency.overflow", "emergency.help_called"):
            overflow.add(e.subject_id)
        elif e.name == "emergency.connected_120":
            to_120.add(e.subject_id)
    waits = [w for k, w in taken.items() if k in flagged]
    f = EmergencyFigures(
        emergencies=len(flagged),
        taken=len(waits),
        time_to_human_median_s=_median(waits),
        time_to_human_p90_s=percentile(waits, 90),
        answered_15s=sum(1 for w in waits if w <= EMERGENCY_ANSWER_S),
        overflows=len(overflow & flagged),
        connected_120=len(to_120 & flagged),
    )
    f.answered_15s_rate = pct(f.answered_15s, f.emergencies)
    return f


def wellbeing_figures(events: Iterable[Ev], *, start: datetime, end: datetime) -> WellbeingReport:
    """The wellbeing rounds due on the local days of [start, end) (events in seq order)."""
    days = local_days(start, end)
    day_of: dict[str, str] = {}
    missed: dict[str, datetime] = {}
    out = {d: WellbeingFigures(d) for d in days}
    waits: dict[str, list[float]] = defaultdict(list)
    for e in events:
        rnd = str(e.data.get("round_id"))
        if e.name == "wellbeing.due":
            if e.data.get("day") in out:
                day_of[rnd] = str(e.data["day"])
                out[day_of[rnd]].due += 1
            continue
        if rnd not in day_of:
            continue
        f = out[day_of[rnd]]
        if e.name == "wellbeing.checked_in":
            f.checked_in += 1
            f.checked_in_by_hotline += e.data.get("via") == "hotline"
        elif e.name == "wellbeing.away":
            f.away += 1
        elif e.name == "wellbeing.help":
            f.asked_help += 1
        elif e.name == "wellbeing.missed":
            f.missed += 1
            missed[rnd] = e.occurred_at
        elif e.name == "wellbeing.taken":
            f.taken += 1
            kind = str(e.data.get("kind") or "-")
            f.taken_by[kind] = f.taken_by.get(kind, 0) + 1
            if rnd in missed:
                waits[f.key].append((e.occurred_at - missed[rnd]).total_seconds())
        elif e.name == "wellbeing.escalated":
            f.escalated += 1
    total = WellbeingFigures("total")
    for f in out.values():
        f.missed_to_human_median_s = _median(waits[f.key])
        f.missed_to_human_p90_s = percentile(waits[f.key], 90)
        for name in ("due", "checked_in", "checked_in_by_hotline", "away", "asked_help",
                     "missed", "taken", "escalated"):  # fmt: skip
            setattr(total, name, getattr(total, name) + getattr(f, name))
        for kind, n in f.taken_by.items():
            total.taken_by[kind] = total.taken_by.get(kind, 0) + n
    every = [w for ws in waits.values() for w in ws]
    total.missed_to_human_median_s = _median(every)
    total.missed_to_human_p90_s = percentile(every, 90)
    return WellbeingReport(total=total, days=[out[d] for d in days])


def _group_key(t: TicketFacts, by: str) -> str:
    if by == "day":
        return t.created_at.astimezone(LOCAL_TZ).date().isoformat()
    if by == "category":
        return t.category or "-"
    if by == "grid":
        return t.grid or "-"
    if by == "merchant":
        return str(t.merchant_id) if t.merchant_id is not None else "-"
    return t.created_at.astimezone(LOCAL_TZ).strftime("%Y-%m")


def local_days(start: datetime, end: datetime) -> list[str]:
    """Every Asia/Shanghai day (YYYY-MM-DD) that overlaps [start, end), in order."""
    day = start.astimezone(LOCAL_TZ).date()
    out: list[str] = []
    while datetime.combine(day, time(0), tzinfo=LOCAL_TZ) < end:
        out.append(day.isoformat())
        day += timedelta(days=1)
    return out


def report(
    events: Iterable[Ev], *, start: datetime, end: datetime, by: str | None = None
) -> Report:
    """The report of the period from events in seq order.

    Groups are the keys met, sorted; `by="day"` lists every local day of the period, the
    quiet ones with zeros, so a chart by day has no gaps.
    """
    if by is not None and by not in GROUPINGS:
        raise ValueError(f"by must be one of {', '.join(GROUPINGS)}")
    ticket_events: list[Ev] = []
    call_events: list[Ev] = []
    wellbeing_events: list[Ev] = []
    for e in events:
        is_call = e.name.startswith(("call.", "emergency."))
        if e.name.startswith("wellbeing."):
            wellbeing_events.append(e)
        else:
            (call_events if is_call else ticket_events).append(e)
    tickets = ticket_facts(ticket_events, start=start, end=end)
    out = Report(start, end, by, total=figures("total", tickets))
    if by is not None:
        groups: dict[str, list[TicketFacts]] = defaultdict(list)
        for t in tickets:
            groups[_group_key(t, by)].append(t)
        # "-" (no grid, no merchant) goes last
        keys = (
            local_days(start, end) if by == "day" else sorted(groups, key=lambda k: (k == "-", k))
        )
        out.groups = [figures(key, groups.get(key, [])) for key in keys]
    out.calls = call_figures(call_events, start=start, end=end)
    out.emergencies = emergency_figures(call_events, start=start, end=end)
    out.wellbeing = wellbeing_figures(wellbeing_events, start=start, end=end)
    return out


async def load_report(
    session: AsyncSession, *, start: datetime, end: datetime, by: str | None = None
) -> Report:
    """Read the events a report needs (in seq order) and compute it."""
    rows = await session.execute(
        select(col(Event.name), col(Event.subject_id), col(Event.occurred_at), col(Event.data))
        .where(
            col(Event.name).in_(
                [*TICKET_EVENTS, *CALL_EVENTS, *EMERGENCY_EVENTS, *WELLBEING_EVENTS]
            ),
            col(Event.occurred_at) >= start,
        )
        .order_by(col(Event.seq))
    )
    return report((Ev(*row) for row in rows), start=start, end=end, by=by)


async def load_emergency_figures(
    session: AsyncSession, *, start: datetime, end: datetime
) -> EmergencyFigures:
    """Only the emergency figures of a period (the wallboard's today)."""
    rows = await session.execute(
        select(col(Event.name), col(Event.subject_id), col(Event.occurred_at), col(Event.data))
        .where(
            col(Event.name).in_(["call.offered", *EMERGENCY_EVENTS]),
            col(Event.occurred_at) >= start,
        )
        .order_by(col(Event.seq))
    )
    return emergency_figures((Ev(*row) for row in rows), start=start, end=end)
