"""Operators call out: click-to-call by id, the call back list, a callout's wrap-up, and
the emergency panel of a call (its card and checklist). The use cases are
`dispatch.callouts`.

Numbers are never taken from the console and never shown: a callout names who is rung by
kind and id (`resident`, `resident_phone` by the phone's id, `contact`, `merchant`,
`grid_worker` by resident id, `emergency`, `callback` by task id), and what comes back
carries masked numbers only. Merchants may
not call out (403); only the operator on a call (or a supervisor) sees its panel.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import Field
from sqlalchemy import select
from sqlmodel import col

from dispatch.callouts import CALLOUT, TARGETS
from dispatch.models import Call
from operator_console import call_access
from operator_console.api import (
    API,
    OPERATORS,
    Model,
    Strict,
    body,
    int_param,
    ok,
    services,
    user_of,
)
from operator_console.auth import RANKS
from operator_console.errors import Forbidden
from operator_console.views import CallOut, EventOut, call_public
from registry.models import ResidentPhone, Role, User
from registry.phones import mask
from registry.repository import NotFound
from registry.schemas import DbId

Target = Literal[
    "resident", "resident_phone", "contact", "merchant", "grid_worker", "emergency", "callback"
]
assert set(Target.__args__) == set(TARGETS)  # type: ignore[attr-defined]


class CalloutBody(Strict):
    """Who to ring, by id; `for_call_id`: the caller the operator is with (a second line)."""

    target: Target
    id: DbId | None = None
    for_call_id: DbId | None = None


class CalloutWrapUpBody(Strict):
    """A callout's outcome: `reached` closes a call back task; anything else re-queues it."""

    outcome: str = Field(default="", max_length=64)


class StepBody(Strict):
    """One emergency checklist step ticked (or unticked), with an optional note."""

    step: str = Field(min_length=1, max_length=32)
    done: bool = True
    note: str = Field(default="", max_length=200)


class CalloutOut(CallOut):
    """A callout: the call record, and the caller's call it was placed from, if any."""

    parent_call_id: int | None


class CalloutDetail(CalloutOut):
    """A callout and its timeline."""

    timeline: list[EventOut]


class CalloutWrappedUp(Model):
    """A callout's wrap-up: the call back task's state after it (None: no task)."""

    ok: bool
    task_state: str | None


class CallbackTask(Model):
    """An open call back task on the list (the number masked)."""

    ticket_id: int
    resident_id: int | None
    resident_name: str | None
    number: str | None
    reason: str
    created_at: datetime
    waiting_s: int
    attempts: int
    #: the operator dialling it now, if anyone
    dialling: int | None
    emergency: bool


class RingablePhone(Model):
    """One of a resident's phones as a click-to-call target (`resident_phone` by `id`)."""

    id: int
    kind: str
    masked: str


class ChecklistStep(Model):
    """One step of the emergency checklist, with who ticked it when and its callouts."""

    step: str
    kind: str
    target_id: int | None
    label: str
    relation: str | None = None
    contact_kind: str | None = None
    position: int | None = None
    done: bool
    done_by: str | None
    done_at: datetime | None
    note: str
    callouts: list[int | None]


class PanelResident(Model):
    """What the panel shows of the resident (empty for an unregistered caller)."""

    resident_id: int | None = None
    name: str | None = None
    risk_notes: str | None = None
    medicines: str | None = None
    conditions: str | None = None
    key_holder: str | None = None
    key_safe: str | None = None


class EmergencyPanel(Model):
    """The emergency panel of a call."""

    call_id: int
    emergency: bool
    reason: str | None
    resident: PanelResident
    steps: list[ChecklistStep]


async def _view(request: web.Request, call: Call) -> dict[str, Any]:
    async with services(request).store.read() as session:
        fresh = await session.get(Call, call.id)
        assert fresh is not None
        data = await call_public(session, fresh)
    data["parent_call_id"] = fresh.parent_call_id
    return data


@API.route(
    "POST",
    "/callouts",
    summary="Click-to-call by id: the operator's desk rings first, then the number "
    "(409 if the operator is busy or the task is being dialled; 404 unknown id)",
    roles=OPERATORS,
    response=CalloutOut,
    status=201,
    body=CalloutBody,
    tag="calls",
)
async def call_out(request: web.Request) -> web.Response:
    """Start a click-to-call; the number is looked up here, never sent by the console."""
    user = user_of(request)
    data = await body(request, CalloutBody)
    call = await services(request).dispatch.callouts.start(
        user, kind=data.target, target_id=data.id, for_call_id=data.for_call_id
    )
    return ok(await _view(request, call), status=201)


