"""The phone simulator's routes (memory PBX only, never in production, admins only): the
phones as they see their calls, dialling the hotline, answering, pressing keys, an outage."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from pydantic import Field
from sqlalchemy import select
from sqlmodel import col

from operator_console.api import ADMINS, API, Done, Model, Strict, body, ok, services, user_of
from operator_console.errors import Forbidden
from providers.base import OriginateFailure, Simulator, UnknownCall
from registry import repository as repo
from registry.models import Resident, ResidentPhone, Role, User
from registry.phones import try_normalize

log = logging.getLogger(__name__)
#: who may use the phone simulator: it plays every phone (residents' and merchants'), hears
#: every call (merchants' login codes too) and lists residents' numbers, so only a login
#: that may already see all of that and make any login: an admin (the demo's `demo`)
SIMULATOR_ROLES = (Role.ADMIN,)


class DialBody(Strict):
    """A simulated phone calling the hotline."""

    number: str = Field(min_length=1, max_length=32)


class SimLinkBody(Strict):
    """The simulated PBX's link: up, or down (an outage)."""

    up: bool


class PressBody(Strict):
    """A key pressed on a simulated phone."""

    digit: str = Field(pattern=r"^[0-9*#]$")


class RejectBody(Strict):
    """How a simulated phone refuses a call."""

    reason: str = Field(default="busy", pattern="^(busy|no_answer|failed)$")


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
    user = user_of(request)
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


class SimCallOut(Model):
    """A call as the simulated phones see it."""

    ref: str
    direction: str
    number: str
    state: str
    peer: str | None
    flow: str | None
    waiting_for: list[str]
    transcript: list[Any]
    cause: str | None


class SimPhoneOut(Model):
    """A registered resident's phone to call from."""

    name: str
    number: str


class DialedOut(Model):
    """The simulated call's ref."""

    ref: str


class LinkOut(Model):
    """The simulated PBX's link now."""

    up: bool


@API.route(
    "GET",
    "/sim/calls",
    summary="Simulator: calls as the phones see them",
    roles=ADMINS,
    tag="simulator",
    response=list[SimCallOut],
)
async def sim_calls(request: web.Request) -> web.Response:
    """Live and recent simulated calls."""
    sim_user(request)
    return ok(pbx(request).snapshot())


@API.route(
    "GET",
    "/sim/phones",
    summary="Simulator: phones to call from",
    roles=ADMINS,
    tag="simulator",
    response=list[SimPhoneOut],
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
    roles=ADMINS,
    body=DialBody,
    tag="simulator",
    response=DialedOut,
    status=201,
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
    roles=ADMINS,
    body=SimLinkBody,
    tag="simulator",
    response=LinkOut,
)
async def sim_link(request: web.Request) -> web.Response:
    """Simulate a phone outage: live calls drop, outbound calls wait for the line."""
    user = sim_user(request)
    data = await body(request, SimLinkBody)
    pbx(request).set_link(data.up)
    log.warning("simulated PBX link set %s by user %s", "up" if data.up else "down", user.id)
    return ok({"up": data.up})


async def _sim(request: web.Request, action: str) -> web.Response:
    sim_user(request)
    phone = pbx(request)
    ref = request.match_info["ref"][:64]
    try:
        if action in ("answer", "machine"):
            await phone.answer(ref, machine=action == "machine")
        elif action == "hangup":
            await phone.party_hangup(ref)
        elif action == "press":
            data = await body(request, PressBody)
            await phone.press(ref, data.digit)
        elif action == "speak":
            await phone.speak(ref)
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
    roles=ADMINS,
    tag="simulator",
    response=Done,
)
async def sim_answer(request: web.Request) -> web.Response:
    """Answer as the called party."""
    return await _sim(request, "answer")


@API.route(
    "POST",
    "/sim/calls/{ref}/machine",
    summary="Simulator: an answering machine picks up a ringing phone",
    roles=ADMINS,
    tag="simulator",
    response=Done,
)
async def sim_machine(request: web.Request) -> web.Response:
    """Answer as the called party's answering machine (no wellbeing check-in)."""
    return await _sim(request, "machine")


@API.route(
    "POST",
    "/sim/calls/{ref}/press",
    summary="Simulator: press a key",
    roles=ADMINS,
    body=PressBody,
    tag="simulator",
    response=Done,
)
async def sim_press(request: web.Request) -> web.Response:
    """Press a key."""
    return await _sim(request, "press")


@API.route(
    "POST",
    "/sim/calls/{ref}/speak",
    summary="Simulator: say something (speech energy, no key)",
    roles=ADMINS,
    tag="simulator",
    response=Done,
)
async def sim_speak(request: web.Request) -> web.Response:
    """Speak on the phone: the caller is heard (a silent high-risk caller is not)."""
    return await _sim(request, "speak")


@API.route(
    "POST",
    "/sim/calls/{ref}/hangup",
    summary="Simulator: hang up the phone",
    roles=ADMINS,
    tag="simulator",
    response=Done,
)
async def sim_hangup(request: web.Request) -> web.Response:
    """Hang up as the far end."""
    return await _sim(request, "hangup")


@API.route(
    "POST",
    "/sim/calls/{ref}/reject",
    summary="Simulator: busy / no answer / failure",
    roles=ADMINS,
    body=RejectBody,
    tag="simulator",
    response=Done,
)
async def sim_reject(request: web.Request) -> web.Response:
    """Refuse a ringing call."""
    return await _sim(request, "reject")
