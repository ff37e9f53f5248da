"""The access log: who read which resident's record, when and why (admins only)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from operator_console.api import ADMINS, API, ok, query_int, services
from operator_console.registry_views import AccessOut
from registry import repository as repo


def _local_day(q: Any, name: str) -> datetime | None:
    from operator_console.figures_api import local_day

    value = q.get(name, "")
    return local_day(value, name) if value else None


@API.route(
    "GET",
    "/access-log",
    summary=(
        "Who read which resident record, when and why "
        "(?resident_id, ?username, ?from, ?to as local dates, ?before, ?limit)"
    ),
    roles=ADMINS,
    tag="registry",
    response=list[AccessOut],
)
async def read_access_log(request: web.Request) -> web.Response:
    """The access log, newest first, `limit` (at most 200) rows a page; page on with `before`."""
    q = request.query
    resident_id = query_int(request, "resident_id")
    before_id = query_int(request, "before")
    limit = query_int(request, "limit", 200, maximum=200) or 200
    since = _local_day(q, "from")
    until = _local_day(q, "to")
    if until is not None:
        until += timedelta(days=1)  # the whole of the last day
    async with services(request).store.read() as session:
        rows = await repo.access_log(
            session,
            resident_id=resident_id,
            username=q.get("username", "")[:64] or None,
            before_id=before_id,
            since=since,
            until=until,
            limit=limit,
        )
    return ok(
        [
            {
                "id": r.id,
                "username": r.username,
                "user_id": r.user_id,
                "resident_id": r.resident_id,
                "reason": r.reason,
                "ref": r.ref,
                "at": r.at.isoformat(),
            }
            for r in rows
        ]
    )
