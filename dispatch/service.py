"""The dispatch use cases: calls, queue, operators, tickets, offers, surveys.

State changes go through the pure machines; each use case is one unit of work that
writes the rows and their events together. Telephony commands are carried out after
the commit, so a crash never leaves a call placed for an offer the database forgot,
and an offer's call ref (its idempotency key) is placed at most once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, TypeVar
from uuid import uuid4

from sqlalchemy import func, select, update
from sqlmodel import SQLModel, col

from dispatch.clock import LOCAL_TZ, Clock
from dispatch.events import Store, Tx
from dispatch.machines import IllegalTransition
from dispatch.machines import call as cm
from dispatch.machines import offer as om
from dispatch.machines import operator as opm
from dispatch.machines import ticket as tm
from dispatch.matching import Candidate, Need, rank
from dispatch.models import Call, Offer, OperatorStatus, Ticket
from dispatch.timers import Timers
from ivr.library import FlowLibrary
from ivr.prompts import pick_lang
from providers.base import (
    BackendStatus,
    CallAnswered,
    CallBridged,
    CallEnded,
    CallOffered,
    CallRinging,
    DigitPressed,
    FlowFinished,
    OriginateFailed,
    OriginateFailure,
    PromptPlayed,
    Telephony,
    TelephonyError,
    TelephonyEvent,
)
from registry import repository as repo
from registry.models import Merchant, Resident, ResidentPhone, User
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


def _actor(user: User | None) -> str:
    return user.username if user is not None else "system"


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
    ) -> None:
        self.store = store
        self.telephony = telephony
        self.timers = timers
        self.clock = clock
        self.config = config or DispatchConfig()
        self.flows = flows or FlowLibrary()
        self._background: set[asyncio.Task[None]] = set()

    async def drain(self) -> None:
        """Wait for telephony work queued after commits (used at shutdown and in tests)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

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
            case CallEnded(ref=ref, cause=cause):
                await self._call_ended(ref, cause.value)
            case OriginateFailed(ref=ref, reason=reason):
                await self._originate_failed(ref, reason)
            case BackendStatus(up=up, detail=detail):
                async with self.store.tx() as tx:
                    tx.emit(
                        "telephony.up" if up else "telephony.down",
                        "system",
                        "telephony",
                        detail=detail,
                    )

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
            resident = await repo.resident_by_phone(tx.session, number=number) if number else None
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
            )
            context: dict[str, Any] = {}
            lang = "zh-CN"
            if resident is not None:
                last = (
                    await tx.session.execute(
                        select(col(Ticket.category_code))
                        .where(col(Ticket.resident_id) == resident.id)
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
            await self._keypad_need(event.ref, event.variables.get("category", ""))
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
        elif event.flow == "merchant_offer":
            await self._offer_decided(event.ref, event.outcome)
        elif event.flow == "survey":
            await self._survey_finished(event.ref, event.outcome, dict(event.variables))

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
                await self.timers.schedule(
                    f"queue:{call.id}",
                    self.clock.now() + timedelta(seconds=self.config.queue_announce_s),
                )
                return
            state, _ = cm.transition(call.state, cm.CallbackRequested())
            await self._cas(tx, call, state=state, ended_at=self.clock.now(), cause="callback")
            tx.emit("call.callback_requested", "call", call.id)
        await self._callback_ticket(call, "caller asked for a call back")

    async def _callback_ticket(self, call: Call, reason: str) -> None:
        """A ticket for an operator to ring back, keeping the caller's place in the queue."""
        ticket = await self.create_ticket(
            user=None,
            category="callback",
            description=reason,
            resident_id=call.resident_id,
            call_id=call.id,
            created_at=call.queued_at,
        )
        log.info("call %s: callback ticket %s", call.ref, ticket.id)

    async def _keypad_need(self, ref: str, category: str) -> None:
        """A routine need taken by the keypad menu: a ticket, dispatched automatically."""
        async with self.store.tx() as tx:
            call = await self._call_by_ref(tx, ref)
            if call is None or call.state != cm.CallState.IVR:
                return
            state, _ = cm.transition(call.state, cm.SelfServed())
            await self._cas(tx, call, state=state, ended_at=self.clock.now(), cause="self_served")
            tx.emit("call.self_served", "call", call.id, category=category)
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
            if call.ticket_id is None:
                return
            ticket = await self._get(tx, Ticket, call.ticket_id, "ticket")
            category = await repo.get_category(tx.session, code=ticket.category_code)
            resident = (
                await tx.session.get(Resident, ticket.resident_id) if ticket.resident_id else None
            )
            if call.purpose == "offer" and call.offer_id is not None:
                offer = await self._get(tx, Offer, call.offer_id, "offer")
                if offer.state not in om.LIVE:
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
            elif call.purpose == "survey":
                flow = "survey"
                context = {"category": category.name_zh}
                lang = resident.language if resident else lang
        if flow is not None:
            await self._run_flow(ref, flow, context, lang)

    async def _call_ended(self, ref: str, cause: str) -> None:
        async with self.store.tx() as tx:
            call = await self._call_by_ref(tx, ref)
            if call is None or call.state in cm.FINAL:
                return
            state, _ = cm.transition(call.state, cm.Hangup(inbound=call.direction == "in"))
            await self._cas(tx, call, state=state, ended_at=self.clock.now(), cause=cause)
            name = "call.abandoned" if state == cm.CallState.ABANDONED else "call.ended"
            tx.emit(name, "call", call.id, cause=cause, ticket_id=call.ticket_id)
            if call.operator_id is not None and state == cm.CallState.WRAP_UP:
                await self._operator_event(tx, call.operator_id, opm.CallFinished(), call)
            if call.offer_id is not None:
                offer = await self._get(tx, Offer, call.offer_id, "offer")
                if offer.state in om.LIVE:
                    # hung up without pressing 1 or 2
                    await self._offer_outcome(tx, offer, om.Unreached(om.OfferState.NO_ANSWER))
            elif call.purpose == "survey" and call.ticket_id is not None:
                # rated calls have left `completed` already; anything else is unrated
                await self._survey_unanswered(tx, call.ticket_id)
        log.info("call %s ended (%s)", ref, cause)
        if state == cm.CallState.ABANDONED and call.queued_at is not None:
            await self.timers.cancel(f"queue:{call.id}")
            await self._callback_ticket(call, "caller hung up while waiting")

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
                if offer.state in om.LIVE:
                    await self._offer_outcome(tx, offer, om.Unreached(ACCEPT_ORDER[reason]))
            elif call.purpose == "survey" and call.ticket_id is not None:
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
                await self.timers.schedule(
                    f"wrapup:{user_id}", self.clock.now() + timedelta(seconds=self.config.wrap_up_s)
                )
        return status

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
            await self._cas(
                tx, call, state=state, operator_id=user.id, answered_at=self.clock.now()
            )
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

    async def wrap_up(self, call_id: int, user: User, disposition: str = "") -> None:
        """The operator finishes the after-call work."""
        assert user.id is not None
        async with self.store.tx() as tx:
            call = await self._get(tx, Call, call_id, "call")
            state, _ = cm.transition(call.state, cm.WrapUpDone())
            await self._cas(tx, call, state=state)
            tx.emit(
                "call.wrapped_up",
                "call",
                call.id,
                disposition=disposition[:64],
                actor=user.username,
            )
            status = await self._operator_status(tx, user.id)
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
            if resident_id is not None:
                await repo.get_resident(tx.session, resident_id=resident_id)
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
                call_id=call_id,
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

    async def _rank(self, session: Any, ticket: Ticket) -> list[Candidate]:
        merchants = await repo.merchants_for_category(session, code=ticket.category_code)
        resident = await session.get(Resident, ticket.resident_id) if ticket.resident_id else None
        need = Need(
            category=ticket.category_code,
            grid_code=resident.grid_code if resident else None,
            lat=resident.lat if resident else None,
            lon=resident.lon if resident else None,
        )
        loads = await self._loads(session)
        return rank(
            need,
            merchants,
            loads=loads,
            now=self.clock.now(),
            seed=self.config.match_seed if self.config.match_seed is not None else ticket.id,
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
            if ticket.state == tm.TicketState.OFFERING:
                raise IllegalTransition("ticket", ticket.state, tm.StartMatching())
            state, _ = tm.transition(ticket.state, tm.StartMatching())
            ranking = await self._rank(tx.session, ticket)
            eligible = [c.merchant_id for c in ranking if c.eligible]
            if merchant_ids:
                known = {c.merchant_id for c in ranking}
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
            try:
                await self.telephony.originate(
                    ref=offer.call_ref,
                    number=offer.phone,
                    caller_id=self.config.caller_id or None,
                    timeout_s=self.config.ring_timeout_s,
                )
                log.info(
                    "offer %s placed as call %s to %s", offer.id, offer.call_ref, mask(offer.phone)
                )
            except TelephonyError:
                log.warning("offer %s: originate failed", offer.id)
                await self._originate_failed(offer.call_ref, OriginateFailure.FAILED)

    async def _offer_outcome(self, tx: Tx, offer: Offer, event: om.OfferEvent) -> list[Offer]:
        """Apply an offer event; move the cascade on when the offer is refused."""
        state, commands = om.transition(offer.state, event)
        await self._cas(tx, offer, state=state, decided_at=self.clock.now())
        tx.emit(
            "offer." + state.value,
            "ticket",
            offer.ticket_id,
            offer_id=offer.id,
            merchant_id=offer.merchant_id,
        )
        hangups = [offer.call_ref] if any(isinstance(c, om.HangupCall) for c in commands) else []
        placed: list[Offer] = []
        if any(isinstance(c, om.NextCandidate) for c in commands):
            ticket = await self._get(tx, Ticket, offer.ticket_id, "ticket")
            if ticket.state == tm.TicketState.OFFERING:
                placed = await self._fill_offers(tx, ticket)
        self._after_commit(placed, hangups)
        return placed

    def _after_commit(self, placed: list[Offer], hangups: list[str]) -> None:
        """Telephony work to do once the current transaction has committed."""
        if not placed and not hangups:
            return
        loop = asyncio.get_running_loop()

        async def later() -> None:
            # the transaction commits before the store lock is released; wait for it
            async with self.store._write:
                pass
            for ref in hangups:
                await self.telephony.hangup(ref)
            await self._place_calls(placed)

        task = loop.create_task(later())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _offer_decided(self, ref: str, outcome: str) -> None:
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
                return
            if outcome == "accepted":
                await self._accept(tx, offer, actor="merchant")
            elif outcome == "declined":
                await self._offer_outcome(tx, offer, om.Decline())
            else:
                await self._offer_outcome(tx, offer, om.Unreached(om.OfferState.NO_ANSWER))

    async def _accept(self, tx: Tx, offer: Offer, *, actor: str) -> None:
        ticket = await self._get(tx, Ticket, offer.ticket_id, "ticket")
        if ticket.state != tm.TicketState.OFFERING:
            # another merchant won the race: this one is told, nothing is double-booked
            await self._offer_outcome(tx, offer, om.Withdraw())
            raise IllegalTransition("ticket", ticket.state, tm.MerchantAccepted(offer.merchant_id))
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
        self._after_commit([], hangups)

    async def accept_offer(self, offer_id: int, *, user: User) -> Ticket:
        """A merchant (or an operator on their behalf) accepts an offer from the console."""
        async with self.store.tx() as tx:
            offer = await self._get(tx, Offer, offer_id, "offer")
            if user.merchant_id is not None and user.merchant_id != offer.merchant_id:
                raise repo.NotFound("offer", offer_id)
            await self._accept(tx, offer, actor=user.username)
            ticket = await self._get(tx, Ticket, offer.ticket_id, "ticket")
        await self.telephony.hangup(offer.call_ref)
        await self.timers.cancel(f"offer:{offer_id}")
        return ticket

    async def _ticket_event(
        self,
        ticket_id: int,
        event: tm.TicketEvent,
        *,
        user: User | None,
        name: str,
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
            tx.emit(name, "ticket", ticket.id, actor=_actor(user))
        for command in commands:
            if isinstance(command, tm.ScheduleSurvey):
                await self.timers.schedule(f"survey:{ticket.id}", self._survey_time(0))
        return ticket

    async def arrive(self, ticket_id: int, *, user: User | None) -> Ticket:
        """The merchant is at the door."""
        return await self._ticket_event(ticket_id, tm.Arrived(), user=user, name="ticket.arrived")

    async def complete(self, ticket_id: int, *, user: User | None) -> Ticket:
        """The visit is done; the survey call is scheduled."""
        ticket = await self._ticket_event(
            ticket_id,
            tm.Completed(),
            user=user,
            name="ticket.completed",
            completed_at=self.clock.now(),
        )
        await self.timers.cancel(f"deadline:{ticket_id}")
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
        for ref in hangups:
            await self.telephony.hangup(ref)
        for key in (f"deadline:{ticket_id}", f"survey:{ticket_id}"):
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

    async def _start_survey(self, ticket_id: int) -> None:
        async with self.store.tx() as tx:
            ticket = await self._get(tx, Ticket, ticket_id, "ticket")
            if ticket.state != tm.TicketState.COMPLETED or ticket.resident_id is None:
                return
            phone = (
                (
                    await tx.session.execute(
                        select(col(ResidentPhone.number))
                        .where(col(ResidentPhone.resident_id) == ticket.resident_id)
                        .order_by(col(ResidentPhone.id))
                    )
                )
                .scalars()
                .first()
            )
            if phone is None:
                return
            attempt = ticket.survey_attempts + 1
            await self._cas(tx, ticket, survey_attempts=attempt)
            ref = f"survey-{ticket.id}-{attempt}"
            tx.session.add(
                Call(
                    ref=ref,
                    direction="out",
                    purpose="survey",
                    number=phone,
                    ticket_id=ticket.id,
                    resident_id=ticket.resident_id,
                    registered=True,
                    started_at=self.clock.now(),
                )
            )
            tx.emit("survey.calling", "ticket", ticket.id, attempt=attempt)
        await self.telephony.originate(ref=ref, number=phone, timeout_s=self.config.ring_timeout_s)

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
            state, _ = tm.transition(ticket.state, tm.Rated(rating))
            await self._cas(tx, ticket, state=state, rating=rating, rated_at=self.clock.now())
            tx.emit("ticket.rated", "ticket", ticket.id, rating=rating, actor="resident")
            if rating == "not_satisfied":
                tx.emit("alert.not_satisfied", "ticket", ticket.id, reason="not satisfied")
            state, _ = tm.transition(ticket.state, tm.Close())
            await self._cas(tx, ticket, state=state, closed_at=self.clock.now())
            tx.emit("ticket.closed", "ticket", ticket.id, rated=True)

    async def _survey_unanswered(self, tx: Tx, ticket_id: int) -> None:
        ticket = await self._get(tx, Ticket, ticket_id, "ticket")
        if ticket.state != tm.TicketState.COMPLETED:
            return
        if ticket.survey_attempts < self.config.survey_attempts:
            when = self._survey_time(ticket.survey_attempts)
            tx.emit("survey.retry", "ticket", ticket.id, at=when.isoformat())
            await self.timers.schedule(f"survey:{ticket.id}", when)
        else:
            state, _ = tm.transition(ticket.state, tm.Close())
            await self._cas(tx, ticket, state=state, closed_at=self.clock.now())
            tx.emit("ticket.closed", "ticket", ticket.id, rated=False)

    # -- timers ------------------------------------------------------------------------------
    async def on_timer(self, key: str) -> None:
        """A scheduled deadline fell due."""
        kind, _, ident = key.partition(":")
        log.info("timer %s fired", key)
        if kind == "offer":
            async with self.store.tx() as tx:
                offer = await tx.session.get(Offer, int(ident))
                if offer is not None and offer.state in om.LIVE:
                    await self._offer_outcome(tx, offer, om.Expire())
        elif kind == "deadline":
            async with self.store.tx() as tx:
                ticket = await tx.session.get(Ticket, int(ident))
                if (
                    ticket is not None
                    and ticket.state in (tm.OPEN - {tm.TicketState.COMPLETED, tm.TicketState.RATED})
                    and not ticket.escalated
                ):
                    await self._cas(tx, ticket, escalated=True, escalation_reason="deadline passed")
                    tx.emit(
                        "ticket.escalated",
                        "ticket",
                        ticket.id,
                        level="operator",
                        reason="deadline passed",
                    )
        elif kind == "survey":
            await self._start_survey(int(ident))
        elif kind == "queue":
            await self._queue_announce(int(ident))
        elif kind == "wrapup":
            async with self.store.tx() as tx:
                status = await tx.session.get(OperatorStatus, int(ident))
                if status is not None and status.state == opm.OperatorState.WRAP_UP:
                    await self._operator_event(tx, int(ident), opm.WrapUpDone())
        else:
            log.warning("unknown timer key %s", key)
