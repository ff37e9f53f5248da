"""`GET /api/v1/figures` (supervisors) and the dispatch endpoints beyond the skeleton:
repeat orders, merchant check-in calls, family surveys, follow-ups, merchant records.

Importing this module registers its routes on `operator_console.api.API`; the app
factory imports it once.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta

from aiohttp import web
from pydantic import ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from dispatch.figures import GROUPINGS, CallFigures, Figures, WellbeingReport, load_report
from eventlog.clock import LOCAL_TZ
from operator_console.api import (
    API,
    OPERATORS,
    OPERATORS_AND_MERCHANTS,
    SUPERVISORS,
    Model,
    OpenModel,
    Strict,
    body,
    int_param,
    ok,
    services,
    user_of,
    whole_number,
)
from operator_console.errors import FieldInvalid
from operator_console.views import EmergenciesToday, TicketOut, ticket_public
from registry.models import Grid, Merchant, Role, ServiceCategory

#: set once the routes below are on `API`
REGISTERED = True
#: the longest `?days=` period
MAX_DAYS = 366
#: the dates a period may name (the service has no figures outside them; datetimes at the
#: ends of Python's calendar overflow when moved to UTC)
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2099, 12, 31)
#: the period parameters of the figures and the scorecard
PERIOD_QUERY = {
    "from": "first local day (Asia/Shanghai), YYYY-MM-DD, included",
    "to": "last local day, YYYY-MM-DD, included",
    "days": f"or: the last N local days up to today (1..{MAX_DAYS}); not with from/to",
}


def local_day(value: str, name: str) -> datetime:
    """Midnight in Asia/Shanghai of a YYYY-MM-DD date from FIRST_DAY to LAST_DAY."""
    try:
        day = (
            date.fromisoformat(value)
            if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value)
            else None
        )
    except ValueError:
        day = None
    if day is None or not FIRST_DAY <= day <= LAST_DAY:
        raise FieldInvalid(f"{name} must be a date YYYY-MM-DD from {FIRST_DAY} to {LAST_DAY}", name)
    return datetime.combine(day, time(0), tzinfo=LOCAL_TZ)


def period(start: str, end: str) -> tuple[datetime, datetime]:
    """[from, to] as dates, `to` included: [midnight of from, midnight after to)."""
    lo, hi = local_day(start, "from"), local_day(end, "to") + timedelta(days=1)
    if hi <= lo:
        raise FieldInvalid("to must not be before from", "to")
    return lo, hi


def requested_period(request: web.Request) -> tuple[datetime, datetime]:
    """The period of `?from=&to=` (local dates, `to` included) or `?days=N` (the last N
    local days up to today); this month so far when neither is given."""
    q = request.query
    today = services(request).clock.now().astimezone(LOCAL_TZ).date()
    if "days" in q:
        if "from" in q or "to" in q:
            raise FieldInvalid("give either days or from/to, not both", "days")
        days = whole_number(q["days"], "days", maximum=MAX_DAYS)
        start = today - timedelta(days=days - 1)
        return period(start.isoformat(), today.isoformat())
    return period(q.get("from", today.replace(day=1).isoformat()), q.get("to", today.isoformat()))


async def group_labels(session: AsyncSession, by: str | None) -> dict[str, tuple[str, str]]:
    """Chinese and English names of the group keys (catalog, grid, merchant names)."""
    if by == "category":
        cats = await session.execute(
            select(
                col(ServiceCategory.code),
                col(ServiceCategory.name_zh),
                col(ServiceCategory.name_en),
            )
        )
        return {code: (zh, en) for code, zh, en in cats}
    if by == "grid":
        grids = await session.execute(select(col(Grid.code), col(Grid.name)))
        return {code: (name, name) for code, name in grids}
    if by == "merchant":
        merchants = await session.execute(select(col(Merchant.id), col(Merchant.name)))
        return {str(mid): (name, name) for mid, name in merchants}
    return {}


class GroupFigures(OpenModel):
    """One group's figures (the fields of `dispatch.figures.Figures`) and its labels."""

    key: str
    label_zh: str
    label_en: str
    received: int
    closed: int
    closure_rate: float | None


class FiguresOut(Model):
    """A period's figures: the total, the groups asked for, and the call centre."""

    model_config = ConfigDict(populate_by_name=True)

    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    by: str | None
    total: Figures
    groups: list[GroupFigures]
    calls: CallFigures
    #: emergency calls: count, time to a human (median, p90), within 15 s, overflows, 120
    emergencies: EmergenciesToday
    #: wellbeing rounds in all and per local day: due, checked in, away, care-circle
    #: alerts, taken by whom, time from the missed check-in to a human
    wellbeing: WellbeingReport
    first_day: date
    last_day: date


class CheckInOut(Model):
    """The check-in call placed."""

    call_ref: str


class CallingOut(Model):
    """The call is being placed."""

    status: str


class MerchantRecordOut(OpenModel):
    """A merchant's scorecard (`dispatch.scorecard`): offers, acceptance, ratings, visits."""

    merchant_id: int
    name: str
    offers: int
    accepted: int
    acceptance_rate: float | None
    rated: int
    satisfied: int
    satisfied_rate: float | None
    ratings: dict[str, int]
    no_shows: int
    #: disputes the merchant opened in the period, open, upheld and overturned now
    disputed: int
    disputes_open: int
    upheld: int
    overturned: int


