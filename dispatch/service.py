"""The dispatch use cases: calls, queue, operators, tickets, offers, surveys.

State changes go through the pure machines; each use case is one unit of work that
writes the rows and their events together. Telephony commands are carried out after
the commit, so a crash never leaves a call placed for an offer the database forgot,
and an offer's call ref (its idempotency key) is placed at most once.

Phone outages: an outbound call the backend cannot take (`TelephonyUnavailable`, or the
backend reports itself down) is not a failure. Its row stays undialed (`dialed_at` None),
its offer stays live and does not expire while it waits, and it is placed again with the
same ref when `BackendStatus(up=True)` arrives (the offer's clock starts then). Ticket
deadlines keep running, so a long outage escalates to an operator as usual. When the link
drops, every caller who was live (ringing, in the menu, queued, connected, on hold) gets
one callback task.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import partial
from typing import Any, TypeVar
from uuid import uuid4

from sqlalchemy import String, cast, func, select, update
from sqlmodel import SQLModel, col

from dispatch import deadlines as dl
from dispatch.clock import LOCAL_TZ, Clock
from dispatch.events import Store, Tx
from dispatch.figures import RATINGS, pct, percentile
from dispatch.machines import IllegalTransition
from dispatch.machines import call as cm
from dispatch.machines import offer as om
from dispatch.machines import operator as opm
from dispatch.machines import ticket as tm
from dispatch.matching import Candidate, MatchIndex, MerchantStats, Need, rank
from dispatch.models import Call, Event, Offer, OperatorStatus, Ticket
from dispatch.stats import StatsCache
from dispatch.timers import Timers
from ivr.flow import keypad_paths
from ivr.library import FlowLibrary
from ivr.prompts import pick_lang
from providers.base import (
    BackendStatus,
    CallAnswered,
    CallBridged,
    CallEnded,
    CallHeld,
    CallOffered,
    CallRinging,
    CallUnheld,
    DigitPressed,
    FlowFinished,
    OriginateFailed,
    OriginateFailure,
    PromptPlayed,
    Telephony,
    TelephonyError,
    TelephonyEvent,
    TelephonyUnavailable,
    TransferFailed,
)
from registry import models as registry_models
from registry import repository as repo
from registry.catalog import CALLBACK, OPERATOR_TASKS
from registry.models import (
    EmergencyContact,
    Merchant,
    MerchantService,
    Resident,
    ResidentPhone,
    Role,
    User,
)
from registry.phones import mask, try_normalize

log = logging.getLogger(__name__)

M = TypeVar("M", bound=SQLModel)

ACTIVE_TICKET_STATES = (tm.TicketState.ACCEPTED, tm.TicketState.IN_SERVICE)
ACCEPT_ORDER = {
    OriginateFailure.NO_ANSWER: om.OfferState.NO_ANSWER,
    OriginateFailure.BUSY: om.OfferState.BUSY,
    OriginateFailure.CONGESTION: om.OfferState.FAILED,
    OriginateFailure.FAILED: om.OfferState.FAILED,
}


class Conflict(Exception):
    """Someone else changed the subject first (HTTP 409)."""


class Invalid(ValueError):
    """A request that cannot be carried out as asked (HTTP 422)."""

    error_id = "invalid_input"


class OperatorTask(Invalid):
    """The ticket is a task for an operator (a call back), never offered to a merchant."""

    error_id = "operator_task"


@dataclass(slots=True)
class DispatchConfig:
    """Timings and policies of the dispatch service."""

    offer_timeout_s: float = 90.0
    ring_timeout_s: float = 30.0
    parallel_offers: int = 1
    parallel_offers_urgent: int = 2
    wrap_up_s: float = 60.0
    survey_delay_s: float = 60.0
    survey_retry_s: float = 1800.0
    survey_attempts: int = 2
    survey_window_s: float = 3 * 24 * 3600.0
    quiet_start: time = time(21, 0)
    quiet_end: time = time(8, 30)
    caller_id: str = ""
    match_seed: int | None = None
    #: False: registered residents go straight to an operator, no menu
    hotline_menu: bool = True
    #: how often a waiting caller hears their place and the call-back offer
    queue_announce_s: float = 30.0
    #: a caller who rang within this window before moves up the queue
    repeat_window_s: float = 600.0
    #: how long a waiting call is offered to one operator before it goes to the next
    ring_operator_s: float = 20.0
    #: an operator who lets this many offered calls go within an hour is paused
    missed_to_pause: int = 3
    #: score distance within which eligible merchants count as comparable (fair rotation)
    match_band: float = 0.5
    #: how far back acceptance, ratings and no-shows are read for the ranking
    stats_window_days: int = 90
    #: how long the in-memory merchant index is trusted before it is read again
    index_ttl_s: float = 300.0
    #: how long a merchant's cached record (acceptance, ratings...) is trusted unchanged
    stats_ttl_s: float = 300.0
    #: how often the reconciler compares open tickets and offers with the timers
    reconcile_every_s: float = 300.0
    #: call the first emergency contact when the resident never answers the survey
    survey_family: bool = True


#: a function the composition root may give: the refs of calls the backend knows are live
LiveCalls = Callable[[], Awaitable[set[str]]]


@dataclass(frozen=True, slots=True)
class FlowStart:
    """What to say on an answered outbound call: a flow, its context and language."""

    flow: str
    context: dict[str, Any]
    lang: str = "zh-CN"


#: how another use case serves the answered outbound calls of its own purpose (see
#: `Dispatcher.outbound_flows`); None when there is nothing (left) to say: it is hung up
OutboundFlow = Callable[[Call], FlowStart | None]

#: ticket states whose deadline still matters (see `dispatch.deadlines`)
SURVEY_PURPOSES = ("survey", "survey_family")

#: the states in which a supervisor takes a transferred caller (logged in, not with another)
SUPERVISOR_DESK = frozenset(
    {opm.OperatorState.AVAILABLE, opm.OperatorState.PAUSED, opm.OperatorState.WRAP_UP}
)


#: the disposition of a wrap-up ended because its operator took a transferred caller
TRANSFERRED_IN = "transferred_in"

#: why a wrap-up was finished by the service rather than by its operator
WRAP_UP_TIMEOUT = "wrap_up_timeout"
CLOSED_AT_START = "closed_at_start"


def _operator_id(peer: str) -> int | None:
    """The user id in an operator endpoint name ("operator:<id>"), else None."""
    prefix, _, rest = peer.partition(":")
    return int(rest) if prefix == "operator" and rest.isdigit() else None


def _actor(user: User | None) -> str:
    return user.username if user is not None else "system"


#: inbound calls whose caller may be lost when the phone line drops
LIVE_INBOUND = (
    cm.CallState.RINGING,
    cm.CallState.IVR,
    cm.CallState.QUEUED,
    cm.CallState.CONNECTED,
    cm.CallState.ON_HOLD,
)
#: purposes whose calls keep the backend's default caller ID (as when first placed)
DEFAULT_CALLER_ID = (*SURVEY_PURPOSES, "arrival", "completion")


def _undialed(call: Call) -> bool:
    """An outbound call still waiting to be handed to the backend (a phone outage)."""
    return call.direction == "out" and call.dialed_at is None and call.state not in cm.FINAL


def _retry_ref(ref: str) -> str:
    """A new ref for a call placed again after the backend lost the first: `x` -> `x.r1`."""
    base, sep, n = ref.rpartition(".r")
    if sep and n.isdigit():
        return f"{base}.r{int(n) + 1}"
    return f"{ref}.r1"


@dataclass(slots=True)
class _Outage:
    """The phone line is down since `since`; `callbacks` callers got a callback task."""

    since: datetime
    callbacks: int = 0


class Dispatcher:
    """The use cases behind the API, the telephony pump and the timers."""

    def __init__(
        self,
        *,
        store: Store,
        telephony: Telephony,
        timers: Timers,
        clock: Clock,
        config: DispatchConfig | None = None,
        flows: FlowLibrary | None = None,
        live_calls: LiveCalls | None = None,
    ) -> None:
        self.store = store
        self.telephony = telephony
        self.timers = timers
        self.clock = clock
        self.config = config or DispatchConfig()
        self.flows = flows or FlowLibrary()
        self.live_calls = live_calls
        self._index: MatchIndex | None = None
        self._index_at: datetime | None = None
        self.stats = StatsCache(self.merchant_stats, clock=clock, ttl_s=self.config.stats_ttl_s)
        #: outbound call purposes served by another use case (the merchant login code)
        self.outbound_flows: dict[str, OutboundFlow] = {}
        #: whether such a call that waited for the phone line is still worth placing
        self.outbound_wanted: dict[str, Callable[[Call], bool]] = {}
        #: the phone line as the last BackendStatus said (None: not heard yet)
        self._line_up: bool | None = None
        self._outage: _Outage | None = None
        #: refs being handed to the backend now: never two originates of one ref at once
        self._dialing: set[str] = set()
        self._resume_lock = asyncio.Lock()
        self._callback_lock = asyncio.Lock()

    # -- compare-and-set -------------------------------------------------------------
    async def _cas(self, tx: Tx, row: Any, **values: Any) -> None:
        """Write `values` to a versioned row only if nobody else wrote it since it was read."""
        model = type(row)
        pk = model.__table__.primary_key.columns.values()[0].name
        key = getattr(row, pk)
        stmt = (
            update(model)
            .where(getattr(model, pk) == key, model.version == row.version)
            .values(**values, version=row.version + 1)
        )
        result = await tx.session.execute(stmt)
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict(f"{model.__name__.lower()} {key} was changed by someone else")
        for name, value in values.items():
            setattr(row, name, value)
        row.version += 1
        if isinstance(row, Offer) or (isinstance(row, Ticket) and "rating" in values):
            self._touch_after_commit(tx, row.merchant_id)

    def _touch_after_commit(self, tx: Tx, merchant_id: int | None) -> None:
        """Drop a merchant's cached record once this transaction's change is visible."""

        async def touch() -> None:
            self.stats.touch(merchant_id)

        tx.after_commit(touch)

    async def _get(self, tx: Tx, model: type[M], key: object, what: str) -> M:
        row = await tx.session.get(model, key, populate_existing=True)
        if row is None:
            raise repo.NotFound(what, key)
        return row

    # -- the telephony pump ------------------------------------------------------------
    async def pump(self) -> None:
        """Consume telephony events until the backend closes; one bad event never stops it."""
        async for event in self.telephony.events():
            try:
                await self.on_telephony(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("telephony event %s failed", type(event).__name__)

    async def on_telephony(self, event: TelephonyEvent) -> None:
        """Apply one telephony event."""
        match event:
            case CallOffered():
                await self._inbound(event)
            case CallRinging(ref=ref):
                await self._outbound_ringing(ref)
            case CallAnswered(ref=ref):
                await self._outbound_answered(ref)
            case DigitPressed(ref=ref, digit=digit):
                await self._call_event(ref, "call.digit", digit=digit)
            case PromptPlayed(ref=ref, prompt=prompt):
                log.debug("call %s prompt %s", ref, prompt)
            case FlowFinished():
                await self._flow_finished(event)
            case CallBridged(ref=ref, peer=peer):
                await self._call_event(ref, "call.bridged", peer=peer)
            case CallHeld(ref=ref) | CallUnheld(ref=ref):
                # the desk's own `call.held` / `call.resumed` events already say it
                log.info("call %s: backend reports %s", ref, type(event).__name__)
            case TransferFailed(ref=ref, peer=peer):
                await self._transfer_unanswered(ref, peer)
            case CallEnded(ref=ref, cause=cause):
                await self._call_ended(ref, cause.value)
            case OriginateFailed(ref=ref, reason=OriginateFailure.LOST):
                await self._outbound_lost(ref)
            case OriginateFailed(ref=ref, reason=reason):
                await self._originate_failed(ref, reason)
            case BackendStatus(up=up, detail=detail):
                await self._line_status(up, detail)

    async def _call_by_ref(self, tx: Tx, ref: str) -> Call | None:
        return (
            (await tx.session.execute(select(Call).where(col(Call.ref) == ref))).scalars().first()
        )

    async def _call_event(self, ref: str, name: str, **data: Any) -> None:
        async with self.store.tx() as tx:
            call = await self._call_by_ref(tx, ref)
            if call is not None:
                tx.emit(name, "call", call.id, ticket_id=call.ticket_id, **data)

    async def _inbound(self, event: CallOffered) -> None:
        number = try_normalize(event.caller)
        async with self.store.tx() as tx:
            caller = (
                await repo.caller_by_phone(tx.session, number=number) if number else repo.Caller()
            )
            resident = caller.resident
            shared: dict[str, Any] = {}
            if caller.shared_by:  # never guess between residents: an unregistered caller
                shared["shared_number"] = list(caller.shared_by)
                log.warning("call %s: number shared by residents %s", event.ref, caller.shared_by)
            call = Call(
                ref=event.ref,
                direction="in",
                purpose="hotline",
                number=number or event.caller[:32],
                resident_id=resident.id if resident else None,
                registered=resident is not None,
                started_at=self.clock.now(),
            )
            tx.session.add(call)
            await tx.session.flush()
            if resident is None:
                flow = "hotline_unknown"
            else:
                flow = "hotline" if self.config.hotline_menu else "hotline_no_menu"
            state, commands = cm.transition(call.state, cm.StartIvr(flow))
            call.state = state
            tx.emit(
                "call.offered",
                "call",
                call.id,
                number=mask(call.number),
                resident_id=call.resident_id,
                registered=call.registered,
                resident_status=resident.status.value if resident else None,
                **shared,
            )
            context: dict[str, Any] = {}
            lang = "zh-CN"
            if resident is not None:
                last = (
                    await tx.session.execute(
                        select(col(Ticket.category_code))
                        .where(
                            col(Ticket.resident_id) == resident.id,
                            col(Ticket.category_code).not_in(OPERATOR_TASKS),
                        )
                        .order_by(col(Ticket.id).desc())
                        .limit(1)
                    )
                ).scalar()
                context = {
                    "name": resident.name,
                    "sex": resident.sex,
                    "birth_year": resident.birth_year or "",
                    "today": self.clock.now().astimezone(LOCAL_TZ).date(),
                    "last_category": last or "",
                }
                lang = pick_lang(resident.language)
        log.info("call %s offered (registered=%s)", event.ref, call.registered)
        for command in commands:
            if isinstance(command, cm.RunFlow):
                await self._run_flow(event.ref, command.flow, context, lang)

    async def _run_flow(self, ref: str, flow: str, context: dict[str, Any], lang: str) -> None:
        try:
            await self.telephony.run_flow(ref, self.flows[flow], context=context, lang=lang)
        except TelephonyError:
            log.warning("call %s: flow %s could not start", ref, flow)

    async def _flow_finished(self, event: FlowFinished) -> None:
        if event.flow.startswith("hotline") and event.outcome == "need":
            category = event.variables.get("category", "")
            await self._keypad_need(
                event.ref, category, repeat=category == event.variables.get("last_category")
            )
        elif event.flow == "queue_wait":
            await self._queue_wait_finished(event.ref, event.outcome)
        elif event.flow.startswith("hotline"):
            async with self.store.tx() as tx:
                call = await self._call_by_ref(tx, event.ref)
                if call is None or call.state not in (cm.CallState.IVR, cm.CallState.RINGING):
                    return
                state, _ = cm.transition(call.state, cm.Enqueue())
                emergency = event.outcome == "emergency"
                await self._cas(
                    tx, call, state=state, queued_at=self.clock.now(), emergency=emergency
                )
                tx.emit(
                    "call.queued",
                    "call",
                    call.id,
                    emergency=emergency,
                    outcome=event.outcome,
                    category=event.variables.get("category"),
                )
            await self.timers.schedule(
                f"queue:{call.id}",
                self.clock.now() + timedelta(seconds=self.config.queue_announce_s),
            )
            await self.distribute()
        elif event.flow == "merchant_offer":
            await self._offer_decided(event.ref, event.outcome)
        elif event.flow == "survey":
            await self._survey_finished(event.ref, event.outcome, dict(event.variables))
        elif event.flow in ("merchant_arrival", "merchant_completion"):
            await self._check_in_finished(event.ref, event.outcome)

    async def _queue_announce(self, call_id: int) -> None:
        """Tell a waiting caller their place and offer a call back."""
        waiting = await self.queue()
        ids = [c.id for c in waiting if c.state == cm.CallState.QUEUED]
        if call_id not in ids:
            return
        call = waiting[[c.id for c in waiting].index(call_id)]
        await self._run_flow(call.ref, "queue_wait", {"position": ids.index(call_id)}, "zh-CN")

    async def _queue_wait_finished(self, ref: str, outcome: str) -> None:
        async with self.store.tx() as tx:
            call = await self._call_by_ref(tx, ref)
            if call is None or call.state != cm.CallState.QUEUED:
                return
            if outcome != "callback":
                key = f"queue:{call.id}"
                when = self.clock.now() + timedelta(seconds=self.config.queue_announce_s)
                tx.after_commit(lambda: self.timers.schedule(key, when))
                return
            state, _ = cm.transition(call.state, cm.CallbackRequested())
            await self._cas(tx, call, state=state, ended_at=self.clock.now(), cause="callback")
            tx.emit("call.callback_requested", "call", call.id)
        await self._callback_ticket(call, "caller asked for a call back")

    async def _callback_ticket(self, call: Call, reason: str) -> None:
        """A ticket for an operator to ring back, keeping the caller's place in the queue."""
        ticket = await self.create_ticket(
            user=None,
            category=CALLBACK,
            description=reason,
            resident_id=call.resident_id,
            call_id=call.id,
            created_at=call.queued_at,
        )
        log.info("call %s: callback ticket %s", call.ref, ticket.id)

    async def _keypad_need(self, ref: str, category: str, *, repeat: bool = False) -> None:
        """A routine need taken by the keypad menu: a ticket, dispatched automatically.

        The same category as the resident's last order ("9, same as last time") repeats
        that order: its description, and its merchant first in line.
        """
        async with self.store.tx() as tx:
            call = await self._call_by_ref(tx, ref)
            if call is None or call.state != cm.CallState.IVR:
                return
            state, _ = cm.transition(call.state, cm.SelfServed())
            await self._cas(tx, call, state=state, ended_at=self.clock.now(), cause="self_served")
            tx.emit("call.self_served", "call", call.id, category=category, repeat=repeat)
        last = (
            await self._last_ticket(call.resident_id, category)
            if repeat and call.resident_id is not None
            else None
        )
        if last is not None:
            ticket = await self._repeat(last, user=None, call_id=call.id)
        else:
            ticket = await self.create_ticket(
                user=None, category=category, resident_id=call.resident_id, call_id=call.id
            )
        await self.dispatch(ticket.id, user=None)  # type: ignore[arg-type]

    async def _outbound_ringing(self, ref: str) -> None:
        async with self.store.tx() as tx:
            call = await self._call_by_ref(tx, ref)
            if call is None:
                return
            tx.emit("call.ringing", "call", call.id, ticket_id=call.ticket_id)
            if call.offer_id is not None:
                offer = await self._get(tx, Offer, call.offer_id, "offer")
                if offer.state == om.OfferState.PLACED:
                    state, _ = om.transition(offer.state, om.Ringing())
                    await self._cas(tx, offer, state=state)
                    tx.emit(
                        "offer.ringing",
                        "ticket",
                        offer.ticket_id,
                        offer_id=offer.id,
                        merchant_id=offer.merchant_id,
                    )

    async def _outbound_answered(self, ref: str) -> None:
        flow: str | None = None
        context: dict[str, Any] = {}
        lang = "zh-CN"
        async with self.store.tx() as tx:
            call = await self._call_by_ref(tx, ref)
            if call is None or call.direction != "out":
                return
            if call.state == cm.CallState.RINGING:
                state, _ = cm.transition(call.state, cm.Answer())
                await self._cas(tx, call, state=state, answered_at=self.clock.now())
            tx.emit("call.answered", "call", call.id, ticket_id=call.ticket_id)
            serve = self.outbound_flows.get(call.purpose)
            if serve is not None:
                start = serve(call)
                if start is not None:
                    run = partial(self._run_flow, ref, start.flow, start.context, start.lang)
                    tx.after_commit(run)
                else:
                    tx.after_commit(partial(self._call_out, [], [ref]))
                return
            if call.ticket_id is None:
                return
            ticket = await self._get(tx, Ticket, call.ticket_id, "ticket")
            category = await repo.get_category(tx.session, code=ticket.category_code)
            resident = (
                await tx.session.get(Resident, ticket.resident_id) if ticket.resident_id else None
            )
            if call.purpose == "offer" and call.offer_id is not None:
                offer = await self._get(tx, Offer, call.offer_id, "offer")
                # a call the backend lost and that was replaced no longer carries the offer
                if offer.state not in om.LIVE or offer.call_ref != call.ref:
                    return
                offer_state, _ = om.transition(offer.state, om.Answered())
                await self._cas(tx, offer, state=offer_state)
                tx.emit(
                    "offer.answered",
                    "ticket",
                    ticket.id,
                    offer_id=offer.id,
                    merchant_id=offer.merchant_id,
                )
                flow = "merchant_offer"
                context = {
                    "category": category.name_zh,
                    "description": ticket.description or category.name_zh,
                    # the merchant hears where to go, never the resident's number
                    "address": resident.address if resident else "",
                    "deadline": ticket.deadline_at or "",
                    "code_word": ticket.code_word,
                }
            elif call.purpose in SURVEY_PURPOSES:
                flow = "survey"
                context = {"category": category.name_zh}
                lang = resident.language if resident else lang
            elif call.purpose in ("arrival", "completion"):
                flow = f"merchant_{call.purpose}"
                context = {
                    "category": category.name_zh,
                    "address": resident.address if resident else "",
                }
        if flow is not None:
            await self._run_flow(ref, flow, context, lang)

    async def _call_ended(self, ref: str, cause: str) -> None:
        async with self.store.tx() as tx:
            call = await self._call_by_ref(tx, ref)
            # in wrap-up the caller has hung up already: a late or second report of the
            # hang-up (a restart's lost-call check, the operator's leg) changes nothing
            if call is None or call.state in cm.FINAL or call.state == cm.CallState.WRAP_UP:
                return
            was_held = call.state == cm.CallState.ON_HOLD
            state, _ = cm.transition(call.state, cm.Hangup(inbound=call.direction == "in"))
            await self._cas(
                tx, call, state=state, ended_at=self.clock.now(), cause=cause, held_at=None
            )
            name = "call.abandoned" if state == cm.CallState.ABANDONED else "call.ended"
            extra: dict[str, Any] = {"on_hold": True} if was_held else {}
            tx.emit(name, "call", call.id, cause=cause, ticket_id=call.ticket_id, **extra)
            if call.operator_id is not None and state == cm.CallState.WRAP_UP:
                await self._operator_event(tx, call.operator_id, opm.CallFinished(), call)
            if call.offer_id is not None:
                offer = await self._get(tx, Offer, call.offer_id, "offer")
                if offer.state in om.LIVE:
                    # hung up without pressing 1 or 2
                    await self._offer_outcome(tx, offer, om.Unreached(om.OfferState.NO_ANSWER))
            elif call.purpose in SURVEY_PURPOSES and call.ticket_id is not None:
                # rated calls have left `completed` already; anything else is unrated
                await self._survey_unanswered(tx, call.ticket_id)
        log.info("call %s ended (%s)", ref, cause)
        if state == cm.CallState.ABANDONED and call.queued_at is not None:
            await self.timers.cancel(f"queue:{call.id}")
            # a caller an outage dropped has their callback task already
            await self._callback_once(call, "caller hung up while waiting")

    async def _originate_failed(self, ref: str, reason: OriginateFailure) -> None:
        async with self.store.tx() as tx:
            call = await self._call_by_ref(tx, ref)
            if call is None:
                return
            if call.state not in cm.FINAL:
                state, _ = cm.transition(call.state, cm.Hangup(inbound=False))
                await self._cas(
                    tx, call, state=state, ended_at=self.clock.now(), cause=reason.value
                )
            tx.emit("call.failed", "call", call.id, reason=reason.value, ticket_id=call.ticket_id)
            if call.offer_id is not None:
                offer = await self._get(tx, Offer, call.offer_id, "offer")
                if offer.state in om.LIVE and offer.call_ref == call.ref:
                    await self._offer_outcome(tx, offer, om.Unreached(ACCEPT_ORDER[reason]))
            elif call.purpose in SURVEY_PURPOSES and call.ticket_id is not None:
                await self._survey_unanswered(tx, call.ticket_id)

    # -- operators and the queue ---------------------------------------------------------
    async def _operator_status(self, tx: Tx, user_id: int) -> OperatorStatus:
        status = await tx.session.get(OperatorStatus, user_id, populate_existing=True)
        if status is None:
            status = OperatorStatus(user_id=user_id, since=self.clock.now())
            tx.session.add(status)
            await tx.session.flush()
        return status

    async def _operator_event(
        self, tx: Tx, user_id: int, event: opm.OperatorEvent, call: Call | None = None
    ) -> OperatorStatus:
        status = await self._operator_status(tx, user_id)
        state, commands = opm.transition(status.state, event)
        reason = event.reason if isinstance(event, opm.Pause) else None
        call_id = (
            call.id
            if call is not None and state == opm.OperatorState.ON_CALL
            else (status.call_id if state == opm.OperatorState.WRAP_UP else None)
        )
        await self._cas(
            tx, status, state=state, reason=reason, since=self.clock.now(), call_id=call_id
        )
        tx.emit("operator." + state.value, "operator", user_id, reason=reason)
        for command in commands:
            if isinstance(command, opm.StartWrapUpTimer):
                at = self.clock.now() + timedelta(seconds=self.config.wrap_up_s)
                key = f"wrapup:{user_id}"
                tx.after_commit(partial(self.timers.schedule, key, at))
        return status

    async def distribute(self) -> None:
        """Offer each waiting call, in queue order, to the available operator idle longest."""
        waiting = [c for c in await self.queue() if c.state == cm.CallState.QUEUED]
        if not waiting:
            return
        now = self.clock.now()
        async with self.store.tx() as tx:
            statuses = (
                (
                    await tx.session.execute(
                        select(OperatorStatus).where(
                            col(OperatorStatus.state).in_(
                                [opm.OperatorState.AVAILABLE, opm.OperatorState.RESERVED]
                            )
                        )
                    )
                )
                .scalars()
                .all()
            )
            offered = {s.call_id for s in statuses if s.state == opm.OperatorState.RESERVED}
            free = sorted(
                (s for s in statuses if s.state == opm.OperatorState.AVAILABLE),
                key=lambda s: s.since,
            )
            for call in waiting:
                if call.id in offered:
                    continue
                if not free:
                    break
                status = free.pop(0)
                state, _ = opm.transition(status.state, opm.Reserve())
                await self._cas(tx, status, state=state, call_id=call.id, since=now)
                tx.emit("operator.reserved", "operator", status.user_id, call_id=call.id)
                tx.emit("call.offered_to", "call", call.id, operator_id=status.user_id)
                at = now + timedelta(seconds=self.config.ring_operator_s)
                tx.after_commit(partial(self.timers.schedule, f"ring:{status.user_id}", at))

    async def _operator_rang_out(self, user_id: int) -> None:
        """An offered call was not taken in time: count a miss, pause after too many."""
        async with self.store.tx() as tx:
            status = await tx.session.get(OperatorStatus, user_id, populate_existing=True)
            if status is None or status.state != opm.OperatorState.RESERVED:
                return
            call = await tx.session.get(Call, status.call_id) if status.call_id else None
            if call is None or call.state != cm.CallState.QUEUED:
                # the caller left or someone else answered: no fault of this operator
                await self._operator_event(tx, user_id, opm.Resume())
            else:
                since = self.clock.now() - timedelta(hours=1)
                misses = (
                    await tx.session.execute(
                        select(func.count()).where(
                            col(Event.name) == "operator.missed",
                            col(Event.subject) == "operator",
                            col(Event.subject_id) == str(user_id),
                            col(Event.occurred_at) >= since,
                        )
                    )
                ).scalar_one()
                tx.emit("operator.missed", "operator", user_id, call_id=call.id)
                if misses + 1 >= self.config.missed_to_pause:
                    await self._operator_event(tx, user_id, opm.Pause("missed calls"))
                else:
                    await self._operator_event(tx, user_id, opm.Resume())
        await self.distribute()

    async def set_operator_state(self, user: User, action: str, reason: str = "") -> str:
        """Log in, log out, pause (with a reason) or resume an operator."""
        events: dict[str, opm.OperatorEvent] = {
            "login": opm.Login(),
            "logout": opm.Logout(),
            "pause": opm.Pause(reason or "break"),
            "resume": opm.Resume(),
            "wrap_up_done": opm.WrapUpDone(),
        }
        if action not in events:
            raise Invalid(f"unknown operator action {action!r}")
        assert user.id is not None
        async with self.store.tx() as tx:
            status = await self._operator_event(tx, user.id, events[action])
        await self.distribute()
        return status.state.value

    async def answer_call(self, call_id: int, user: User) -> Call:
        """An operator takes a waiting call; a second operator gets `IllegalTransition`."""
        assert user.id is not None
        async with self.store.tx() as tx:
            call = await self._get(tx, Call, call_id, "call")
            state, commands = cm.transition(call.state, cm.Answer(user.id))
            status = await self._operator_status(tx, user.id)
            if status.state in (opm.OperatorState.LOGGED_OUT, opm.OperatorState.PAUSED):
                await self._operator_event(
                    tx,
                    user.id,
                    opm.Login() if status.state == opm.OperatorState.LOGGED_OUT else opm.Resume(),
                )
            await self._operator_event(tx, user.id, opm.TakeCall(), call)
            # a caller back in the queue after an unanswered transfer keeps their first answer
            answered_at = call.answered_at or self.clock.now()
            await self._cas(tx, call, state=state, operator_id=user.id, answered_at=answered_at)
            # whoever else this call was being offered to is free again
            others = (
                (
                    await tx.session.execute(
                        select(OperatorStatus).where(
                            col(OperatorStatus.state) == opm.OperatorState.RESERVED,
                            col(OperatorStatus.call_id) == call.id,
                            col(OperatorStatus.user_id) != user.id,
                        )
                    )
                )
                .scalars()
                .all()
            )
            for other in others:
                await self._operator_event(tx, other.user_id, opm.Resume())
            for uid in {user.id, *(o.user_id for o in others)}:
                tx.after_commit(partial(self.timers.cancel, f"ring:{uid}"))
            tx.emit(
                "call.connected",
                "call",
                call.id,
                operator=user.username,
                wait_s=(self.clock.now() - (call.queued_at or call.started_at)).total_seconds(),
            )
        for command in commands:
            if isinstance(command, cm.BridgeToOperator):
                try:
                    await self.telephony.bridge(call.ref, peer=f"operator:{command.operator_id}")
                except TelephonyError:
                    log.warning(
                        "call %s: bridge to operator %s failed", call.ref, command.operator_id
                    )
        return call

    async def hangup_call(self, call_id: int, user: User) -> None:
        """The operator ends a call; the PBX reports the hang-up back."""
        async with self.store.read() as session:
            call = await session.get(Call, call_id)
            if call is None:
                raise repo.NotFound("call", call_id)
        await self.telephony.hangup(call.ref)

    # -- hold and transfer at the desk -------------------------------------------------------
    async def _desk_call(self, tx: Tx, call_id: int, user: User) -> Call:
        """A call the user is handling at the desk; 404, or 409 when it is not theirs."""
        call = await self._get(tx, Call, call_id, "call")
        if call.direction != "in" or call.operator_id is None:
            raise Conflict(f"call {call_id} is not with an operator")
        if call.operator_id != user.id:
            raise Conflict(f"call {call_id} is with another operator")
        return call

    async def hold_call(self, call_id: int, user: User) -> Call:
        """The operator puts their caller on hold; the caller hears the hold prompt."""
        async with self.store.tx() as tx:
            call = await self._desk_call(tx, call_id, user)
            state, _ = cm.transition(call.state, cm.Hold())
            await self._cas(tx, call, state=state, held_at=self.clock.now())
            tx.emit("call.held", "call", call.id, actor=user.username, ticket_id=call.ticket_id)
        try:
            await self.telephony.hold(call.ref)
        except TelephonyError:
            log.warning("call %s: hold failed at the PBX; back to connected", call.ref)
            await self._undo_hold(call_id, user)
            raise
        return call

    async def _undo_hold(self, call_id: int, user: User) -> None:
        """The PBX could not hold the call: the desk shows it connected again."""
        async with self.store.tx() as tx:
            call = await self._get(tx, Call, call_id, "call")
            if call.state != cm.CallState.ON_HOLD:
                return  # the caller hung up meanwhile: nothing to undo
            state, _ = cm.transition(call.state, cm.Unhold())
            await self._cas(tx, call, state=state, held_at=None)
            tx.emit("call.hold_failed", "call", call.id, actor=user.username)

    async def resume_call(self, call_id: int, user: User) -> Call:
        """The operator takes their caller back from hold."""
        async with self.store.tx() as tx:
            call = await self._desk_call(tx, call_id, user)
            state, _ = cm.transition(call.state, cm.Unhold())
            held_s = self._held_s(call)
            await self._cas(tx, call, state=state, held_at=None)
            tx.emit(
                "call.resumed",
                "call",
                call.id,
                actor=user.username,
                held_s=held_s,
                ticket_id=call.ticket_id,
            )
        try:
            await self.telephony.unhold(call.ref)
        except TelephonyError:
            # the caller may have gone; their hang-up ends the call as usual
            log.warning("call %s: unhold failed at the PBX", call.ref)
        return call

    def _held_s(self, call: Call) -> float | None:
        if call.held_at is None:
            return None
        return round((self.clock.now() - call.held_at).total_seconds(), 1)

    async def transfer_targets(self, user: User) -> dict[str, Any]:
        """Who a caller can be handed to now: available operators, and the supervisor desk."""
        async with self.store.read() as session:
            rows = (
                await session.execute(
                    select(OperatorStatus, User)
                    .join(User, col(User.id) == OperatorStatus.user_id)
                    .where(col(User.active), col(OperatorStatus.user_id) != user.id)
                    .order_by(col(OperatorStatus.since))
                )
            ).all()
        operators = [
            {
                "user_id": u.id,
                "name": u.display_name or u.username,
                "role": u.role.value,
                "state": status.state.value,
            }
            for status, u in rows
            if status.state == opm.OperatorState.AVAILABLE
        ]
        supervisors = [
            {"user_id": u.id, "name": u.display_name or u.username, "state": status.state.value}
            for status, u in rows
            if u.role == Role.SUPERVISOR and status.state in SUPERVISOR_DESK
        ]
        return {"operators": operators, "supervisors": supervisors}

    async def _transfer_target(
        self, tx: Tx, user: User, to_user_id: int | None, to_role: str | None
    ) -> tuple[User, OperatorStatus, bool]:
        """The user who takes the caller, their status row, and whether via the supervisor desk."""
        if to_role is not None:
            rows = (
                await tx.session.execute(
                    select(OperatorStatus, User)
                    .join(User, col(User.id) == OperatorStatus.user_id)
                    .where(
                        col(User.role) == Role.SUPERVISOR,
                        col(User.active),
                        col(User.id) != user.id,
                        col(OperatorStatus.state).in_(list(SUPERVISOR_DESK)),
                    )
                )
            ).all()
            if not rows:
                raise Conflict("no supervisor is logged in and free to take the call")
            # an available supervisor first, then the one longest in their state
            status, target = min(
                rows,
                key=lambda r: (r[0].state != opm.OperatorState.AVAILABLE, r[0].since),
            )
            return target, status, True
        assert to_user_id is not None
        if to_user_id == user.id:
            raise Invalid("a call cannot be transferred to the operator who has it")
        found = await tx.session.get(User, to_user_id)
        if found is None or not found.active or found.role == Role.MERCHANT:
            raise repo.NotFound("operator", to_user_id)
        target = found
        status = await self._operator_status(tx, to_user_id)
        via_desk = target.role == Role.SUPERVISOR
        ok = status.state == opm.OperatorState.AVAILABLE or (
            via_desk and status.state in SUPERVISOR_DESK
        )
        if not ok:
            name = target.display_name or target.username
            raise Conflict(f"{name} is {status.state.value}, not free to take a transfer")
        return target, status, via_desk

    async def transfer_call(
        self,
        call_id: int,
        user: User,
        *,
        to_user_id: int | None = None,
        to_role: str | None = None,
    ) -> Call:
        """Hand the caller to an available operator or a supervisor; the sender wraps up.

        The call stays connected (it is not answered again: waits and answer figures keep
        the first answer); a refused target changes nothing.
        """
        assert user.id is not None
        if (to_user_id is None) == (to_role is None):
            raise Invalid("give either to_user_id or to='supervisor'")
        if to_role not in (None, "supervisor"):
            raise Invalid("to must be 'supervisor'")
        async with self.store.tx() as tx:
            call = await self._desk_call(tx, call_id, user)
            target, status, via_desk = await self._transfer_target(tx, user, to_user_id, to_role)
            assert target.id is not None
            state, commands = cm.transition(call.state, cm.Transfer(target.id))
            held_s = self._held_s(call)
            # the receiving side first: a refusal there leaves the sender untouched
            if status.state == opm.OperatorState.WRAP_UP:
                tx.after_commit(partial(self.timers.cancel, f"wrapup:{target.id}"))
                await self._finish_wrap_up(
                    tx, target.id, status, disposition=TRANSFERRED_IN, actor=target.username
                )
            await self._operator_event(tx, target.id, opm.ReceiveTransfer(via_desk), call)
            await self._operator_event(tx, user.id, opm.TransferOut())
            await self._cas(tx, call, state=state, operator_id=target.id, held_at=None)
            tx.emit(
                "call.transferred",
                "call",
                call.id,
                actor=user.username,
                from_operator_id=user.id,
                to_operator_id=target.id,
                to_operator=target.username,
                to=to_role or "operator",
                held_s=held_s,
                ticket_id=call.ticket_id,
            )
        for command in commands:
            if isinstance(command, cm.TransferToOperator):
                try:
                    await self.telephony.transfer(call.ref, peer=f"operator:{command.operator_id}")
                except TelephonyError:
                    log.warning(
                        "call %s: transfer to operator %s failed at the PBX",
                        call.ref,
                        command.operator_id,
                    )
                    async with self.store.tx() as tx:
                        tx.emit(
                            "call.transfer_failed",
                            "call",
                            call.id,
                            to_operator_id=command.operator_id,
                        )
        log.info("call %s transferred from operator %s to %s", call.ref, user.id, target.id)
        return call

    async def _finish_wrap_up(
        self,
        tx: Tx,
        user_id: int,
        status: OperatorStatus,
        *,
        disposition: str,
        actor: str = "system",
    ) -> None:
        """End an operator's wrap-up on their behalf, and the call it was about.

        Three ways: a supervisor takes a transfer while wrapping up (their desk moves on
        to the new caller, disposition "transferred_in"); the wrap-up timer runs out
        ("wrap_up_timeout"); the start-up reconciler finds a wrap-up nobody will finish
        ("closed_at_start"). The call would otherwise stay in wrap-up for good. The event
        is marked `auto`, so reports can tell it from a chosen disposition.
        """
        previous = (
            await tx.session.get(Call, status.call_id, populate_existing=True)
            if status.call_id is not None
            else None
        )
        if previous is not None:
            mine = previous.operator_id == user_id
            if mine and previous.state == cm.CallState.WRAP_UP:
                await self._close_wrap_up(tx, previous, disposition=disposition, actor=actor)
            else:
                tx.emit(
                    "call.wrapped_up",
                    "call",
                    previous.id,
                    disposition=disposition,
                    actor=actor,
                    auto=True,
                    **({} if mine else {"transferred": True}),
                )
        if status.state == opm.OperatorState.WRAP_UP:
            await self._operator_event(tx, user_id, opm.WrapUpDone())

    async def _close_wrap_up(self, tx: Tx, call: Call, *, disposition: str, actor: str) -> None:
        """A call in wrap-up ends with a disposition the service chose."""
        state, _ = cm.transition(call.state, cm.WrapUpDone())
        await self._cas(tx, call, state=state)
        tx.emit("call.wrapped_up", "call", call.id, disposition=disposition, actor=actor, auto=True)

    async def _wrap_up_timeout(self, user_id: int) -> None:
        """Nobody pressed wrap-up in time: the operator is free and the call ends."""
        async with self.store.tx() as tx:
            status = await tx.session.get(OperatorStatus, user_id, populate_existing=True)
            if status is None or status.state != opm.OperatorState.WRAP_UP:
                return
            await self._finish_wrap_up(tx, user_id, status, disposition=WRAP_UP_TIMEOUT)
        await self.distribute()

    async def _transfer_unanswered(self, ref: str, peer: str) -> None:
        """The operator a caller was transferred to never answered: the caller goes back to
        the front of the queue, the operator who did not answer is available again.

        Why the queue rather than the transferring operator: by the time the new operator's
        phone has rung out, the transferring operator's leg is hung up and they are wrapping
        up or already busy; they chose to hand the caller on (often because someone else is
        needed), and ringing them back would make an elderly caller wait on one person.
        The queue hands the caller to the first free operator with the usual ring timeout,
        and puts them ahead of newer callers: `queued_at` and the emergency flag are kept
        (so is `answered_at`, a second answer does not count in the figures). The
        transferring operator gets the caller like anyone else once free.
        """
        operator_id = _operator_id(peer)
        async with self.store.tx() as tx:
            call = await self._call_by_ref(tx, ref)
            if (
                call is None
                or operator_id is None
                or call.state != cm.CallState.CONNECTED
                or call.operator_id != operator_id
            ):
                log.info("call %s: unanswered transfer to %s no longer matters", ref, peer)
                return
            state, _ = cm.transition(call.state, cm.TransferUnanswered())
            await self._cas(tx, call, state=state, operator_id=None, held_at=None)
            status = await self._operator_status(tx, operator_id)
            if status.state == opm.OperatorState.ON_CALL and status.call_id == call.id:
                await self._operator_event(tx, operator_id, opm.TransferUnanswered())
            target = await tx.session.get(User, operator_id)
            tx.emit(
                "call.transfer_unanswered",
                "call",
                call.id,
                to_operator_id=operator_id,
                to_operator=target.username if target is not None else None,
                requeued=True,
                emergency=call.emergency,
                ticket_id=call.ticket_id,
            )
            key = f"queue:{call.id}"
            when = self.clock.now() + timedelta(seconds=self.config.queue_announce_s)
            tx.after_commit(lambda: self.timers.schedule(key, when))
        log.info("call %s: operator %s never answered the transfer; queued again", ref, peer)
        await self.distribute()

    async def wrap_up(self, call_id: int, user: User, disposition: str = "") -> None:
        """The operator finishes the after-call work."""
        assert user.id is not None
        async with self.store.tx() as tx:
            call = await self._get(tx, Call, call_id, "call")
            status = await self._operator_status(tx, user.id)
            # handed on: with another operator now, or back in the queue after a transfer
            # nobody answered
            handed_on = call.operator_id != user.id
            if not handed_on:
                state, _ = cm.transition(call.state, cm.WrapUpDone())
                await self._cas(tx, call, state=state)
            elif status.state != opm.OperatorState.WRAP_UP or status.call_id != call.id:
                raise Conflict(f"call {call_id} is with another operator")
            # a caller this operator transferred talks on with someone else: only this
            # operator's after-call work ends
            tx.emit(
                "call.wrapped_up",
                "call",
                call.id,
                disposition=disposition[:64],
                actor=user.username,
                **({"transferred": True} if handed_on else {}),
            )
            if status.state == opm.OperatorState.WRAP_UP:
                await self._operator_event(tx, user.id, opm.WrapUpDone())
        await self.timers.cancel(f"wrapup:{user.id}")

    async def queue(self) -> list[Call]:
        """Waiting hotline calls: emergencies first, then longest waiting."""
        async with self.store.read() as session:
            rows = (
                (
                    await session.execute(
                        select(Call).where(
                            col(Call.direction) == "in",
                            col(Call.state).in_(
                                [
                                    cm.CallState.QUEUED,
                                    cm.CallState.IVR,
                                    cm.CallState.RINGING,
                                ]
                            ),
                        )
                    )
                )
                .scalars()
                .all()
            )
            since = self.clock.now() - timedelta(seconds=self.config.repeat_window_s)
            numbers = {c.number for c in rows}
            earlier = set(
                (
                    await session.execute(
                        select(col(Call.number)).where(
                            col(Call.number).in_(numbers),
                            col(Call.direction) == "in",
                            col(Call.started_at) >= since,
                            col(Call.state).in_([cm.CallState.ABANDONED, cm.CallState.ENDED]),
                        )
                    )
                ).scalars()
            )
        # emergencies first, then callers ringing again, then the longest waiting
        return sorted(
            rows,
            key=lambda c: (not c.emergency, c.number not in earlier, c.queued_at or c.started_at),
        )

    # -- tickets ---------------------------------------------------------------------------
    async def create_ticket(
        self,
        *,
        user: User | None,
        category: str,
        description: str = "",
        resident_id: int | None = None,
        call_id: int | None = None,
        created_at: datetime | None = None,
        repeat_of: int | None = None,
    ) -> Ticket:
        """Record a need; the deadline comes from the category."""
        async with self.store.tx() as tx:
            try:
                cat = await repo.get_category(tx.session, code=category)
            except repo.NotFound as exc:
                raise Invalid(f"unknown category {category!r}") from exc
            if call_id is not None:
                call = await self._get(tx, Call, call_id, "call")
                resident_id = resident_id or call.resident_id
            grid: str | None = None
            if resident_id is not None:
                grid = (await repo.get_resident(tx.session, resident_id=resident_id)).grid_code
            now = created_at or self.clock.now()
            ticket = Ticket(
                resident_id=resident_id,
                call_id=call_id,
                category_code=cat.code,
                description=description,
                urgency=cat.urgency.value,
                deadline_at=now + timedelta(minutes=cat.deadline_minutes),
                code_word=f"{secrets.randbelow(10000):04d}",
                created_by=_actor(user),
                created_at=now,
                repeat_of=repeat_of,
            )
            tx.session.add(ticket)
            await tx.session.flush()
            if call_id is not None:
                await tx.session.execute(
                    update(Call).where(col(Call.id) == call_id).values(ticket_id=ticket.id)
                )
            tx.emit(
                "ticket.created",
                "ticket",
                ticket.id,
                actor=_actor(user),
                category=cat.code,
                urgency=cat.urgency.value,
                resident_id=resident_id,
                grid=grid,
                call_id=call_id,
                repeat_of=repeat_of,
                deadline_at=ticket.deadline_at.isoformat() if ticket.deadline_at else None,
            )
        assert ticket.deadline_at is not None
        await self.timers.schedule(f"deadline:{ticket.id}", ticket.deadline_at)
        return ticket

    async def get_ticket(self, ticket_id: int) -> Ticket:
        """A ticket by id."""
        async with self.store.read() as session:
            ticket = await session.get(Ticket, ticket_id)
            if ticket is None:
                raise repo.NotFound("ticket", ticket_id)
            return ticket

    async def offers(self, ticket_id: int) -> Sequence[Offer]:
        """A ticket's offers, in the order they were made."""
        async with self.store.read() as session:
            return (
                (
                    await session.execute(
                        select(Offer)
                        .where(col(Offer.ticket_id) == ticket_id)
                        .order_by(col(Offer.id))
                    )
                )
                .scalars()
                .all()
            )

    async def _loads(self, tx_session: Any) -> dict[int, int]:
        rows = await tx_session.execute(
            select(col(Ticket.merchant_id), func.count())
            .where(col(Ticket.state).in_(ACTIVE_TICKET_STATES))
            .group_by(col(Ticket.merchant_id))
        )
        return {mid: n for mid, n in rows if mid is not None}

    def hotline_keys(self) -> dict[str, str]:
        """The keys a caller presses in the hotline menu for each category ("5 1": water)."""
        return keypad_paths(self.flows.get("hotline"))

    # -- matching inputs ---------------------------------------------------------------
    def invalidate_merchants(self) -> None:
        """Forget the merchant index (call after merchants or their services change)."""
        self._index = None

    async def _merchant_index(self, session: Any) -> MatchIndex:
        """The in-memory index of merchants, read again after `index_ttl_s` or a change."""
        now = self.clock.now()
        if (
            self._index is not None
            and self._index_at is not None
            and (now - self._index_at).total_seconds() < self.config.index_ttl_s
        ):
            return self._index
        merchants = (await session.execute(select(Merchant))).scalars().all()
        categories: dict[int, list[str]] = {}
        for merchant_id, code in await session.execute(
            select(col(MerchantService.merchant_id), col(MerchantService.category_code))
        ):
            categories.setdefault(merchant_id, []).append(code)
        for m in merchants:
            session.expunge(m)
        self._index = MatchIndex((m, categories.get(m.id or 0, [])) for m in merchants)
        self._index_at = now
        return self._index

    async def merchant_stats(
        self,
        session: Any,
        ids: Sequence[int],
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> dict[int, MerchantStats]:
        """Acceptance, ratings, no-shows and last offer of some merchants, in 2 queries.

        Offers placed and visits rated in [since, until); by default the recent window
        the ranking uses (`stats_window_days` up to now).
        """
        if not ids:
            return {}
        if since is None:
            since = self.clock.now() - timedelta(days=self.config.stats_window_days)
        offer_period = [col(Offer.placed_at) >= since]
        rated_period = [col(Ticket.rated_at) >= since]
        if until is not None:
            offer_period.append(col(Offer.placed_at) < until)
            rated_period.append(col(Ticket.rated_at) < until)
        decided = {*om.REFUSED, om.OfferState.ACCEPTED, om.OfferState.NO_SHOW}
        accepted = {om.OfferState.ACCEPTED, om.OfferState.NO_SHOW}
        acc: dict[int, dict[str, Any]] = {}
        offer_rows = await session.execute(
            select(
                col(Offer.merchant_id),
                col(Offer.state),
                func.count(),
                func.max(col(Offer.placed_at)),
            )
            .where(col(Offer.merchant_id).in_(list(ids)), *offer_period)
            .group_by(col(Offer.merchant_id), col(Offer.state))
        )
        for merchant_id, state, n, last in offer_rows:
            row = acc.setdefault(
                merchant_id, {"offers": 0, "accepted": 0, "no_shows": 0, "last": None}
            )
            state = om.OfferState(state)
            if state in decided:
                row["offers"] += n
            if state in accepted:
                row["accepted"] += n
            if state == om.OfferState.NO_SHOW:
                row["no_shows"] += n
            if last is not None and last.tzinfo is None:
                last = last.replace(tzinfo=since.tzinfo)
            if last is not None and (row["last"] is None or last > row["last"]):
                row["last"] = last
        ratings: dict[int, tuple[int, int]] = {}
        by_rating: dict[int, dict[str, int]] = {}
        rating_rows = await session.execute(
            select(col(Ticket.merchant_id), col(Ticket.rating), func.count())
            .where(
                col(Ticket.merchant_id).in_(list(ids)),
                *rated_period,
                col(Ticket.rating).is_not(None),
            )
            .group_by(col(Ticket.merchant_id), col(Ticket.rating))
        )
        for merchant_id, rating, n in rating_rows:
            rated, satisfied = ratings.get(merchant_id, (0, 0))
            good = rating in ("satisfied", "basically_satisfied")
            ratings[merchant_id] = (rated + n, satisfied + (n if good else 0))
            by_rating.setdefault(merchant_id, {})[str(rating)] = n
        out: dict[int, MerchantStats] = {}
        for merchant_id in set(acc) | set(ratings):
            row = acc.get(merchant_id, {"offers": 0, "accepted": 0, "no_shows": 0, "last": None})
            rated, satisfied = ratings.get(merchant_id, (0, 0))
            out[merchant_id] = MerchantStats(
                offers=row["offers"],
                accepted=row["accepted"],
                no_shows=row["no_shows"],
                last_offered_at=row["last"],
                rated=rated,
                satisfied=satisfied,
                ratings=tuple(sorted(by_rating.get(merchant_id, {}).items())),
            )
        return out

    async def _last_ticket(self, resident_id: int, category: str | None = None) -> Ticket | None:
        """The resident's most recent order (in a category), for "same as last time"."""
        async with self.store.read() as session:
            stmt = select(Ticket).where(
                col(Ticket.resident_id) == resident_id,
                col(Ticket.category_code).not_in(OPERATOR_TASKS),
            )
            if category:
                stmt = stmt.where(col(Ticket.category_code) == category)
            return (
                (await session.execute(stmt.order_by(col(Ticket.id).desc()).limit(1)))
                .scalars()
                .first()
            )

    async def _preferred(self, session: Any, resident: Resident | None, category: str) -> set[int]:
        """The resident's preferred merchants for a category.

        Two sources: the registry's `preferred` set where the registry has one (a mapping of
        category to merchant ids, or a plain set), and the merchant that completed the
        resident's last order of this category (their usual pharmacy).
        """
        if resident is None or resident.id is None:
            return set()
        out: set[int] = set()
        declared = getattr(resident, "preferred", None)
        if isinstance(declared, dict):
            out.update(int(m) for m in declared.get(category, []) or [])
        elif isinstance(declared, list | set | frozenset | tuple):
            out.update(int(m) for m in declared)
        table = getattr(registry_models, "PreferredMerchant", None)
        if table is not None and hasattr(table, "resident_id"):
            stmt = select(table.merchant_id).where(table.resident_id == resident.id)
            if hasattr(table, "category_code"):
                stmt = stmt.where(table.category_code == category)
            out.update(int(m) for m in (await session.execute(stmt)).scalars())
        usual = (
            await session.execute(
                select(col(Ticket.merchant_id))
                .where(
                    col(Ticket.resident_id) == resident.id,
                    col(Ticket.category_code) == category,
                    col(Ticket.completed_at).is_not(None),
                    col(Ticket.merchant_id).is_not(None),
                )
                .order_by(col(Ticket.id).desc())
                .limit(1)
            )
        ).scalar()
        if usual is not None:
            out.add(int(usual))
        return out

    async def _rank(
        self, session: Any, ticket: Ticket, *, exclude: Sequence[int] = ()
    ) -> list[Candidate]:
        index = await self._merchant_index(session)
        resident = await session.get(Resident, ticket.resident_id) if ticket.resident_id else None
        need = Need(
            category=ticket.category_code,
            grid_code=resident.grid_code if resident else None,
            lat=resident.lat if resident else None,
            lon=resident.lon if resident else None,
            preferred=frozenset(await self._preferred(session, resident, ticket.category_code)),
        )
        merchants = index.near(need) if resident is not None else index.for_category(need.category)
        skip = set(exclude)
        merchants = [m for m in merchants if m.id not in skip]
        ids = [m.id for m in merchants if m.id is not None]
        loads = await self._loads(session)
        stats = await self.stats.get(session, ids)
        return rank(
            need,
            merchants,
            loads=loads,
            now=self.clock.now(),
            stats=stats,
            seed=self.config.match_seed if self.config.match_seed is not None else ticket.id,
            band=self.config.match_band,
        )

    async def candidates(self, ticket_id: int) -> list[Candidate]:
        """The ranked merchants for a ticket, with the reasons for each."""
        async with self.store.read() as session:
            ticket = await session.get(Ticket, ticket_id)
            if ticket is None:
                raise repo.NotFound("ticket", ticket_id)
            return await self._rank(session, ticket)

    async def dispatch(
        self, ticket_id: int, *, user: User | None, merchant_ids: Sequence[int] | None = None
    ) -> Ticket:
        """Start (or restart) the offer cascade, along the ranking or the operator's pick."""
        placed: list[Offer] = []
        async with self.store.tx() as tx:
            ticket = await self._get(tx, Ticket, ticket_id, "ticket")
            self._refuse_operator_task(ticket)
            if ticket.state == tm.TicketState.OFFERING:
                raise IllegalTransition("ticket", ticket.state, tm.StartMatching())
            state, _ = tm.transition(ticket.state, tm.StartMatching())
            ranking = await self._rank(tx.session, ticket)
            eligible = [c.merchant_id for c in ranking if c.eligible]
            if merchant_ids:
                # the operator may pick any merchant that takes the category, near or not
                index = await self._merchant_index(tx.session)
                known = {m.id for m in index.for_category(ticket.category_code)}
                unknown = [m for m in merchant_ids if m not in known]
                if unknown:
                    raise Invalid(f"merchants {unknown} do not take this category")
                plan = list(dict.fromkeys([*merchant_ids, *eligible]))
            else:
                plan = eligible
            await self._cas(tx, ticket, state=state, plan=plan)
            tx.emit(
                "ticket.matching",
                "ticket",
                ticket.id,
                actor=_actor(user),
                plan=plan,
                candidates=len(ranking),
            )
            placed = await self._fill_offers(tx, ticket)
        await self._place_calls(placed)
        return ticket

    @staticmethod
    def _refuse_operator_task(ticket: Ticket) -> None:
        """A call back is work for an operator: it never goes to a merchant."""
        if ticket.category_code in OPERATOR_TASKS:
            raise OperatorTask(
                f"ticket {ticket.id} ({ticket.category_code}) is a task for an operator, "
                "not an order for a merchant"
            )

    def _width(self, ticket: Ticket) -> int:
        if ticket.urgency in ("emergency", "urgent"):
            return max(1, self.config.parallel_offers_urgent)
        return max(1, self.config.parallel_offers)

    async def _fill_offers(self, tx: Tx, ticket: Ticket) -> list[Offer]:
        """Place offers until the ticket has as many live ones as it may; or give up."""
        offers = (
            (await tx.session.execute(select(Offer).where(col(Offer.ticket_id) == ticket.id)))
            .scalars()
            .all()
        )
        live = [o for o in offers if o.state in om.LIVE]
        tried = {o.merchant_id for o in offers}
        loads = await self._loads(tx.session)
        placed: list[Offer] = []
        now = self.clock.now()
        for merchant_id in ticket.plan:
            if len(live) + len(placed) >= self._width(ticket):
                break
            if merchant_id in tried:
                continue
            merchant = await tx.session.get(Merchant, merchant_id)
            if (
                merchant is None
                or not merchant.phones
                or loads.get(merchant_id, 0) >= merchant.capacity
            ):
                continue
            assert ticket.id is not None
            offer = Offer(
                ticket_id=ticket.id,
                merchant_id=merchant_id,
                rank=ticket.plan.index(merchant_id),
                call_ref=f"offer-{uuid4().hex[:16]}",
                phone=merchant.phones[0],
                placed_at=now,
                expires_at=now + timedelta(seconds=self.config.offer_timeout_s),
            )
            tx.session.add(offer)
            await tx.session.flush()
            self._touch_after_commit(tx, merchant_id)
            tx.session.add(
                Call(
                    ref=offer.call_ref,
                    direction="out",
                    purpose="offer",
                    number=offer.phone,
                    ticket_id=ticket.id,
                    offer_id=offer.id,
                    started_at=now,
                )
            )
            tx.emit(
                "offer.placed",
                "ticket",
                ticket.id,
                offer_id=offer.id,
                merchant_id=merchant_id,
                merchant=merchant.name,
                rank=offer.rank,
            )
            placed.append(offer)
        if placed:
            if ticket.state != tm.TicketState.OFFERING:
                state, _ = tm.transition(ticket.state, tm.OffersPlaced())
                await self._cas(tx, ticket, state=state)
                tx.emit("ticket.offering", "ticket", ticket.id)
        elif not live:
            state, commands = tm.transition(ticket.state, tm.NobodyAvailable())
            await self._cas(tx, ticket, state=state)
            tx.emit("ticket.unassigned", "ticket", ticket.id, reason="nobody accepted")
            for command in commands:
                if isinstance(command, tm.AlertOperators):
                    tx.emit("alert.unassigned", "ticket", ticket.id, reason=command.reason)
        return placed

    async def _place_calls(self, offers: Sequence[Offer]) -> None:
        for offer in offers:
            assert offer.expires_at is not None
            await self.timers.schedule(f"offer:{offer.id}", offer.expires_at)
            caller_id = self.config.caller_id or None
            if await self._dial(offer.call_ref, offer.phone, caller_id=caller_id):
                log.info(
                    "offer %s placed as call %s to %s", offer.id, offer.call_ref, mask(offer.phone)
                )

    async def _offer_outcome(
        self, tx: Tx, offer: Offer, event: om.OfferEvent, *, keep_call: bool = False
    ) -> list[Offer]:
        """Apply an offer event; move the cascade on when the offer is refused.

        `keep_call`: the offer's call is not hung up, because a flow still has something
        to tell the merchant and hangs up itself.
        """
        state, commands = om.transition(offer.state, event)
        await self._cas(tx, offer, state=state, decided_at=self.clock.now())
        tx.emit(
            "offer." + state.value,
            "ticket",
            offer.ticket_id,
            offer_id=offer.id,
            merchant_id=offer.merchant_id,
        )
        hang_up = not keep_call and any(isinstance(c, om.HangupCall) for c in commands)
        hangups = [offer.call_ref] if hang_up else []
        placed: list[Offer] = []
        if any(isinstance(c, om.NextCandidate) for c in commands):
            ticket = await self._get(tx, Ticket, offer.ticket_id, "ticket")
            if ticket.state == tm.TicketState.OFFERING:
                placed = await self._fill_offers(tx, ticket)
        self._after_commit(tx, placed, hangups)
        return placed

    def _after_commit(self, tx: Tx, placed: list[Offer], hangups: list[str]) -> None:
        """Hang up and place calls once the transaction has committed (never before)."""
        if placed or hangups:
            tx.after_commit(partial(self._call_out, list(placed), list(hangups)))

    async def _call_out(self, placed: list[Offer], hangups: list[str]) -> None:
        for ref in hangups:
            try:
                await self.telephony.hangup(ref)
            except TelephonyError:
                log.warning("call %s: hang-up failed", ref)
        await self._place_calls(placed)

    async def _offer_decided(self, ref: str, outcome: str) -> None:
        """A merchant pressed a key on an offer call.

        On "1" the call waits on the line (the flow's `STAY`) while the acceptance is
        committed; only then is the merchant thanked and told the code word, or told that
        the order has gone to someone else. A crash before the commit leaves a merchant
        who heard nothing, never one holding a code word for a job that is not theirs.
        """
        told: FlowStart | None = None
        async with self.store.tx() as tx:
            call = await self._call_by_ref(tx, ref)
            if call is None or call.offer_id is None:
                return
            offer = await self._get(tx, Offer, call.offer_id, "offer")
            if offer.state not in om.LIVE:
                tx.emit(
                    "offer.late_answer",
                    "ticket",
                    offer.ticket_id,
                    offer_id=offer.id,
                    outcome=outcome,
                )
                if outcome == "accepted":
                    told = FlowStart("merchant_taken", {})
            elif outcome == "accepted":
                ticket = await self._accept(tx, offer, actor="merchant", keep_call=True)
                if ticket is None:
                    told = FlowStart("merchant_taken", {})
                else:
                    told = FlowStart("merchant_accepted", {"code_word": ticket.code_word})
            elif outcome == "declined":
                await self._offer_outcome(tx, offer, om.Decline())
            else:
                await self._offer_outcome(tx, offer, om.Unreached(om.OfferState.NO_ANSWER))
        if told is not None:
            await self._run_flow(ref, told.flow, told.context, told.lang)

    async def _accept(
        self, tx: Tx, offer: Offer, *, actor: str, keep_call: bool = False
    ) -> Ticket | None:
        """Accept an offer: the ticket, or None when another merchant won the race (this
        offer is withdrawn, nothing is double-booked)."""
        ticket = await self._get(tx, Ticket, offer.ticket_id, "ticket")
        if ticket.state != tm.TicketState.OFFERING:
            if offer.state in om.LIVE:
                await self._offer_outcome(tx, offer, om.Withdraw(), keep_call=keep_call)
            return None
        state, _ = om.transition(offer.state, om.Accept())
        await self._cas(tx, offer, state=state, decided_at=self.clock.now())
        tstate, commands = tm.transition(ticket.state, tm.MerchantAccepted(offer.merchant_id))
        await self._cas(
            tx, ticket, state=tstate, merchant_id=offer.merchant_id, accepted_at=self.clock.now()
        )
        merchant = await tx.session.get(Merchant, offer.merchant_id)
        tx.emit(
            "offer.accepted",
            "ticket",
            ticket.id,
            actor=actor,
            offer_id=offer.id,
            merchant_id=offer.merchant_id,
            merchant=merchant.name if merchant else "",
        )
        tx.emit("ticket.accepted", "ticket", ticket.id, actor=actor, merchant_id=offer.merchant_id)
        hangups: list[str] = []
        if any(isinstance(c, tm.WithdrawOtherOffers) for c in commands):
            others = (
                (
                    await tx.session.execute(
                        select(Offer).where(
                            col(Offer.ticket_id) == ticket.id, col(Offer.id) != offer.id
                        )
                    )
                )
                .scalars()
                .all()
            )
            for other in others:
                if other.state in om.LIVE:
                    wstate, _ = om.transition(other.state, om.Withdraw())
                    await self._cas(tx, other, state=wstate, decided_at=self.clock.now())
                    tx.emit(
                        "offer.withdrawn",
                        "ticket",
                        ticket.id,
                        offer_id=other.id,
                        merchant_id=other.merchant_id,
                    )
                    hangups.append(other.call_ref)
        self._after_commit(tx, [], hangups)
        return ticket

    async def accept_offer(self, offer_id: int, *, user: User) -> Ticket:
        """A merchant (or an operator on their behalf) accepts an offer from the console."""
        async with self.store.tx() as tx:
            offer = await self._get(tx, Offer, offer_id, "offer")
            if user.merchant_id is not None and user.merchant_id != offer.merchant_id:
                raise repo.NotFound("offer", offer_id)
            if offer.state not in om.LIVE:
                raise IllegalTransition("offer", offer.state, om.Accept())
            accepted = await self._accept(tx, offer, actor=user.username)
            ticket = await self._get(tx, Ticket, offer.ticket_id, "ticket")
        if accepted is None:
            # the withdrawal is committed; the refusal says another merchant won
            raise IllegalTransition("ticket", ticket.state, tm.MerchantAccepted(offer.merchant_id))
        # committed: a phone line that is down must not turn the accept into an error
        await self._hangup_all([offer.call_ref])
        await self.timers.cancel(f"offer:{offer_id}")
        return ticket

    async def decline_offer(self, offer_id: int, *, user: User) -> None:
        """A merchant refuses an offer from their page; the cascade moves on at once."""
        async with self.store.tx() as tx:
            offer = await self._get(tx, Offer, offer_id, "offer")
            if user.merchant_id is not None and user.merchant_id != offer.merchant_id:
                raise repo.NotFound("offer", offer_id)
            await self._offer_outcome(tx, offer, om.Decline())
        await self.timers.cancel(f"offer:{offer_id}")

    async def _ticket_event(
        self,
        ticket_id: int,
        event: tm.TicketEvent,
        *,
        user: User | None,
        name: str,
        actor: str = "system",
        **values: Any,
    ) -> Ticket:
        async with self.store.tx() as tx:
            ticket = await self._get(tx, Ticket, ticket_id, "ticket")
            if (
                user is not None
                and user.merchant_id is not None
                and (ticket.merchant_id != user.merchant_id)
            ):
                raise repo.NotFound("ticket", ticket_id)
            state, commands = tm.transition(ticket.state, event)
            await self._cas(tx, ticket, state=state, **values)
            tx.emit(
                name,
                "ticket",
                ticket.id,
                actor=_actor(user) if user is not None else actor,
                merchant_id=ticket.merchant_id,
            )
        for command in commands:
            if isinstance(command, tm.ScheduleSurvey):
                await self.timers.schedule(f"survey:{ticket.id}", self._survey_time(0))
                # whatever the survey brings, the ticket closes when its window ends
                await self.timers.schedule(
                    f"close:{ticket.id}",
                    self.clock.now() + timedelta(seconds=self.config.survey_window_s),
                )
        return ticket

    async def arrive(self, ticket_id: int, *, user: User | None, actor: str = "system") -> Ticket:
        """The merchant is at the door (console, or the merchant's keypad)."""
        return await self._ticket_event(
            ticket_id,
            tm.Arrived(),
            user=user,
            name="ticket.arrived",
            actor=actor,
            arrived_at=self.clock.now(),
        )

    async def complete(self, ticket_id: int, *, user: User | None, actor: str = "system") -> Ticket:
        """The visit is done; the survey call is scheduled."""
        ticket = await self._ticket_event(
            ticket_id,
            tm.Completed(),
            user=user,
            name="ticket.completed",
            actor=actor,
            completed_at=self.clock.now(),
        )
        for key in (f"deadline:{ticket_id}", f"escalate:{ticket_id}"):
            await self.timers.cancel(key)
        return ticket

    async def cancel(self, ticket_id: int, *, user: User, reason: str) -> Ticket:
        """Cancel a ticket and withdraw its live offers."""
        hangups: list[str] = []
        async with self.store.tx() as tx:
            ticket = await self._get(tx, Ticket, ticket_id, "ticket")
            state, _ = tm.transition(ticket.state, tm.Cancel(reason))
            await self._cas(tx, ticket, state=state, closed_at=self.clock.now())
            tx.emit(
                "ticket.cancelled", "ticket", ticket.id, actor=user.username, reason=reason[:200]
            )
            offers = (
                (await tx.session.execute(select(Offer).where(col(Offer.ticket_id) == ticket.id)))
                .scalars()
                .all()
            )
            for offer in offers:
                if offer.state in om.LIVE:
                    await self._cas(tx, offer, state=om.OfferState.WITHDRAWN)
                    hangups.append(offer.call_ref)
        await self._hangup_all(hangups)
        for key in (f"{k}:{ticket_id}" for k in ("deadline", "escalate", "survey", "close")):
            await self.timers.cancel(key)
        return ticket

    # -- surveys -----------------------------------------------------------------------------
    def _survey_time(self, attempt: int) -> datetime:
        """When to call: after a delay, never in the quiet hours of the night."""
        delay = self.config.survey_delay_s if attempt == 0 else self.config.survey_retry_s
        when = (self.clock.now() + timedelta(seconds=delay)).astimezone(LOCAL_TZ)
        quiet_start, quiet_end = self.config.quiet_start, self.config.quiet_end
        if when.time() >= quiet_start:
            when = (when + timedelta(days=1)).replace(
                hour=quiet_end.hour, minute=quiet_end.minute, second=0, microsecond=0
            )
        elif when.time() < quiet_end:
            when = when.replace(
                hour=quiet_end.hour, minute=quiet_end.minute, second=0, microsecond=0
            )
        return when

    async def _survey_phone(self, tx: Tx, ticket: Ticket, *, family: bool) -> str | None:
        if ticket.resident_id is None:
            return None
        if family:
            stmt = (
                select(col(EmergencyContact.phone))
                .where(col(EmergencyContact.resident_id) == ticket.resident_id)
                .order_by(col(EmergencyContact.position), col(EmergencyContact.id))
            )
        else:
            stmt = (
                select(col(ResidentPhone.number))
                .where(col(ResidentPhone.resident_id) == ticket.resident_id)
                .order_by(col(ResidentPhone.id))
            )
        return (await tx.session.execute(stmt.limit(1))).scalars().first()

    async def _start_survey(self, ticket_id: int, *, family: bool | None = None) -> None:
        """Place a survey call: the resident's tries first, then (once) the first contact."""
        async with self.store.tx() as tx:
            ticket = await self._get(tx, Ticket, ticket_id, "ticket")
            if ticket.state != tm.TicketState.COMPLETED:
                return
            if family is None:
                family = ticket.survey_attempts >= self.config.survey_attempts
            phone = await self._survey_phone(tx, ticket, family=family)
            if phone is None or (
                family and not self.config.survey_family and ticket.survey_attempts
            ):
                await self._close_unrated(tx, ticket, reason="no survey phone")
                return
            attempt = ticket.survey_attempts + 1
            await self._cas(tx, ticket, survey_attempts=attempt)
            ref = f"survey-{ticket.id}-{attempt}"
            purpose = "survey_family" if family else "survey"
            tx.session.add(
                Call(
                    ref=ref,
                    direction="out",
                    purpose=purpose,
                    number=phone,
                    ticket_id=ticket.id,
                    resident_id=ticket.resident_id,
                    registered=True,
                    started_at=self.clock.now(),
                )
            )
            tx.emit("survey.calling", "ticket", ticket.id, attempt=attempt, family=family)
        await self._dial(ref, phone)

    async def survey_family(self, ticket_id: int, *, user: User) -> None:
        """Call the resident's first emergency contact to rate on the resident's behalf."""
        ticket = await self.get_ticket(ticket_id)
        if ticket.state != tm.TicketState.COMPLETED:
            raise IllegalTransition("ticket", ticket.state, tm.Rated("family"))
        await self.timers.cancel(f"survey:{ticket_id}")
        await self._start_survey(ticket_id, family=True)

    async def _survey_finished(self, ref: str, outcome: str, variables: dict[str, str]) -> None:
        async with self.store.tx() as tx:
            call = await self._call_by_ref(tx, ref)
            if call is None or call.ticket_id is None:
                return
            ticket = await self._get(tx, Ticket, call.ticket_id, "ticket")
            if ticket.state != tm.TicketState.COMPLETED:
                return
            rating = variables.get("rating")
            if outcome != "rated" or not rating:
                return  # the hang-up that follows counts the attempt as unrated
            rated_by = "family" if call.purpose == "survey_family" else "resident"
            state, _ = tm.transition(ticket.state, tm.Rated(rating))
            follow_up = rating == "not_satisfied"
            await self._cas(
                tx,
                ticket,
                state=state,
                rating=rating,
                rated_at=self.clock.now(),
                rated_by=rated_by,
                follow_up=follow_up,
            )
            tx.emit(
                "ticket.rated",
                "ticket",
                ticket.id,
                rating=rating,
                rated_by=rated_by,
                merchant_id=ticket.merchant_id,
                actor=rated_by,
            )
            if follow_up:
                tx.emit("alert.not_satisfied", "ticket", ticket.id, reason="not satisfied")
                tx.emit(
                    "followup.opened",
                    "ticket",
                    ticket.id,
                    level="supervisor",
                    merchant_id=ticket.merchant_id,
                    reason="not satisfied",
                )
            state, _ = tm.transition(ticket.state, tm.Close())
            await self._cas(tx, ticket, state=state, closed_at=self.clock.now())
            tx.emit("ticket.closed", "ticket", ticket.id, rated=True)
        for key in (f"survey:{call.ticket_id}", f"close:{call.ticket_id}"):
            await self.timers.cancel(key)

    def _survey_tries(self) -> int:
        return self.config.survey_attempts + (1 if self.config.survey_family else 0)

    async def _survey_unanswered(self, tx: Tx, ticket_id: int) -> None:
        ticket = await self._get(tx, Ticket, ticket_id, "ticket")
        if ticket.state != tm.TicketState.COMPLETED:
            return
        if ticket.survey_attempts < self._survey_tries():
            when = self._survey_time(ticket.survey_attempts)
            tx.emit("survey.retry", "ticket", ticket.id, at=when.isoformat())
            tx.after_commit(partial(self.timers.schedule, f"survey:{ticket.id}", when))
        else:
            await self._close_unrated(tx, ticket, reason="no answer")

    async def _close_unrated(self, tx: Tx, ticket: Ticket, *, reason: str) -> None:
        state, _ = tm.transition(ticket.state, tm.Close())
        await self._cas(tx, ticket, state=state, closed_at=self.clock.now())
        tx.emit("survey.not_rated", "ticket", ticket.id, reason=reason)
        tx.emit("ticket.closed", "ticket", ticket.id, rated=False, reason=reason)

    async def close_follow_up(self, ticket_id: int, *, user: User, note: str) -> Ticket:
        """A supervisor closes the follow-up a "not satisfied" rating opened."""
        async with self.store.tx() as tx:
            ticket = await self._get(tx, Ticket, ticket_id, "ticket")
            if not ticket.follow_up:
                raise Invalid(f"ticket {ticket_id} has no open follow-up")
            await self._cas(tx, ticket, follow_up=False)
            tx.emit("followup.closed", "ticket", ticket.id, actor=user.username, note=note[:200])
        return ticket

    # -- repeat orders and merchant check-ins -------------------------------------------------
    async def _repeat(self, last: Ticket, *, user: User | None, call_id: int | None) -> Ticket:
        return await self.create_ticket(
            user=user,
            category=last.category_code,
            description=last.description,
            resident_id=last.resident_id,
            call_id=call_id,
            repeat_of=last.id,
        )

    async def repeat_order(self, ticket_id: int, *, user: User | None) -> Ticket:
        """ "Same as last time": a new order like `ticket_id`, dispatched at once.

        The merchant who completed the resident's last order of the category is their
        usual merchant and ranks first when eligible.
        """
        last = await self.get_ticket(ticket_id)
        self._refuse_operator_task(last)
        ticket = await self._repeat(last, user=user, call_id=None)
        assert ticket.id is not None
        return await self.dispatch(ticket.id, user=user)

    async def check_in(self, ticket_id: int, *, kind: str, user: User | None) -> str:
        """Call the accepted merchant to report arrival (1) or completion (1) by keypad."""
        if kind not in ("arrival", "completion"):
            raise Invalid(f"unknown check-in {kind!r}")
        async with self.store.tx() as tx:
            ticket = await self._get(tx, Ticket, ticket_id, "ticket")
            allowed = (tm.TicketState.ACCEPTED,) if kind == "arrival" else ACTIVE_TICKET_STATES
            if ticket.state not in allowed or ticket.merchant_id is None:
                raise IllegalTransition("ticket", ticket.state, tm.Arrived())
            merchant = await self._get(tx, Merchant, ticket.merchant_id, "merchant")
            if not merchant.phones:
                raise Invalid(f"merchant {merchant.id} has no phone")
            ref = f"{kind}-{ticket.id}-{uuid4().hex[:8]}"
            tx.session.add(
                Call(
                    ref=ref,
                    direction="out",
                    purpose=kind,
                    number=merchant.phones[0],
                    ticket_id=ticket.id,
                    started_at=self.clock.now(),
                )
            )
            tx.emit(
                "ticket.check_in",
                "ticket",
                ticket.id,
                actor=_actor(user),
                kind=kind,
                merchant_id=merchant.id,
            )
        await self._dial(ref, merchant.phones[0])
        return ref

    async def _check_in_finished(self, ref: str, outcome: str) -> None:
        async with self.store.read() as session:
            call = (
                (await session.execute(select(Call).where(col(Call.ref) == ref))).scalars().first()
            )
        if call is None or call.ticket_id is None:
            return
        try:
            if outcome == "arrived":
                await self.arrive(call.ticket_id, user=None, actor="merchant")
            elif outcome == "completed":
                await self.complete(call.ticket_id, user=None, actor="merchant")
            elif outcome in ("not_yet", "not_completed"):
                async with self.store.tx() as tx:
                    tx.emit(f"ticket.{outcome}", "ticket", call.ticket_id, actor="merchant")
        except IllegalTransition:
            log.info("ticket %s: check-in %s came too late (%s)", call.ticket_id, ref, outcome)

    # -- outbound calls of other use cases ------------------------------------------------
    def record_outbound(self, tx: Tx, *, ref: str, number: str, purpose: str) -> Call:
        """Add an outbound call to another use case's unit of work; `place_call` places it
        after the commit, and `outbound_flows[purpose]` says what it says when answered."""
        call = Call(
            ref=ref, direction="out", purpose=purpose, number=number, started_at=self.clock.now()
        )
        tx.session.add(call)
        return call

    async def place_call(self, ref: str, number: str) -> None:
        """Place a recorded outbound call (its ref is the idempotency key); a backend that
        refuses it ends the call as failed, one that cannot be reached makes it wait."""
        await self._dial(ref, number, caller_id=self.config.caller_id or None)

    # -- the phone line: dialling, outages and resuming ---------------------------------------
    async def _dial(
        self, ref: str, number: str, *, caller_id: str | None = None, waited: bool = False
    ) -> bool:
        """Hand a recorded outbound call to the backend; True when the backend took it.

        A backend that cannot be reached (or reports itself down) is no failure of the far
        end: the call waits for the line (`call.deferred`) and is placed again, same ref,
        when the backend is back. Any other refusal ends the call as failed.
        """
        if ref in self._dialing:
            return False
        self._dialing.add(ref)
        try:
            try:
                if not self.telephony.health().up:
                    raise TelephonyUnavailable("the telephony backend reports itself down")
                await self.telephony.originate(
                    ref=ref,
                    number=number,
                    caller_id=caller_id,
                    timeout_s=self.config.ring_timeout_s,
                )
            except TelephonyUnavailable as exc:
                log.warning("call %s to %s waits for the phone line (%s)", ref, mask(number), exc)
                await self._defer(ref)
                return False
            except TelephonyError:
                log.warning("call %s: originate failed", ref)
                await self._originate_failed(ref, OriginateFailure.FAILED)
                return False
            await self._dialed(ref, waited=waited)
            return True
        finally:
            self._dialing.discard(ref)

    async def _defer(self, ref: str) -> None:
        """Record that an outbound call (and its offer) waits for the phone line."""
        async with self.store.tx() as tx:
            call = await self._call_by_ref(tx, ref)
            if call is None or not _undialed(call):
                return
            tx.emit(
                "call.deferred",
                "call",
                call.id,
                purpose=call.purpose,
                ticket_id=call.ticket_id,
                offer_id=call.offer_id,
            )
            if call.offer_id is not None:
                offer = await tx.session.get(Offer, call.offer_id, populate_existing=True)
                if offer is not None and offer.state in om.LIVE:
                    tx.emit(
                        "offer.waiting",
                        "ticket",
                        offer.ticket_id,
                        offer_id=offer.id,
                        merchant_id=offer.merchant_id,
                    )

    async def _dialed(self, ref: str, *, waited: bool) -> None:
        """The backend took the call: note when. An offer whose call waited for the line
        gets its full timeout from now, the moment the merchant's phone really rings."""
        now = self.clock.now()
        async with self.store.tx() as tx:
            # only the first to note it acts: a twin attempt (same ref) changes nothing
            result = await tx.session.execute(
                update(Call)
                .where(col(Call.ref) == ref, col(Call.dialed_at).is_(None))
                .values(dialed_at=now)
            )
            if result.rowcount != 1 or not waited:  # type: ignore[attr-defined]
                return
            call = await self._call_by_ref(tx, ref)
            if call is None:
                return
            tx.emit(
                "call.redialed",
                "call",
                call.id,
                purpose=call.purpose,
                ticket_id=call.ticket_id,
                waited_s=round((now - call.started_at).total_seconds(), 1),
            )
            if call.offer_id is None:
                return
            offer = await tx.session.get(Offer, call.offer_id, populate_existing=True)
            if offer is None or offer.state not in om.LIVE or offer.call_ref != ref:
                return
            expires = now + timedelta(seconds=self.config.offer_timeout_s)
            # no version bump: only this writes expires_at after the offer is made, and a
            # racing state change (ringing) must not be refused for it
            await tx.session.execute(
                update(Offer).where(col(Offer.id) == offer.id).values(expires_at=expires)
            )
            tx.emit(
                "offer.resumed",
                "ticket",
                offer.ticket_id,
                offer_id=offer.id,
                merchant_id=offer.merchant_id,
            )
            tx.after_commit(partial(self.timers.schedule, f"offer:{offer.id}", expires))

    def _caller_id(self, purpose: str) -> str | None:
        return None if purpose in DEFAULT_CALLER_ID else (self.config.caller_id or None)

    def _quiet_until(self, when: datetime) -> datetime | None:
        """The end of the quiet hours `when` falls in, or None outside them."""
        local = when.astimezone(LOCAL_TZ)
        start, end = self.config.quiet_start, self.config.quiet_end
        at_end = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
        if local.time() >= start:
            return at_end + timedelta(days=1)
        if local.time() < end:
            return at_end
        return None

    async def _still_wanted(self, tx: Tx, call: Call) -> bool:
        """Whether an outbound call that waited for the line is still worth placing."""
        if call.offer_id is not None:
            offer = await tx.session.get(Offer, call.offer_id, populate_existing=True)
            return offer is not None and offer.state in om.LIVE and offer.call_ref == call.ref
        if call.purpose in (*SURVEY_PURPOSES, "arrival", "completion"):
            ticket = (
                await tx.session.get(Ticket, call.ticket_id, populate_existing=True)
                if call.ticket_id is not None
                else None
            )
            if ticket is None:
                return False
            if call.purpose in SURVEY_PURPOSES:
                return ticket.state == tm.TicketState.COMPLETED
            if call.purpose == "arrival":
                return ticket.state == tm.TicketState.ACCEPTED
            return ticket.state in ACTIVE_TICKET_STATES
        wanted = self.outbound_wanted.get(call.purpose)
        return wanted(call) if wanted is not None else True

    async def _redial(self, call_id: int) -> bool:
        """Place a call that waited for the phone line, if it is still wanted; True when the
        backend took it. A survey is not rung in the quiet hours: it waits for their end."""
        now = self.clock.now()
        async with self.store.tx() as tx:
            call = await tx.session.get(Call, call_id, populate_existing=True)
            if call is None or not _undialed(call) or call.ref in self._dialing:
                return False
            if not await self._still_wanted(tx, call):
                # the ticket moved on while the line was down: nobody needs this call now
                state, _ = cm.transition(call.state, cm.Hangup(inbound=False))
                await self._cas(tx, call, state=state, ended_at=now, cause="not_dialed")
                tx.emit("call.ended", "call", call.id, cause="not_dialed", ticket_id=call.ticket_id)
                return False
            quiet = self._quiet_until(now) if call.purpose in SURVEY_PURPOSES else None
            if quiet is not None:
                tx.after_commit(partial(self.timers.schedule, f"redial:{call.id}", quiet))
                return False
            ref, number, purpose = call.ref, call.number, call.purpose
        return await self._dial(ref, number, caller_id=self._caller_id(purpose), waited=True)

    async def resume_outbound(self) -> int:
        """Place every outbound call that waited for the phone line, oldest first, each with
        its own ref; returns how many the backend took."""
        async with self._resume_lock:
            async with self.store.read() as session:
                ids = (
                    (
                        await session.execute(
                            select(col(Call.id))
                            .where(
                                col(Call.direction) == "out",
                                col(Call.dialed_at).is_(None),
                                col(Call.state).not_in(list(cm.FINAL)),
                            )
                            .order_by(col(Call.id))
                        )
                    )
                    .scalars()
                    .all()
                )
            placed = 0
            for call_id in ids:
                if not self.telephony.health().up:
                    break  # down again: the rest keep waiting for the next BackendStatus(up)
                if call_id is not None and await self._redial(call_id):
                    placed += 1
            if ids:
                log.info("phone line back: %s of %s waiting calls placed", placed, len(ids))
            return placed

    async def _waiting_calls(self) -> int:
        async with self.store.read() as session:
            return int(
                (
                    await session.execute(
                        select(func.count()).where(
                            col(Call.direction) == "out",
                            col(Call.dialed_at).is_(None),
                            col(Call.state).not_in(list(cm.FINAL)),
                        )
                    )
                ).scalar_one()
            )

    async def _line_status(self, up: bool, detail: str) -> None:
        """The backend link went up or down: record it at once (the console's banner reads
        the event), then rescue the callers (down) or resume the waiting calls (up)."""
        if up == self._line_up:
            log.info("telephony still %s (%s)", "up" if up else "down", detail)
            return
        first, self._line_up = self._line_up is None, up
        now = self.clock.now()
        if up:
            outage, self._outage = self._outage, None
            extra: dict[str, Any] = {}
            if outage is not None:
                extra = {
                    "down_s": round((now - outage.since).total_seconds(), 1),
                    "callbacks": outage.callbacks,
                }
            waiting = await self._waiting_calls()
            async with self.store.tx() as tx:
                tx.emit(
                    "telephony.up",
                    "system",
                    "telephony",
                    detail=detail,
                    waiting_calls=waiting,
                    **extra,
                )
            log.info("telephony up (%s): %s calls waited for the line", detail, waiting)
            await self.resume_outbound()
            return
        async with self.store.read() as session:
            live = (
                (
                    await session.execute(
                        select(Call)
                        .where(col(Call.direction) == "in", col(Call.state).in_(LIVE_INBOUND))
                        .order_by(col(Call.id))
                    )
                )
                .scalars()
                .all()
            )
        async with self.store.tx() as tx:
            tx.emit(
                "telephony.down",
                "system",
                "telephony",
                detail=detail,
                live_calls=len(live),
                at_start=first,
            )
        self._outage = _Outage(since=now)
        for call in live:
            try:
                if await self._callback_once(call, "phone line lost during the call"):
                    self._outage.callbacks += 1
            except Exception:  # one caller's task failing must not cost the others theirs
                log.exception("call %s: no callback task after the outage", call.ref)
        log.warning(
            "telephony down (%s): %s live callers, %s callback tasks",
            detail,
            len(live),
            self._outage.callbacks,
        )

    async def _has_callback(self, call_id: int | None) -> bool:
        """Whether a call has a callback task already."""
        async with self.store.read() as session:
            found = (
                await session.execute(
                    select(col(Ticket.id))
                    .where(col(Ticket.call_id) == call_id, col(Ticket.category_code) == CALLBACK)
                    .limit(1)
                )
            ).scalar()
        return found is not None

    async def _callback_once(self, call: Call, reason: str) -> bool:
        """A callback task for the caller unless the call has one already (at most one
        per call: an outage and the hang-up it causes both ask)."""
        async with self._callback_lock:
            if await self._has_callback(call.id):
                log.info("call %s: callback task exists already", call.ref)
                return False
            await self._callback_ticket(call, reason)
            return True

    async def _offer_timer(self, offer_id: int) -> None:
        """An offer's timeout: it expires, unless its call never rang (it waits for the
        phone line; it gets its full timeout once dialled)."""
        async with self.store.tx() as tx:
            offer = await tx.session.get(Offer, offer_id, populate_existing=True)
            if offer is None or offer.state not in om.LIVE:
                return
            call = await self._call_by_ref(tx, offer.call_ref)
            if call is not None and _undialed(call):
                at = self.clock.now() + timedelta(seconds=self.config.offer_timeout_s)
                log.info("offer %s waits for the phone line; not expired", offer_id)
                tx.after_commit(partial(self.timers.schedule, f"offer:{offer_id}", at))
                return
            await self._offer_outcome(tx, offer, om.Expire())

    async def _outbound_lost(self, ref: str) -> None:
        """The backend lost an outbound call in an outage (it may never have rung).

        Nothing counts against the far end. A call still wanted gets a new ref (the old one
        is spent: the backend may have placed it) and waits for the line like any other;
        a call of another use case (a login code) just ends: its ref was its delivery.
        """
        now = self.clock.now()
        replacement: Call | None = None
        async with self.store.tx() as tx:
            call = await self._call_by_ref(tx, ref)
            if call is None or call.state in cm.FINAL:
                return
            wanted = call.purpose not in self.outbound_flows and await self._still_wanted(tx, call)
            state, _ = cm.transition(call.state, cm.Hangup(inbound=False))
            await self._cas(tx, call, state=state, ended_at=now, cause="lost")
            tx.emit("call.lost", "call", call.id, purpose=call.purpose, ticket_id=call.ticket_id)
            if wanted:
                replacement = Call(
                    ref=_retry_ref(ref),
                    direction="out",
                    purpose=call.purpose,
                    number=call.number,
                    ticket_id=call.ticket_id,
                    offer_id=call.offer_id,
                    resident_id=call.resident_id,
                    registered=call.registered,
                    started_at=now,
                )
                tx.session.add(replacement)
                await tx.session.flush()
                if call.offer_id is not None:
                    offer = await self._get(tx, Offer, call.offer_id, "offer")
                    await self._cas(tx, offer, call_ref=replacement.ref)
                    tx.emit(
                        "offer.waiting",
                        "ticket",
                        offer.ticket_id,
                        offer_id=offer.id,
                        merchant_id=offer.merchant_id,
                    )
                tx.emit(
                    "call.deferred",
                    "call",
                    replacement.id,
                    purpose=replacement.purpose,
                    ticket_id=replacement.ticket_id,
                    offer_id=replacement.offer_id,
                    replaces=call.id,
                )
        log.warning("call %s lost by the backend in an outage", ref)
        if replacement is not None and replacement.id is not None:
            await self._redial(replacement.id)

    async def _hangup_all(self, refs: Sequence[str]) -> None:
        """Hang up calls after a commit; a phone line that is down only leaves a log line."""
        for ref in refs:
            try:
                await self.telephony.hangup(ref)
            except TelephonyError:
                log.warning("call %s: hang-up failed", ref)

    async def merchant_record(
        self,
        merchant_id: int,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> dict[str, Any]:
        """A merchant's scorecard over [start, end): offers and acceptance, ratings, time
        from acceptance to arrival (median, p90), no-shows and recent orders.

        Without a period, the recent window the ranking uses. Offers count by when they
        were placed, ratings by when they were given (as in `merchant_stats`).
        """
        if start is None:
            start = self.clock.now() - timedelta(days=self.config.stats_window_days)
        period = [col(Offer.placed_at) >= start]
        if end is not None:
            period.append(col(Offer.placed_at) < end)
        async with self.store.read() as session:
            merchant = await repo.get_merchant(session, merchant_id=merchant_id)
            stats = (await self.merchant_stats(session, [merchant_id], since=start, until=end)).get(
                merchant_id, MerchantStats()
            )
            taken = (
                await session.execute(
                    select(
                        col(Offer.ticket_id),
                        col(Offer.state),
                        col(Offer.placed_at),
                        col(Offer.decided_at),
                        col(Ticket.category_code),
                        col(Ticket.state),
                        col(Ticket.merchant_id),
                        col(Ticket.arrived_at),
                        col(Ticket.rating),
                    )
                    .join(Ticket, col(Ticket.id) == col(Offer.ticket_id))
                    .where(
                        col(Offer.merchant_id) == merchant_id,
                        col(Offer.state).in_([om.OfferState.ACCEPTED, om.OfferState.NO_SHOW]),
                        *period,
                    )
                    .order_by(col(Offer.placed_at).desc(), col(Offer.id).desc())
                )
            ).all()
            grid = await session.get(registry_models.Grid, merchant.grid_code)
        arrive_s: list[float] = []
        orders: list[dict[str, Any]] = []
        no_show_tickets: list[dict[str, Any]] = []
        for tid, ostate, placed, decided, category, tstate, holder, arrived, rating in taken:
            no_show = om.OfferState(ostate) == om.OfferState.NO_SHOW
            # after a no-show the ticket's arrival and rating belong to the next merchant
            mine = not no_show and holder == merchant_id
            if mine and arrived is not None and decided is not None:
                arrive_s.append((arrived - decided).total_seconds())
            if no_show and len(no_show_tickets) < 50:
                no_show_tickets.append(
                    {"ticket_id": tid, "at": decided.isoformat() if decided else None}
                )
            if len(orders) < 20:
                orders.append(
                    {
                        "ticket_id": tid,
                        "category": category,
                        "placed_at": placed.isoformat(),
                        "accepted_at": decided.isoformat() if decided and not no_show else None,
                        "arrived_at": arrived.isoformat() if mine and arrived else None,
                        "state": "no_show" if no_show else tm.TicketState(tstate).value,
                        "rating": rating if mine else None,
                    }
                )
        counts = dict(stats.ratings)
        return {
            "merchant_id": merchant.id,
            "name": merchant.name,
            "kind": merchant.kind,
            "grid_code": merchant.grid_code,
            "grid_name": grid.name if grid is not None else merchant.grid_code,
            "window_days": self.config.stats_window_days,
            "from": start.isoformat(),
            "to": end.isoformat() if end is not None else None,
            "offers": stats.offers,
            "accepted": stats.accepted,
            "acceptance": stats.acceptance,
            "acceptance_rate": pct(stats.accepted, stats.offers),
            "rated": stats.rated,
            "satisfied": stats.satisfied,
            "satisfied_rate": pct(stats.satisfied, stats.rated),
            "ratings": {r: counts.get(r, 0) for r in RATINGS},
            "no_shows": stats.no_shows,
            "time_to_arrive": {
                "visits": len(arrive_s),
                "median_s": percentile(arrive_s, 50),
                "p90_s": percentile(arrive_s, 90),
            },
            "last_offered_at": stats.last_offered_at.isoformat() if stats.last_offered_at else None,
            "no_show_tickets": no_show_tickets,
            "recent_orders": orders,
        }

    # -- deadlines and escalation ----------------------------------------------------------
    async def _on_deadline(self, ticket_id: int, *, supervisor: bool) -> None:
        placed: list[Offer] = []
        hangups: list[str] = []
        schedule_supervisor: datetime | None = None
        async with self.store.tx() as tx:
            ticket = await tx.session.get(Ticket, ticket_id, populate_existing=True)
            if ticket is None:
                return
            decide = dl.on_supervisor_timer if supervisor else dl.on_deadline
            for decision in decide(ticket.state, ticket.escalation_level):
                if isinstance(decision, dl.DeclareNoShow):
                    placed = await self._no_show(tx, ticket)
                elif isinstance(decision, dl.Escalate):
                    await self._cas(
                        tx,
                        ticket,
                        escalated=True,
                        escalation_level=int(decision.level),
                        escalation_reason=decision.reason[:200],
                    )
                    level = "supervisor" if decision.level == dl.Level.SUPERVISOR else "operator"
                    tx.emit(
                        "ticket.escalated",
                        "ticket",
                        ticket.id,
                        level=level,
                        reason=decision.reason,
                        state=ticket.state.value,
                    )
                    tx.emit("alert.escalated", "ticket", ticket.id, level=level)
                elif isinstance(decision, dl.ScheduleSupervisor) and ticket.deadline_at is not None:
                    schedule_supervisor = dl.supervisor_at(ticket.created_at, ticket.deadline_at)
        if schedule_supervisor is not None:
            await self.timers.schedule(f"escalate:{ticket_id}", schedule_supervisor)
        for ref in hangups:
            await self.telephony.hangup(ref)
        await self._place_calls(placed)

    async def _no_show(self, tx: Tx, ticket: Ticket) -> list[Offer]:
        """The accepted merchant never arrived: mark the offer, re-offer the ticket."""
        offers = (
            (await tx.session.execute(select(Offer).where(col(Offer.ticket_id) == ticket.id)))
            .scalars()
            .all()
        )
        merchant_id = ticket.merchant_id
        for offer in offers:
            if offer.state == om.OfferState.ACCEPTED and offer.merchant_id == merchant_id:
                state, _ = om.transition(offer.state, om.NoShow())
                await self._cas(tx, offer, state=state, decided_at=self.clock.now())
        tstate, commands = tm.transition(ticket.state, tm.NoShow())
        await self._cas(tx, ticket, state=tstate, merchant_id=None, accepted_at=None)
        tx.emit("ticket.no_show", "ticket", ticket.id, merchant_id=merchant_id)
        placed: list[Offer] = []
        if any(isinstance(c, tm.Redispatch) for c in commands):
            tried = [o.merchant_id for o in offers]
            ranking = await self._rank(tx.session, ticket, exclude=tried)
            plan = [c.merchant_id for c in ranking if c.eligible]
            await self._cas(tx, ticket, plan=plan)
            tx.emit("ticket.matching", "ticket", ticket.id, plan=plan, redispatch=True)
            placed = await self._fill_offers(tx, ticket)
        return placed

    # -- timers ------------------------------------------------------------------------------
    async def on_timer(self, key: str) -> None:
        """A scheduled deadline fell due."""
        kind, _, ident = key.partition(":")
        log.info("timer %s fired", key)
        if kind == "offer":
            await self._offer_timer(int(ident))
        elif kind == "redial":
            await self._redial(int(ident))
        elif kind == "deadline":
            await self._on_deadline(int(ident), supervisor=False)
        elif kind == "escalate":
            await self._on_deadline(int(ident), supervisor=True)
        elif kind == "survey":
            await self._start_survey(int(ident))
        elif kind == "queue":
            await self._queue_announce(int(ident))
        elif kind == "close":
            async with self.store.tx() as tx:
                ticket = await tx.session.get(Ticket, int(ident), populate_existing=True)
                if ticket is not None and ticket.state == tm.TicketState.COMPLETED:
                    await self._close_unrated(tx, ticket, reason="survey window passed")
            await self.timers.cancel(f"survey:{ident}")
        elif kind == "wrapup":
            await self._wrap_up_timeout(int(ident))
        elif kind == "ring":
            await self._operator_rang_out(int(ident))
        elif kind == "reconcile":
            await self.reconcile()
        else:
            log.warning("unknown timer key %s", key)

    # -- restart safety ----------------------------------------------------------------------
    async def start(self) -> dict[str, int]:
        """At process start: repair what a crash left behind, then reconcile periodically.

        Never raises: a process that cannot start cannot answer an emergency. Whatever
        the reconciler could not repair is in the log and in `system.reconcile_skipped`.
        """
        try:
            report = await self.reconcile(startup=True)
        except Exception as exc:
            log.exception("start-up reconciliation failed; serving anyway")
            await self._record_skip("dispatch", "reconcile", exc)
            report = {}
        # calls that waited for the phone line when the last process stopped
        if self.telephony.health().up:
            await self._guarded("dispatch", "resume_outbound", self.resume_outbound)
        return report

    async def _record_skip(self, subject: str, subject_id: object, exc: BaseException) -> None:
        """Say what the reconciler had to leave as it found it (no personal data)."""
        try:
            async with self.store.tx() as tx:
                tx.emit(
                    "system.reconcile_skipped",
                    "system",
                    "dispatch",
                    kind=subject,
                    id=str(subject_id),
                    error=type(exc).__name__,
                )
        except Exception:
            log.exception("reconciler: could not record the skipped %s %s", subject, subject_id)

    async def _guarded(
        self, subject: str, subject_id: object, repair: Callable[[], Awaitable[object]]
    ) -> tuple[bool, object]:
        """Run one repair: (True, its result), or (False, None) when the row could not be
        repaired; that one is logged, recorded and skipped."""
        try:
            return True, await repair()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("reconciler: %s %s skipped", subject, subject_id)
            await self._record_skip(subject, subject_id, exc)
            return False, None

    async def reconcile(self, *, startup: bool = False) -> dict[str, int]:
        """Compare open tickets, offers and calls with the scheduled timers; repair the gaps.

        - every live offer has its `offer:` timer, every unfinished ticket its `deadline:`
          (or `escalate:`) timer, every completed ticket its survey and `close:` timers,
          every operator wrapping up their `wrapup:` timer and every operator a call is
          offered to their `ring:` timer; overdue ones are scheduled in the past and so
          fire once, now;
        - timers about finished subjects are cancelled;
        - at start, calls the backend does not know were lost with the old process: their
          offers expire and the cascade moves on (a ref is never placed again), lost survey
          calls count as unanswered, lost callers get a call back; wrap-ups and operator
          states that nobody can finish any more are closed with the reason
          "closed_at_start"; keypad tickets that never got dispatched are dispatched.

        Each row is repaired on its own: one that cannot be is logged, recorded as
        `system.reconcile_skipped` and left as it is, and the rest go on.
        """
        report = {
            "scheduled": 0,
            "cancelled": 0,
            "lost_calls": 0,
            "closed": 0,
            "dispatched": 0,
            "skipped": 0,
        }
        if startup:
            for phase in (self._lost_calls, self._stale_desks, self._undispatched):
                done, skipped = await phase()
                report[_PHASE_COUNT[phase.__name__]] += done
                report["skipped"] += skipped
        keys = await self.timers.keys()
        wanted, skipped = await self._wanted_timers()
        report["skipped"] += skipped
        for key, at in wanted.items():
            if key not in keys:
                log.info("reconciler: timer %s was missing; scheduled for %s", key, at)
                ok, _ = await self._guarded("timer", key, partial(self.timers.schedule, key, at))
                if ok:
                    report["scheduled"] += 1
                else:
                    report["skipped"] += 1
        for key in keys:
            kind = key.partition(":")[0]
            if kind in _RECONCILED_TIMERS and key not in wanted:
                ok, _ = await self._guarded("timer", key, partial(self.timers.cancel, key))
                if ok:
                    report["cancelled"] += 1
                else:
                    report["skipped"] += 1
        await self.timers.schedule(
            "reconcile:periodic",
            self.clock.now() + timedelta(seconds=self.config.reconcile_every_s),
        )
        if any(report.values()):
            async with self.store.tx() as tx:
                tx.emit("system.reconciled", "system", "dispatch", startup=startup, counts=report)
        return report

    async def _wanted_timers(self) -> tuple[dict[str, datetime], int]:
        """Every timer the open subjects need, and how many rows could not be read.

        Columns are read as plain text and parsed row by row, so one row with a state this
        version does not know is skipped instead of failing the whole read.
        """
        now = self.clock.now()
        wanted: dict[str, datetime] = {}
        bad: list[tuple[str, object, Exception]] = []
        async with self.store.read() as session:
            offer_rows = await session.execute(
                select(col(Offer.id), col(Offer.expires_at)).where(
                    col(Offer.state).in_(list(om.LIVE))
                )
            )
            for offer_id, expires_at in offer_rows:
                wanted[f"offer:{offer_id}"] = expires_at or now
            ticket_rows = (
                await session.execute(
                    select(
                        col(Ticket.id),
                        cast(col(Ticket.state), String),
                        col(Ticket.deadline_at),
                        col(Ticket.escalation_level),
                        col(Ticket.created_at),
                        col(Ticket.completed_at),
                        col(Ticket.survey_attempts),
                    ).where(cast(col(Ticket.state), String).not_in([s.value for s in tm.FINAL]))
                )
            ).all()
            surveying = set(
                (
                    await session.execute(
                        select(col(Call.ticket_id)).where(
                            col(Call.purpose).in_(SURVEY_PURPOSES),
                            col(Call.state).not_in(list(cm.FINAL)),
                        )
                    )
                ).scalars()
            )
            desk_rows = (
                await session.execute(
                    select(
                        col(OperatorStatus.user_id),
                        cast(col(OperatorStatus.state), String),
                        col(OperatorStatus.since),
                    ).where(
                        cast(col(OperatorStatus.state), String).in_(
                            [opm.OperatorState.WRAP_UP.value, opm.OperatorState.RESERVED.value]
                        )
                    )
                )
            ).all()
        for tid, raw_state, deadline_at, level, created_at, completed_at, attempts in ticket_rows:
            try:
                state = tm.TicketState(raw_state)
                escalation = dl.Level(level)
            except ValueError as exc:
                bad.append(("ticket", tid, exc))
                continue
            if state in dl.PENDING and deadline_at is not None:
                if escalation == dl.Level.NONE:
                    wanted[f"deadline:{tid}"] = deadline_at
                elif escalation == dl.Level.OPERATOR:
                    wanted[f"escalate:{tid}"] = dl.supervisor_at(created_at, deadline_at)
            if state == tm.TicketState.COMPLETED:
                done = completed_at or now
                wanted[f"close:{tid}"] = done + timedelta(seconds=self.config.survey_window_s)
                if tid not in surveying:
                    wanted[f"survey:{tid}"] = self._survey_time(attempts)
        for user_id, raw_state, since in desk_rows:
            if raw_state == opm.OperatorState.WRAP_UP.value:
                wanted[f"wrapup:{user_id}"] = since + timedelta(seconds=self.config.wrap_up_s)
            else:
                at = since + timedelta(seconds=self.config.ring_operator_s)
                wanted[f"ring:{user_id}"] = at
        for subject, ident, error in bad:
            log.warning("reconciler: %s %s has an unreadable row (%s)", subject, ident, error)
            await self._record_skip(subject, ident, error)
        return wanted, len(bad)

    async def _unfinished_calls(self) -> list[tuple[int, str, str]]:
        """(id, ref, state as stored) of every call not ended, read as plain text."""
        async with self.store.read() as session:
            rows = await session.execute(
                select(col(Call.id), col(Call.ref), cast(col(Call.state), String)).where(
                    cast(col(Call.state), String).not_in([s.value for s in cm.FINAL])
                )
            )
            return [(int(i or 0), str(r), str(st)) for i, r, st in rows]

    async def _lost_calls(self) -> tuple[int, int]:
        """Calls the backend no longer knows (needs `live_calls`): (closed, skipped).

        A call in wrap-up is not on the PBX by nature (the caller has hung up): the desk
        repair (`_stale_desks`) sees to it.
        """
        if self.live_calls is None:
            return 0, 0
        live = await self.live_calls()
        closed = skipped = 0
        for call_id, ref, state in await self._unfinished_calls():
            if ref in live or state == cm.CallState.WRAP_UP.value:
                continue
            ok, was_lost = await self._guarded("call", call_id, partial(self._close_lost, call_id))
            closed += bool(was_lost)
            skipped += not ok
        return closed, skipped

    async def _close_lost(self, call_id: int) -> bool:
        """End one call lost with the old process, as if it had hung up then (True), unless
        there is nothing to end (False)."""
        async with self.store.read() as session:
            call = await session.get(Call, call_id)
        if call is None or call.state in cm.FINAL or call.state == cm.CallState.WRAP_UP:
            return False
        if _undialed(call):
            return False  # waits for the phone line: it is placed, not lost
        if call.offer_id is not None:
            async with self.store.tx() as tx:
                offer = await self._get(tx, Offer, call.offer_id, "offer")
                if offer.state in om.LIVE:
                    log.info("offer %s: call %s lost in a restart; expired", offer.id, call.ref)
                    await self._offer_outcome(tx, offer, om.Expire())
        await self._call_ended(call.ref, "lost")
        if call.direction == "in" and call.state in cm.WAITING and call.queued_at is None:
            # cut off in the menu by our restart: they may never ring again by themselves
            await self._callback_once(call, "call lost in a restart")
        return True

    async def _stale_desks(self) -> tuple[int, int]:
        """Close wrap-ups and operator states nobody can finish after a restart.

        A call in wrap-up whose operator has moved on (or never will) ends with the
        disposition "closed_at_start"; an operator on a call that has ended wraps up; an
        operator a call was offered to is free again unless the caller still waits.
        """
        async with self.store.read() as session:
            statuses = (await session.execute(select(col(OperatorStatus.user_id)))).all()
        closed = skipped = 0
        for user_id in {int(row[0]) for row in statuses}:
            ok, _ = await self._guarded(
                "operator", user_id, partial(self._repair_operator, user_id)
            )
            skipped += not ok
        for call_id, _, state in await self._unfinished_calls():
            if state != cm.CallState.WRAP_UP.value:
                continue
            ok, was_closed = await self._guarded(
                "call", call_id, partial(self._close_stale_wrap_up, call_id)
            )
            closed += bool(was_closed)
            skipped += not ok
        return closed, skipped

    async def _repair_operator(self, user_id: int) -> None:
        async with self.store.tx() as tx:
            status = await tx.session.get(OperatorStatus, user_id, populate_existing=True)
            if status is None or status.call_id is None:
                return
            call = await tx.session.get(Call, status.call_id, populate_existing=True)
            if status.state == opm.OperatorState.ON_CALL and (
                call is None or call.state not in cm.AT_DESK or call.operator_id != user_id
            ):
                await self._operator_event(tx, user_id, opm.CallFinished(), call)
            elif status.state == opm.OperatorState.RESERVED and (
                call is None or call.state != cm.CallState.QUEUED
            ):
                await self._operator_event(tx, user_id, opm.Resume())

    async def _close_stale_wrap_up(self, call_id: int) -> bool:
        async with self.store.tx() as tx:
            call = await self._get(tx, Call, call_id, "call")
            if call.state != cm.CallState.WRAP_UP:
                return False
            status = (
                await self._operator_status(tx, call.operator_id)
                if call.operator_id is not None
                else None
            )
            if (
                status is not None
                and status.state == opm.OperatorState.WRAP_UP
                and status.call_id == call.id
            ):
                return False  # still theirs: their wrap-up timer ends it (see `_wanted_timers`)
            log.info("call %s: wrap-up nobody can finish closed at start", call.ref)
            await self._close_wrap_up(tx, call, disposition=CLOSED_AT_START, actor="system")
            return True

    async def _undispatched(self) -> tuple[int, int]:
        """Keypad tickets created just before a crash, never dispatched (operator tasks such
        as call backs stay with the operators)."""
        async with self.store.read() as session:
            ids = (
                (
                    await session.execute(
                        select(col(Ticket.id)).where(
                            col(Ticket.state) == tm.TicketState.NEW,
                            col(Ticket.created_by) == "system",
                            col(Ticket.category_code).not_in(OPERATOR_TASKS),
                        )
                    )
                )
                .scalars()
                .all()
            )
        dispatched = skipped = 0
        for ticket_id in ids:
            if ticket_id is None:
                continue
            ok, _ = await self._guarded(
                "ticket", ticket_id, partial(self._dispatch_once, ticket_id)
            )
            if ok:
                dispatched += 1
            else:
                skipped += 1
        return dispatched, skipped

    async def _dispatch_once(self, ticket_id: int) -> None:
        try:
            await self.dispatch(ticket_id, user=None)
        except (IllegalTransition, Conflict):
            return  # someone else dispatched it meanwhile


#: what each start-up phase's first count is called in the reconciler's report
_PHASE_COUNT = {
    "_lost_calls": "lost_calls",
    "_stale_desks": "closed",
    "_undispatched": "dispatched",
}
#: timer kinds the reconciler owns: it schedules the missing ones and cancels the orphans
_RECONCILED_TIMERS = frozenset(
    {"offer", "deadline", "escalate", "close", "survey", "wrapup", "ring"}
)
