"""`GET /api/v1/wallboard`: the supervisor's live summary of the hotline and the tickets.

Counts come from the state tables (calls, operators, tickets), "today" is the local day
in Asia/Shanghai. The period figures live in `GET /api/v1/figures` (dispatch).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from datetime import datetime, time, timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import func, select
from sqlmodel import col

from dispatch.figures import load_emergency_figures
from dispatch.machines.call import CallState
from dispatch.machines.incident import ACTIVE as INCIDENT_ACTIVE
from dispatch.machines.ticket import OPEN, TicketState
from dispatch.models import Call, Incident, OperatorStatus, Ticket
from eventlog.clock import LOCAL_TZ
from operator_console.api import API, SUPERVISORS, Model, ok, services
from operator_console.views import EmergenciesToday
from registry.models import ServiceCategory, User

WAITING = (CallState.QUEUED,)


def local_midnight(now: datetime) -> datetime:
    """The start of today in Asia/Shanghai, as an aware datetime."""
    return datetime.combine(now.astimezone(LOCAL_TZ).date(), time(0), tzinfo=LOCAL_TZ)


def answer_shares(calls: list[Call]) -> dict[str, Any]:
    """Of today's calls that waited for an operator: answered within 60 s / 180 s, abandoned."""
    offered = [c for c in calls if c.queued_at is not None]
    waits = [
        (c.answered_at - c.queued_at).total_seconds()
        for c in offered
        if c.answered_at is not None and c.queued_at is not None and c.operator_id is not None
    ]
    abandoned = sum(1 for c in offered if c.state == CallState.ABANDONED)

    def share(n: int) -> float | None:
        return round(n / len(offered), 4) if offered else None

    return {
        "offered": len(offered),
        "answered": len(waits),
        "within_60s": share(sum(1 for w in waits if w <= 60)),
        "within_180s": share(sum(1 for w in waits if w <= 180)),
        "abandoned": abandoned,
        "abandoned_share": share(abandoned),
    }


class OperatorNow(Model):
    """An operator on the wallboard."""

    user_id: int
    name: str
    state: str
    reason: str | None
    since: datetime


class AnswerShares(Model):
    """Today's calls that waited for an operator."""

    offered: int
    answered: int
    within_60s: float | None
    within_180s: float | None
    abandoned: int
    abandoned_share: float | None


class NeedingHuman(Model):
    """A ticket escalated or unassigned."""

    id: int
    state: str
    category: str
    category_zh: str
    category_en: str
    escalated: bool
    reason: str | None


class WallboardOut(Model):
    """What a wall screen shows now."""

    at: datetime
    waiting: int
    emergencies_waiting: int
    emergencies: EmergenciesToday
    longest_wait_s: int
    operators: list[OperatorNow]
    operators_by_state: dict[str, int]
    today: AnswerShares
    open_tickets: int
    tickets_by_state: dict[str, int]
    overdue: int
    escalated: int
    unassigned: int
    #: water, power and gas outages open now (incidents: many callers, one ticket)
    incidents_open: int
    needing_human: list[NeedingHuman]


@API.route(
    "GET",
    "/wallboard",
    summary="Live summary: callers waiting, operators, answer shares, open tickets",
    roles=SUPERVISORS,
    tag="figures",
    response=WallboardOut,
)
async def wallboard(request: web.Request) -> web.Response:
    """What a wall screen shows, recomputed on each request."""
    svc = services(request)
    now = svc.clock.now()
    midnight = local_midnight(now)
    async with svc.store.read() as session:
        waiting = (
            (
                await session.execute(
                    select(Call).where(
                        col(Call.direction) == "in", col(Call.state).in_(list(WAITING))
                    )
                )
            )
            .scalars()
            .all()
        )
        today = list(
            (
                await session.execute(
                    select(Call).where(
                        col(Call.direction) == "in", col(Call.started_at) >= midnight
                    )
                )
            )
            .scalars()
            .all()
        )
        operators = (
            await session.execute(
                select(OperatorStatus, User).join(User, col(User.id) == OperatorStatus.user_id)
            )
        ).all()
        tickets = (
            (await session.execute(select(Ticket).where(col(Ticket.state).in_(list(OPEN)))))
            .scalars()
            .all()
        )
        categories = {c.code: c for c in (await session.execute(select(ServiceCategory))).scalars()}
        # incidents: outages open now (many callers, one ticket)
        outages = int(
            await session.scalar(
                select(func.count()).where(col(Incident.state).in_(list(INCIDENT_ACTIVE)))
            )
            or 0
        )
        emergencies = await load_emergency_figures(
            session, start=midnight, end=now + timedelta(seconds=1)
        )
    longest = max(
        ((now - (c.queued_at or c.started_at)).total_seconds() for c in waiting), default=0.0
    )
    by_state = Counter(t.state.value for t in tickets)
    overdue = [t for t in tickets if t.deadline_at is not None and t.deadline_at < now]
    needing_human = [t for t in tickets if t.escalated or t.state == TicketState.UNASSIGNED]
    return ok(
        {
            "at": now.isoformat(),
            "waiting": len(waiting),
            "emergencies_waiting": sum(1 for c in waiting if c.emergency),
            # today's emergencies: count, time to a human, within 15 s, overflows, 120
            "emergencies": asdict(emergencies),
            "longest_wait_s": round(longest),
            "operators": [
                {
                    "user_id": status.user_id,
                    "name": user.display_name or user.username,
                    "state": status.state.value,
                    "reason": status.reason,
                    "since": status.since.isoformat(),
                }
                for status, user in operators
            ],
            "operators_by_state": dict(Counter(s.state.value for s, _ in operators)),
            "today": answer_shares(today),
            "open_tickets": len(tickets),
            "tickets_by_state": dict(by_state),
            "overdue": len(overdue),
            "escalated": sum(1 for t in tickets if t.escalated),
            "unassigned": by_state.get(TicketState.UNASSIGNED.value, 0),
            "incidents_open": outages,
            "needing_human": [
                {
                    "id": t.id,
                    "state": t.state.value,
                    "category": t.category_code,
                    "category_zh": getattr(categories.get(t.category_code), "name_zh", None)
                    or t.category_code,
                    "category_en": getattr(categories.get(t.category_code), "name_en", None)
                    or t.category_code,
                    "escalated": t.escalated,
                    "reason": t.escalation_reason,
                }
                for t in needing_human[:20]
            ],
        }
    )
