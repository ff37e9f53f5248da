"""Booked visits: a ticket with a date and a time window ("doctor on Thursday morning",
Asia/Shanghai) instead of "as soon as possible".

- The operator books the window on a ticket not being offered yet (new, unassigned) or
  accepted already (the visit moves: see below). The ticket's deadline becomes the
  window's end (its `deadline:` timer moves with it).
- Matching (`dispatch.ranking`, `dispatch.matching.open_during`) takes merchants open
  during the window, not now; the offer call reads the slot and the merchant's 1 accepts
  it (`merchant_offer`, `dispatch.booking_slot.slot_context`).
- An accept writes the visit's reminder (`dispatch.reminders`, kind `visit`): the
  resident is called the day before and an hour before, never in the quiet hours; 1
  confirms, 2 (cancel or move) puts them in the operators' queue with the ticket.
- The merchant who accepted is reminded the day before, two hours ahead of the resident
  (the same reminders, with `merchant_id`): 1 confirms, 2 cancels. They may also cancel
  on their page or the API (an operator on their behalf). A cancel: the offer becomes
  `cancelled`, the ticket goes back to offering and the cascade re-opens at once with the
  candidates open in the window, not tried yet
  (`ticket.Redispatch`); nobody left: unassigned, operators alerted. Moving an accepted
  visit to another window is the same release, then the cascade for the new window.

Every step is a `booking.*` event on the ticket's timeline. Restart safety: the window
is on the ticket row; the reminders are the reminder rows and their `reminder:` timers
(repaired by the reconciler); the re-opened cascade is offers and their `offer:` timers.
"""

from __future__ import annotations

import logging
from datetime import date, time, timedelta

from sqlalchemy import select
from sqlmodel import col

from dispatch.booking_slot import Window, window, window_of
from dispatch.core import Core, actor
from dispatch.effects import ScheduleTimer
from dispatch.errors import Conflict, Invalid
from dispatch.machines import offer as om
from dispatch.machines import ticket as tm
from dispatch.models import Offer, Reminder, Ticket
from dispatch.offers import Offers, refuse_operator_task
from dispatch.reminders import Reminders
from dispatch.timer_keys import TimerKey
from eventlog.clock import LOCAL_TZ
from eventlog.store import Tx
from registry import repository as repo
from registry.models import User

log = logging.getLogger(__name__)

#: how far ahead a visit may be booked
MAX_DAYS_AHEAD = 60
#: states in which a window may be booked or cleared (accepted: the visit moves)
BOOKABLE = frozenset({tm.TicketState.NEW, tm.TicketState.UNASSIGNED, tm.TicketState.ACCEPTED})


class NotBookable(Conflict):
    """The ticket is being offered, served or closed: its window cannot change now."""

    error_id = "not_bookable"

    def __init__(self, ticket_id: int, state: str) -> None:
        super().__init__(f"ticket {ticket_id} is {state}: its booked window cannot change now")
        self.details = {"ticket_id": ticket_id, "state": state}


class NotBooked(Conflict):
    """Only an accepted booked visit can be cancelled by its merchant."""

    error_id = "not_booked"

    def __init__(self, ticket_id: int, state: str) -> None:
        super().__init__(f"ticket {ticket_id} ({state}) is no accepted booked visit")
        self.details = {"ticket_id": ticket_id, "state": state}


