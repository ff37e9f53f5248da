"""A resident's daily wellbeing call on the API (`dispatch.wellbeing`): operators and
supervisors read and set it (on or off, weekdays, window, language, away periods) and
see the latest rounds; merchants never.

Importing this module registers its routes on `operator_console.api.API`; the app
factory imports it once.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Literal

from aiohttp import web
from pydantic import Field, model_validator

from dispatch.models import WellbeingPlan, WellbeingRound
from dispatch.services import DispatchServices
from operator_console.api import (
    API,
    OPERATORS,
    Model,
    Strict,
    body,
    int_param,
    ok,
    services,
    user_of,
)

REGISTERED = True


class AwayPeriod(Strict):
    """Days the resident is away (in hospital, at the daughter's): no call then."""

    #: first and last local day, both included
    from_: date = Field(alias="from")
    until: date
    reason: str = Field(default="", max_length=100)

    @model_validator(mode="after")
    def _in_order(self) -> AwayPeriod:
        if self.until < self.from_:
            raise ValueError("an away period's until must not be before its from")
        return self


class WellbeingBody(Strict):
    """A resident's wellbeing call settings (the whole set: what is left out is reset)."""

    enabled: bool = True
    #: ISO weekdays: 1 Monday .. 7 Sunday
    days: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 7], max_length=7)
    #: a hotline call from the resident in the window is their check-in; at its end,
    #: without one, the service calls (local time, HH:MM)
    window_start: time
    window_end: time
    #: the call's language; none: the resident's own
    language: Literal["zh-CN", "en"] | None = None
    away: list[AwayPeriod] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _check(self) -> WellbeingBody:
        if not self.days or any(not 1 <= d <= 7 for d in self.days):
            raise ValueError("days must be ISO weekdays 1 (Monday) to 7 (Sunday), at least one")
        if len(set(self.days)) != len(self.days):
            raise ValueError("days must not repeat a weekday")
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        return self


class AwayOut(Model):
    """An away period."""

    from_: str = Field(serialization_alias="from")
    until: str
    reason: str


class RoundOut(Model):
    """One day's wellbeing check and how it went."""

    id: int
    day: str
    state: str
    outcome: str | None
    attempts: int
    missed_at: datetime | None
    taken_by: int | None
    taken_at: datetime | None
    ticket_id: int | None
    closed_at: datetime | None


class WellbeingOut(Model):
    """A resident's wellbeing call settings and their latest rounds (newest first)."""

    resident_id: int
    #: false also when nothing was ever set
    enabled: bool
    days: list[int]
    window_start: str | None
    window_end: str | None
    language: str | None
    away: list[AwayOut]
    updated_by: str | None
    updated_at: datetime | None
    rounds: list[RoundOut]


def _dispatch(request: web.Request) -> DispatchServices:
    dispatch: DispatchServices = services(request).dispatch
    return dispatch


def _round(r: WellbeingRound) -> dict[str, object]:
    return {
        "id": r.id, "day": r.day.isoformat(), "state": r.state, "outcome": r.outcome,
        "attempts": r.attempts, "missed_at": r.missed_at, "taken_by": r.taken_by,
        "taken_at": r.taken_at, "ticket_id": r.ticket_id, "closed_at": r.closed_at,
    }  # fmt: skip


def _public(
    resident_id: int, plan: WellbeingPlan | None, rounds: list[WellbeingRound]
) -> dict[str, object]:
    return {
        "resident_id": resident_id,
        "enabled": bool(plan and plan.enabled),
        "days": plan.days if plan else [],
        "window_start": plan.window_start.strftime("%H:%M") if plan else None,
        "window_end": plan.window_end.strftime("%H:%M") if plan else None,
        "language": plan.language if plan else None,
        "away": plan.away if plan else [],
        "updated_by": plan.updated_by if plan else None,
        "updated_at": plan.updated_at if plan else None,
        "rounds": [_round(r) for r in rounds],
    }


@API.route(
    "GET",
    "/residents/{resident_id}/wellbeing",
    summary="A resident's daily wellbeing call: settings and the latest rounds",
    roles=OPERATORS,
    response=WellbeingOut,
    tag="wellbeing",
)
async def get_wellbeing(request: web.Request) -> web.Response:
    """Read."""
    resident_id = int_param(request, "resident_id")
    wellbeing = _dispatch(request).wellbeing
    plan = await wellbeing.plan(resident_id)
    if plan is None:
        await wellbeing.resident(resident_id)  # 404 for a resident who does not exist
    return ok(_public(resident_id, plan, await wellbeing.rounds(resident_id)))


@API.route(
    "PUT",
    "/residents/{resident_id}/wellbeing",
    summary="Set a resident's daily wellbeing call (on/off, weekdays, window, language, away)",
    roles=OPERATORS,
    response=WellbeingOut,
    body=WellbeingBody,
    tag="wellbeing",
)
async def put_wellbeing(request: web.Request) -> web.Response:
    """Write."""
    user = user_of(request)
    resident_id = int_param(request, "resident_id")
    data = await body(request, WellbeingBody)
    wellbeing = _dispatch(request).wellbeing
    plan = await wellbeing.set_plan(
        resident_id,
        actor=user.username,
        enabled=data.enabled,
        days=sorted(data.days),
        window_start=data.window_start.replace(second=0, microsecond=0),
        window_end=data.window_end.replace(second=0, microsecond=0),
        language=data.language,
        away=[
            {"from": a.from_.isoformat(), "until": a.until.isoformat(), "reason": a.reason}
            for a in data.away
        ],
    )
    return ok(_public(resident_id, plan, await wellbeing.rounds(resident_id)))
