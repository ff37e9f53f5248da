"""The merchant's "connect me to the resident" button (a masked call, `dispatch.masked`).

The service rings the merchant's registered phone first, then the resident's, and joins
the two; both see the hotline's number. The answer carries ids and a state only: never
the resident's number (nor anyone's).
"""

from __future__ import annotations

from aiohttp import web

from dispatch.masked import MaskedLimit
from operator_console.api import API, MERCHANTS, Model, int_param, ok, services, user_of
from operator_console.errors import TooManyAttempts
from registry import repository as repo
from registry.models import Role


class MaskedOut(Model):
    """A masked call being placed: the merchant's phone rings first."""

    ticket_id: int
    masked_id: int
    #: calling_you: the merchant's own phone is being rung
    state: str


@API.route(
    "POST",
    "/merchant/orders/{ticket_id}/connect",
    summary="Connect the merchant to the resident of their open order through the hotline "
    "(their phone rings first, then the resident's; neither sees the other's number). "
    "404 not theirs; 409 order_not_open (not accepted or in service) or masked_busy; "
    "429 too many calls this hour; 503 the phone line is down",
    roles=MERCHANTS,
    tag="merchant",
    response=MaskedOut,
    status=201,
)
async def connect(request: web.Request) -> web.Response:
    """Place the merchant's leg of a masked call."""
    user = user_of(request)
    ticket_id = int_param(request, "ticket_id")
    if user.role != Role.MERCHANT or user.merchant_id is None:
        raise repo.NotFound("ticket", ticket_id)
    try:
        call = await services(request).dispatch.masked.merchant_to_resident(ticket_id, user=user)
    except MaskedLimit as exc:
        raise TooManyAttempts(str(exc), exc.retry_after_s) from None
    assert call.id is not None
    return ok({"ticket_id": ticket_id, "masked_id": call.id, "state": "calling_you"}, status=201)
