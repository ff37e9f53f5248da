"""The REST API under `/api/v1`: thin handlers over `dispatch` and `registry`."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import func, select
from sqlmodel import col

from dispatch.clock import LOCAL_TZ
from dispatch.machines.ticket import OPEN, TicketState
from dispatch.models import Call, Event, Offer, Ticket
from operator_console import auth, call_access
from operator_console.errors import FieldInvalid, Forbidden, Unauthorized, UnsupportedBody
from operator_console.openapi import Api
from operator_console.password_login import PasswordLogin
from providers.base import OriginateFailure, Simulator, UnknownCall
from registry import repository as repo
from registry.models import Merchant, Resident, ResidentPhone, Role, User
from registry.phones import mask, try_normalize
from registry.schemas import MAX_ID, DbId
from registry.schemas import Strict as RegistryStrict

log = logging.getLogger(__name__)

API = Api("/api/v1")
#: the staff password login use case, set by the composition root
password_login_key = web.AppKey("password_login", PasswordLogin)
USER = web.RequestKey("user", User)
TOKEN = web.RequestKey("token", str)
CSRF = web.RequestKey("csrf", str)
STAFF = (Role.OPERATOR,)
SUPERVISORS = (Role.SUPERVISOR,)
#: who may use the phone simulator: it plays every phone (residents' and merchants'), hears
#: every call (merchants' login codes too) and lists residents' numbers, so only a login
#: that may already see all of that and make any login: an admin (the demo's `demo`)
SIMULATOR_ROLES = (Role.ADMIN,)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)


def ok(data: Any, status: int = 200) -> web.Response:
    """A JSON response with Chinese kept readable."""
    return web.json_response(data, status=status, dumps=_dumps)


def services(request: web.Request) -> Any:
    """The app's services."""
    from operator_console.app import services_key

    return request.app[services_key]


def current_user(request: web.Request) -> User | None:
    """The logged-in user, if any."""
    return request.get(USER)


def need(request: web.Request, *roles: Role) -> User:
    """The user, if their role allows; 401/403 otherwise."""
    return auth.require(current_user(request), *roles)


#: the deepest nesting of arrays and objects a JSON body may have (ours need 4)
MAX_JSON_DEPTH = 32
_WHOLE = re.compile(r"[0-9]{1,19}")


def _json_invalid(model: type[BaseModel], reason: str) -> ValidationError:
    return ValidationError.from_exception_data(
        model.__name__,
        [{"type": "json_invalid", "loc": ("body",), "input": "", "ctx": {"error": reason}}],
    )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def json_depth(value: Any) -> int:
    """How deeply arrays and objects nest in a parsed JSON value (without recursing)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            stack.extend(
                (v, depth + 1) for v in (item.values() if isinstance(item, dict) else item)
            )
    return deepest


async def body(request: web.Request, model: type[BaseModel]) -> Any:
    """Parse and validate a JSON body; 415 if it is not JSON, 422 naming the field otherwise.

    A form or `text/plain` post (what another site can make a browser send without asking)
    is refused before anything is read; NaN and Infinity, numbers of thousands of digits
    and nesting deeper than `MAX_JSON_DEPTH` are invalid input, not errors of ours.
    """
    if request.content_type != "application/json":
        raise UnsupportedBody("send the body as application/json")
    data = await request.read()
    try:
        raw = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError as exc:
        raise _json_invalid(model, "nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, too many digits
        reason = str(exc)[:100] if isinstance(exc, json.JSONDecodeError) else "not JSON"
        raise _json_invalid(model, reason) from exc
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise _json_invalid(model, f"nested more than {MAX_JSON_DEPTH} deep")
    return model.model_validate(raw)


def whole_number(value: str, name: str, *, minimum: int = 1, maximum: int = MAX_ID) -> int:
    """`value` as an integer in [minimum, maximum] (ASCII digits only); 422 naming `name`."""
    if not _WHOLE.fullmatch(value) or not minimum <= int(value) <= maximum:
        raise FieldInvalid(f"{name} must be a whole number from {minimum} to {maximum}", name)
    return int(value)


def int_param(request: web.Request, name: str) -> int:
    """A path parameter that must be a positive 64-bit integer (an id)."""
    return whole_number(request.match_info[name], name)


def query_int(
    request: web.Request,
    name: str,
    default: int | None = None,
    *,
    minimum: int = 1,
    maximum: int = MAX_ID,
) -> int | None:
    """An optional integer query parameter; `default` when absent, 422 naming it when bad."""
    value = request.query.get(name)
    if value is None:
        return default
    return whole_number(value, name, minimum=minimum, maximum=maximum)


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Resolve the session (cookie or bearer) and enforce CSRF on cookie requests."""
    token, via_cookie = None, False
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        token = header[7:].strip()
    elif auth.COOKIE in request.cookies:
        token, via_cookie = request.cookies[auth.COOKIE], True
    if token and not request.path.startswith("/static/"):
        async with services(request).store.read() as session:
            found = await auth.resolve(session, token=token)
        if found is not None:
            user, login = found
            request[USER], request[TOKEN], request[CSRF] = user, token, login.csrf
            if request.path.startswith("/api/") and request.path != "/api/v1/login":
                auth.check_csrf(
                    request.method,
                    via_cookie=via_cookie,
                    sent=request.headers.get("X-CSRF-Token"),
                    expected=login.csrf,
                )
    return await handler(request)


