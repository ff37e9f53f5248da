"""The merchant's side of the API: log in by a one-time code or link, their own orders,
and disputes of a rating or no-show (the merchant opens one, a supervisor decides it).

The login use case (making, delivering and checking codes and links, the rate limits) is
`operator_console.merchant_login`; here are its routes and the session it opens.
Merchants see what, where and when; never a resident's phone, nor who rated a visit.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from dispatch.booking_slot import window_of
from dispatch.disputes import STATES as DISPUTE_STATES
from dispatch.disputes import dispute_public
from dispatch.machines.offer import LIVE as LIVE_OFFERS
from dispatch.machines.ticket import OPEN
from dispatch.models import Offer, Ticket
from operator_console import auth
from operator_console.api import (
    ADMINS,
    API,
    MERCHANTS,
    PUBLIC,
    SUPERVISORS,
    Model,
    Strict,
    body,
    int_param,
    ok,
    services,
    user_of,
)
from operator_console.auth_api import SessionOut, session_response
from operator_console.errors import FieldInvalid, Unauthorized, error_response
from operator_console.merchant_login import Channel, LoginRefused, MerchantLogin, RateLimited
from operator_console.security import client_address
from operator_console.sim_api import sim_user
from registry import repository as repo
from registry.models import Merchant, Resident, Role, ServiceCategory, User
from registry.phones import mask

log = logging.getLogger(__name__)

#: the login use case, set by the composition root
login_key = web.AppKey("merchant_login", MerchantLogin)


def login_service(app: web.Application) -> MerchantLogin:
    """The app's merchant login use case."""
    return app[login_key]


class CodeRequestBody(Strict):
    """Ask for a login code: read out by a phone call, or sent as a text where possible."""

    phone: str = Field(min_length=3, max_length=32)
    channel: Literal["voice", "sms"] = "voice"
    lang: Literal["zh-CN", "en"] = "zh-CN"


class CodeVerifyBody(Strict):
    """Log in with a code."""

    phone: str = Field(min_length=3, max_length=32)
    code: str = Field(pattern=r"^[0-9]{6}$")


