"""Tickets (工单) and offers: record a need, list and read tickets, the ranking, dispatch,
arrival, completion, cancel, a note, reassigning, and accepting an offer. Merchants see
only their own tickets, never a resident's phone, and never note or reassign."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field
from sqlalchemy import select
from sqlmodel import col

from dispatch.machines.ticket import OPEN, TicketState
from dispatch.models import OperatorStatus, Ticket
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
from operator_console.booking_body import BookingBody
from operator_console.errors import FieldInvalid
from operator_console.views import (
    EventOut,
    MerchantTicketOut,
    OfferOut,
    TicketOut,
    merchant_ticket_public,
    offer_public,
    ticket_public,
)
from registry.models import Merchant, Resident, Role, User
from registry.schemas import DbId


class TicketBody(Strict):
    """A need recorded by an operator."""

    category: str = Field(min_length=1, max_length=32)
    description: str = Field(default="", max_length=1000)
    resident_id: DbId | None = None
    call_id: DbId | None = None
    #: a booked visit's window (date, from, until; Asia/Shanghai): `PUT .../booking` at once
    booking: BookingBody | None = None


class DispatchBody(Strict):
    """Dispatch along the ranking, or to the operator's picks first."""

    merchant_ids: list[DbId] | None = Field(default=None, max_length=20)


class CancelBody(Strict):
    """Why a ticket is cancelled."""

    reason: str = Field(min_length=1, max_length=200)


class NoteBody(Strict):
    """A note for the ticket's timeline."""

    text: str = Field(min_length=1, max_length=500)


class ConsentBody(Strict):
    """Who consented to the price: the resident, or the family member named."""

    who: str = Field(min_length=1, max_length=64)


class AssignBody(Strict):
    """Whom the ticket goes to."""

    user_id: DbId


class NoteOut(Model):
    """The note as recorded."""

    ticket_id: int
    note: str
    actor: str


class AssigneeOut(Model):
    """Someone a ticket can be handed to, and their desk's state now."""

    user_id: int
    name: str
    role: str
    state: str


class OfferWithMerchant(OfferOut):
    """An offer and the merchant's name."""

    merchant: str


class TicketDetail(TicketOut):
    """A ticket with its offers and every event about it."""

    offers: list[OfferWithMerchant]
    timeline: list[EventOut]


class PriceOut(Model):
    """A merchant's price note for the category: who pays, the resident's share, a text."""

    kind: str | None = Field(description="subsidised, self_paid, free (None: not stated)")
    yuan: int | None
    note: str


class CandidateOut(Model):
    """A ranked merchant and why it ranks where it does."""

    merchant_id: int
    name: str
    kind: str
    eligible: bool
    score: float
    distance_m: int | None
    load: int
    capacity: int
    preferred: bool
    opens_at: str | None
    #: the reasons as codes with their figures ({"code": ..., ...}): the console words them
    why: list[Any]
    price: PriceOut | None = None


class TicketStateOut(Model):
    """What a merchant hears back of an arrival or completion."""

    id: int
    state: str


class AcceptedOut(Model):
    """The ticket an accepted offer belongs to."""

    ticket_id: int
    state: str


@API.route(
    "POST",
    "/tickets",
    summary="Record a need",
    roles=OPERATORS,
    body=TicketBody,
    tag="tickets",
    response=TicketOut,
    status=201,
)
async def create_ticket(request: web.Request) -> web.Response:
    """Create a ticket."""
    user = user_of(request)
    data = await body(request, TicketBody)
    ticket = await services(request).dispatch.tickets.create_ticket(
        user=user,
        category=data.category,
        description=data.description,
        resident_id=data.resident_id,
        call_id=data.call_id,
    )
    if data.booking is not None:
        assert ticket.id is not None
        ticket = await services(request).dispatch.booking.book(
            ticket.id, user=user, on=data.booking.on, start=data.booking.start,
            end=data.booking.end,
        )  # fmt: skip
    return ok(ticket_public(ticket), status=201)