# -- request bodies --
class Strict(RegistryStrict):
    """Bodies refuse unknown fields and control characters, and trim strings."""


class LoginBody(Strict):
    """Credentials."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class OperatorStateBody(Strict):
    """An operator state change."""

    action: str = Field(pattern="^(login|logout|pause|resume|wrap_up_done)$")
    reason: str = Field(default="", max_length=64)


class WrapUpBody(Strict):
    """After-call work."""

    disposition: str = Field(default="", max_length=64)


class TicketBody(Strict):
    """A need recorded by an operator."""

    category: str = Field(min_length=1, max_length=32)
    description: str = Field(default="", max_length=1000)
    resident_id: DbId | None = None
    call_id: DbId | None = None


class DispatchBody(Strict):
    """Dispatch along the ranking, or to the operator's picks first."""

    merchant_ids: list[DbId] | None = Field(default=None, max_length=20)


class CancelBody(Strict):
    """Why a ticket is cancelled."""

    reason: str = Field(min_length=1, max_length=200)


class DialBody(Strict):
    """A simulated phone calling the hotline."""

    number: str = Field(min_length=1, max_length=32)


class LinkBody(Strict):
    """The simulated PBX's link: up, or down (an outage)."""

    up: bool


class PressBody(Strict):
    """A key pressed on a simulated phone."""

    digit: str = Field(pattern=r"^[0-9*#]$")


class RejectBody(Strict):
    """How a simulated phone refuses a call."""

    reason: str = Field(default="busy", pattern="^(busy|no_answer|failed)$")


# -- views --
def ticket_public(ticket: Ticket) -> dict[str, Any]:
    """A ticket on the API."""
    data = ticket.model_dump(exclude={"plan", "version"})
    for key, value in data.items():
        if isinstance(value, datetime):
            data[key] = value.isoformat()
    data["state"] = ticket.state.value
    data["deadline_local"] = (
        ticket.deadline_at.astimezone(LOCAL_TZ).strftime("%m-%d %H:%M")
        if ticket.deadline_at
        else None
    )
    return data


def merchant_ticket_public(ticket: Ticket, resident: Resident | None) -> dict[str, Any]:
    """What a merchant may see of a ticket: what, where, when; never the resident's phone."""
    return {
        "id": ticket.id,
        "state": ticket.state.value,
        "category": ticket.category_code,
        "description": ticket.description,
        "address": resident.address if resident else "",
        "deadline_at": ticket.deadline_at.isoformat() if ticket.deadline_at else None,
        "code_word": ticket.code_word,
    }