class LinkBody(Strict):
    """Log in with the token of a one-time login link."""

    token: str = Field(min_length=10, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


class CodeSentOut(Model):
    """The same answer whether the phone is registered or not."""

    sent: bool
    channel: str
    expires_in_s: int


class OrderOut(Model):
    """An order as a merchant sees it: what, where, when; never the resident's phone."""

    ticket_id: int
    state: str
    category: str
    category_zh: str
    category_en: str
    description: str
    urgency: str
    address: str
    deadline_at: datetime | None
    code_word: str
    booking: dict[str, str] | None = Field(
        default=None, description="a booked visit: date, from, until (Asia/Shanghai)"
    )
    offer_id: int | None = None


class MerchantOrdersOut(Model):
    """Offers waiting for the merchant's answer, and the orders they have taken."""

    merchant: str
    offers: list[OrderOut]
    orders: list[OrderOut]


class DeclinedOut(Model):
    """A declined offer."""

    offer_id: int
    declined: bool


class SimTextOut(Model):
    """A text a simulated handset received (the number masked)."""

    ref: str
    to: str
    text: str


@API.route(
    "POST",
    "/merchant-login/request",
    summary="Send a one-time login code (and link) to a merchant's registered phone",
    body=CodeRequestBody,
    tag="merchant",
    roles=PUBLIC,
    response=CodeSentOut,
)
async def request_code(request: web.Request) -> web.Response:
    """Always the same answer, registered phone or not; 429 when asked too often."""
    data = await body(request, CodeRequestBody)
    try:
        sent = await login_service(request.app).request(
            phone=data.phone,
            client=client_address(request),
            channel=Channel(data.channel),
            lang=data.lang,
        )
    except RateLimited as exc:
        response = error_response(
            429,
            "rate_limited",
            "too many login code requests; try again later",
            {"retry_after_s": exc.retry_after_s},
        )
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    return ok({"sent": True, "channel": sent.channel.value, "expires_in_s": sent.expires_in_s})


@API.route(
    "POST",
    "/merchant-login/verify",
    summary="Log in as a merchant with a one-time code; sets the session cookie",
    body=CodeVerifyBody,
    tag="merchant",
    roles=PUBLIC,
    response=SessionOut,
)
async def verify_code(request: web.Request) -> web.Response:
    """Check the code; five wrong tries spend it."""
    data = await body(request, CodeVerifyBody)
    try:
        merchant_id = await login_service(request.app).verify_code(phone=data.phone, code=data.code)
    except LoginRefused:
        raise Unauthorized("wrong phone or code") from None
    return await _merchant_session(request, merchant_id, via="code")


@API.route(
    "POST",
    "/merchant-login/link",
    summary="Log in as a merchant with a one-time login link's token; sets the session cookie",
    body=LinkBody,
    tag="merchant",
    roles=PUBLIC,
    response=SessionOut,
)
async def use_link(request: web.Request) -> web.Response:
    """A link works once, within the code's lifetime."""
    data = await body(request, LinkBody)
    try:
        merchant_id = await login_service(request.app).use_link(token=data.token)
    except LoginRefused:
        raise Unauthorized("this login link is used up or expired") from None
    return await _merchant_session(request, merchant_id, via="link")


async def _merchant_session(request: web.Request, merchant_id: int, *, via: str) -> web.Response:
    """Open a session for the merchant's login (made on first use)."""
    svc = services(request)
    # nobody knows this password (the merchant logs in by code); hashed off the loop and
    # before the transaction, in case the login has to be made
    unknown = await auth.hash_password_async(secrets.token_urlsafe(24))
    async with svc.store.tx() as tx:
        user = (
            (
                await tx.session.execute(
                    select(User).where(
                        col(User.merchant_id) == merchant_id, col(User.role) == Role.MERCHANT
                    )
                )
            )
            .scalars()
            .first()
        )
        if user is None:
            merchant = await tx.session.get(Merchant, merchant_id)
            user = User(
                username=f"merchant-{merchant_id}",
                display_name=merchant.name if merchant else "",
                password_hash=unknown,
                role=Role.MERCHANT,
                merchant_id=merchant_id,
            )
            tx.session.add(user)
            await tx.session.flush()
        if not user.active:
            raise Unauthorized("this merchant login is switched off")
        token, csrf = await auth.open_session(tx.session, user=user)
        tx.emit("merchant.logged_in", "merchant", merchant_id, actor=user.username, via=via)
    return session_response(svc.settings, user, token, csrf)


def _merchant(request: web.Request) -> tuple[User, int]:
    user = user_of(request)
    if user.role != Role.MERCHANT or user.merchant_id is None:
        raise repo.NotFound("merchant", "(not a merchant login)")
    return user, user.merchant_id


async def _order(session: AsyncSession, ticket: Ticket) -> dict[str, Any]:
    resident = await session.get(Resident, ticket.resident_id) if ticket.resident_id else None
    category = await session.get(ServiceCategory, ticket.category_code)
    return {
        "ticket_id": ticket.id,
        "state": ticket.state.value,
        "category": ticket.category_code,
        "category_zh": category.name_zh if category else ticket.category_code,
        "category_en": category.name_en if category else ticket.category_code,
        "description": ticket.description,
        "urgency": ticket.urgency,
        # where to go; the name is what the door says, the phone is never shown
        "address": resident.address if resident else "",
        "deadline_at": ticket.deadline_at.isoformat() if ticket.deadline_at else None,
        "code_word": ticket.code_word,
        # a booked visit's slot; its merchant cancels it with POST /tickets/{id}/booking/cancel
        "booking": slot.public() if (slot := window_of(ticket)) is not None else None,
    }


@API.route(
    "GET",
    "/merchant/orders",
    summary="The logged-in merchant's live offers and open orders",
    roles=MERCHANTS,
    tag="merchant",
    response=MerchantOrdersOut,
)
async def orders(request: web.Request) -> web.Response:
    """Offers waiting for this merchant's answer, and tickets they have taken."""
    _, merchant_id = _merchant(request)
    async with services(request).store.read() as session:
        merchant = await session.get(Merchant, merchant_id)
        offers = (
            (
                await session.execute(
                    select(Offer)
                    .where(
                        col(Offer.merchant_id) == merchant_id,
                        col(Offer.state).in_(list(LIVE_OFFERS)),
                    )
                    .order_by(col(Offer.id))
                )
            )
            .scalars()
            .all()
        )
        offered = []
        for offer in offers:
            ticket = await session.get(Ticket, offer.ticket_id)
            if ticket is not None:
                offered.append({**await _order(session, ticket), "offer_id": offer.id})
        tickets = (
            (
                await session.execute(
                    select(Ticket)
                    .where(
                        col(Ticket.merchant_id) == merchant_id,
                        col(Ticket.state).in_(list(OPEN)),
                    )
                    .order_by(col(Ticket.deadline_at))
                )
            )
            .scalars()
            .all()
        )
        taken = [await _order(session, t) for t in tickets]
    return ok({"merchant": merchant.name if merchant else "", "offers": offered, "orders": taken})


@API.route(
    "POST",
    "/merchant/offers/{offer_id}/decline",
    summary="Decline an offer from the merchant page",
    roles=MERCHANTS,
    tag="merchant",
    response=DeclinedOut,
)
async def decline(request: web.Request) -> web.Response:
    """Refuse an offer; it is recorded as declined and the next merchant is called."""
    user = user_of(request)
    offer_id = int_param(request, "offer_id")
    await services(request).dispatch.offers.decline_offer(offer_id, user=user)
    return ok({"offer_id": offer_id, "declined": True})


@API.route(
    "GET",
    "/sim/messages",
    summary="Simulator: text messages the simulated handsets received (memory PBX only)",
    roles=ADMINS,
    tag="simulator",
    response=list[SimTextOut],
)
async def sim_messages(request: web.Request) -> web.Response:
    """The simulated handsets' texts, newest first; numbers masked (admins only: the texts
    hold merchants' login codes)."""
    sim_user(request)
    simulator = services(request).simulator
    assert simulator is not None
    return ok([{"ref": t.ref, "to": mask(t.number), "text": t.text} for t in simulator.texts])


class DisputeBody(Strict):
    """A merchant's objection to a rating or a no-show of one of their tickets."""

    kind: Literal["rating", "no_show"]
    reason: str = Field(min_length=1, max_length=300)


class DecisionBody(Strict):
    """The supervisor's note on upholding or overturning a dispute."""

    note: str = Field(min_length=1, max_length=300)


class DisputeOut(Model):
    """A dispute as the merchant who opened it sees it."""

    id: int
    ticket_id: int
    kind: str
    state: str
    reason: str
    opened_at: datetime
    decided_at: datetime | None
    note: str


class DisputeDetailOut(DisputeOut):
    """A dispute as a supervisor sees it: the merchant, and the rating and who gave it."""

    merchant_id: int
    merchant: str
    category: str
    rating: str | None
    rated_by: str | None


class RatedOut(Model):
    """One of the merchant's ratings or no-shows: never who rated, only the day."""

    ticket_id: int
    kind: str
    category: str
    category_zh: str
    category_en: str
    rating: str | None
    day: str | None
    dispute: DisputeOut | None


def _text(value: str, field: str) -> str:
    text = value.strip()
    if not text:
        raise FieldInvalid(f"{field} must not be blank", field, code="blank")
    return text


@API.route(
    "GET",
    "/merchant/ratings",
    summary="The logged-in merchant's recent ratings and no-shows, with their disputes "
    "(never who rated)",
    roles=MERCHANTS,
    tag="merchant",
    response=list[RatedOut],
)
async def my_ratings(request: web.Request) -> web.Response:
    """What the merchant may dispute, newest first."""
    _, merchant_id = _merchant(request)
    return ok(await services(request).dispatch.disputes.disputable(merchant_id))


@API.route(
    "POST",
    "/merchant/tickets/{ticket_id}/disputes",
    summary="Dispute a rating or a no-show of one of the merchant's tickets (404 not theirs; "
    "409 nothing to dispute or disputed already)",
    roles=MERCHANTS,
    body=DisputeBody,
    tag="merchant",
    response=DisputeOut,
    status=201,
)
async def open_dispute(request: web.Request) -> web.Response:
    """One dispute per ticket and kind; a supervisor decides it."""
    user, _ = _merchant(request)
    data = await body(request, DisputeBody)
    dispute = await services(request).dispatch.disputes.open(
        int_param(request, "ticket_id"),
        user=user,
        kind=data.kind,
        reason=_text(data.reason, "reason"),
    )
    return ok(dispute_public(dispute), status=201)


@API.route(
    "GET",
    "/disputes",
    summary="Merchants' disputes of ratings and no-shows, oldest first "
    "(?state=open|upheld|overturned|all, open by default; &merchant_id=)",
    roles=SUPERVISORS,
    tag="merchant",
    query={"state": "open, upheld, overturned or all", "merchant_id": "one merchant's"},
    response=list[DisputeDetailOut],
)
async def list_disputes(request: web.Request) -> web.Response:
    """The supervisor's list."""
    state: str | None = request.query.get("state", "open")
    if state == "all":
        state = None
    elif state not in DISPUTE_STATES:
        raise FieldInvalid(f"unknown state {state!r}", "state")
    merchant_id = None
    if "merchant_id" in request.query:
        raw = request.query["merchant_id"]
        if not raw.isdigit() or len(raw) > 18:
            raise FieldInvalid("merchant_id must be a whole number", "merchant_id")
        merchant_id = int(raw)
    return ok(
        await services(request).dispatch.disputes.listing(state=state, merchant_id=merchant_id)
    )


async def _decide(request: web.Request, *, overturn: bool) -> web.Response:
    user = user_of(request)
    data = await body(request, DecisionBody)
    dispute = await services(request).dispatch.disputes.decide(
        int_param(request, "dispute_id"),
        user=user,
        overturn=overturn,
        note=_text(data.note, "note"),
    )
    return ok(dispute_public(dispute))


@API.route(
    "POST",
    "/disputes/{dispute_id}/uphold",
    summary="Uphold a dispute: the rating or no-show stands (409 decided already)",
    roles=SUPERVISORS,
    body=DecisionBody,
    tag="merchant",
    response=DisputeOut,
)
async def uphold_dispute(request: web.Request) -> web.Response:
    """The rating or no-show keeps counting."""
    return await _decide(request, overturn=False)


@API.route(
    "POST",
    "/disputes/{dispute_id}/overturn",
    summary="Overturn a dispute: the rating or no-show stops counting in the scorecard, "
    "the ranking and the figures (409 decided already)",
    roles=SUPERVISORS,
    body=DecisionBody,
    tag="merchant",
    response=DisputeOut,
)
async def overturn_dispute(request: web.Request) -> web.Response:
    """The original stays in the event log."""
    return await _decide(request, overturn=True)