@API.route(
    "GET",
    "/tickets",
    summary="Tickets, newest first (?state=open|STATE)",
    roles=OPERATORS_AND_MERCHANTS,
    tag="tickets",
    response=list[TicketOut] | list[MerchantTicketOut],
)
async def list_tickets(request: web.Request) -> web.Response:
    """Tickets; merchants see only their own."""
    user = user_of(request)
    state = request.query.get("state", "open")
    stmt = select(Ticket).order_by(col(Ticket.id).desc()).limit(200)
    if state == "open":
        stmt = stmt.where(col(Ticket.state).in_(list(OPEN)))
    elif state in TicketState.__members__.values():
        stmt = stmt.where(col(Ticket.state) == TicketState(state))
    elif state != "all":
        raise FieldInvalid(f"unknown state {state!r}", "state")
    async with services(request).store.read() as session:
        if user.role == Role.MERCHANT:
            stmt = stmt.where(col(Ticket.merchant_id) == user.merchant_id)
            rows = (await session.execute(stmt)).scalars().all()
            out = [
                merchant_ticket_public(
                    t, await session.get(Resident, t.resident_id) if t.resident_id else None
                )
                for t in rows
            ]
            return ok(out)
        rows = (await session.execute(stmt)).scalars().all()
        return ok([ticket_public(t) for t in rows])


@API.route(
    "GET",
    "/tickets/{ticket_id}",
    summary="A ticket with its offers and timeline",
    roles=OPERATORS,
    tag="tickets",
    response=TicketDetail,
)
async def ticket_detail(request: web.Request) -> web.Response:
    """A ticket, its offers and every event about it."""
    svc = services(request)
    ticket_id = int_param(request, "ticket_id")
    ticket = await svc.dispatch.tickets.get_ticket(ticket_id)
    offers = await svc.dispatch.offers.offers(ticket_id)
    async with svc.store.read() as session:
        names = {
            m.id: m.name
            for m in (
                await session.execute(
                    select(Merchant).where(col(Merchant.id).in_([o.merchant_id for o in offers]))
                )
            ).scalars()
        }
    data = ticket_public(ticket)
    data["offers"] = [{**offer_public(o), "merchant": names.get(o.merchant_id, "")} for o in offers]
    data["timeline"] = await svc.store.events_for("ticket", ticket_id)
    return ok(data)


@API.route(
    "GET",
    "/tickets/{ticket_id}/candidates",
    summary="Ranked merchants for a ticket with the reasons for each",
    roles=OPERATORS,
    tag="tickets",
    response=list[CandidateOut],
)
async def candidates(request: web.Request) -> web.Response:
    """The ranking."""
    ranked = await services(request).dispatch.ranking.candidates(int_param(request, "ticket_id"))
    return ok([c.public() for c in ranked])


@API.route(
    "POST",
    "/tickets/{ticket_id}/dispatch",
    summary="Start the offer cascade (409 consent_required: the category asks for the "
    "resident's consent first)",
    roles=OPERATORS,
    body=DispatchBody,
    tag="tickets",
    response=TicketOut,
)
async def dispatch_ticket(request: web.Request) -> web.Response:
    """Dispatch."""
    user = user_of(request)
    data = await body(request, DispatchBody)
    ticket = await services(request).dispatch.offers.dispatch(
        int_param(request, "ticket_id"), user=user, merchant_ids=data.merchant_ids
    )
    return ok(ticket_public(ticket))


async def _merchant_or_staff_ticket_action(request: web.Request, action: str) -> web.Response:
    user = user_of(request)
    tickets = services(request).dispatch.tickets
    ticket_id = int_param(request, "ticket_id")
    if action == "arrive":
        ticket = await tickets.arrive(ticket_id, user=user)
    else:
        ticket = await tickets.complete(ticket_id, user=user)
    return ok(
        ticket_public(ticket)
        if user.role != Role.MERCHANT
        else {"id": ticket.id, "state": ticket.state}
    )


@API.route(
    "POST",
    "/tickets/{ticket_id}/arrive",
    summary="The merchant is at the door",
    roles=OPERATORS_AND_MERCHANTS,
    tag="tickets",
    response=TicketOut | TicketStateOut,
)
async def arrive(request: web.Request) -> web.Response:
    """Arrival."""
    return await _merchant_or_staff_ticket_action(request, "arrive")


