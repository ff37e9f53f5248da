"""Hotline calls for the desk: the live list, one call, answer, hang up, wrap up, and the
operator's own state. Hold and transfer are `desk_api`."""

from __future__ import annotations

from aiohttp import web
from pydantic import Field
from sqlalchemy import select
from sqlmodel import col

from dispatch.machines.call import AT_DESK
from dispatch.models import Call
from operator_console import call_access
from operator_console.api import (
    API,
    OPERATORS,
    Done,
    Model,
    Strict,
    body,
    int_param,
    ok,
    query_int,
    services,
    user_of,
)
from operator_console.views import CallOut, EventOut, call_public, calls_public
from registry import repository as repo


class OperatorStateBody(Strict):
    """An operator state change."""

    action: str = Field(pattern="^(login|logout|pause|resume|wrap_up_done)$")
    reason: str = Field(default="", max_length=64)


class WrapUpBody(Strict):
    """After-call work."""

    disposition: str = Field(default="", max_length=64)


class CallDetail(CallOut):
    """A call with every event about it."""

    timeline: list[EventOut]


class OperatorStateOut(Model):
    """The operator's state after the change."""

    state: str


@API.route(
    "GET",
    "/calls",
    summary="Live hotline calls, emergencies first",
    roles=OPERATORS,
    tag="calls",
    query={"waiting_limit": "at most this many waiting calls (header X-Waiting-Total: all)"},
    response=list[CallOut],
)
async def calls(request: web.Request) -> web.Response:
    """The waiting queue plus calls connected, on hold or in wrap-up. `waiting_limit`: at
    most that many waiting calls, from the head of the queue (the console's list in a
    surge); the header `X-Waiting-Total` says how many wait in all."""
    svc = services(request)
    limit = query_int(request, "waiting_limit", None, minimum=1, maximum=10_000)
    waiting = await svc.dispatch.queue.queue(limit)
    total = len(waiting) if limit is None else await svc.dispatch.queue.waiting_count()
    async with svc.store.read() as session:
        busy = (
            (
                await session.execute(
                    select(Call)
                    .where(
                        col(Call.direction) == "in",
                        col(Call.state).in_([*AT_DESK, "wrap_up"]),
                    )
                    .order_by(col(Call.id))
                )
            )
            .scalars()
            .all()
        )
        out = await calls_public(session, [*waiting, *busy])
    response = ok(out)
    response.headers["X-Waiting-Total"] = str(max(total, len(waiting)))
    return response


@API.route(
    "GET",
    "/calls/{call_id}",
    summary="One call with its timeline",
    roles=OPERATORS,
    tag="calls",
    response=CallDetail,
)
async def call_detail(request: web.Request) -> web.Response:
    """A call and every event about it (offered, queued, connected, held, transferred...)."""
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
    roles=OPERATORS,
    tag="calls",
    response=CallOut,
)
async def answer(request: web.Request) -> web.Response:
    """Answer a queued call."""
    user = user_of(request)
    call = await services(request).dispatch.desk.answer_call(int_param(request, "call_id"), user)
    async with services(request).store.read() as session:
        return ok(await call_public(session, call))


@API.route(
    "POST",
    "/calls/{call_id}/hangup",
    summary="Hang up one's call (a supervisor: any call); 403 with the reason otherwise",
    roles=OPERATORS,
    tag="calls",
    response=Done,
)
async def hangup(request: web.Request) -> web.Response:
    """Hang up."""
    user = user_of(request)
    await call_access.check(request, int_param(request, "call_id"), user, "hangup")
    await services(request).dispatch.desk.hangup_call(int_param(request, "call_id"), user)
    return ok({"ok": True})


@API.route(
    "POST",
    "/calls/{call_id}/wrap-up",
    summary="Finish after-call work",
    roles=OPERATORS,
    body=WrapUpBody,
    tag="calls",
    response=Done,
)
async def wrap_up(request: web.Request) -> web.Response:
    """Wrap up with a disposition."""
    user = user_of(request)
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
    roles=OPERATORS,
    body=OperatorStateBody,
    tag="calls",
    response=OperatorStateOut,
)
async def operator_state(request: web.Request) -> web.Response:
    """Change the operator's own state."""
    user = user_of(request)
    data = await body(request, OperatorStateBody)
    state = await services(request).dispatch.desk.set_operator_state(user, data.action, data.reason)
    return ok({"state": state})
