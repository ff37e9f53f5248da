"""The event log after a sequence number, and the phone line's state for the outage banner."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from sqlalchemy import func, select
from sqlmodel import col

from eventlog.models import Event
from eventlog.store import Store
from operator_console.api import API, OPERATORS, Model, ok, query_int, services
from operator_console.views import EventOut


class PhoneLineOut(Model):
    """The phone line now, and the newest event `seq` this was read at."""

    up: bool
    backend: str
    detail: str
    since: datetime | None
    seq: int


@API.route(
    "GET",
    "/events",
    summary="The event log after ?since=SEQ",
    roles=OPERATORS,
    tag="events",
    response=list[EventOut],
)
async def events(request: web.Request) -> web.Response:
    """Events after a sequence number, oldest first."""
    since = query_int(request, "since", 0, minimum=0)
    assert since is not None
    return ok(await services(request).store.events_since(since))


class LatestOut(Model):
    """The newest event's `seq` (0 for an empty log): where a page starts live."""

    seq: int


async def newest_seq(store: Store) -> int:
    """The highest `seq` in the event log now."""
    async with store.read() as session:
        return int((await session.execute(select(func.max(col(Event.seq))))).scalar() or 0)


@API.route(
    "GET",
    "/events/latest",
    summary="The newest event's seq: a page's live stream starts after it",
    roles=OPERATORS,
    tag="events",
    response=LatestOut,
)
async def latest(request: web.Request) -> web.Response:
    """One number, however long the log (never the log itself)."""
    return ok({"seq": await newest_seq(services(request).store)})


@API.route(
    "GET",
    "/telephony",
    summary="The phone line now: up or down, since when, and the event seq it is as of",
    roles=OPERATORS,
    tag="events",
    response=PhoneLineOut,
)
async def telephony_status(request: web.Request) -> web.Response:
    """What the console's and the wallboard's outage banner shows on page load.

    `seq` is the newest event when this was read: a page applies a `telephony.up` /
    `telephony.down` event from the live stream only if it is newer, so the answer and the
    stream never disagree.
    """
    svc = services(request)
    seq = await newest_seq(svc.store)
    async with svc.store.read() as session:
        last = (
            (
                await session.execute(
                    select(Event)
                    .where(col(Event.name).in_(["telephony.up", "telephony.down"]))
                    .order_by(col(Event.seq).desc())
                    .limit(1)
                )
            )
            .scalars()
            .first()
        )
    health = svc.telephony.health()
    since = last.occurred_at.isoformat() if last is not None and not health.up else None
    return ok(
        {
            "up": health.up,
            "backend": health.backend,
            "detail": health.detail,
            "since": since,
            "seq": seq,
        }
    )