@API.route(
    "GET",
    "/figures",
    summary=(
        "The community's figures from the event log "
        "(?from=&to= local dates or ?days=N; &by=day|category|grid|merchant|month)"
    ),
    roles=SUPERVISORS,
    tag="figures",
    query={**PERIOD_QUERY, "by": "day, category, grid, merchant or month"},
    response=FiguresOut,
)
async def figures(request: web.Request) -> web.Response:
    """Received, closed, solved, rated and satisfied, with times, deadlines and calls."""
    start, end = requested_period(request)
    by = request.query.get("by") or None
    if by is not None and by not in GROUPINGS:
        raise FieldInvalid(f"by must be one of {', '.join(GROUPINGS)}", "by")
    async with services(request).store.read() as session:
        rep = await load_report(session, start=start, end=end, by=by)
        labels = await group_labels(session, by)
    out = rep.public()
    out["first_day"] = start.astimezone(LOCAL_TZ).date().isoformat()
    out["last_day"] = (end - timedelta(days=1)).astimezone(LOCAL_TZ).date().isoformat()
    labels.setdefault("-", ("未指定", "none"))
    for group in out["groups"]:
        zh, en = labels.get(group["key"], (group["key"], group["key"]))
        group["label_zh"], group["label_en"] = zh, en
    return ok(out)


class FollowUpBody(Strict):
    """How a supervisor closed a follow-up."""

    note: str = Field(min_length=1, max_length=200)


class CheckInBody(Strict):
    """Which keypad check-in call to place to the merchant."""

    kind: str = Field(pattern="^(arrival|completion)$")


@API.route(
    "POST",
    "/tickets/{ticket_id}/repeat",
    summary='"Same as last time": a new order like this one, dispatched at once',
    roles=OPERATORS,
    tag="tickets",
    response=TicketOut,
    status=201,
)
async def repeat(request: web.Request) -> web.Response:
    """Repeat an order."""
    user = user_of(request)
    ticket = await services(request).dispatch.tickets.repeat_order(
        int_param(request, "ticket_id"), user=user
    )
    return ok(ticket_public(ticket), status=201)


@API.route(
    "POST",
    "/tickets/{ticket_id}/check-in",
    summary="Call the merchant to report arrival or completion by keypad",
    roles=OPERATORS,
    body=CheckInBody,
    tag="tickets",
    response=CheckInOut,
    status=202,
)
async def check_in(request: web.Request) -> web.Response:
    """Place a check-in call."""
    user = user_of(request)
    data = await body(request, CheckInBody)
    ref = await services(request).dispatch.checkins.check_in(
        int_param(request, "ticket_id"), kind=data.kind, user=user
    )
    return ok({"call_ref": ref}, status=202)


@API.route(
    "POST",
    "/tickets/{ticket_id}/survey-family",
    summary="Ask the resident's first emergency contact to rate on their behalf",
    roles=OPERATORS,
    tag="tickets",
    response=CallingOut,
    status=202,
)
async def survey_family(request: web.Request) -> web.Response:
    """Place a family survey call."""
    user = user_of(request)
    await services(request).dispatch.surveys.survey_family(
        int_param(request, "ticket_id"), user=user
    )
    return ok({"status": "calling"}, status=202)


@API.route(
    "POST",
    "/tickets/{ticket_id}/follow-up/close",
    summary="Close the follow-up a 'not satisfied' rating opened",
    roles=SUPERVISORS,
    body=FollowUpBody,
    tag="tickets",
    response=TicketOut,
)
async def close_follow_up(request: web.Request) -> web.Response:
    """A supervisor closes a follow-up."""
    user = user_of(request)
    data = await body(request, FollowUpBody)
    ticket = await services(request).dispatch.tickets.close_follow_up(
        int_param(request, "ticket_id"), user=user, note=data.note
    )
    return ok(ticket_public(ticket))


@API.route(
    "GET",
    "/merchants/{merchant_id}/record",
    summary=(
        "A merchant's scorecard: acceptance, time to arrive, no-shows, ratings, recent orders "
        "(?from=&to= or ?days=N; the recent window by default)"
    ),
    roles=OPERATORS_AND_MERCHANTS,
    tag="figures",
    query=PERIOD_QUERY,
    response=MerchantRecordOut,
)
async def merchant_record(request: web.Request) -> web.Response:
    """A merchant's record; merchants see only their own."""
    user = user_of(request)
    merchant_id = int_param(request, "merchant_id")
    if user.role == Role.MERCHANT and user.merchant_id != merchant_id:
        from registry.repository import NotFound

        raise NotFound("merchant", merchant_id)
    q = request.query
    if "days" in q or "from" in q or "to" in q:
        start, end = requested_period(request)
        record = await services(request).dispatch.scorecard.merchant_record(
            merchant_id, start=start, end=end
        )
        record["first_day"] = start.astimezone(LOCAL_TZ).date().isoformat()
        record["last_day"] = (end - timedelta(days=1)).astimezone(LOCAL_TZ).date().isoformat()
    else:
        record = await services(request).dispatch.scorecard.merchant_record(merchant_id)
    return ok(record)
