"""The offer cascade: a ticket offered to merchants one after another (or a few at once for
urgent needs) until one presses 1; refused, unanswered and expired offers move it on.

`dispatch` starts (or restarts) a cascade along the ranking or the operator's pick; each
offer is an outbound call of purpose `offer` whose answer reads the order
(`merchant_offer`). A merchant's "1" is committed before they hear the code word
(`merchant_accepted`), or that another merchant was faster (`merchant_taken`). First
accept wins: the other live offers are withdrawn. A no-show (the deadline passed without
the merchant arriving) re-offers the ticket to merchants not tried yet. Nobody left:
the ticket is unassigned and operators are alerted.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from uuid import uuid4

from sqlalchemy import select
from sqlmodel import col

from dispatch.booking_slot import slot_context
from dispatch.core import Core, actor, undialed
from dispatch.effects import CancelTimer, Command, Hangup, PlayFlow, ScheduleTimer, TouchMerchant
from dispatch.errors import ConsentRequired, Invalid, OperatorTask
from dispatch.machines import IllegalTransition
from dispatch.machines import offer as om
from dispatch.machines import ticket as tm
from dispatch.models import Call, Offer, Ticket
from dispatch.outbound import Outbound, Purpose, ticket_parts
from dispatch.prices import spoken_price
from dispatch.ranking import Ranking
from dispatch.timer_keys import TimerKey
from eventlog.store import Tx
from providers.base import OriginateFailure
from registry import repository as repo
from registry.catalog import OPERATOR_TASKS
from registry.models import Merchant, User

log = logging.getLogger(__name__)

#: the purpose of an offer's call
PURPOSE = "offer"
#: what a failed offer call means for the offer
UNREACHED = {
    OriginateFailure.NO_ANSWER: om.OfferState.NO_ANSWER,
    OriginateFailure.BUSY: om.OfferState.BUSY,
    OriginateFailure.CONGESTION: om.OfferState.FAILED,
    OriginateFailure.FAILED: om.OfferState.FAILED,
}


def refuse_operator_task(ticket: Ticket) -> None:
    """A call back is work for an operator: it never goes to a merchant."""
    if ticket.category_code in OPERATOR_TASKS:
        raise OperatorTask(
            f"ticket {ticket.id} ({ticket.category_code}) is a task for an operator, "
            "not an order for a merchant"
        )


class Offers:
    """Dispatch a ticket to merchants and follow each offer to its outcome."""

    def __init__(self, core: Core, ranking: Ranking, outbound: Outbound) -> None:
        self.core = core
        self.ranking = ranking
        self.outbound = outbound
        #: what else an accept does in its unit of work (a booked visit's reminders)
        self.on_accepted: list[Callable[[Tx, Ticket], Awaitable[None]]] = []
        outbound.serve(
            PURPOSE,
            Purpose(
                answered=self._answered,
                wanted=self._wanted,
                ringing=self._ringing,
                ended=self._ended,
                failed=self._failed,
            ),
        )

    # -- starting a cascade -----------------------------------------------------------------
    async def dispatch(
        self, ticket_id: int, *, user: User | None, merchant_ids: Sequence[int] | None = None
    ) -> Ticket:
        """Start (or restart) the offer cascade, along the ranking or the operator's pick;
        `ConsentRequired` while the category asks for a consent not recorded yet."""
        core = self.core
        async with core.store.tx() as tx:
            ticket = await core.get(tx, Ticket, ticket_id, "ticket")
            refuse_operator_task(ticket)
            if ticket.needs_consent and ticket.consented_at is None:
                raise ConsentRequired(ticket_id)
            if ticket.state == tm.TicketState.OFFERING:
                raise IllegalTransition("ticket", ticket.state, tm.StartMatching())
            state, commands = tm.transition(ticket.state, tm.StartMatching())
            ranking = await self.ranking.rank(tx.session, ticket)
            eligible = [c.merchant_id for c in ranking if c.eligible]
            if merchant_ids:
                # the operator may pick any merchant that takes the category, near or not
                index = await self.ranking.merchant_index(tx.session)
                known = {m.id for m in index.for_category(ticket.category_code)}
                unknown = [m for m in merchant_ids if m not in known]
                if unknown:
                    raise Invalid(f"merchants {unknown} do not take this category")
                plan = list(dict.fromkeys([*merchant_ids, *eligible]))
            else:
                plan = eligible
            await core.cas(tx, ticket, state=state, plan=plan)
            tx.emit(
                "ticket.matching",
                "ticket",
                ticket.id,
                actor=actor(user),
                plan=plan,
                candidates=len(ranking),
            )
            await core.fx.ticket(tx, ticket, commands)
            await self.fill(tx, ticket)
        return ticket

    def _width(self, ticket: Ticket) -> int:
        config = self.core.config
        if ticket.urgency == "emergency":
            return max(1, config.parallel_offers_emergency)
        if ticket.urgency == "urgent":
            return max(1, config.parallel_offers_urgent)
        return max(1, config.parallel_offers)

    def _timeout_s(self, ticket: Ticket) -> float:
        """How long an offer of this ticket stays open (minutes, not more, for emergencies)."""
        config = self.core.config
        if ticket.urgency == "emergency":
            return min(config.offer_timeout_s, config.emergency_offer_timeout_s)
        return config.offer_timeout_s

    async def fill(self, tx: Tx, ticket: Ticket) -> list[Offer]:
        """Place offers until the ticket has as many live ones as it may; or give up.

        Each offer's timer is scheduled and its call placed after the commit.
        """
        core = self.core
        offers = await self._of_ticket(tx, ticket)
        live = [o for o in offers if o.state in om.LIVE]
        tried = {o.merchant_id for o in offers}
        loads = await self.ranking.loads(tx.session)
        placed: list[Offer] = []
        now = core.now()
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
                expires_at=now + timedelta(seconds=self._timeout_s(ticket)),
            )
            tx.session.add(offer)
            await tx.session.flush()
            core.fx.after_commit(tx, TouchMerchant(merchant_id))
            call = self.outbound.record(
                tx,
                ref=offer.call_ref,
                number=offer.phone,
                purpose=PURPOSE,
                ticket_id=ticket.id,
                offer_id=offer.id,
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
            assert offer.expires_at is not None
            core.fx.after_commit(tx, ScheduleTimer(TimerKey.offer(offer.id), offer.expires_at))
            # an emergency's responders hear short rings: the next one is tried sooner
            ring_s = core.config.emergency_ring_s if ticket.urgency == "emergency" else None
            self.outbound.place(tx, call, ring_s=ring_s)
            placed.append(offer)
        if placed:
            if ticket.state != tm.TicketState.OFFERING:
                state, commands = tm.transition(ticket.state, tm.OffersPlaced())
                await core.cas(tx, ticket, state=state)
                tx.emit("ticket.offering", "ticket", ticket.id)
                await core.fx.ticket(tx, ticket, commands)
        elif not live:
            state, commands = tm.transition(ticket.state, tm.NobodyAvailable())
            await core.cas(tx, ticket, state=state)
            tx.emit("ticket.unassigned", "ticket", ticket.id, reason="nobody accepted")
            await core.fx.ticket(tx, ticket, commands)
        return placed

    async def _of_ticket(self, tx: Tx, ticket: Ticket) -> Sequence[Offer]:
        return (
            (await tx.session.execute(select(Offer).where(col(Offer.ticket_id) == ticket.id)))
            .scalars()
            .all()
        )

    # -- an offer's outcome --------------------------------------------------------------------
    async def outcome(
        self, tx: Tx, offer: Offer, event: om.OfferEvent, *, keep_call: bool = False
    ) -> None:
        """Apply an offer event; the cascade moves on when the offer is refused.

        `keep_call`: the offer's call is not hung up, because a flow still has something
        to tell the merchant and hangs up itself.
        """
        state, commands = om.transition(offer.state, event)
        await self.core.cas(tx, offer, state=state, decided_at=self.core.now())
        tx.emit(
            "offer." + state.value,
            "ticket",
            offer.ticket_id,
            offer_id=offer.id,
            merchant_id=offer.merchant_id,
        )
        await self.core.fx.offer(tx, offer, commands, keep_call=keep_call)

    async def next_candidate(self, tx: Tx, offer: Offer) -> None:
        """The follow-up of a refused offer: the ticket's next offers, while it is offering."""
        ticket = await self.core.get(tx, Ticket, offer.ticket_id, "ticket")
        if ticket.state == tm.TicketState.OFFERING:
            await self.fill(tx, ticket)

    async def decided(self, ref: str, outcome: str) -> None:
        """A merchant pressed a key on an offer call.

        On "1" the call waits on the line (the flow's `STAY`) while the acceptance is
        committed; only then is the merchant thanked and told the code word, or told that
        the order has gone to someone else. A crash before the commit leaves a merchant
        who heard nothing, never one holding a code word for a job that is not theirs.
        """
        core = self.core
        async with core.store.tx() as tx:
            call = await core.call_by_ref(tx, ref)
            if call is None or call.offer_id is None:
                return
            offer = await core.get(tx, Offer, call.offer_id, "offer")
            told: PlayFlow | None = None
            if offer.state not in om.LIVE:
                tx.emit(
                    "offer.late_answer",
                    "ticket",
                    offer.ticket_id,
                    offer_id=offer.id,
                    outcome=outcome,
                )
                if outcome == "accepted":
                    told = PlayFlow(ref, "merchant_taken")
            elif outcome == "accepted":
                ticket = await self._accept(tx, offer, actor="merchant", keep_call=True)
                if ticket is None:
                    told = PlayFlow(ref, "merchant_taken")
                else:
                    told = PlayFlow(ref, "merchant_accepted", {"code_word": ticket.code_word})
            elif outcome == "declined":
                await self.outcome(tx, offer, om.Decline())
            else:
                await self.outcome(tx, offer, om.Unreached(om.OfferState.NO_ANSWER))
            if told is not None:
                core.fx.after_commit(tx, told)

    async def _accept(
        self, tx: Tx, offer: Offer, *, actor: str, keep_call: bool = False
    ) -> Ticket | None:
        """Accept an offer: the ticket, or None when another merchant won the race (this
        offer is withdrawn, nothing is double-booked)."""
        core = self.core
        ticket = await core.get(tx, Ticket, offer.ticket_id, "ticket")
        if ticket.state != tm.TicketState.OFFERING:
            if offer.state in om.LIVE:
                await self.outcome(tx, offer, om.Withdraw(), keep_call=keep_call)
            return None
        state, commands = om.transition(offer.state, om.Accept())
        await core.cas(tx, offer, state=state, decided_at=core.now())
        await core.fx.offer(tx, offer, commands, keep_call=keep_call)
        tstate, tcommands = tm.transition(ticket.state, tm.MerchantAccepted(offer.merchant_id))
        await core.cas(
            tx, ticket, state=tstate, merchant_id=offer.merchant_id, accepted_at=core.now()
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
        await core.fx.ticket(tx, ticket, tcommands)
        for hook in self.on_accepted:
            await hook(tx, ticket)
        return ticket

    async def withdraw_other_offers(self, tx: Tx, ticket: Ticket) -> None:
        """The follow-up of an accept: every other live offer of the ticket is withdrawn."""
        for other in await self._of_ticket(tx, ticket):
            if other.state not in om.LIVE:
                continue
            state, commands = om.transition(other.state, om.Withdraw())
            await self.core.cas(tx, other, state=state, decided_at=self.core.now())
            tx.emit(
                "offer.withdrawn",
                "ticket",
                ticket.id,
                offer_id=other.id,
                merchant_id=other.merchant_id,
            )
            await self.core.fx.offer(tx, other, commands)

    async def withdraw_live(self, tx: Tx, ticket: Ticket) -> None:
        """A cancelled ticket's live offers end (their calls are hung up after the commit)."""
        for offer in await self._of_ticket(tx, ticket):
            if offer.state in om.LIVE:
                state, commands = om.transition(offer.state, om.Withdraw())
                await self.core.cas(tx, offer, state=state)
                await self.core.fx.offer(tx, offer, commands)

    async def accept_offer(self, offer_id: int, *, user: User) -> Ticket:
        """A merchant (or an operator on their behalf) accepts an offer from the console."""
        core = self.core
        async with core.store.tx() as tx:
            offer = await core.get(tx, Offer, offer_id, "offer")
            if user.merchant_id is not None and user.merchant_id != offer.merchant_id:
                raise repo.NotFound("offer", offer_id)
            if offer.state not in om.LIVE:
                raise IllegalTransition("offer", offer.state, om.Accept())
            accepted = await self._accept(tx, offer, actor=user.username)
            ticket = await core.get(tx, Ticket, offer.ticket_id, "ticket")
            if accepted is not None:
                # a phone line that is down must not turn the committed accept into an error
                core.fx.after_commit(
                    tx, Hangup(offer.call_ref), CancelTimer(TimerKey.offer(offer_id))
                )
        if accepted is None:
            # the withdrawal is committed; the refusal says another merchant won
            raise IllegalTransition("ticket", ticket.state, tm.MerchantAccepted(offer.merchant_id))
        return ticket

    async def decline_offer(self, offer_id: int, *, user: User) -> None:
        """A merchant refuses an offer from their page; the cascade moves on at once."""
        core = self.core
        async with core.store.tx() as tx:
            offer = await core.get(tx, Offer, offer_id, "offer")
            if user.merchant_id is not None and user.merchant_id != offer.merchant_id:
                raise repo.NotFound("offer", offer_id)
            await self.outcome(tx, offer, om.Decline())
            core.fx.after_commit(tx, CancelTimer(TimerKey.offer(offer_id)))

    async def on_timeout(self, offer_id: int) -> None:
        """An offer's timeout: it expires, unless its call never rang (it waits for the
        phone line; it gets its full timeout once dialled)."""
        core = self.core
        async with core.store.tx() as tx:
            offer = await tx.session.get(Offer, offer_id, populate_existing=True)
            if offer is None or offer.state not in om.LIVE:
                return
            call = await core.call_by_ref(tx, offer.call_ref)
            if call is not None and undialed(call):
                at = core.now() + timedelta(seconds=core.config.offer_timeout_s)
                log.info("offer %s waits for the phone line; not expired", offer_id)
                core.fx.after_commit(tx, ScheduleTimer(TimerKey.offer(offer_id), at))
                return
            await self.outcome(tx, offer, om.Expire())

    async def expire_lost(self, tx: Tx, offer: Offer) -> None:
        """The offer's call was lost in a restart: the offer expires, the cascade moves on
        (its ref is never placed again)."""
        if offer.state in om.LIVE:
            log.info("offer %s: call %s lost in a restart; expired", offer.id, offer.call_ref)
            await self.outcome(tx, offer, om.Expire())

    # -- no-shows ------------------------------------------------------------------------------
    async def no_show(self, tx: Tx, ticket: Ticket) -> None:
        """The accepted merchant never arrived: mark the offer, re-offer the ticket."""
        core = self.core
        merchant_id = ticket.merchant_id
        for offer in await self._of_ticket(tx, ticket):
            if offer.state == om.OfferState.ACCEPTED and offer.merchant_id == merchant_id:
                state, commands = om.transition(offer.state, om.NoShow())
                await core.cas(tx, offer, state=state, decided_at=core.now())
                await core.fx.offer(tx, offer, commands)
        tstate, tcommands = tm.transition(ticket.state, tm.NoShow())
        await core.cas(tx, ticket, state=tstate, merchant_id=None, accepted_at=None)
        tx.emit("ticket.no_show", "ticket", ticket.id, merchant_id=merchant_id)
        await core.fx.ticket(tx, ticket, tcommands)

    async def redispatch(self, tx: Tx, ticket: Ticket) -> None:
        """The follow-up of a no-show: a new plan without the merchants tried, new offers."""
        tried = [o.merchant_id for o in await self._of_ticket(tx, ticket)]
        ranking = await self.ranking.rank(tx.session, ticket, exclude=tried)
        plan = [c.merchant_id for c in ranking if c.eligible]
        await self.core.cas(tx, ticket, plan=plan)
        tx.emit("ticket.matching", "ticket", ticket.id, plan=plan, redispatch=True)
        await self.fill(tx, ticket)

    # -- reads ------------------------------------------------------------------------------
    async def offers(self, ticket_id: int) -> Sequence[Offer]:
        """A ticket's offers, in the order they were made."""
        async with self.core.store.read() as session:
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

    # -- the offer call (purpose "offer") -------------------------------------------------------
    async def _ringing(self, tx: Tx, call: Call) -> None:
        if call.offer_id is None:
            return
        offer = await self.core.get(tx, Offer, call.offer_id, "offer")
        if offer.state == om.OfferState.PLACED:
            state, commands = om.transition(offer.state, om.Ringing())
            await self.core.cas(tx, offer, state=state)
            tx.emit(
                "offer.ringing",
                "ticket",
                offer.ticket_id,
                offer_id=offer.id,
                merchant_id=offer.merchant_id,
            )
            await self.core.fx.offer(tx, offer, commands)

    async def _answered(self, tx: Tx, call: Call) -> list[Command]:
        """The merchant picked up: they hear the order (never the resident's number)."""
        if call.ticket_id is None or call.offer_id is None:
            return []
        ticket, category, resident = await ticket_parts(tx, call.ticket_id)
        offer = await self.core.get(tx, Offer, call.offer_id, "offer")
        # a call the backend lost and that was replaced no longer carries the offer
        if offer.state not in om.LIVE or offer.call_ref != call.ref:
            return []
        state, commands = om.transition(offer.state, om.Answered())
        await self.core.cas(tx, offer, state=state)
        tx.emit(
            "offer.answered",
            "ticket",
            ticket.id,
            offer_id=offer.id,
            merchant_id=offer.merchant_id,
        )
        await self.core.fx.offer(tx, offer, commands)
        context = {
            "category": category.name_zh,
            "description": ticket.description or category.name_zh,
            # the merchant hears where to go, never the resident's number
            "address": resident.address if resident else "",
            "deadline": ticket.deadline_at or "",
            "code_word": ticket.code_word,
            # who pays and how much, as the merchant's price note says
            **await spoken_price(tx.session, offer.merchant_id, category.code),
            # a booked visit: the slot, which the merchant's 1 accepts (dispatch.booking)
            **slot_context(ticket),
        }
        return [PlayFlow(call.ref, "merchant_offer", context)]

    async def _ended(self, tx: Tx, call: Call) -> None:
        """The offer call hung up without 1 or 2: no answer."""
        if call.offer_id is None:
            return
        offer = await self.core.get(tx, Offer, call.offer_id, "offer")
        if offer.state in om.LIVE:
            await self.outcome(tx, offer, om.Unreached(om.OfferState.NO_ANSWER))

    async def _failed(self, tx: Tx, call: Call, reason: OriginateFailure) -> None:
        if call.offer_id is None:
            return
        offer = await self.core.get(tx, Offer, call.offer_id, "offer")
        if offer.state in om.LIVE and offer.call_ref == call.ref:
            await self.outcome(tx, offer, om.Unreached(UNREACHED[reason]))

    async def _wanted(self, tx: Tx, call: Call) -> bool:
        if call.offer_id is None:
            return True
        offer = await tx.session.get(Offer, call.offer_id, populate_existing=True)
        return offer is not None and offer.state in om.LIVE and offer.call_ref == call.ref
