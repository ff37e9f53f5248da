"""Booked visits on the API (`dispatch.booking`): an operator books, moves or clears a
ticket's date and time window (Asia/Shanghai); the merchant who accepted a booked visit
(or an operator on their behalf) cancels it and the cascade re-opens.

Importing this module registers its routes on `operator_console.api.API`; the app
factory imports it once.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from dispatch.booking import Booking
from operator_console.api import (
    API,
    OPERATORS,
    OPERATORS_AND_MERCHANTS,
    Strict,
    body,
    int_param,
    ok,
    services,
    user_of,
)
from operator_console.booking_body import BookingBody
from operator_console.tickets_api import TicketStateOut
from operator_console.views import TicketOut, ticket_public
from registry.models import Role

REGISTERED = True


class MerchantCancelBody(Strict):
    """Why the merchant cannot come (optional)."""

    reason: str = Field(default="", max_length=200)


def _booking(request: web.Request) -> Booking:
    booking: Booking = services(request).dispatch.booking
    return booking


@API.route(
    "PUT",
    "/tickets/{ticket_id}/booking",
    summary="Book (or move) a ticket's visit window; matching then takes merchants open in "
    "it (409 not_bookable while offered, served or closed; 422 a past or empty window)",
    roles=OPERATORS,
    body=BookingBody,
    tag="tickets",
    response=TicketOut,
)
async def book(request: web.Request) -> web.Response:
    """Book."""
    data = await body(request, BookingBody)
    ticket = await _booking(request).book(
        int_param(request, "ticket_id"), user=user_of(request), on=data.on,
        start=data.start, end=data.end,
    )  # fmt: skip
    return ok(ticket_public(ticket))


@API.route(
    "DELETE",
    "/tickets/{ticket_id}/booking",
    summary="A ticket not offered yet goes back to 'as soon as possible'",
    roles=OPERATORS,
    tag="tickets",
    response=TicketOut,
)
async def clear(request: web.Request) -> web.Response:
    """Clear."""
    ticket = await _booking(request).clear(int_param(request, "ticket_id"), user=user_of(request))
    return ok(ticket_public(ticket))


@API.route(
    "POST",
    "/tickets/{ticket_id}/booking/cancel",
    summary="The accepted merchant cancels the booked visit (their own only; an operator on "
    "their behalf): the cascade re-opens with the merchants open in the window",
    roles=OPERATORS_AND_MERCHANTS,
    body=MerchantCancelBody,
    tag="tickets",
    response=TicketOut | TicketStateOut,
)
async def merchant_cancel(request: web.Request) -> web.Response:
    """Cancel by the merchant."""
    user = user_of(request)
    data = await body(request, MerchantCancelBody)
    ticket = await _booking(request).cancel_by_merchant(
        int_param(request, "ticket_id"), user=user, reason=data.reason
    )
    if user.role == Role.MERCHANT:
        return ok({"id": ticket.id, "state": ticket.state.value})
    return ok(ticket_public(ticket))