def offer_public(offer: Offer) -> dict[str, Any]:
    """An offer on the API."""
    return {
        "id": offer.id,
        "ticket_id": offer.ticket_id,
        "merchant_id": offer.merchant_id,
        "rank": offer.rank,
        "state": offer.state.value,
        "placed_at": offer.placed_at.isoformat(),
        "decided_at": offer.decided_at.isoformat() if offer.decided_at else None,
    }


async def call_public(session: Any, call: Call) -> dict[str, Any]:
    """A call on the API, with a short resident summary for the queue."""
    data: dict[str, Any] = {
        "id": call.id,
        "ref": call.ref,
        "direction": call.direction,
        "purpose": call.purpose,
        "state": call.state.value,
        "number": mask(call.number),
        "registered": call.registered,
        "resident_id": call.resident_id,
        "ticket_id": call.ticket_id,
        "operator_id": call.operator_id,
        "emergency": call.emergency,
        "emergency_reason": call.emergency_reason,
        "started_at": call.started_at.isoformat(),
        "queued_at": call.queued_at.isoformat() if call.queued_at else None,
        "held_at": call.held_at.isoformat() if call.held_at else None,
    }
    if call.resident_id is not None:
        resident = await session.get(Resident, call.resident_id)
        if resident is not None:
            data["resident_name"] = resident.name
            data["resident_status"] = resident.status.value
    return data


# -- auth --
@API.route(
    "POST",
    "/login",
    summary="Log in; sets the session cookie (429 with Retry-After after too many failures)",
    body=LoginBody,
    tag="auth",
)
async def login(request: web.Request) -> web.Response:
    """Log in with a username and password (throttled per account and per client)."""
    from operator_console.security import client_address

    data = await body(request, LoginBody)
    user, token, csrf = await request.app[password_login_key].login(
        username=data.username, password=data.password, client=client_address(request)
    )
    return session_response(services(request).settings, user, token, csrf)


def session_response(settings: Any, user: User, token: str, csrf: str) -> web.Response:
    """The login answer: the tokens in the body and the session in an HttpOnly cookie."""
    response = ok({"token": token, "csrf": csrf, "user": auth.user_public(user)})
    response.set_cookie(
        auth.COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        secure=settings.secure_cookies,
        max_age=int(auth.SESSION_TTL.total_seconds()),
        path="/",
    )
    return response


@API.route("POST", "/logout", summary="End the session", tag="auth")
async def logout(request: web.Request) -> web.Response:
    """Log out."""
    need(request)
    from operator_console.ws import revoke

    revoke(request.app, token=request[TOKEN])  # its streams first, then the session
    async with services(request).store.read() as session:
        await auth.logout(session, token=request[TOKEN])
    response = ok({"ok": True})
    response.del_cookie(auth.COOKIE, path="/", secure=services(request).settings.secure_cookies)
    return response


@API.route("GET", "/me", summary="Who is logged in", tag="auth")
async def me(request: web.Request) -> web.Response:
    """The current user and their CSRF token."""
    user = need(request)
    return ok({"user": auth.user_public(user), "csrf": request[CSRF]})


# -- catalog, residents --
@API.route(
    "GET",
    "/catalog",
    summary="The service catalog in menu order",
    roles=("operator",),
    tag="registry",
)
async def catalog(request: web.Request) -> web.Response:
    """The service catalog."""
    need(request, *STAFF, Role.MERCHANT)
    async with services(request).store.read() as session:
        rows = await repo.list_categories(session)
    keys = services(request).dispatch.calls.hotline_keys()
    return ok([c.model_dump(mode="json") | {"keypad": keys.get(c.code)} for c in rows])


