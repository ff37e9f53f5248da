"""What the operator desk needs beyond the core API: the ticket board, one's own state,
and holding, transferring and consulting about a caller."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal, Self

from aiohttp import web
from pydantic import Field, model_validator
from sqlalchemy import select
from sqlmodel import col

from dispatch.machines.operator import OperatorState
from dispatch.machines.ticket import OPEN, TicketState
from dispatch.models import Call, OperatorStatus, Ticket
from operator_console import call_access
from operator_console.api import (
    API,
    OPERATORS,
    Model,
    Strict,
    body,
    int_param,
    ok,
    query_int,
    services,
    user_of,
)
from operator_console.errors import FieldInvalid
from operator_console.views import CallOut, TicketOut, call_public, ticket_public
from registry.models import Merchant, Resident, ServiceCategory
from registry.repository import NotFound
from registry.schemas import DbId

SCOPES = ("open", "mine", "all")


class BoardTicketOut(TicketOut):
    """A ticket on the board, with the names staff read it by."""

    category_zh: str
    category_en: str
    deadline_minutes: int | None
    resident_name: str
    grid_code: str
    merchant: str | None


class MyStateOut(Model):
    """The operator's own state."""

    state: str
    reason: str | None
    call_id: int | None
    #: when the state began (the desk's time in state)
    since: datetime | None = None
    #: reserved: when the call offered to the operator rings out and goes to the next one
    #: (the desk counts down to it); None in any other state
    offer_expires_at: datetime | None = None
    #: the server's clock when it answered, so a page counts down with its own clock's
    #: offset taken out
    at: datetime


class TargetOut(Model):
    """Someone a caller can be handed to."""

    user_id: int
    name: str
    state: str
    role: str | None = None


class TransferTargetsOut(Model):
    """Available operators (not oneself) and free supervisors."""

    operators: list[TargetOut]
    supervisors: list[TargetOut]


@API.route(
    "GET",
    "/board",
    summary="The ticket board: ?scope=open|mine|all&state=&category=&grid=&resident_id=",
    roles=OPERATORS,
    tag="tickets",
    response=list[BoardTicketOut],
)
async def board(request: web.Request) -> web.Response:
    """Tickets with the resident's name and grid, the category and merchant names."""
    user = user_of(request)
    q = request.query
    scope = q.get("scope", "open")
    if scope not in SCOPES:
        raise FieldInvalid(f"scope must be one of {', '.join(SCOPES)}", "scope")
    stmt = select(Ticket, Resident).outerjoin(Resident, col(Resident.id) == Ticket.resident_id)
    if scope in ("open", "mine"):
        stmt = stmt.where(col(Ticket.state).in_(list(OPEN)))
    if scope == "mine":
        # mine: what I look after (made at my desk, or handed to me); an older ticket
        # with no assignee is its maker's
        stmt = stmt.where(
            (col(Ticket.assigned_to) == user.id)
            | (col(Ticket.assigned_to).is_(None) & (col(Ticket.created_by) == user.username))
        )
    if state := q.get("state"):
        if state not in TicketState.__members__.values():
            raise FieldInvalid(f"unknown state {state!r}", "state")
        stmt = stmt.where(col(Ticket.state) == TicketState(state))
    if category := q.get("category"):
        stmt = stmt.where(col(Ticket.category_code) == category[:32])
    if grid := q.get("grid"):
        stmt = stmt.where(col(Resident.grid_code) == grid[:32])
    if (resident := query_int(request, "resident_id")) is not None:
        stmt = stmt.where(col(Ticket.resident_id) == resident)
    stmt = stmt.order_by(col(Ticket.deadline_at), col(Ticket.id)).limit(300)
    async with services(request).store.read() as session:
        rows = (await session.execute(stmt)).all()
        categories = {c.code: c for c in (await session.execute(select(ServiceCategory))).scalars()}
        merchant_ids = {t.merchant_id for t, _ in rows if t.merchant_id is not None}
        merchants = {
            m.id: m.name
            for m in (
                await session.execute(select(Merchant).where(col(Merchant.id).in_(merchant_ids)))
            ).scalars()
        }
    out: list[dict[str, Any]] = []
    for ticket, res in rows:
        data = ticket_public(ticket)
        cat = categories.get(ticket.category_code)
        data["category_zh"] = cat.name_zh if cat else ticket.category_code
        data["category_en"] = cat.name_en if cat else ticket.category_code
        data["deadline_minutes"] = cat.deadline_minutes if cat else None
        data["resident_name"] = res.name if res else ""
        data["grid_code"] = res.grid_code if res else ""
        data["merchant"] = merchants.get(ticket.merchant_id) if ticket.merchant_id else None
        out.append(data)
    return ok(out)


@API.route(
    "GET",
    "/operator/state",
    summary="The logged-in operator's own state",
    roles=OPERATORS,
    tag="calls",
    response=MyStateOut,
)
async def my_state(request: web.Request) -> web.Response:
    """One's own state and pause reason (logged_out until first login); a call offered to
    one (reserved) with the moment it rings out: the queue's `ring:` timer, due
    `ring_operator_s` after the reservation."""
    user = user_of(request)
    svc = services(request)
    now = svc.clock.now().isoformat()
    async with svc.store.read() as session:
        status = await session.get(OperatorStatus, user.id)
    if status is None:
        return ok({"state": "logged_out", "reason": None, "call_id": None, "at": now})
    expires = None
    if status.state == OperatorState.RESERVED:
        ring_s = svc.dispatch.core.config.ring_operator_s
        expires = (status.since + timedelta(seconds=ring_s)).isoformat()
    return ok(
        {
            "state": status.state.value,
            "reason": status.reason,
            "call_id": status.call_id,
            "since": status.since.isoformat(),
            "offer_expires_at": expires,
            "at": now,
        }
    )


