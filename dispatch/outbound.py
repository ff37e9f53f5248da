"""Outbound calls the service places: recorded, placed after the commit, and served by the
feature whose purpose they have.

Every outbound call has a purpose: `offer` (dispatch.offers), `survey` and
`survey_family` (dispatch.surveys), `arrival` and `completion` (dispatch.checkins),
`wellbeing` (dispatch.wellbeing: the resident's tries, the care circle, the report),
`told` (dispatch.notify), `campaign` (dispatch.campaigns: notices), `reminder`
(dispatch.reminders: medication and appointment reminders), and purposes of
other packages (the merchant login code, `serve_flows`). The feature registers
a `Purpose`: what the call says once answered, whether it is still wanted after waiting
for the phone line, and what a call that rang, ended or failed without a decision means
for it. This module routes the backend's reports on outbound calls to it. Waiting for
the phone line (outages) is `dispatch.line`. The calls of the paced purposes (wellbeing,
reminders, notices, surveys) wait in the one outbound engine's queue
(`dispatch.outbound_engine`, the `pacer`) before they are placed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from dispatch.core import Core
from dispatch.effects import Command, Hangup, PlaceCall, PlayFlow
from dispatch.machines import call as cm
from dispatch.models import Call, Ticket
from eventlog.store import Tx
from providers.base import OriginateFailure
from registry import repository as repo
from registry.models import Resident, ServiceCategory

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FlowStart:
    """What to say on an answered outbound call: a flow, its context and language."""

    flow: str
    context: dict[str, Any]
    lang: str = "zh-CN"


#: how another package serves the answered calls of its purpose (see `Outbound.serve_flows`);
#: None when there is nothing (left) to say: the call is hung up
OutboundFlow = Callable[[Call], FlowStart | None]


async def _no_hook(tx: Tx, call: Call) -> None:
    return None


class Pacer(Protocol):
    """The outbound engine, as `Outbound` sees it: it queues the calls it paces."""

    def paces(self, purpose: str) -> bool:
        """Whether calls of this purpose wait in the queue."""
        ...

    def enqueue(self, tx: Tx, call: Call, *, ring_s: float | None = None) -> object:
        """Queue a recorded call; it is placed when due and the pace allows."""
        ...

    async def queued(self, tx: Tx, ref: str) -> bool:
        """Whether the call still waits in the queue."""
        ...


#: who the backend says answered an outbound call (`CallAnswered.answered_by`)
MACHINE = "machine"


@dataclass(slots=True)
class Purpose:
    """What one feature does with the outbound calls of one purpose."""

    #: the call was answered: the commands that follow (a flow, or a hang-up); none at all
    #: when the call no longer matters (an offer moved on)
    answered: Callable[[Tx, Call], Awaitable[Sequence[Command]]]
    #: whether a call that waited for the phone line is still worth placing
    wanted: Callable[[Tx, Call], Awaitable[bool]]
    #: the far end rings
    ringing: Callable[[Tx, Call], Awaitable[None]] = _no_hook
    #: the call ended without a decision (hung up before pressing a key)
    ended: Callable[[Tx, Call], Awaitable[None]] = _no_hook
    #: the backend could not reach the far end (busy, no answer, failed)
    failed: Callable[[Tx, Call, OriginateFailure], Awaitable[None]] | None = None
    #: a call the backend lost in an outage is placed again under a new ref (else it ends)
    replace_when_lost: bool = True
    #: it shows the service's caller ID (else the backend's default)
    own_caller_id: bool = True
    #: it never rings in the quiet hours of the night: a waiting one waits for their end
    quiet_hours: bool = False
    #: the backend lost the call in an outage and it is not placed again
    lost: Callable[[Tx, Call], Awaitable[None]] = _no_hook
    #: an operator is on the answered call (a click-to-call): its end starts their wrap-up
    wraps_up: Callable[[Call], bool] | None = None
    #: an answering machine picked up (where the backend can tell): the commands that
    #: follow; None: it is heard like a person
    machine: Callable[[Tx, Call], Awaitable[Sequence[Command]]] | None = None
    #: the campaign a call belongs to, from its ref (the engine's dedupe: one resident is not
    #: rung for two campaigns within minutes); None: the purpose is one campaign
    source: Callable[[str], str] | None = None


async def ticket_parts(tx: Tx, ticket_id: int) -> tuple[Ticket, ServiceCategory, Resident | None]:
    """A ticket, its category and its resident: what an outbound call's flow tells."""
    ticket = await tx.session.get(Ticket, ticket_id, populate_existing=True)
    if ticket is None:
        raise repo.NotFound("ticket", ticket_id)
    category = await repo.get_category(tx.session, code=ticket.category_code)
    resident = await tx.session.get(Resident, ticket.resident_id) if ticket.resident_id else None
    return ticket, category, resident