@API.route(
    "GET",
    "/residents",
    summary="Search residents: name, pinyin (initials), phone digits, address, grid",
    roles=("operator",),
    tag="registry",
)
async def search_residents(request: web.Request) -> web.Response:
    """Ranked search (registry.search); the residents shown are written to the access log."""
    from operator_console import registry_api

    user = need(request, *STAFF)
    q = request.query.get("q", "").strip()[:64]
    if not q:
        return ok([])
    return ok(await registry_api.search(request, q, user))


@API.route(
    "GET",
    "/residents/{resident_id}",
    summary="A resident's card (the read is logged)",
    roles=("operator",),
    tag="registry",
)
async def resident(request: web.Request) -> web.Response:
    """The resident card; `?reason=call|ticket|search` goes to the access log."""
    user = need(request, *STAFF)
    reason = request.query.get("reason", "console")[:32]
    resident_id = int_param(request, "resident_id")
    async with services(request).store.read() as session:
        card = await repo.resident_card(
            session,
            resident_id=resident_id,
            user=user,
            reason=reason,
            ref=request.query.get("ref", "")[:64],
        )
        tickets = (
            (
                await session.execute(
                    select(Ticket)
                    .where(col(Ticket.resident_id) == resident_id)
                    .order_by(col(Ticket.id).desc())
                    .limit(5)
                )
            )
            .scalars()
            .all()
        )
    card["recent_tickets"] = [ticket_public(t) for t in tickets]
    return ok(card)


# -- calls and operators --
@API.route(
    "GET",
    "/calls",
    summary="Live hotline calls, emergencies first",
    roles=("operator",),
    tag="calls",
)
async def calls(request: web.Request) -> web.Response:
    """The waiting queue plus calls connected, on hold or in wrap-up."""
    need(request, *STAFF)
    svc = services(request)
    waiting = await svc.dispatch.queue.queue()
    async with svc.store.read() as session:
        busy = (
            (
                await session.execute(
                    select(Call)
                    .where(
                        col(Call.direction) == "in",
                        col(Call.state).in_(["connected", "on_hold", "wrap_up"]),
                    )
                    .order_by(col(Call.id))
                )
            )
            .scalars()
            .all()
        )
        out = [await call_public(session, c) for c in [*waiting, *busy]]
    return ok(out)


@API.route(
    "GET",
    "/calls/{call_id}",
    summary="One call with its timeline",
    roles=("operator",),
    tag="calls",
)
async def call_detail(request: web.Request) -> web.Response:
    """A call and every event about it (offered, queued, connected, held, transferred...)."""
    need(request, *STAFF)
    call_id = int_param(request, "call_id")
    svc = services(request)
    async with svc.store.read() as session:
        call = await session.get(Call, call_id)
        if call is None:
            raise repo.NotFound("call", call_id)
        data = await call_public(session, call)
    data["timeline"] = await svc.store.events_for("call", call_id)
    return ok(data)


@API.route(
    "POST",
    "/calls/{call_id}/answer",
    summary="Take a waiting call (409 if taken)",
    roles=("operator",),
    tag="calls",
)
async def answer(request: web.Request) -> web.Response:
    """Answer a queued call."""
    user = need(request, *STAFF)
    call = await services(request).dispatch.desk.answer_call(int_param(request, "call_id"), user)
    async with services(request).store.read() as session:
        return ok(await call_public(session, call))


@API.route(
    "POST",
    "/calls/{call_id}/hangup",
    summary="Hang up one's call (a supervisor: any call); 403 with the reason otherwise",
    roles=("operator",),
    tag="calls",
)
async def hangup(request: web.Request) -> web.Response:
    """Hang up."""
    user = need(request, *STAFF)
    await call_access.check(request, int_param(request, "call_id"), user, "hangup")
    await services(request).dispatch.desk.hangup_call(int_param(request, "call_id"), user)
    return ok({"ok": True})


