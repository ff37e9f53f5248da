"""Incidents on the API: many calls about one outage in a grid (`dispatch.incidents`).

Operators and supervisors list, open, link, dispatch and fix incidents and see the
proposals; a merchant (the utility) sees only the incident whose ticket it holds, never
a caller or a number, and may report it fixed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from aiohttp import web
from pydantic import Field

from dispatch.services import DispatchServices
from operator_console.api import (
    API,
    OPERATORS,
    OPERATORS_AND_MERCHANTS,
    Model,
    Strict,
    body,
    int_param,
    ok,
    services,
    user_of,
)
from operator_console.errors import Forbidden
from registry.models import Role
from registry.schemas import DbId

REGISTERED = True

Utility = Literal["water", "electricity", "gas"]


class IncidentBody(Strict):
    """A new incident: what failed, and the calls about it (the grid is the first
    registered caller's unless given)."""

    category: Utility
    call_ids: list[DbId] = Field(default_factory=list, max_length=500)
    grid_code: str | None = Field(default=None, min_length=1, max_length=32)


class IncidentLinkBody(Strict):
    """One more call about the incident."""

    call_id: DbId


class IncidentOut(Model):
    """An incident: where, what, how many callers, and where its callbacks stand."""

    id: int
    grid_code: str
    grid_name: str
    category: str
    state: str
    ticket_id: int | None
    linked: int
    affected: int
    #: callbacks by outcome (told, unanswered, failed, lost, placed, pending, ...)
    callbacks: dict[str, int]
    opened_by: str
    opened_at: datetime | None
    dispatched_at: datetime | None
    fixed_at: datetime | None
    done_at: datetime | None


class LinkedCall(Model):
    """A call linked to an incident (the number masked) and its callback."""

    call_id: int
    resident_id: int | None
    resident_name: str
    number: str
    linked_by: str
    linked_at: datetime | None
    callback: str | None


class IncidentDetail(IncidentOut):
    """An incident with its linked calls."""

    calls: list[LinkedCall]


class IncidentTicket(Model):
    """The utility's ticket as its merchant sees it."""

    id: int | None
    state: str
    description: str
    deadline_at: datetime | None


class MerchantIncident(Model):
    """What the utility holding the ticket sees: no caller, no number."""

    id: int
    grid_name: str
    category: str
    state: str
    affected: int
    ticket: IncidentTicket


class Proposal(Model):
    """Calls about one fault in one grid, not linked yet: link them as one incident (or
    into the open one)."""

    grid_code: str
    grid_name: str
    category: str
    calls: int
    call_ids: list[int]
    minutes: int
    incident_id: int | None


def _dispatch(request: web.Request) -> DispatchServices:
    dispatch: DispatchServices = services(request).dispatch
    return dispatch


@API.route(
    "GET",
    "/incidents",
    summary="Incidents, newest first (?active=1 open or dispatched only, ?grid=CODE)",
    roles=OPERATORS,
    response=list[IncidentOut],
    tag="incidents",
)
async def incidents(request: web.Request) -> web.Response:
    """The incident list."""
    active = request.query.get("active", "") in ("1", "true")
    grid = request.query.get("grid") or None
    board = _dispatch(request).incident_board
    return ok(await board.incidents(active=active, grid_code=grid[:32] if grid else None))


@API.route(
    "GET",
    "/incidents/proposals",
    summary="Grids with several recent calls about one water, power or gas fault, not linked",
    roles=OPERATORS,
    response=list[Proposal],
    tag="incidents",
)
async def proposals(request: web.Request) -> web.Response:
    """The service's proposals: link these calls as one incident."""
    return ok(await _dispatch(request).incident_board.proposals())


@API.route(
    "POST",
    "/incidents",
    summary="Open an incident with its first calls (409 when the grid has one open already)",
    roles=OPERATORS,
    response=IncidentDetail,
    status=201,
    body=IncidentBody,
    tag="incidents",
)
async def open_incident(request: web.Request) -> web.Response:
    """Open."""
    user = user_of(request)
    data = await body(request, IncidentBody)
    incident = await _dispatch(request).incidents.open(
        user=user, category=data.category, call_ids=data.call_ids, grid_code=data.grid_code
    )
    assert incident.id is not None
    return ok(await _dispatch(request).incident_board.incident(incident.id), status=201)


@API.route(
    "GET",
    "/incidents/{incident_id}",
    summary="One incident: linked calls (numbers masked) and callbacks; a merchant: its ticket",
    roles=OPERATORS_AND_MERCHANTS,
    response=IncidentDetail | MerchantIncident,
    tag="incidents",
)
async def incident(request: web.Request) -> web.Response:
    """Detail."""
    user = user_of(request)
    incident_id = int_param(request, "incident_id")
    board = _dispatch(request).incident_board
    if user.role == Role.MERCHANT:
        if user.merchant_id is None:
            raise Forbidden("this merchant login has no merchant")
        return ok(await board.for_merchant(incident_id, user.merchant_id))
    return ok(await board.incident(incident_id))


@API.route(
    "POST",
    "/incidents/{incident_id}/calls",
    summary="Link a call to the incident (409 when linked already or the incident is fixed)",
    roles=OPERATORS,
    response=IncidentDetail,
    body=IncidentLinkBody,
    tag="incidents",
)
async def link(request: web.Request) -> web.Response:
    """Link one call."""
    user = user_of(request)
    data = await body(request, IncidentLinkBody)
    incident_id = int_param(request, "incident_id")
    await _dispatch(request).incidents.link(incident_id, data.call_id, user=user)
    return ok(await _dispatch(request).incident_board.incident(incident_id))


@API.route(
    "POST",
    "/incidents/{incident_id}/dispatch",
    summary="One ticket to the utility with the count of affected residents (409 if sent)",
    roles=OPERATORS,
    response=IncidentDetail,
    tag="incidents",
)
async def dispatch(request: web.Request) -> web.Response:
    """Dispatch."""
    user = user_of(request)
    incident_id = int_param(request, "incident_id")
    await _dispatch(request).incidents.dispatch(incident_id, user=user)
    return ok(await _dispatch(request).incident_board.incident(incident_id))


@API.route(
    "POST",
    "/incidents/{incident_id}/fixed",
    summary="The fault is repaired: every linked caller is called back (409 if fixed already)",
    roles=OPERATORS_AND_MERCHANTS,
    response=IncidentDetail | MerchantIncident,
    tag="incidents",
)
async def fixed(request: web.Request) -> web.Response:
    """Fixed."""
    user = user_of(request)
    incident_id = int_param(request, "incident_id")
    await _dispatch(request).incidents.fixed(incident_id, user=user)
    board = _dispatch(request).incident_board
    if user.role == Role.MERCHANT and user.merchant_id is not None:
        return ok(await board.for_merchant(incident_id, user.merchant_id))
    return ok(await board.incident(incident_id))
