"""The merchant's side of the API: one-time-code login and their own orders.

A merchant asks for a code for one of their registered phones; a 6-digit code is made,
only its keyed hash is stored, and it is delivered through the telephony side. No SMS
port exists yet, so only the memory PBX demo can deliver: the code lands in the
simulator's outbox (shown on the simulator page), never in the event log or the logs.
Merchants see what, where and when; never a resident's phone.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import logging
import secrets
from datetime import timedelta
from typing import Any

from aiohttp import web
from pydantic import Field
from sqlalchemy import select, update
from sqlmodel import col

from dispatch.machines.offer import LIVE as LIVE_OFFERS
from dispatch.machines.ticket import OPEN
from dispatch.models import Offer, Ticket
from operator_console import auth
from operator_console.api import (
    API,
    STAFF,
    Strict,
    body,
    int_param,
    need,
    ok,
    services,
    session_response,
)
from operator_console.errors import Unauthorized
from operator_console.models import MerchantLoginCode
from providers.memory import MemoryPBX
from registry import repository as repo
from registry.db import utcnow
from registry.models import Merchant, Resident, Role, ServiceCategory, User
from registry.phones import try_normalize

log = logging.getLogger(__name__)

CODE_TTL = timedelta(minutes=10)
MAX_ATTEMPTS = 5
#: codes a phone may ask for within CODE_TTL
MAX_REQUESTS = 3
#: the demo outbox: what a real SMS gateway would have sent (memory PBX only)
outbox_key: web.AppKey[collections.deque[dict[str, Any]]] = web.AppKey("merchant_outbox")


def setup(app: web.Application) -> None:
    """Give the app its demo outbox."""
    app[outbox_key] = collections.deque(maxlen=20)


class CodeRequestBody(Strict):
    """Ask for a login code."""

    phone: str = Field(min_length=3, max_length=32)


class CodeVerifyBody(Strict):
    """Log in with a code."""

    phone: str = Field(min_length=3, max_length=32)
    code: str = Field(pattern=r"^[0-9]{6}$")


def _keyed(secret: str, *parts: str) -> str:
    return hmac.new(
        (secret or "yijing-dev").encode(), "|".join(parts).encode(), hashlib.sha256
    ).hexdigest()


async def _merchant_for_phone(session: Any, number: str) -> Merchant | None:
    rows = (await session.execute(select(Merchant).order_by(col(Merchant.id)))).scalars()
    return next((m for m in rows if number in (m.phones or [])), None)


@API.route(
    "POST",
    "/merchant-login/request",
    summary="Send a one-time login code to a merchant's registered phone",
    body=CodeRequestBody,
    tag="merchant",
)
async def request_code(request: web.Request) -> web.Response:
    """Always answers the same, so the form does not reveal which phones are registered."""
    data = await body(request, CodeRequestBody)
    svc = services(request)
    number = try_normalize(data.phone)
    answer = ok({"sent": True, "expires_in_s": int(CODE_TTL.total_seconds())})
    if number is None:
        return answer
    phone_hash = _keyed(svc.settings.secret_key, "phone", number)
    now = utcnow()
    async with svc.store.tx() as tx:
        merchant = await _merchant_for_phone(tx.session, number)
        if merchant is None or merchant.id is None:
            return answer
        recent = (
            (
                await tx.session.execute(
                    select(MerchantLoginCode).where(
                        col(MerchantLoginCode.phone_hash) == phone_hash,
                        col(MerchantLoginCode.created_at) > now - CODE_TTL,
                    )
                )
            )
            .scalars()
            .all()
        )
        if len(recent) >= MAX_REQUESTS:
            log.warning("merchant %s: too many login codes asked for", merchant.id)
            return answer
        code = f"{secrets.randbelow(1_000_000):06d}"
        tx.session.add(
            MerchantLoginCode(
                merchant_id=merchant.id,
                phone_hash=phone_hash,
                code_hash=_keyed(svc.settings.secret_key, "code", number, code),
                created_at=now,
                expires_at=now + CODE_TTL,
            )
        )
        # the audit trail says a code went out, never the code or the number
        tx.emit("merchant.login_code_sent", "merchant", merchant.id)
        name = merchant.name
    if isinstance(svc.telephony, MemoryPBX):
        request.app[outbox_key].appendleft(
            {"merchant": name, "text": f"【医敬】您的登录验证码 {code}，10分钟内有效。"}
        )
    else:
        log.warning("merchant login code made but no SMS port exists to deliver it")
    return answer


@API.route(
    "POST",
    "/merchant-login/verify",
    summary="Log in as a merchant with a one-time code; sets the session cookie",
    body=CodeVerifyBody,
    tag="merchant",
)
async def verify_code(request: web.Request) -> web.Response:
    """Check the code; five wrong tries spend it."""
    data = await body(request, CodeVerifyBody)
    svc = services(request)
    number = try_normalize(data.phone)
    if number is None:
        raise Unauthorized("wrong phone or code")
    secret = svc.settings.secret_key
    now = utcnow()
    async with svc.store.tx() as tx:
        row = (
            (
                await tx.session.execute(
                    select(MerchantLoginCode)
                    .where(
                        col(MerchantLoginCode.phone_hash) == _keyed(secret, "phone", number),
                        col(MerchantLoginCode.used).is_(False),
                        col(MerchantLoginCode.expires_at) > now,
                    )
                    .order_by(col(MerchantLoginCode.id).desc())
                )
            )
            .scalars()
            .first()
        )
        good = row is not None and hmac.compare_digest(
            row.code_hash, _keyed(secret, "code", number, data.code)
        )
        if row is not None:
            await tx.session.execute(
                update(MerchantLoginCode)
                .where(col(MerchantLoginCode.id) == row.id)
                .values(attempts=row.attempts + 1, used=good or row.attempts + 1 >= MAX_ATTEMPTS)
            )
        token = csrf = ""
        user: User | None = None
        if row is not None and good:
            user = (
                (
                    await tx.session.execute(
                        select(User).where(
                            col(User.merchant_id) == row.merchant_id,
                            col(User.role) == Role.MERCHANT,
                        )
                    )
                )
                .scalars()
                .first()
            )
            if user is None:
                merchant = await tx.session.get(Merchant, row.merchant_id)
                user = User(
                    username=f"merchant-{row.merchant_id}",
                    display_name=merchant.name if merchant else "",
                    # nobody knows this password: the merchant logs in by code
                    password_hash=auth.hash_password(secrets.token_urlsafe(24)),
                    role=Role.MERCHANT,
                    merchant_id=row.merchant_id,
                )
                tx.session.add(user)
                await tx.session.flush()
            if not user.active:
                good = False
            else:
                token, csrf = await auth.open_session(tx.session, user=user)
                tx.emit("merchant.logged_in", "merchant", row.merchant_id, actor=user.username)
    # a wrong code still commits its spent attempt before the refusal
    if not good or user is None:
        raise Unauthorized("wrong phone or code")
    return session_response(svc.settings, user, token, csrf)


def _merchant(request: web.Request) -> tuple[User, int]:
    user = need(request, Role.MERCHANT)
    if user.role != Role.MERCHANT or user.merchant_id is None:
        raise repo.NotFound("merchant", "(not a merchant login)")
    return user, user.merchant_id


async def _order(session: Any, ticket: Ticket) -> dict[str, Any]:
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
    }


@API.route(
    "GET",
    "/merchant/orders",
    summary="The logged-in merchant's live offers and open orders",
    roles=("merchant",),
    tag="merchant",
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
    roles=("merchant",),
    tag="merchant",
)
async def decline(request: web.Request) -> web.Response:
    """Refuse an offer; it is recorded as declined and the next merchant is called."""
    user = need(request, Role.MERCHANT)
    offer_id = int_param(request, "offer_id")
    await services(request).dispatcher.decline_offer(offer_id, user=user)
    return ok({"offer_id": offer_id, "declined": True})


@API.route(
    "GET",
    "/sim/messages",
    summary="Simulator: text messages the demo would have sent (memory PBX only)",
    roles=("operator",),
    tag="simulator",
)
async def sim_messages(request: web.Request) -> web.Response:
    """The demo outbox, newest first."""
    need(request, *STAFF)
    if not isinstance(services(request).telephony, MemoryPBX):
        raise repo.NotFound("simulator", "(telephony is not the memory PBX)")
    outbox = request.app[outbox_key]
    return ok([*outbox])