@API.route(
    "POST",
    "/calls/{call_id}/wrap-up",
    summary="Finish after-call work",
    roles=("operator",),
    body=WrapUpBody,
    tag="calls",
)
async def wrap_up(request: web.Request) -> web.Response:
    """Wrap up with a disposition."""
    user = need(request, *STAFF)
    data = await body(request, WrapUpBody)
    await call_access.check(request, int_param(request, "call_id"), user, "wrap-up")
    await services(request).dispatch.desk.wrap_up(
        int_param(request, "call_id"), user, data.disposition
    )
    return ok({"ok": True})


@API.route(
    "POST",
    "/operator/state",
    summary="Log in, pause or resume as an operator",
    roles=("operator",),
    body=OperatorStateBody,
    tag="calls",
)
async def operator_state(request: web.Request) -> web.Response:
    """Change the operator's own state."""
    user = need(request, *STAFF)
    data = await body(request, OperatorStateBody)
    state = await services(request).dispatch.desk.set_operator_state(user, data.action, data.reason)
    return ok({"state": state})


# -- tickets --
@API.route(
    "POST", "/tickets", summary="Record a need", roles=("operator",), body=TicketBody, tag="tickets"
)
async def create_ticket(request: web.Request) -> web.Response:
    """Create a ticket."""
    user = need(request, *STAFF)
    data = await body(request, TicketBody)
    ticket = await services(request).dispatch.tickets.create_ticket(
        user=user,
        category=data.category,
        description=data.description,
        resident_id=data.resident_id,
        call_id=data.call_id,
    )
    return ok(ticket_public(ticket), status=201)


@API.route(
    "GET",
    "/tickets",
    summary="Tickets, newest first (?state=open|STATE)",
    roles=("operator", "merchant"),
    tag="tickets",
)
async def list_tickets(request: web.Request) -> web.Response:
    """Tickets; merchants see only their own."""
    user = need(request, *STAFF, Role.MERCHANT)
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
    roles=("operator",),
    tag="tickets",
)
async def ticket_detail(request: web.Request) -> web.Response:
    """A ticket, its offers and every event about it."""
    need(request, *STAFF)
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
    roles=("operator",),
    tag="tickets",
)
async def candidates(request: web.Request) -> web.Response:
    """The ranking."""
    need(request, *STAFF)
    ranked = await services(request).dispatch.ranking.candidates(int_param(request, "ticket_id"))
    return ok([c.public() for c in ranked])


@API.route(
    "POST",
    "/tickets/{ticket_id}/dispatch",
    summary="Start the offer cascade",
    roles=("operator",),
    body=DispatchBody,
    tag="tickets",
)
async def dispatch_ticket(request: web.Request) -> web.Response:
    """Dispatch."""
    user = need(request, *STAFF)
    data = await body(request, DispatchBody)
    ticket = await services(request).dispatch.offers.dispatch(
        int_param(request, "ticket_id"), user=user, merchant_ids=data.merchant_ids
    )
    return ok(ticket_public(ticket))


async def _merchant_or_staff_ticket_action(request: web.Request, action: str) -> web.Response:
    user = need(request, *STAFF, Role.MERCHANT)
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
    roles=("operator", "merchant"),
    tag="tickets",
)
async def arrive(request: web.Request) -> web.Response:
    """Arrival."""
    return await _merchant_or_staff_ticket_action(request, "arrive")


@API.route(
    "POST",
    "/tickets/{ticket_id}/complete",
    summary="The visit is done",
    roles=("operator", "merchant"),
    tag="tickets",
)
async def complete(request: web.Request) -> web.Response:
    """Completion; the survey call follows."""
    return await _merchant_or_staff_ticket_action(request, "complete")


