"""The emergency endpoints: the on-call list (admins keep it, supervisors read it) and a
call's escalation (where it stands, who took it).

Importing this module registers its routes on `operator_console.api.API`; the app
factory imports it once. Numbers on the on-call list are staff phones, shown masked to
supervisors and in full to admins (who typed them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import Field

from dispatch.models import EmergencyEscalation, OnCallPhone
from operator_console.api import (
    ADMINS,
    API,
    OPERATORS,
    SUPERVISORS,
    Done,
    Model,
    Strict,
    body,
    int_param,
    ok,
    user_of,
)
from operator_console.api import services as app_services
from registry import repository as repo
from registry.models import Role, User
from registry.phones import mask

#: set once the routes below are on `API`
REGISTERED = True


class OnCallIn(Strict):
    """A phone for the on-call list."""

    phone: str = Field(min_length=3, max_length=32)
    label: str = Field(default="", max_length=64)


class OnCallPatch(Strict):
    """A change to an on-call phone."""

    label: str | None = Field(default=None, max_length=64)
    position: int | None = Field(default=None, ge=0, le=10_000)
    active: bool | None = None


class OnCallOut(Model):
    """An on-call phone (the number in full for admins, masked for supervisors)."""

    id: int
    label: str
    phone: str
    position: int
    active: bool


class EscalationOut(Model):
    """Where an emergency call's escalation stands (counts, never the numbers)."""

    call_id: int
    reason: str
    stage: str
    step: int
    oncall_count: int
    contact_count: int
    dialled_120: bool
    started_at: datetime
    overflow_at: datetime | None
    taken_by: str | None
    taken_at: datetime | None


def oncall_public(row: OnCallPhone, user: User) -> dict[str, Any]:
    """An on-call phone on the API (the full number only for admins)."""
    return {
        "id": row.id,
        "label": row.label,
        "phone": row.phone if user.role == Role.ADMIN else mask(row.phone),
        "position": row.position,
        "active": row.active,
    }


@API.route(
    "GET",
    "/oncall",
    summary="The on-call list, in the order an emergency rings it",
    roles=SUPERVISORS,
    response=list[OnCallOut],
    tag="emergency",
)
async def list_oncall(request: web.Request) -> web.Response:
    """The on-call phones."""
    user = user_of(request)
    rows = await app_services(request).dispatch.oncall.phones()
    return ok([oncall_public(r, user) for r in rows])


@API.route(
    "POST",
    "/oncall",
    summary="Add a phone at the end of the on-call list",
    roles=ADMINS,
    response=OnCallOut,
    status=201,
    body=OnCallIn,
    tag="emergency",
)
async def add_oncall(request: web.Request) -> web.Response:
    """A new on-call phone."""
    user = user_of(request)
    data = await body(request, OnCallIn)
    row = await app_services(request).dispatch.oncall.add(
        phone=data.phone, label=data.label, actor=user.username
    )
    return ok(oncall_public(row, user), status=201)


@API.route(
    "PATCH",
    "/oncall/{oncall_id}",
    summary="Rename, move or switch off an on-call phone",
    roles=ADMINS,
    response=OnCallOut,
    body=OnCallPatch,
    tag="emergency",
)
async def update_oncall(request: web.Request) -> web.Response:
    """Change an on-call phone."""
    user = user_of(request)
    data = await body(request, OnCallPatch)
    row = await app_services(request).dispatch.oncall.update(
        int_param(request, "oncall_id"),
        label=data.label,
        position=data.position,
        active=data.active,
        actor=user.username,
    )
    return ok(oncall_public(row, user))


@API.route(
    "DELETE",
    "/oncall/{oncall_id}",
    summary="Take a phone off the on-call list",
    roles=ADMINS,
    response=Done,
    tag="emergency",
)
async def remove_oncall(request: web.Request) -> web.Response:
    """Remove an on-call phone."""
    user = user_of(request)
    await app_services(request).dispatch.oncall.remove(
        int_param(request, "oncall_id"), actor=user.username
    )
    return ok({"ok": True})


@API.route(
    "GET",
    "/calls/{call_id}/emergency",
    summary="An emergency call's escalation: stage, who was rung, who took it",
    roles=OPERATORS,
    response=EscalationOut,
    tag="emergency",
)
async def call_emergency(request: web.Request) -> web.Response:
    """Where an emergency call's escalation stands (404 for a routine call)."""
    call_id = int_param(request, "call_id")
    async with app_services(request).store.read() as session:
        row = await session.get(EmergencyEscalation, call_id)
        if row is None:
            raise repo.NotFound("emergency", call_id)
    return ok(
        {
            "call_id": row.call_id,
            "reason": row.reason,
            "stage": row.stage.value,
            "step": row.step,
            "oncall_count": len(row.plan.get("oncall", [])),
            "contact_count": len(row.plan.get("contacts", [])),
            "dialled_120": row.dialled_120,
            "started_at": row.started_at.isoformat(),
            "overflow_at": row.overflow_at.isoformat() if row.overflow_at else None,
            "taken_by": row.taken_by,
            "taken_at": row.taken_at.isoformat() if row.taken_at else None,
        }
    )
