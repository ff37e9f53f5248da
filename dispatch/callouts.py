"""Operators call out: click-to-call from the console, the call back tasks, and the
emergency panel's checklist.

A click-to-call rings the operator's desk first, then the number, through the telephony
port (`CallOut` in `dispatch.effects`, `call_out` in `providers.base`). Numbers are
dialled by id, never taken from the console: a resident, an emergency contact, a
merchant, the grid worker of a resident's grid, the emergency number (`emergency_number`,
120), or a call back task. The callout is an outbound call of its own (purpose
`callout`) with its timeline; the operator is on it like on an answered caller:

- standalone (from the callback list, a resident card): the operator goes on_call; an
  answered callout ends in their wrap-up, whose outcome closes a call back task
  (`reached`) or leaves it waiting (anything else); one that never reached the number
  frees the operator at once and leaves the task waiting;
- during a call (the emergency panel, `for_call_id`): the operator keeps their caller
  (on hold, or in earshot) and the callout is a second line; no wrap-up of its own, and
  it is on the first call's timeline too (`call.callout_placed`).

The emergency panel's steps (120, each contact in order, the grid worker) are ticked
with who and when: `emergency.step` events on the emergency call's timeline.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from dispatch.core import Core, actor
from dispatch.effects import CallOut, CancelTimer, Command
from dispatch.errors import Conflict, Invalid
from dispatch.machines import call as cm
from dispatch.machines import operator as opm
from dispatch.machines import ticket as tm
from dispatch.models import Call, Ticket
from dispatch.operators import Operators
from dispatch.outbound import Outbound, Purpose
from dispatch.queue import Queue
from dispatch.timer_keys import TICKET_KINDS, TimerKey
from eventlog.models import Event
from eventlog.store import Tx
from providers.base import OriginateFailure, TelephonyUnavailable
from registry import repository as repo
from registry.catalog import CALLBACK
from registry.models import EmergencyContact, Grid, Merchant, Resident, ResidentPhone, User
from registry.phones import mask

log = logging.getLogger(__name__)

CALLOUT = "callout"
#: what a click-to-call may ring, each by its id (`resident_phone`: one of a resident's
#: phones by its row id, for a resident with a landline and a mobile)
TARGETS = (
    "resident",
    "resident_phone",
    "contact",
    "merchant",
    "grid_worker",
    "emergency",
    "callback",
)
#: the wrap-up outcome of a call back that closes its task
REACHED = "reached"
#: the operator states from which a standalone click-to-call may start
_FREE = frozenset(
    {opm.OperatorState.AVAILABLE, opm.OperatorState.PAUSED, opm.OperatorState.LOGGED_OUT}
)


@dataclass(frozen=True, slots=True)
class Dial:
    """Who a click-to-call rings: the number (never shown) and what the desk may see."""

    kind: str
    target_id: int | None
    number: str
    label: str
    resident_id: int | None = None
    ticket_id: int | None = None


def step_key(kind: str, target_id: int | None) -> str:
    """The emergency checklist step a target is: "120", "contact:<id>", "grid_worker"."""
    if kind == "emergency":
        return "120"
    if kind == "contact":
        return f"contact:{target_id}"
    return kind


class Callouts:
    """Click-to-calls, the call back list and the emergency checklist."""

    def __init__(self, core: Core, operators: Operators, outbound: Outbound, queue: Queue):
        self.core = core
        self.operators = operators
        self.outbound = outbound
        self.queue = queue
        outbound.serve(
            CALLOUT,
            Purpose(
                answered=self._answered,
                wanted=self._wanted,
                ended=self._ended,
                failed=self._failed,
                lost=self._unreached,
                replace_when_lost=False,
                wraps_up=lambda call: call.parent_call_id is None,
            ),
        )

    # -- who is rung -----------------------------------------------------------------------
    async def resolve(self, tx: Tx, kind: str, target_id: int | None) -> Dial:
        """The number behind a target id; `NotFound` when there is none, `Invalid` when it
        has no number to ring."""
        session = tx.session
        if kind not in TARGETS:
            raise Invalid(f"target must be one of {', '.join(TARGETS)}")
        if kind == "emergency":
            number = self.core.config.emergency_number
            return Dial(kind, None, number, number)
        if target_id is None:
            raise Invalid(f"a {kind} target needs its id")
        if kind == "resident":
            resident = await repo.get_resident(session, resident_id=target_id)
            return Dial(
                kind,
                target_id,
                await self._resident_number(tx, target_id),
                resident.name,
                resident_id=target_id,
            )
        if kind == "resident_phone":
            phone = await session.get(ResidentPhone, target_id)
            if phone is None:
                raise repo.NotFound("resident phone", target_id)
            resident = await repo.get_resident(session, resident_id=phone.resident_id)
            return Dial(
                kind, target_id, _usable(phone.number, kind), resident.name, phone.resident_id
            )
        if kind == "contact":
            contact = await session.get(EmergencyContact, target_id)
            if contact is None:
                raise repo.NotFound("contact", target_id)
            number = contact.phone or (contact.phones[0] if contact.phones else "")
            label = f"{contact.name}（{contact.relation}）" if contact.relation else contact.name
            return Dial(kind, target_id, _usable(number, kind), label, contact.resident_id)
        if kind == "merchant":
            merchant = await session.get(Merchant, target_id)
            if merchant is None:
                raise repo.NotFound("merchant", target_id)
            number = merchant.phones[0] if merchant.phones else ""
            return Dial(kind, target_id, _usable(number, kind), merchant.name)
        if kind == "grid_worker":
            # the grid worker of this resident's grid, else a contact who is one
            resident = await repo.get_resident(session, resident_id=target_id)
            grid = await session.get(Grid, resident.grid_code)
            if grid is not None and grid.worker_phone:
                label = grid.worker_name or grid.name
                return Dial(kind, target_id, grid.worker_phone, label, target_id)
            contact = (
                (
                    await session.execute(
                        select(EmergencyContact)
                        .where(
                            col(EmergencyContact.resident_id) == target_id,
                            col(EmergencyContact.kind) == "grid_worker",
                        )
                        .order_by(col(EmergencyContact.position))
                    )
                )
                .scalars()
                .first()
            )
            if contact is None:
                raise Invalid("the resident's grid has no grid worker's number")
            return Dial(kind, target_id, _usable(contact.phone, kind), contact.name, target_id)
        # a call back task: the number the caller rang from, else the resident's
        ticket = await session.get(Ticket, target_id, populate_existing=True)
        if ticket is None or ticket.category_code != CALLBACK:
            raise repo.NotFound("callback", target_id)
        if ticket.state != tm.TicketState.NEW:
            raise Conflict(f"call back {target_id} is {ticket.state.value}")
        first = await session.get(Call, ticket.call_id) if ticket.call_id is not None else None
        number = first.number if first is not None and first.number.startswith("+") else ""
        label = ""
        if ticket.resident_id is not None:
            resident = await repo.get_resident(session, resident_id=ticket.resident_id)
            label = resident.name
            number = number or await self._resident_number(tx, ticket.resident_id)
        return Dial(
            kind,
            target_id,
            _usable(number, kind),
            label or mask(number),
            resident_id=ticket.resident_id,
            ticket_id=ticket.id,
        )

    async def _resident_number(self, tx: Tx, resident_id: int) -> str:
        number = (
            await tx.session.execute(
                select(col(ResidentPhone.number))
                .where(col(ResidentPhone.resident_id) == resident_id)
                .order_by(col(ResidentPhone.kind) != "mobile", col(ResidentPhone.id))
                .limit(1)
            )
        ).scalar()
        return _usable(number or "", "resident")

    # -- placing ---------------------------------------------------------------------------
    async def start(
        self, user: User, *, kind: str, target_id: int | None, for_call_id: int | None = None
    ) -> Call:
        """An operator calls out: their desk rings, then the number.

        Standalone, the operator must be free (available, paused or logged out: they are
        taken on_call); `for_call_id` names the caller they are with, and the callout is a
        second line. A call back task being dialled by someone already is a `Conflict`;
        while the phone line is down, `TelephonyUnavailable` (nothing is recorded).
        """
        assert user.id is not None
        core = self.core
        if not core.health().up:
            # an operator's call is now or never: it never waits for the line
            raise TelephonyUnavailable("the phone line is down: nothing can be dialled")
        async with core.store.tx() as tx:
            dial = await self.resolve(tx, kind, target_id)
            status = await self.operators.status(tx, user.id)
            parent: Call | None = None
            if for_call_id is not None:
                parent = await core.get(tx, Call, for_call_id, "call")
                if parent.operator_id != user.id or parent.state not in cm.AT_DESK:
                    raise Conflict(f"call {for_call_id} is not at your desk")
            elif status.state not in _FREE:
                raise Conflict(f"you are {status.state.value}: finish that first")
            if dial.ticket_id is not None and await self._dialling(tx, dial.ticket_id):
                raise Conflict(f"call back {dial.ticket_id} is being dialled already")
            call = self.outbound.record(
                tx,
                ref=f"co-{secrets.token_hex(8)}",
                number=dial.number,
                purpose=CALLOUT,
                resident_id=dial.resident_id,
                registered=dial.resident_id is not None,
                ticket_id=dial.ticket_id,
                operator_id=user.id,
                parent_call_id=parent.id if parent is not None else None,
                # never waits for the phone line: refused now, it fails now
                dialed_at=core.now(),
            )
            await tx.session.flush()
            if parent is None:
                if status.state == opm.OperatorState.LOGGED_OUT:
                    await self.operators.event(tx, user.id, opm.Login())
                elif status.state == opm.OperatorState.PAUSED:
                    await self.operators.event(tx, user.id, opm.Resume())
                await self.operators.event(tx, user.id, opm.TakeCall(), call)
            where = {"target": dial.kind, "target_id": dial.target_id}
            tx.emit(
                "call.callout",
                "call",
                call.id,
                actor=user.username,
                number=mask(dial.number),
                for_call_id=for_call_id,
                ticket_id=dial.ticket_id,
                **where,
            )
            if parent is not None:
                tx.emit(
                    "call.callout_placed",
                    "call",
                    parent.id,
                    actor=user.username,
                    callout_id=call.id,
                    step=step_key(dial.kind, dial.target_id),
                    **where,
                )
            core.fx.after_commit(
                tx, CallOut(call.ref, user.id, dial.number, self.outbound.caller_id(CALLOUT))
            )
        log.info("callout %s by operator %s (%s)", call.ref, user.id, dial.kind)
        return call

    async def _dialling(self, tx: Tx, ticket_id: int) -> bool:
        live = (
            await tx.session.execute(
                select(func.count()).where(
                    col(Call.purpose) == CALLOUT,
                    col(Call.ticket_id) == ticket_id,
                    col(Call.state).not_in([*cm.FINAL, cm.CallState.WRAP_UP]),
                )
            )
        ).scalar_one()
        return bool(live)

    # -- what the backend says (the outbound purpose) ----------------------------------------
    async def _answered(self, tx: Tx, call: Call) -> Sequence[Command]:
        return []  # the desk and the far end talk: nothing to play

    async def _wanted(self, tx: Tx, call: Call) -> bool:
        return False  # an operator's call is never placed later on their behalf

    async def _failed(self, tx: Tx, call: Call, reason: OriginateFailure) -> None:
        await self._unreached(tx, call, reason.value)

    async def _ended(self, tx: Tx, call: Call) -> None:
        if call.answered_at is None:
            await self._unreached(tx, call, "hung_up")  # the operator gave up while it rang

    async def _unreached(self, tx: Tx, call: Call, why: str = "lost") -> None:
        """The callout never reached the number: the operator is free, a task waits on."""
        if call.ticket_id is not None:
            tx.emit(
                "callback.attempted",
                "ticket",
                call.ticket_id,
                call_id=call.id,
                outcome="unreached",
                reason=why,
            )
        if call.parent_call_id is not None or call.operator_id is None:
            return
        status = await self.operators.status(tx, call.operator_id)
        if status.state == opm.OperatorState.ON_CALL and status.call_id == call.id:
            await self.operators.event(tx, call.operator_id, opm.CallOutUnreached())
            tx.after_commit(self.queue.distribute)

    # -- the wrap-up's outcome -----------------------------------------------------------------
    async def finish_task(self, call: Call, user: User, outcome: str) -> Ticket | None:
        """After a call back's wrap-up: `reached` closes its task, anything else leaves it
        waiting (attempted). None when the callout was for no task."""
        if call.ticket_id is None or call.purpose != CALLOUT:
            return None
        core = self.core
        async with core.store.tx() as tx:
            ticket = await core.get(tx, Ticket, call.ticket_id, "ticket")
            if ticket.category_code != CALLBACK or ticket.state != tm.TicketState.NEW:
                return ticket
            if outcome != REACHED:
                tx.emit(
                    "callback.attempted",
                    "ticket",
                    ticket.id,
                    actor=user.username,
                    call_id=call.id,
                    outcome=outcome[:64] or "not_reached",
                )
                return ticket
            state, commands = tm.transition(ticket.state, tm.TaskDone())
            await core.cas(tx, ticket, state=state, closed_at=core.now())
            tx.emit(
                "ticket.closed", "ticket", ticket.id, actor=user.username, call_id=call.id,
                outcome=REACHED,
            )  # fmt: skip
            await core.fx.ticket(tx, ticket, commands)
            core.fx.after_commit(
                tx, *(CancelTimer(TimerKey.of(kind, ticket.id)) for kind in TICKET_KINDS)
            )
        return ticket

    # -- the call back list ------------------------------------------------------------------
    async def callback_list(self) -> list[dict[str, Any]]:
        """Open call back tasks, the longest waiting first, with their attempts so far and
        whether someone is dialling one now. Numbers masked."""
        core = self.core
        async with core.store.read() as session:
            rows = (
                await session.execute(
                    select(Ticket, Resident)
                    .outerjoin(Resident, col(Resident.id) == Ticket.resident_id)
                    .where(
                        col(Ticket.category_code) == CALLBACK,
                        col(Ticket.state) == tm.TicketState.NEW,
                    )
                    .order_by(col(Ticket.created_at), col(Ticket.id))
                    .limit(200)
                )
            ).all()
            ids = [t.id for t, _ in rows]
            callouts = (
                (
                    await session.execute(
                        select(Call)
                        .where(col(Call.purpose) == CALLOUT, col(Call.ticket_id).in_(ids))
                        .order_by(col(Call.id))
                    )
                )
                .scalars()
                .all()
            )
            first_ids = [t.call_id for t, _ in rows if t.call_id is not None]
            firsts = {
                c.id: c
                for c in (
                    await session.execute(select(Call).where(col(Call.id).in_(first_ids)))
                ).scalars()
            }
        now = core.now()
        out: list[dict[str, Any]] = []
        for ticket, resident in rows:
            mine = [c for c in callouts if c.ticket_id == ticket.id]
            live = next((c for c in mine if c.state not in cm.FINAL), None)
            first = firsts.get(ticket.call_id) if ticket.call_id is not None else None
            out.append(
                {
                    "ticket_id": ticket.id,
                    "resident_id": ticket.resident_id,
                    "resident_name": resident.name if resident is not None else None,
                    "number": mask(first.number) if first is not None else None,
                    "reason": ticket.description,
                    "created_at": ticket.created_at.isoformat(),
                    "waiting_s": round((now - ticket.created_at).total_seconds()),
                    "attempts": len(mine),
                    "dialling": live.operator_id if live is not None else None,
                    "emergency": bool(first is not None and first.emergency),
                }
            )
        return out

    # -- the emergency panel ------------------------------------------------------------------
    async def checklist(self, call_id: int) -> dict[str, Any]:
        """The emergency panel of a call: the resident's risk notes, medicines, key holder
        and key safe, and the steps (120, each contact in order, the grid worker) with
        who ticked them when and the callouts placed for them."""
        async with self.core.store.read() as session:
            call = await session.get(Call, call_id)
            if call is None:
                raise repo.NotFound("call", call_id)
            resident = await session.get(Resident, call.resident_id) if call.resident_id else None
            contacts: Sequence[EmergencyContact] = []
            grid: Grid | None = None
            if resident is not None:
                contacts = (
                    (
                        await session.execute(
                            select(EmergencyContact)
                            .where(col(EmergencyContact.resident_id) == resident.id)
                            .order_by(col(EmergencyContact.position), col(EmergencyContact.id))
                        )
                    )
                    .scalars()
                    .all()
                )
                grid = await session.get(Grid, resident.grid_code)
            events = (
                (
                    await session.execute(
                        select(Event)
                        .where(
                            col(Event.subject) == "call",
                            col(Event.subject_id) == str(call_id),
                            col(Event.name).in_(["emergency.step", "call.callout_placed"]),
                        )
                        .order_by(col(Event.seq))
                    )
                )
                .scalars()
                .all()
            )
        steps: list[dict[str, Any]] = [{"step": "120", "kind": "emergency", "target_id": None,
                                        "label": self.core.config.emergency_number}]  # fmt: skip
        for contact in contacts:
            steps.append(
                {
                    "step": f"contact:{contact.id}",
                    "kind": "contact",
                    "target_id": contact.id,
                    "label": contact.name,
                    "relation": contact.relation,
                    "contact_kind": contact.kind,
                    "position": contact.position,
                }
            )
        if resident is not None:
            worker = grid.worker_name if grid is not None and grid.worker_phone else ""
            steps.append(
                {
                    "step": "grid_worker",
                    "kind": "grid_worker",
                    "target_id": resident.id,
                    "label": worker,
                }
            )
        by_step = {s["step"]: s for s in steps}
        for each in steps:
            each.update(done=False, done_by=None, done_at=None, note="", callouts=[])
        for event in events:
            found = by_step.get(str(event.data.get("step", "")))
            if found is None:
                continue
            if event.name == "call.callout_placed":
                found["callouts"].append(event.data.get("callout_id"))
            else:
                found.update(
                    done=bool(event.data.get("done", True)),
                    done_by=event.actor,
                    done_at=event.occurred_at.isoformat(),
                    note=event.data.get("note", ""),
                )
        card: dict[str, Any] = {}
        if resident is not None:
            card = {
                "resident_id": resident.id,
                "name": resident.name,
                "risk_notes": resident.risk_notes,
                "medicines": resident.medicines,
                "conditions": resident.conditions,
                "key_holder": resident.key_holder,
                "key_safe": resident.key_safe,
            }
        return {
            "call_id": call.id,
            "emergency": call.emergency,
            # the emergency branch adds `Call.emergency_reason` (key, silent, repeat)
            "reason": getattr(call, "emergency_reason", None),
            "resident": card,
            "steps": steps,
        }

    async def tick(
        self, call_id: int, user: User, *, step: str, done: bool = True, note: str = ""
    ) -> dict[str, Any]:
        """Tick (or untick) a step of a call's emergency checklist: who and when, stored as
        an event on the call's timeline."""
        panel = await self.checklist(call_id)
        if step not in {s["step"] for s in panel["steps"]}:
            raise Invalid(f"call {call_id} has no checklist step {step!r}")
        async with self.core.store.tx() as tx:
            call = await self.core.get(tx, Call, call_id, "call")
            tx.emit(
                "emergency.step",
                "call",
                call.id,
                actor=actor(user),
                step=step,
                done=done,
                note=note[:200],
            )
        return await self.checklist(call_id)


def _usable(number: str, kind: str) -> str:
    if not number:
        raise Invalid(f"the {kind} has no phone number to ring")
    return number