@API.route(
    "POST",
    "/tickets/{ticket_id}/complete",
    summary="The visit is done",
    roles=OPERATORS_AND_MERCHANTS,
    tag="tickets",
    response=TicketOut | TicketStateOut,
)
async def complete(request: web.Request) -> web.Response:
    """Completion; the survey call follows."""
    return await _merchant_or_staff_ticket_action(request, "complete")


@API.route(
    "POST",
    "/tickets/{ticket_id}/cancel",
    summary="Cancel a ticket",
    roles=OPERATORS,
    body=CancelBody,
    tag="tickets",
    response=TicketOut,
)
async def cancel(request: web.Request) -> web.Response:
    """Cancel."""
    user = user_of(request)
    data = await body(request, CancelBody)
    ticket = await services(request).dispatch.tickets.cancel(
        int_param(request, "ticket_id"), user=user, reason=data.reason
    )
    return ok(ticket_public(ticket))


@API.route(
    "POST",
    "/tickets/{ticket_id}/notes",
    summary="Add a note to the ticket's timeline",
    roles=OPERATORS,
    body=NoteBody,
    tag="tickets",
    response=NoteOut,
    status=201,
)
async def add_note(request: web.Request) -> web.Response:
    """A note (an event on the ticket, shown on its page)."""
    user = user_of(request)
    data = await body(request, NoteBody)
    note = await services(request).dispatch.tickets.add_note(
        int_param(request, "ticket_id"), user=user, text=data.text.strip() or data.text
    )
    return ok(note, status=201)


@API.route(
    "POST",
    "/tickets/{ticket_id}/consent",
    summary="Record the resident's consent to the price (a category that asks for it is "
    "dispatched only after; 409 closed)",
    roles=OPERATORS,
    body=ConsentBody,
    tag="tickets",
    response=TicketOut,
)
async def consent(request: web.Request) -> web.Response:
    """Consent, as the operator heard it (`ticket.consented` on the timeline)."""
    user = user_of(request)
    data = await body(request, ConsentBody)
    ticket = await services(request).dispatch.tickets.consent(
        int_param(request, "ticket_id"), user=user, who=data.who.strip() or data.who
    )
    return ok(ticket_public(ticket))


@API.route(
    "POST",
    "/tickets/{ticket_id}/assign",
    summary="Hand an open ticket to another operator (409 closed or theirs already; "
    "422 not an active operator)",
    roles=OPERATORS,
    body=AssignBody,
    tag="tickets",
    response=TicketOut,
)
async def assign(request: web.Request) -> web.Response:
    """Reassign."""
    user = user_of(request)
    data = await body(request, AssignBody)
    ticket = await services(request).dispatch.tickets.assign(
        int_param(request, "ticket_id"), user=user, to_user_id=data.user_id
    )
    return ok(ticket_public(ticket))


@API.route(
    "GET",
    "/assignees",
    summary="Whom a ticket can be handed to: active operators and supervisors",
    roles=OPERATORS,
    tag="tickets",
    response=list[AssigneeOut],
)
async def assignees(request: web.Request) -> web.Response:
    """Active staff with their desk's state (logged out when they have no state row)."""
    stmt = (
        select(User, OperatorStatus)
        .outerjoin(OperatorStatus, col(OperatorStatus.user_id) == User.id)
        .where(col(User.active), col(User.role) != Role.MERCHANT)
        .order_by(col(User.id))
    )
    async with services(request).store.read() as session:
        rows = (await session.execute(stmt)).all()
    return ok(
        [
            {
                "user_id": u.id,
                "name": u.display_name or u.username,
                "role": u.role.value,
                "state": status.state.value if status is not None else "logged_out",
            }
            for u, status in rows
        ]
    )


@API.route(
    "POST",
    "/offers/{offer_id}/accept",
    summary="Accept an offer (merchant page, or an operator on the merchant's behalf)",
    roles=OPERATORS_AND_MERCHANTS,
    tag="tickets",
    response=AcceptedOut,
)
async def accept_offer(request: web.Request) -> web.Response:
    """Accept; a second accept of the same ticket is refused with 409."""
    user = user_of(request)
    ticket = await services(request).dispatch.offers.accept_offer(
        int_param(request, "offer_id"), user=user
    )
    return ok({"ticket_id": ticket.id, "state": ticket.state.value})