# -- hold and transfer ------------------------------------------------------------------
class TransferBody(Strict):
    """Who takes the caller: one operator by id, or the supervisor desk."""

    to_user_id: DbId | None = None
    to: Literal["supervisor"] | None = None
    #: what the receiving desk should know first (shown with the caller's card)
    note: str = Field(default="", max_length=200)

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if (self.to_user_id is None) == (self.to is None):
            raise ValueError("give either to_user_id or to='supervisor'")
        return self


async def _call_view(request: web.Request, call_id: int) -> web.Response:
    async with services(request).store.read() as session:
        call = await session.get(Call, call_id)
        if call is None:
            raise NotFound("call", call_id)
        return ok(await call_public(session, call))


@API.route(
    "POST",
    "/calls/{call_id}/hold",
    summary="Put one's caller on hold (they hear the hold prompt; 409 if not connected)",
    roles=OPERATORS,
    tag="calls",
    response=CallOut,
)
async def hold(request: web.Request) -> web.Response:
    """Hold."""
    user = user_of(request)
    call_id = int_param(request, "call_id")
    await call_access.check(request, call_id, user, "hold")
    await services(request).dispatch.desk.hold_call(call_id, user)
    return await _call_view(request, call_id)


@API.route(
    "POST",
    "/calls/{call_id}/unhold",
    summary="Take one's caller back from hold (409 if not on hold)",
    roles=OPERATORS,
    tag="calls",
    response=CallOut,
)
async def unhold(request: web.Request) -> web.Response:
    """Resume."""
    user = user_of(request)
    call_id = int_param(request, "call_id")
    await call_access.check(request, call_id, user, "unhold")
    await services(request).dispatch.desk.resume_call(call_id, user)
    return await _call_view(request, call_id)


@API.route(
    "POST",
    "/calls/{call_id}/transfer",
    summary="Hand one's caller to an available operator or a supervisor (409 if not free)",
    roles=OPERATORS,
    body=TransferBody,
    tag="calls",
    response=CallOut,
)
async def transfer(request: web.Request) -> web.Response:
    """Transfer; the sender goes to wrap-up, the receiver on_call with the same call."""
    user = user_of(request)
    data = await body(request, TransferBody)
    call_id = int_param(request, "call_id")
    await call_access.check(request, call_id, user, "transfer")
    await services(request).dispatch.desk.transfer_call(
        call_id, user, to_user_id=data.to_user_id, to_role=data.to, note=data.note
    )
    return await _call_view(request, call_id)


class ConsultBody(Strict):
    """The free colleague to ring, and what their desk should know first."""

    to_operator: DbId
    note: str = Field(default="", max_length=200)


@API.route(
    "POST",
    "/calls/{call_id}/consult",
    summary="Hold one's caller and ring a free colleague to talk first (409 "
    "consult_unsupported where the telephony backend cannot)",
    roles=OPERATORS,
    body=ConsultBody,
    tag="calls",
    response=CallOut,
)
async def consult(request: web.Request) -> web.Response:
    """Consult: the caller on hold, the colleague's desk rings with the caller's context."""
    user = user_of(request)
    data = await body(request, ConsultBody)
    call_id = int_param(request, "call_id")
    await call_access.check(request, call_id, user, "consult")
    await services(request).dispatch.consults.start(
        call_id, user, to_user_id=data.to_operator, note=data.note
    )
    return await _call_view(request, call_id)


@API.route(
    "POST",
    "/calls/{call_id}/consult/complete",
    summary="Hand the held caller to the colleague consulted (409 before they answer)",
    roles=OPERATORS,
    tag="calls",
    response=CallOut,
)
async def consult_complete(request: web.Request) -> web.Response:
    """Complete: the colleague has the caller, the operator goes to wrap-up."""
    user = user_of(request)
    call_id = int_param(request, "call_id")
    await call_access.check(request, call_id, user, "consult")
    await services(request).dispatch.consults.complete(call_id, user)
    return await _call_view(request, call_id)


@API.route(
    "POST",
    "/calls/{call_id}/consult/cancel",
    summary="End the consult: the colleague is free, the caller back with the operator",
    roles=OPERATORS,
    tag="calls",
    response=CallOut,
)
async def consult_cancel(request: web.Request) -> web.Response:
    """Cancel: the caller is taken off hold."""
    user = user_of(request)
    call_id = int_param(request, "call_id")
    await call_access.check(request, call_id, user, "consult")
    await services(request).dispatch.consults.cancel(call_id, user)
    return await _call_view(request, call_id)


@API.route(
    "GET",
    "/transfer-targets",
    summary="Who a caller can be transferred to now: available operators and supervisors",
    roles=OPERATORS,
    tag="calls",
    response=TransferTargetsOut,
)
async def transfer_targets(request: web.Request) -> web.Response:
    """Available operators (not oneself) and supervisors logged in and free."""
    user = user_of(request)
    return ok(await services(request).dispatch.desk.transfer_targets(user))