@API.route(
    "GET",
    "/residents/{resident_id}/phones",
    summary="A resident's phones to ring by id (masked; mobile first)",
    roles=OPERATORS,
    response=list[RingablePhone],
    tag="calls",
)
async def resident_phones(request: web.Request) -> web.Response:
    """One click-to-call button per phone: its id, its kind and the masked number."""
    stmt = (
        select(ResidentPhone)
        .where(col(ResidentPhone.resident_id) == int_param(request, "resident_id"))
        .order_by(col(ResidentPhone.kind) != "mobile", col(ResidentPhone.id))
    )
    async with services(request).store.read() as session:
        phones = (await session.execute(stmt)).scalars().all()
    return ok([{"id": p.id, "kind": p.kind, "masked": mask(p.number)} for p in phones])


async def _own_callout(request: web.Request, user: User) -> Call:
    call_id = int_param(request, "call_id")
    async with services(request).store.read() as session:
        call = await session.get(Call, call_id)
    if call is None or call.purpose != CALLOUT:
        raise NotFound("callout", call_id)
    if call.operator_id != user.id and RANKS.get(user.role, 0) < RANKS[Role.SUPERVISOR]:
        raise Forbidden(f"callout {call_id} is another operator's", "another_operator")
    return call


@API.route(
    "GET",
    "/callouts/{call_id}",
    summary="One's callout with its timeline (a supervisor: anyone's)",
    roles=OPERATORS,
    response=CalloutDetail,
    tag="calls",
)
async def callout_detail(request: web.Request) -> web.Response:
    """A callout and its events."""
    user = user_of(request)
    call = await _own_callout(request, user)
    data = await _view(request, call)
    assert call.id is not None
    data["timeline"] = await services(request).store.events_for("call", call.id)
    return ok(data)


@API.route(
    "POST",
    "/callouts/{call_id}/wrap-up",
    summary="Finish a callout's after-call work; a call back's outcome `reached` closes "
    "its task, any other re-queues it",
    roles=OPERATORS,
    response=CalloutWrappedUp,
    body=CalloutWrapUpBody,
    tag="calls",
)
async def callout_wrap_up(request: web.Request) -> web.Response:
    """Wrap up one's own answered callout."""
    user = user_of(request)
    data = await body(request, CalloutWrapUpBody)
    call = await _own_callout(request, user)
    assert call.id is not None
    await call_access.check(request, call.id, user, "wrap-up")
    dispatch = services(request).dispatch
    await dispatch.desk.wrap_up(call.id, user, data.outcome)
    task = await dispatch.callouts.finish_task(call, user, data.outcome)
    return ok({"ok": True, "task_state": task.state.value if task is not None else None})


@API.route(
    "GET",
    "/callbacks",
    summary="Open call back tasks, the longest waiting first (numbers masked)",
    roles=OPERATORS,
    response=list[CallbackTask],
    tag="calls",
)
async def callbacks(request: web.Request) -> web.Response:
    """The call back list."""
    return ok(await services(request).dispatch.callouts.callback_list())


@API.route(
    "POST",
    "/callbacks/{ticket_id}/dial",
    summary="Answer a call back task: click-to-call its caller (409 if being dialled)",
    roles=OPERATORS,
    response=CalloutOut,
    status=201,
    tag="calls",
)
async def dial_callback(request: web.Request) -> web.Response:
    """Ring the caller of a call back task."""
    user = user_of(request)
    ticket_id = int_param(request, "ticket_id")
    call = await services(request).dispatch.callouts.start(
        user, kind="callback", target_id=ticket_id
    )
    return ok(await _view(request, call), status=201)


async def _panel_call(request: web.Request, user: User) -> int:
    """The call whose panel is asked for, if the user is its operator (or a supervisor)."""
    call_id = int_param(request, "call_id")
    async with services(request).store.read() as session:
        call = await session.get(Call, call_id)
    if call is None or call.direction != "in":
        raise NotFound("call", call_id)
    if call.operator_id != user.id and RANKS.get(user.role, 0) < RANKS[Role.SUPERVISOR]:
        raise Forbidden(f"call {call_id} is not at your desk", "another_operator")
    return call_id


@API.route(
    "GET",
    "/calls/{call_id}/emergency-panel",
    summary="The emergency panel: risk notes, medicines, key holder / key safe, and the "
    "checklist (120, each contact in order, the grid worker) with who ticked what when",
    roles=OPERATORS,
    response=EmergencyPanel,
    tag="calls",
)
async def emergency_panel(request: web.Request) -> web.Response:
    """The panel of one's call."""
    user = user_of(request)
    call_id = await _panel_call(request, user)
    return ok(await services(request).dispatch.callouts.checklist(call_id))


@API.route(
    "POST",
    "/calls/{call_id}/emergency-panel/steps",
    summary="Tick (or untick) a checklist step; stored with who and when on the timeline",
    roles=OPERATORS,
    response=EmergencyPanel,
    body=StepBody,
    tag="calls",
)
async def tick_step(request: web.Request) -> web.Response:
    """Tick a step."""
    user = user_of(request)
    data = await body(request, StepBody)
    call_id = await _panel_call(request, user)
    panel = await services(request).dispatch.callouts.tick(
        call_id, user, step=data.step, done=data.done, note=data.note
    )
    return ok(panel)
