"""What the operator desk reads beyond the core API: the ticket board and one's own state."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlmodel import col

from dispatch.machines.ticket import OPEN, TicketState
from dispatch.models import OperatorStatus, Ticket
from dispatch.service import Invalid
from operator_console.api import API, STAFF, need, ok, services, ticket_public
from registry.models import Merchant, Resident, ServiceCategory

SCOPES = ("open", "mine", "all")


@API.route(
    "GET",
    "/board",
    summary="The ticket board: ?scope=open|mine|all&state=&category=&grid=&resident_id=",
    roles=("operator",),
    tag="tickets",
)
async def board(request: web.Request) -> web.Response:
    """Tickets with the resident's name and grid, the category and merchant names."""
    user = need(request, *STAFF)
    q = request.query
    scope = q.get("scope", "open")
    if scope not in SCOPES:
        raise Invalid(f"scope must be one of {', '.join(SCOPES)}")
    stmt = select(Ticket, Resident).outerjoin(Resident, col(Resident.id) == Ticket.resident_id)
    if scope in ("open", "mine"):
        stmt = stmt.where(col(Ticket.state).in_(list(OPEN)))
    if scope == "mine":
        stmt = stmt.where(col(Ticket.created_by) == user.username)
    if state := q.get("state"):
        if state not in TicketState.__members__.values():
            raise Invalid(f"unknown state {state!r}")
        stmt = stmt.where(col(Ticket.state) == TicketState(state))
    if category := q.get("category"):
        stmt = stmt.where(col(Ticket.category_code) == category[:32])
    if grid := q.get("grid"):
        stmt = stmt.where(col(Resident.grid_code) == grid[:32])
    if (resident := q.get("resident_id", "")).isdigit():
        stmt = stmt.where(col(Ticket.resident_id) == int(resident))
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
    roles=("operator",),
    tag="calls",
)
async def my_state(request: web.Request) -> web.Response:
    """One's own state and pause reason (logged_out until first login)."""
    user = need(request, *STAFF)
    async with services(request).store.read() as session:
        status = await session.get(OperatorStatus, user.id)
    if status is None:
        return ok({"state": "logged_out", "reason": None, "call_id": None})
    return ok({"state": status.state.value, "reason": status.reason, "call_id": status.call_id})
