"""Open data: the community's figures per month and grid, safe to publish.

Computed from the event log with the definitions of `dispatch.figures` (received, closed,
solved, rated, satisfied; the hotline's answer times), one row per local month and grid.
What keeps it anonymous:

- **No cell under 5 people.** A row's ticket figures are published only when at least
  `MIN_PEOPLE` different residents had a ticket received in it; its call figures only when
  at least `MIN_PEOPLE` different callers (a registered resident counts once, an unknown
  number once per call) phoned the hotline in it. Otherwise those figures are withheld
  (None, with `tickets_withheld` / `calls_withheld` true), not rounded or moved elsewhere.
- **No rate over fewer than 5.** A rate whose denominator is under `MIN_PEOPLE` (say, the
  satisfied rate of three ratings) is None, even in a published row.
- Nothing else leaves: no names, numbers, merchants, categories or days; grids are named
  by their code and name only. Residents are placed in the grid they live in now.

`FIELDS` is the documented field list, served with the data and in the README.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from dispatch.figures import CALL_EVENTS, TICKET_EVENTS, Ev, call_figures, figures, ticket_facts
from eventlog.clock import LOCAL_TZ
from eventlog.models import Event
from registry.models import Grid, Resident

#: the fewest people behind any published figure
MIN_PEOPLE = 5
#: the grid of a caller or ticket without a registered resident
NO_GRID = "-"


@dataclass(slots=True)
class Row:
    """One month of one grid."""

    month: str
    grid: str
    grid_name: str
    tickets_withheld: bool = True
    received: int | None = None
    closed: int | None = None
    solved: int | None = None
    rated: int | None = None
    satisfied: int | None = None
    closure_rate: float | None = None
    solved_rate: float | None = None
    satisfied_rate: float | None = None
    calls_withheld: bool = True
    calls_offered: int | None = None
    answered_60s_rate: float | None = None
    answer_median_s: float | None = None
    abandoned_rate: float | None = None


#: name -> (zh-CN, en) definition, in column order
FIELDS: dict[str, tuple[str, str]] = {
    "month": ("月份（北京时间，YYYY-MM）", "local month (Asia/Shanghai), YYYY-MM"),
    "grid": ("网格编号；“-”为未登记来电或无网格", 'grid code; "-": unregistered callers'),
    "grid_name": ("网格名称", "grid name"),
    "tickets_withheld": (
        "本月本网格有工单的居民少于 5 人，工单数字不公布",
        "fewer than 5 residents had a ticket: ticket figures withheld",
    ),
    "received": ("受理：本月新建的工单数", "received: tickets created in the month"),
    "closed": ("办结：其中已关闭或取消的", "closed: of those, closed or cancelled"),
    "solved": ("解决：办结且上门服务完成的", "solved: closed with the visit completed"),
    "rated": ("评价：解决后居民或家属评价的", "rated: solved and rated by the resident or family"),
    "satisfied": ("满意：评价为满意或基本满意的", "satisfied: rated satisfied or basically"),
    "closure_rate": ("办结率 % = 办结 / 受理", "closure rate % = closed / received"),
    "solved_rate": ("解决率 % = 解决 / 办结", "solved rate % = solved / closed"),
    "satisfied_rate": ("满意率 % = 满意 / 评价", "satisfied rate % = satisfied / rated"),
    "calls_withheld": (
        "本月本网格来电者少于 5 人，来电数字不公布",
        "fewer than 5 callers: call figures withheld",
    ),
    "calls_offered": ("热线来电数", "calls to the hotline"),
    "answered_60s_rate": (
        "60 秒内接通率 % = 60 秒内接通 / 排队等话务员的来电",
        "answered within 60 s % = connected within 60 s / calls that queued",
    ),
    "answer_median_s": ("排队到接通的中位秒数", "median seconds from queueing to an answer"),
    "abandoned_rate": ("放弃率 % = 挂机放弃 / 来电", "abandoned % = hung up waiting / calls"),
}
assert list(FIELDS) == [f.name for f in fields(Row)]


def _rate(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole >= MIN_PEOPLE else None


def _month(at: datetime) -> str:
    return at.astimezone(LOCAL_TZ).strftime("%Y-%m")


def rows(
    events: Iterable[Ev],
    *,
    start: datetime,
    end: datetime,
    grid_of: Mapping[int, str],
    grid_names: Mapping[str, str],
) -> list[Row]:
    """The open-data rows of [start, end) from events in seq order."""
    ticket_events: list[Ev] = []
    call_events: list[Ev] = []
    #: ticket or call id -> (month, grid) and who is behind it
    place: dict[str, tuple[str, str]] = {}
    person: dict[str, str] = {}
    call_place: dict[str, tuple[str, str]] = {}
    for e in events:
        resident = e.data.get("resident_id")
        grid = grid_of.get(resident, NO_GRID) if isinstance(resident, int) else NO_GRID
        if e.name == "ticket.created":
            grid = str(e.data.get("grid") or grid)
            place[e.subject_id] = (_month(e.occurred_at), grid)
            person[e.subject_id] = f"r{resident}" if resident is not None else f"t{e.subject_id}"
        elif e.name == "call.offered":
            call_place[e.subject_id] = (_month(e.occurred_at), grid)
            person["c" + e.subject_id] = (
                f"r{resident}" if resident is not None else f"c{e.subject_id}"
            )
        (call_events if e.name.startswith("call.") else ticket_events).append(e)

    out: dict[tuple[str, str], Row] = {}

    def row(key: tuple[str, str]) -> Row:
        if key not in out:
            out[key] = Row(key[0], key[1], grid_names.get(key[1], key[1]))
        return out[key]

    tickets_by: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for t in ticket_facts(ticket_events, start=start, end=end):
        tickets_by[place[t.id]].append(t)
    for key, tickets in tickets_by.items():
        r = row(key)
        if len({person[t.id] for t in tickets}) < MIN_PEOPLE:
            continue
        f = figures("cell", tickets)
        r.tickets_withheld = False
        r.received, r.closed, r.solved = f.received, f.closed, f.solved
        r.rated, r.satisfied = f.rated, f.satisfied
        r.closure_rate = _rate(f.closed, f.received)
        r.solved_rate = _rate(f.solved, f.closed)
        r.satisfied_rate = _rate(f.satisfied, f.rated)

    calls_by: dict[tuple[str, str], set[str]] = defaultdict(set)
    for call_id, key in call_place.items():
        calls_by[key].add(call_id)
    events_of: dict[str, list[Ev]] = defaultdict(list)
    for e in call_events:
        events_of[e.subject_id].append(e)
    for key, ids in calls_by.items():
        r = row(key)
        if len({person["c" + i] for i in ids}) < MIN_PEOPLE:
            continue
        # each call's own events in seq order (`call.offered` first): all call_figures needs
        mine = [e for i in ids for e in events_of[i]]
        c = call_figures(mine, start=start, end=end)
        if c.offered == 0:
            continue
        waits = [
            float(e.data.get("wait_s") or 0.0)
            for e in mine
            if e.name == "call.connected" and e.data.get("wait_s") is not None
        ]
        r.calls_withheld = False
        r.calls_offered = c.offered
        r.answered_60s_rate = _rate(c.answered_60s, c.queued)
        r.answer_median_s = round(statistics.median(waits), 1) if len(waits) >= MIN_PEOPLE else None
        r.abandoned_rate = _rate(c.abandoned, c.offered)
    # only the months of the period (a row is made for where its tickets and calls began)
    return sorted(
        (r for r in out.values() if start <= _first_moment(r.month) < end),
        key=lambda r: (r.month, r.grid == NO_GRID, r.grid),
    )


def _first_moment(month: str) -> datetime:
    year, mon = (int(p) for p in month.split("-"))
    return datetime(year, mon, 1, tzinfo=LOCAL_TZ)


def public(rows_: list[Row], *, start: datetime, end: datetime) -> dict[str, Any]:
    """The JSON file: the period, the rule, the field list, the rows."""
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "min_people": MIN_PEOPLE,
        "fields": [{"name": n, "zh": zh, "en": en} for n, (zh, en) in FIELDS.items()],
        "rows": [asdict(r) for r in rows_],
    }


def to_csv(rows_: list[Row]) -> str:
    """The CSV file: one header line of field names, one line per row, empty = withheld."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(FIELDS)
    for r in rows_:
        values = asdict(r)
        writer.writerow(["" if values[n] is None else values[n] for n in FIELDS])
    return out.getvalue()


async def load(session: AsyncSession, *, start: datetime, end: datetime) -> list[Row]:
    """Read what the rows need: the period's events, where residents live, grid names."""
    result = await session.execute(
        select(col(Event.name), col(Event.subject_id), col(Event.occurred_at), col(Event.data))
        .where(
            col(Event.name).in_([*TICKET_EVENTS, *CALL_EVENTS]),
            col(Event.occurred_at) >= start,
        )
        .order_by(col(Event.seq))
    )
    events = [Ev(*row) for row in result]
    homes = await session.execute(select(col(Resident.id), col(Resident.grid_code)))
    grid_of = {int(rid): str(code) for rid, code in homes if rid is not None}
    names = await session.execute(select(col(Grid.code), col(Grid.name)))
    grid_names = {str(code): str(name) for code, name in names}
    return rows(events, start=start, end=end, grid_of=grid_of, grid_names=grid_names)