@API.route(
    "POST",
    "/tickets/{ticket_id}/cancel",
    summary="Cancel a ticket",
    roles=("operator",),
    body=CancelBody,
    tag="tickets",
)
async def cancel(request: web.Request) -> web.Response:
    """Cancel."""
    user = need(request, *STAFF)
    data = await body(request, CancelBody)
    ticket = await services(request).dispatch.tickets.cancel(
        int_param(request, "ticket_id"), user=user, reason=data.reason
    )
    return ok(ticket_public(ticket))


@API.route(
    "POST",
    "/offers/{offer_id}/accept",
    summary="Accept an offer (merchant page, or an operator on the merchant's behalf)",
    roles=("operator", "merchant"),
    tag="tickets",
)
async def accept_offer(request: web.Request) -> web.Response:
    """Accept; a second accept of the same ticket is refused with 409."""
    user = need(request, *STAFF, Role.MERCHANT)
    ticket = await services(request).dispatch.offers.accept_offer(
        int_param(request, "offer_id"), user=user
    )
    return ok({"ticket_id": ticket.id, "state": ticket.state.value})


# -- the event log --
@API.route(
    "GET", "/events", summary="The event log after ?since=SEQ", roles=("operator",), tag="events"
)
async def events(request: web.Request) -> web.Response:
    """Events after a sequence number, oldest first."""
    need(request, *STAFF)
    since = query_int(request, "since", 0, minimum=0)
    assert since is not None
    return ok(await services(request).store.events_since(since))


@API.route(
    "GET",
    "/telephony",
    summary="The phone line now: up or down, since when, and the event seq it is as of",
    roles=("operator",),
    tag="events",
)
async def telephony_status(request: web.Request) -> web.Response:
    """What the console's and the wallboard's outage banner shows on page load.

    `seq` is the newest event when this was read: a page applies a `telephony.up` /
    `telephony.down` event from the live stream only if it is newer, so the answer and the
    stream never disagree.
    """
    need(request, *STAFF)
    svc = services(request)
    async with svc.store.read() as session:
        seq = (await session.execute(select(func.max(col(Event.seq))))).scalar() or 0
        last = (
            (
                await session.execute(
                    select(Event)
                    .where(col(Event.name).in_(["telephony.up", "telephony.down"]))
                    .order_by(col(Event.seq).desc())
                    .limit(1)
                )
            )
            .scalars()
            .first()
        )
    health = svc.telephony.health()
    since = last.occurred_at.isoformat() if last is not None and not health.up else None
    return ok(
        {
            "up": health.up,
            "backend": health.backend,
            "detail": health.detail,
            "since": since,
            "seq": seq,
        }
    )


# -- the phone simulator (memory PBX only, never in production, admins only) --
def simulator_allowed(request: web.Request, user: User | None) -> bool:
    """Whether this user may use the phone simulator here (the page's menu asks)."""
    svc = services(request)
    return (
        user is not None
        and svc.simulator is not None
        and svc.settings.environment != "production"
        and user.role in SIMULATOR_ROLES
    )


def sim_user(request: web.Request) -> User:
    """The simulator's user: 401 without login, 404 where there is no simulator (real
    telephony, or production), 403 for any role but an admin."""
    user = need(request)
    svc = services(request)
    if svc.simulator is None or svc.settings.environment == "production":
        raise repo.NotFound("simulator", "(telephony is not the memory PBX)")
    if user.role not in SIMULATOR_ROLES:
        raise Forbidden("the phone simulator is for the demo's admin login only")
    return user


def pbx(request: web.Request) -> Simulator:
    """The phone simulator (after `sim_user`)."""
    simulator = services(request).simulator
    assert simulator is not None
    return simulator


@API.route(
    "GET",
    "/sim/calls",
    summary="Simulator: calls as the phones see them",
    roles=("admin",),
    tag="simulator",
)
async def sim_calls(request: web.Request) -> web.Response:
    """Live and recent simulated calls."""
    sim_user(request)
    return ok(pbx(request).snapshot())