class Outbound:
    """Records and places outbound calls; routes what the backend says about them."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.purposes: dict[str, Purpose] = {}
        #: the outbound engine, once built (None: every call is placed at once)
        self.pacer: Pacer | None = None

    def serve(self, purpose: str, handling: Purpose) -> None:
        """Register how a feature handles the calls of `purpose`."""
        self.purposes[purpose] = handling

    def serve_flows(
        self, purpose: str, *, answered: OutboundFlow, wanted: Callable[[Call], bool]
    ) -> None:
        """Register another package's purpose: `answered` says what the call says (None:
        hang up), `wanted` whether it is still worth placing after an outage. A call of
        such a purpose that the backend loses just ends: its ref was its delivery."""

        async def on_answer(tx: Tx, call: Call) -> Sequence[Command]:
            start = answered(call)
            if start is None:
                return [Hangup(call.ref)]
            return [PlayFlow(call.ref, start.flow, start.context, start.lang)]

        async def is_wanted(tx: Tx, call: Call) -> bool:
            return wanted(call)

        self.serve(purpose, Purpose(answered=on_answer, wanted=is_wanted, replace_when_lost=False))

    def caller_id(self, purpose: str) -> str | None:
        """The caller ID a call of this purpose shows (None: the backend's default)."""
        handling = self.purposes.get(purpose)
        if handling is not None and not handling.own_caller_id:
            return None
        return self.core.config.caller_id or None

    # -- placing -------------------------------------------------------------------------
    def record(self, tx: Tx, *, ref: str, number: str, purpose: str, **fields: Any) -> Call:
        """Add an outbound call to a unit of work; `place` (or `place_call`) places it after
        the commit, and the purpose's `answered` says what it says."""
        call = Call(
            ref=ref,
            direction="out",
            purpose=purpose,
            number=number,
            started_at=self.core.now(),
            **fields,
        )
        tx.session.add(call)
        return call

    def place(self, tx: Tx, call: Call, *, ring_s: float | None = None) -> None:
        """Place a call recorded in `tx` once `tx` has committed (`ring_s`: how long it
        rings, when not the usual `ring_timeout_s`); a paced purpose's call waits in the
        outbound engine's queue for its turn."""
        if self.pacer is not None and self.pacer.paces(call.purpose):
            self.pacer.enqueue(tx, call, ring_s=ring_s)
            return
        self.core.fx.after_commit(
            tx,
            PlaceCall(call.ref, call.number, caller_id=self.caller_id(call.purpose), ring_s=ring_s),
        )

    async def place_call(self, ref: str, number: str) -> None:
        """Place a recorded outbound call (its ref is the idempotency key); a backend that
        refuses it ends the call as failed, one that cannot be reached makes it wait."""
        await self.core.fx.run(PlaceCall(ref, number, caller_id=self.core.config.caller_id or None))

    def source_of(self, purpose: str, ref: str) -> str:
        """The campaign a call of this purpose and ref belongs to (dedupe's unit)."""
        handling = self.purposes.get(purpose)
        if handling is not None and handling.source is not None:
            return handling.source(ref)
        return purpose

    def source(self, call: Call) -> str:
        """The campaign an outbound call belongs to."""
        return self.source_of(call.purpose, call.ref)

    async def queued(self, tx: Tx, call: Call) -> bool:
        """Whether the call still waits for its turn in the outbound engine's queue."""
        return self.pacer is not None and await self.pacer.queued(tx, call.ref)

    # -- what the backend says -------------------------------------------------------------
    async def wanted(self, tx: Tx, call: Call) -> bool:
        """Whether an outbound call that waited for the line is still worth placing."""
        handling = self.purposes.get(call.purpose)
        return await handling.wanted(tx, call) if handling is not None else True

    def replace_when_lost(self, call: Call) -> bool:
        """Whether a call of this purpose that the backend lost is placed again."""
        handling = self.purposes.get(call.purpose)
        return handling is None or handling.replace_when_lost

    def wraps_up(self, call: Call) -> bool:
        """Whether the end of this answered outbound call starts its operator's wrap-up."""
        handling = self.purposes.get(call.purpose)
        return handling is not None and handling.wraps_up is not None and handling.wraps_up(call)

    async def lost(self, tx: Tx, call: Call) -> None:
        """The backend lost a call that is not placed again: its purpose hears of it."""
        handling = self.purposes.get(call.purpose)
        if handling is not None:
            await handling.lost(tx, call)

    def quiet_hours(self, call: Call) -> bool:
        """Whether calls of this purpose wait out the quiet hours."""
        handling = self.purposes.get(call.purpose)
        return handling is not None and handling.quiet_hours

    async def ringing(self, ref: str) -> None:
        """The far end of an outbound call rings."""
        async with self.core.store.tx() as tx:
            call = await self.core.call_by_ref(tx, ref)
            if call is None:
                return
            tx.emit("call.ringing", "call", call.id, ticket_id=call.ticket_id)
            handling = self.purposes.get(call.purpose)
            if handling is not None:
                await handling.ringing(tx, call)

    async def answered(self, ref: str, answered_by: str = "") -> None:
        """The far end of an outbound call picked up: its purpose says what it hears (an
        answering machine, where the backend tells one: what its `machine` hook says)."""
        async with self.core.store.tx() as tx:
            call = await self.core.call_by_ref(tx, ref)
            if call is None or call.direction != "out":
                return
            by = answered_by or None
            if call.state == cm.CallState.RINGING:
                state, commands = cm.transition(call.state, cm.Answer())
                await self.core.cas(
                    tx, call, state=state, answered_at=self.core.now(), answered_by=by
                )
                await self.core.fx.call(tx, call, commands)
            extra = {"answered_by": by} if by else {}
            tx.emit("call.answered", "call", call.id, ticket_id=call.ticket_id, **extra)
            handling = self.purposes.get(call.purpose)
            if handling is None:
                return
            if by == MACHINE and handling.machine is not None:
                self.core.fx.after_commit(tx, *await handling.machine(tx, call))
            else:
                self.core.fx.after_commit(tx, *await handling.answered(tx, call))

    async def ended(self, tx: Tx, call: Call) -> None:
        """An outbound call hung up without a decision: its purpose says what that means."""
        handling = self.purposes.get(call.purpose)
        if handling is not None:
            await handling.ended(tx, call)

    async def failed(self, ref: str, reason: OriginateFailure) -> None:
        """The backend could not reach the far end of an outbound call."""
        async with self.core.store.tx() as tx:
            call = await self.core.call_by_ref(tx, ref)
            if call is None:
                return
            if call.state not in cm.FINAL:
                state, commands = cm.transition(call.state, cm.Hangup(inbound=False))
                await self.core.cas(
                    tx, call, state=state, ended_at=self.core.now(), cause=reason.value
                )
                await self.core.fx.call(tx, call, commands)
            tx.emit("call.failed", "call", call.id, reason=reason.value, ticket_id=call.ticket_id)
            handling = self.purposes.get(call.purpose)
            if handling is not None and handling.failed is not None:
                await handling.failed(tx, call, reason)
