"""`GET /api/v1/open-data` (JSON) and `/open-data.csv`: the community's figures per month
and grid that anyone may read and publish, with no cell under 5 people
(`dispatch.open_data` says what is withheld and why). Public: nothing in it is personal."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import ConfigDict, Field

from dispatch import open_data
from eventlog.clock import LOCAL_TZ
from operator_console.api import API, PUBLIC, Download, Model, ok, services, whole_number

#: the longest period one request reads (the log of two years)
MAX_MONTHS = 24
QUERY = {"months": f"the last N local months, this one included (1..{MAX_MONTHS}; 12)"}


class FieldOut(Model):
    """One published field and its definition."""

    name: str
    zh: str
    en: str


class RowOut(Model):
    """One month of one grid; None where withheld."""

    month: str
    grid: str
    grid_name: str
    tickets_withheld: bool
    received: int | None
    closed: int | None
    solved: int | None
    rated: int | None
    satisfied: int | None
    closure_rate: float | None
    solved_rate: float | None
    satisfied_rate: float | None
    calls_withheld: bool
    calls_offered: int | None
    answered_60s_rate: float | None
    answer_median_s: float | None
    abandoned_rate: float | None


class OpenDataOut(Model):
    """The open-data file."""

    model_config = ConfigDict(populate_by_name=True)

    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    min_people: int
    fields: list[FieldOut]
    rows: list[RowOut]


def months_of(request: web.Request) -> tuple[datetime, datetime]:
    """[first day of the month N-1 months ago, first day of next month), local time."""
    n = whole_number(request.query.get("months", "12"), "months", maximum=MAX_MONTHS)
    today = services(request).clock.now().astimezone(LOCAL_TZ)
    index = today.year * 12 + today.month - 1  # months since year 0, this one
    first, after = index - (n - 1), index + 1
    return (
        datetime(first // 12, first % 12 + 1, 1, tzinfo=LOCAL_TZ),
        datetime(after // 12, after % 12 + 1, 1, tzinfo=LOCAL_TZ),
    )


async def _rows(request: web.Request) -> tuple[datetime, datetime, list[open_data.Row]]:
    start, end = months_of(request)
    async with services(request).store.read() as session:
        return start, end, await open_data.load(session, start=start, end=end)


@API.route(
    "GET",
    "/open-data",
    summary="Open data: figures per month and grid, no cell under 5 people, with the "
    "field list (public)",
    roles=PUBLIC,
    tag="figures",
    query=QUERY,
    response=OpenDataOut,
)
async def open_data_json(request: web.Request) -> web.Response:
    """The JSON file."""
    start, end, rows = await _rows(request)
    return ok(open_data.public(rows, start=start, end=end))


@API.route(
    "GET",
    "/open-data.csv",
    summary="Open data as CSV: one line per month and grid, empty where withheld (public)",
    roles=PUBLIC,
    tag="figures",
    query=QUERY,
    response=Download,
)
async def open_data_csv(request: web.Request) -> web.Response:
    """The CSV file."""
    _, _, rows = await _rows(request)
    return web.Response(
        text=open_data.to_csv(rows),
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": 'attachment; filename="yijing-open-data.csv"',
        },
    )