@API.route(
    "GET",
    "/sim/phones",
    summary="Simulator: phones to call from",
    roles=("admin",),
    tag="simulator",
)
async def sim_phones(request: web.Request) -> web.Response:
    """A few registered residents' phones to pick from."""
    sim_user(request)
    async with services(request).store.read() as session:
        rows = (
            await session.execute(
                select(col(Resident.name), col(ResidentPhone.number))
                .join(ResidentPhone, col(ResidentPhone.resident_id) == Resident.id)
                .order_by(col(Resident.id))
                .limit(12)
            )
        ).all()
    return ok([{"name": name, "number": number} for name, number in rows])


@API.route(
    "POST",
    "/sim/dial",
    summary="Simulator: call the hotline from a number",
    roles=("admin",),
    body=DialBody,
    tag="simulator",
)
async def sim_dial(request: web.Request) -> web.Response:
    """A simulated resident calls in."""
    sim_user(request)
    data = await body(request, DialBody)
    number = try_normalize(data.number) or data.number
    phone = pbx(request)
    phone.reachable()  # in a simulated outage the hotline cannot be reached (503)
    ref = await phone.dial_in(number)
    return ok({"ref": ref}, status=201)


@API.route(
    "POST",
    "/sim/link",
    summary="Simulator: take the simulated PBX's link down (an outage) or bring it back",
    roles=("admin",),
    body=LinkBody,
    tag="simulator",
)
async def sim_link(request: web.Request) -> web.Response:
    """Simulate a phone outage: live calls drop, outbound calls wait for the line."""
    user = sim_user(request)
    data = await body(request, LinkBody)
    pbx(request).set_link(data.up)
    log.warning("simulated PBX link set %s by user %s", "up" if data.up else "down", user.id)
    return ok({"up": data.up})


async def _sim(request: web.Request, action: str) -> web.Response:
    sim_user(request)
    phone = pbx(request)
    ref = request.match_info["ref"][:64]
    try:
        if action == "answer":
            await phone.answer(ref)
        elif action == "hangup":
            await phone.party_hangup(ref)
        elif action == "press":
            data = await body(request, PressBody)
            await phone.press(ref, data.digit)
        elif action == "reject":
            data = await body(request, RejectBody)
            await phone.reject(ref, OriginateFailure(data.reason))
    except UnknownCall as exc:
        raise repo.NotFound("simulated call", ref) from exc
    return ok({"ok": True})


@API.route(
    "POST",
    "/sim/calls/{ref}/answer",
    summary="Simulator: pick up a ringing phone",
    roles=("admin",),
    tag="simulator",
)
async def sim_answer(request: web.Request) -> web.Response:
    """Answer as the called party."""
    return await _sim(request, "answer")


@API.route(
    "POST",
    "/sim/calls/{ref}/press",
    summary="Simulator: press a key",
    roles=("admin",),
    body=PressBody,
    tag="simulator",
)
async def sim_press(request: web.Request) -> web.Response:
    """Press a key."""
    return await _sim(request, "press")


@API.route(
    "POST",
    "/sim/calls/{ref}/hangup",
    summary="Simulator: hang up the phone",
    roles=("admin",),
    tag="simulator",
)
async def sim_hangup(request: web.Request) -> web.Response:
    """Hang up as the far end."""
    return await _sim(request, "hangup")


@API.route(
    "POST",
    "/sim/calls/{ref}/reject",
    summary="Simulator: busy / no answer / failure",
    roles=("admin",),
    body=RejectBody,
    tag="simulator",
)
async def sim_reject(request: web.Request) -> web.Response:
    """Refuse a ringing call."""
    return await _sim(request, "reject")


async def openapi_doc(request: web.Request) -> web.Response:
    """The OpenAPI document of this API."""
    return ok(API.document(title="医敬 Yijing API", version="1"))


__all__ = ["API", "Forbidden", "Unauthorized", "auth_middleware", "openapi_doc"]
