"""The dispatch services wired together: built once by the composition root.

`DispatchServices` holds no use case of its own; it builds the shared core, the command
interpreter and each feature service, tells the interpreter where follow-ups and
outcomes go, and exposes the services by their names (`dispatch.desk.answer_call(...)`).
See `dispatch/README.md` for which room holds what.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dispatch.booking import Booking
from dispatch.callouts import Callouts
from dispatch.calls import Calls
from dispatch.campaigns import Campaigns
from dispatch.checkins import CheckIns
from dispatch.config import DispatchConfig
from dispatch.consult import Consults
from dispatch.core import Core
from dispatch.desk import Desk
from dispatch.disputes import Disputes
from dispatch.effects import Effects, FollowUps, Reports
from dispatch.emergency import Emergency
from dispatch.family import Family
from dispatch.incident_board import IncidentBoard
from dispatch.incident_callbacks import IncidentCallbacks
from dispatch.incidents import Incidents
from dispatch.line import PhoneLine
from dispatch.masked import Masked
from dispatch.matching import MerchantStats
from dispatch.models import Ticket
from dispatch.notify import Notify
from dispatch.offers import Offers
from dispatch.oncall import OnCall
from dispatch.operators import Operators
from dispatch.outbound import Outbound
from dispatch.outbound_engine import OutboundEngine
from dispatch.queue import Queue
from dispatch.ranking import Ranking
from dispatch.reconcile import Reconciler
from dispatch.reminders import Reminders
from dispatch.routing import Router
from dispatch.scorecard import Scorecard
from dispatch.silence import Silence
from dispatch.stats import StatsCache
from dispatch.status import OrderStatus
from dispatch.surveys import Surveys
from dispatch.tickets import Tickets
from dispatch.timers import Timers
from dispatch.wellbeing import Wellbeing
from dispatch.wellbeing_away import AwayByKeypad
from eventlog.clock import Clock
from eventlog.store import Store, Tx
from ivr.library import FlowLibrary
from providers.base import LiveCalls, Messaging, SpeechDetection, Telephony


class DispatchServices:
    """Every dispatch feature service, wired; the object the app holds."""

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
        messaging: Messaging | None = None,
        speech: SpeechDetection | None = None,
    ) -> None:
        config = config or DispatchConfig()
        flows = flows or FlowLibrary()

        async def fetch_stats(session: Any, ids: Sequence[int]) -> dict[int, MerchantStats]:
            return await self.ranking.merchant_stats(session, ids)

        stats = StatsCache(fetch_stats, clock=clock, ttl_s=config.stats_ttl_s)
        store.bus.listen(stats.follow, subjects=("ticket",))
        self.fx = Effects(
            telephony=telephony, timers=timers, flows=flows, clock=clock, config=config, stats=stats
        )
        self.core = core = Core(
            store=store,
            clock=clock,
            config=config,
            flows=flows,
            fx=self.fx,
            health=telephony.health,
        )
        self.ranking = Ranking(core, stats)
        self.outbound = Outbound(core)
        self.outbound_engine = OutboundEngine(core, self.outbound)
        self.operators = Operators(core)
        self.offers = Offers(core, self.ranking, self.outbound)
        self.tickets = Tickets(core, self.offers)
        self.surveys = Surveys(core, self.outbound)
        self.checkins = CheckIns(core, self.outbound, self.tickets)
        self.incidents = Incidents(core, tickets=self.tickets, offers=self.offers)
        self.incident_board = IncidentBoard(core)
        self.incident_callbacks = IncidentCallbacks(core, self.outbound)
        self.campaigns = Campaigns(core, self.outbound, self.outbound_engine)
        self.queue = Queue(core, self.operators, self.tickets)
        self.notify = Notify(core, self.outbound, self.queue)
        self.family = Family(core, self.outbound, messaging)
        self.callouts = Callouts(core, self.operators, self.outbound, self.queue)
        self.oncall = OnCall(core)
        self.silence = Silence(core, speech)
        self.emergency = Emergency(
            core,
            queue=self.queue,
            operators=self.operators,
            outbound=self.outbound,
            family=self.family,
            silence=self.silence,
        )
        self.desk = Desk(core, self.operators, self.queue, self.emergency)
        self.consults = Consults(core, self.operators, self.desk)
        self.wellbeing = Wellbeing(
            core, outbound=self.outbound, tickets=self.tickets, emergency=self.emergency
        )
        self.reminders = Reminders(core, outbound=self.outbound, queue=self.queue)
        self.booking = Booking(core, self.offers, self.reminders)
        self.masked = Masked(core, self.outbound)
        self.status = OrderStatus(core, self.tickets, self.masked)
        self.calls = Calls(
            core,
            queue=self.queue,
            emergency=self.emergency,
            operators=self.operators,
            tickets=self.tickets,
            offers=self.offers,
            outbound=self.outbound,
            incidents=self.incidents,
            status=self.status,
            away=AwayByKeypad(core, self.wellbeing),
            masked=self.masked,
            consults=self.consults,
        )
        self.line = PhoneLine(core, self.outbound, self.queue)
        self.scorecard = Scorecard(core, self.ranking)
        self.disputes = Disputes(core)
        self.reconciler = Reconciler(
            core,
            timers=timers,
            live_calls=live_calls,
            calls=self.calls,
            desk=self.desk,
            emergency=self.emergency,
            operators=self.operators,
            offers=self.offers,
            queue=self.queue,
            surveys=self.surveys,
            line=self.line,
            incidents=self.incident_callbacks,
            campaigns=self.campaigns,
            wellbeing=self.wellbeing,
            family=self.family,
            reminders=self.reminders,
            engine=self.outbound_engine,
        )
        self.router = Router(
            telephony=telephony,
            calls=self.calls,
            queue=self.queue,
            emergency=self.emergency,
            desk=self.desk,
            consults=self.consults,
            outbound=self.outbound,
            line=self.line,
            offers=self.offers,
            tickets=self.tickets,
            surveys=self.surveys,
            checkins=self.checkins,
            reconciler=self.reconciler,
            incidents=self.incident_callbacks,
            campaigns=self.campaigns,
            wellbeing=self.wellbeing,
            reminders=self.reminders,
            notify=self.notify,
            status=self.status,
            masked=self.masked,
            family=self.family,
            silence=self.silence,
            engine=self.outbound_engine,
        )
        self.fx.bind(
            reports=Reports(
                deferred=self.line.deferred,
                dialed=self.line.dialed,
                failed=self.outbound.failed,
                hold_failed=self.desk.hold_failed,
                transfer_failed=self.desk.transfer_failed,
                bridge_failed=self.desk.bridge_failed,
                consult_failed=self.consults.failed,
            ),
            follow_ups=FollowUps(
                next_candidate=self.offers.next_candidate,
                withdraw_other_offers=self.offers.withdraw_other_offers,
                redispatch=self.offers.redispatch,
                schedule_survey=self._visit_done,
                tell_resident=self.notify.accepted,
                tell_family=self.family.ticket_event,
                ring_operators=self.emergency.ring_operators,
                call_responder=self.emergency.call_responder,
            ),
        )

    async def _visit_done(self, tx: Tx, ticket: Ticket) -> None:
        """A ticket completed: the survey follows, or, for an incident's ticket, the
        incident is fixed and its callers are called back instead (one call each)."""
        if await self.incidents.ticket_completed(tx, ticket):
            await self.surveys.close_unrated(tx, ticket, reason="incident fixed")
        else:
            await self.surveys.schedule(tx, ticket)

    @property
    def config(self) -> DispatchConfig:
        """The dispatch timings and policies (tests may change them on a running app)."""
        return self.core.config

    @property
    def store(self) -> Store:
        """The unit of work every service writes through."""
        return self.core.store

    @property
    def clock(self) -> Clock:
        """The clock every service reads."""
        return self.core.clock