class Booking:
    """A ticket's booked window, its reminders, and a merchant cancelling it."""

    def __init__(self, core: Core, offers: Offers, reminders: Reminders) -> None:
        self.core = core
        self.offers = offers
        self.reminders = reminders
        offers.on_accepted.append(self._accepted)
        reminders.on_cancelled.append(self._declined_at_reminder)

    def _check(self, on: date, start: time, end: time) -> Window:
        if start >= end:
            raise Invalid("the window's start must be before its end")
        slot = window(on, start.replace(second=0, microsecond=0),
                      end.replace(second=0, microsecond=0))  # fmt: skip
        now = self.core.now()
        if slot.end <= now:
            raise Invalid("the window is over already")
        if on > now.astimezone(LOCAL_TZ).date() + timedelta(days=MAX_DAYS_AHEAD):
            raise Invalid(f"a visit is booked at most {MAX_DAYS_AHEAD} days ahead")
        return slot

    async def book(self, ticket_id: int, *, user: User, on: date, start: time, end: time) -> Ticket:
        """Book (or move) a ticket's window; its deadline is the window's end. An accepted
        visit moves: its merchant is released and the cascade re-opens for the new window."""
        slot = self._check(on, start, end)
        core = self.core
        async with core.store.tx() as tx:
            ticket = await core.get(tx, Ticket, ticket_id, "ticket")
            refuse_operator_task(ticket)
            if ticket.state not in BOOKABLE:
                raise NotBookable(ticket_id, ticket.state.value)
            before = window_of(ticket)
            local_start, local_end = slot.start.astimezone(LOCAL_TZ), slot.end.astimezone(LOCAL_TZ)
            await core.cas(
                tx, ticket, booked_on=local_start.date(), booked_from=local_start.time(),
                booked_until=local_end.time(), deadline_at=slot.end, escalation_level=0,
            )  # fmt: skip
            tx.emit(
                "booking.moved" if before is not None else "booking.booked", "ticket", ticket.id,
                actor=actor(user), **slot.public(),
                before=before.public() if before is not None else None,
            )  # fmt: skip
            core.fx.after_commit(tx, ScheduleTimer(TimerKey.deadline(ticket.id), slot.end))
            if ticket.state == tm.TicketState.ACCEPTED and before != slot:
                await self._release(tx, ticket, who=actor(user), why="moved")
        return ticket

    async def clear(self, ticket_id: int, *, user: User) -> Ticket:
        """A ticket not offered yet goes back to "as soon as possible" (its deadline stays
        the window's end, so it is not late at once)."""
        core = self.core
        async with core.store.tx() as tx:
            ticket = await core.get(tx, Ticket, ticket_id, "ticket")
            if ticket.state not in (tm.TicketState.NEW, tm.TicketState.UNASSIGNED):
                raise NotBookable(ticket_id, ticket.state.value)
            if window_of(ticket) is None:
                return ticket
            await core.cas(tx, ticket, booked_on=None, booked_from=None, booked_until=None)
            tx.emit("booking.cleared", "ticket", ticket.id, actor=actor(user))
        return ticket

    async def cancel_by_merchant(self, ticket_id: int, *, user: User, reason: str = "") -> Ticket:
        """The merchant who accepted a booked visit cannot come (their page, the API, or an
        operator on their behalf): the cascade re-opens in time."""
        core = self.core
        async with core.store.tx() as tx:
            ticket = await core.get(tx, Ticket, ticket_id, "ticket")
            if user.merchant_id is not None and user.merchant_id != ticket.merchant_id:
                raise repo.NotFound("ticket", ticket_id)
            if ticket.state != tm.TicketState.ACCEPTED or window_of(ticket) is None:
                raise NotBooked(ticket_id, ticket.state.value)
            await self._release(tx, ticket, who=actor(user), why="merchant", reason=reason)
        return ticket

    async def _release(
        self, tx: Tx, ticket: Ticket, *, who: str, why: str, reason: str = ""
    ) -> None:
        """The accepted merchant no longer holds the visit: their offer is cancelled, the
        reminders stop, the ticket goes back to offering and the cascade re-opens (the
        ticket machine's `Redispatch`, in this unit of work)."""
        core = self.core
        merchant_id = ticket.merchant_id
        offers = await tx.session.execute(
            select(Offer).where(
                col(Offer.ticket_id) == ticket.id,
                col(Offer.merchant_id) == merchant_id,
                col(Offer.state) == om.OfferState.ACCEPTED,
            )
        )
        for offer in offers.scalars().all():
            state, commands = om.transition(offer.state, om.MerchantCancel())
            await core.cas(tx, offer, state=state, decided_at=core.now())
            tx.emit("offer.cancelled", "ticket", ticket.id, offer_id=offer.id,
                    merchant_id=offer.merchant_id)  # fmt: skip
            await core.fx.offer(tx, offer, commands)
        tstate, tcommands = tm.transition(ticket.state, tm.MerchantCancelled())
        await core.cas(tx, ticket, state=tstate, merchant_id=None, accepted_at=None)
        # a move releases the merchant too; a cancel is the merchant's own (figures, scorecard)
        name = "booking.released" if why == "moved" else "booking.merchant_cancelled"
        tx.emit(name, "ticket", ticket.id, actor=who, merchant_id=merchant_id, why=why,
                reason=reason[:200])  # fmt: skip
        await self.reminders.book_visit(tx, ticket, None, actor=who)
        await core.fx.ticket(tx, ticket, tcommands)

    async def _accepted(self, tx: Tx, ticket: Ticket) -> None:
        """An accept of a booked visit: the merchant took the slot; the resident's
        reminders (the day before, an hour before) are written."""
        slot = window_of(ticket)
        if slot is None:
            return
        tx.emit("booking.confirmed", "ticket", ticket.id, merchant_id=ticket.merchant_id,
                **slot.public())  # fmt: skip
        await self.reminders.book_visit(tx, ticket, slot, actor="system")

    async def _declined_at_reminder(self, tx: Tx, rem: Reminder) -> None:
        """The merchant pressed 2 on the day-before reminder: the visit goes to others."""
        ticket = await tx.session.get(Ticket, rem.ticket_id, populate_existing=True)
        if (
            ticket is None
            or ticket.state != tm.TicketState.ACCEPTED
            or ticket.merchant_id != rem.merchant_id
            or window_of(ticket) is None
        ):
            log.info("reminder %s: a cancel for a visit no longer booked", rem.id)
            return
        await self._release(tx, ticket, who="merchant", why="reminder")
