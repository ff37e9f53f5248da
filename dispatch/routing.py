"""Where the outside world comes in: telephony events, finished IVR flows and fired timers,
each routed to the feature that owns it (by a `match` on the event, and tables keyed by
flow name and timer kind).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from dispatch.calls import Calls
from dispatch.campaigns import Campaigns
from dispatch.checkins import CheckIns
from dispatch.consult import Consults
from dispatch.desk import Desk
from dispatch.emergency import Emergency
from dispatch.family import Family
from dispatch.incident_callbacks import IncidentCallbacks
from dispatch.line import PhoneLine
from dispatch.masked import Masked
from dispatch.notify import Notify
from dispatch.offers import Offers
from dispatch.outbound import Outbound
from dispatch.outbound_engine import OutboundEngine
from dispatch.queue import Queue
from dispatch.reconcile import Reconciler
from dispatch.reminders import Reminders
from dispatch.silence import Silence
from dispatch.status import OrderStatus
from dispatch.surveys import Surveys
from dispatch.tickets import Tickets
from dispatch.timer_keys import Kind, TimerKey
from dispatch.wellbeing import Wellbeing
from providers.base import (
    BackendStatus,
    CallAnswered,
    CallBridged,
    CallEnded,
    CallerSpoke,
    CallHeld,
    CallOffered,
    CallRinging,
    CallUnheld,
    CallWaiting,
    ConsultAnswered,
    ConsultFailed,
    DigitPressed,
    FlowFinished,
    OriginateFailed,
    OriginateFailure,
    PromptPlayed,
    Telephony,
    TelephonyEvent,
    TransferFailed,
)

log = logging.getLogger(__name__)

TimerHandler = Callable[[TimerKey], Awaitable[object]]
FlowHandler = Callable[[FlowFinished], Awaitable[object]]


class Router:
    """Telephony events, flow outcomes and timers to the use cases."""

    def __init__(
        self,
        *,
        telephony: Telephony,
        calls: Calls,
        queue: Queue,
        emergency: Emergency,
        desk: Desk,
        consults: Consults,
        outbound: Outbound,
        line: PhoneLine,
        offers: Offers,
        tickets: Tickets,
        surveys: Surveys,
        checkins: CheckIns,
        reconciler: Reconciler,
        incidents: IncidentCallbacks,
        campaigns: Campaigns,
        wellbeing: Wellbeing,
        reminders: Reminders,
        notify: Notify,
        status: OrderStatus,
        masked: Masked,
        family: Family,
        silence: Silence,
        engine: OutboundEngine,
    ) -> None:
        self.telephony = telephony
        self.silence = silence
        self.calls = calls
        self.outbound = outbound
        self.line = line
        self.desk = desk
        self.consults = consults
        self.reconciler = reconciler
        #: flow name -> what its outcome means (flows starting with "hotline": `calls`)
        self.flows: dict[str, FlowHandler] = {
            "queue_wait": lambda e: queue.wait_finished(e.ref, e.outcome),
            "merchant_offer": lambda e: offers.decided(e.ref, e.outcome),
            "survey": lambda e: surveys.finished(e.ref, e.outcome, dict(e.variables)),
            # 4 on the arrival check-in: the merchant at the gate talks to the resident
            "merchant_arrival": lambda e: (
                masked.merchant_on_call(e)
                if e.outcome == "connect"
                else checkins.finished(e.ref, e.outcome)
            ),
            "merchant_completion": lambda e: checkins.finished(e.ref, e.outcome),
            "incident_fixed": lambda e: incidents.told(e.ref),
            "notice": lambda e: campaigns.finished(e.ref, e.outcome),
            "resident_told": lambda e: notify.finished(e.ref, e.outcome),
            "family_told": lambda e: family.finished(e.ref, e.outcome),
            # a caller with an open order: 0 (or a cancel that came too late) is an operator
            "status": self._or_operator(status.finished),
            "status_cancelled": self._or_operator(status.cancelled_told),
            # the merchant of a masked call never answered: 0 is an operator
            "masked_unreached": self._or_operator(masked.unreached_told),
            "emergency_wait": lambda e: emergency.wait_finished(e.ref, e.outcome),
            "emergency_help": lambda e: emergency.wait_finished(e.ref, e.outcome),
            "emergency_responder": lambda e: emergency.responder_finished(e.ref, e.outcome),
            "wellbeing": lambda e: wellbeing.finished(e.ref, e.outcome, dict(e.variables)),
            "wellbeing_contact": lambda e: wellbeing.contact_finished(e.ref, e.outcome),
            "wellbeing_report": lambda e: wellbeing.report_finished(e.ref, e.outcome),
            "reminder": lambda e: reminders.finished(e.ref, e.outcome),
        }
        #: timer kind -> its handler
        self.timers: dict[Kind, TimerHandler] = {
            Kind.OFFER: lambda k: offers.on_timeout(k.id),
            Kind.REDIAL: lambda k: line.redial(k.id),
            Kind.DEADLINE: tickets.on_deadline,
            Kind.ESCALATE: tickets.on_deadline,
            Kind.SURVEY: lambda k: surveys.start(k.id),
            Kind.CLOSE: lambda k: surveys.window_closed(k.id),
            # an emergency caller hears the holding prompt, others their place
            Kind.QUEUE: lambda k: emergency.announce(k.id),
            Kind.EMERGENCY: lambda k: emergency.on_deadline(k.id),
            Kind.WRAPUP: lambda k: desk.wrap_up_timeout(k.id),
            Kind.RING: lambda k: queue.rang_out(k.id),
            Kind.RECONCILE: lambda k: reconciler.reconcile(),
            Kind.INCIDENT: lambda k: incidents.callback_round(k.id),
            Kind.CAMPAIGN: lambda k: campaigns.round(k.id),
            Kind.WELLBEING: lambda k: wellbeing.tick(k.id),
            Kind.REMINDER: lambda k: reminders.tick(k.id),
            Kind.TOLD: lambda k: notify.start(k.id),
            Kind.FAMILY: family.deliver,
            Kind.FAMILY_EMERGENCY: family.deliver,
            Kind.OUTBOUND: engine.on_timer,
        }

    def _or_operator(self, handler: FlowHandler) -> FlowHandler:
        """A flow's outcome for `handler`, but `transfer` takes the caller to an operator
        and `emergency` (key 1, as in the hotline menu) is an emergency."""

        async def route(event: FlowFinished) -> object:
            if event.outcome not in ("transfer", "emergency"):
                return await handler(event)
            await self.calls.to_operator(event.ref, event.outcome, event.variables.get("category"))
            return None

        return route

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
                await self.calls.inbound(event)
            case CallRinging(ref=ref):
                await self.outbound.ringing(ref)
            case CallAnswered(ref=ref, answered_by=by):
                await self.outbound.answered(ref, by)
            case DigitPressed(ref=ref, digit=digit):
                await self.calls.call_event(ref, "call.digit", digit=digit)
            case CallerSpoke(ref=ref):
                await self.silence.spoke(ref)
            case PromptPlayed(ref=ref, prompt=prompt):
                log.debug("call %s prompt %s", ref, prompt)
            case FlowFinished():
                await self.on_flow_finished(event)
            case CallBridged(ref=ref, peer=peer):
                await self.calls.call_event(ref, "call.bridged", peer=peer)
            case CallHeld(ref=ref) | CallUnheld(ref=ref):
                # the desk's own `call.held` / `call.resumed` events already say it
                log.info("call %s: backend reports %s", ref, type(event).__name__)
            case CallWaiting(ref=ref):
                await self.calls.waiting(ref)
            case TransferFailed(ref=ref, peer=peer):
                await self.desk.transfer_unanswered(ref, peer)
            case ConsultAnswered(ref=ref, peer=peer):
                await self.consults.answered(ref, peer)
            case ConsultFailed(ref=ref, peer=peer):
                await self.consults.failed(ref, peer)
            case CallEnded(ref=ref, cause=cause):
                await self.calls.ended(ref, cause.value)
            case OriginateFailed(ref=ref, reason=OriginateFailure.LOST):
                await self.line.lost(ref)
            case OriginateFailed(ref=ref, reason=reason):
                await self.outbound.failed(ref, reason)
            case BackendStatus(up=up, detail=detail):
                await self.line.status(up, detail)
                if up:
                    await self.reconciler.after_reconnect()

    async def on_flow_finished(self, event: FlowFinished) -> None:
        """An IVR flow ended: its outcome goes to the feature that started it."""
        if event.flow.startswith("hotline"):
            await self.calls.hotline_finished(event)
            return
        handler = self.flows.get(event.flow)
        if handler is not None:
            await handler(event)

    async def on_timer(self, key: str) -> None:
        """A scheduled deadline fell due."""
        log.info("timer %s fired", key)
        parsed = TimerKey.parse(key)
        if parsed is None:
            log.warning("unknown timer key %s", key)
            return
        await self.timers[parsed.kind](parsed)
