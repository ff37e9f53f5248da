"""Tickets (工单): a need recorded with its category's deadline, then arrived, completed,
cancelled, repeated ("same as last time"), and escalated when late.

The cascade of offers is `dispatch.offers`; the survey after completion is
`dispatch.surveys`. Deadlines: two timers per ticket (`deadline:` and `escalate:`); what
a late ticket means is decided by the pure `dispatch.deadlines` and carried out here.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, select, update
from sqlmodel import col

from dispatch import deadlines as dl
from dispatch.core import Core, actor
from dispatch.effects import CancelTimer, Command, ScheduleTimer
from dispatch.errors import AlreadyAssigned, Invalid, NotAssignable, TicketClosed, TicketExists
from dispatch.machines import ticket as tm
from dispatch.models import Call, Ticket
from dispatch.offers import Offers, refuse_operator_task
from dispatch.timer_keys import TICKET_KINDS, Kind, TimerKey
from eventlog.store import Tx
from ivr.flow import Branch
from registry import repository as repo
from registry.catalog import OPERATOR_TASKS
from registry.models import Role, User

log = logging.getLogger(__name__)

#: the hotline's variable for "same as last time" (set at the start of a known caller's call)
LAST_CATEGORY = "last_category"


class Tickets:
    """Record, move and close tickets; escalate late ones."""

    def __init__(self, core: Core, offers: Offers) -> None:
        self.core = core
        self.offers = offers

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
        async with self.core.store.tx() as tx:
            return await self.add_ticket(
                tx, user=user, category=category, description=description,
                resident_id=resident_id, call_id=call_id, created_at=created_at,
                repeat_of=repeat_of,
            )  # fmt: skip

    async def add_ticket(
        self,
        tx: Tx,
        *,
        user: User | None,
        category: str,
        description: str = "",
        resident_id: int | None = None,
        call_id: int | None = None,
        created_at: datetime | None = None,
        repeat_of: int | None = None,
    ) -> Ticket:
        """`create_ticket` inside a unit of work of the caller's (an operator task opened
        together with what caused it)."""
        core = self.core
        try:
            cat = await repo.get_category(tx.session, code=category)
        except repo.NotFound as exc:
            raise Invalid(f"unknown category {category!r}") from exc
        replaces: int | None = None
        # a call back is the operators' own task: it may follow a caller's order
        task = cat.code in OPERATOR_TASKS
        if call_id is not None:
            call = await core.get(tx, Call, call_id, "call")
            resident_id = resident_id or call.resident_id
            replaces = None if task else await self._replaceable(tx, call)
        grid: str | None = None
        if resident_id is not None:
            grid = (await repo.get_resident(tx.session, resident_id=resident_id)).grid_code
        now = created_at or core.now()
        ticket = Ticket(
            resident_id=resident_id,
            call_id=call_id,
            category_code=cat.code,
            description=description,
            urgency=cat.urgency.value,
            deadline_at=now + timedelta(minutes=cat.deadline_minutes),
            code_word=f"{secrets.randbelow(10000):04d}",
            created_by=actor(user),
            # the desk that records a need looks after it until it is reassigned
            assigned_to=user.id if user is not None and user.merchant_id is None else None,
            created_at=now,
            repeat_of=repeat_of,
            needs_consent=cat.needs_consent,
        )
        tx.session.add(ticket)
        await tx.session.flush()
        if call_id is not None:
            # one ticket per call, atomically: of two clicks (or two tabs) racing, the
            # second finds the call's ticket set and is refused
            link = update(Call).where(col(Call.id) == call_id).values(ticket_id=ticket.id)
            if not task:
                link = link.where(
                    col(Call.ticket_id).is_(None)
                    if replaces is None
                    else col(Call.ticket_id) == replaces
                )
            taken = await tx.session.execute(link)
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                current = await core.get(tx, Call, call_id, "call")
                raise TicketExists(call_id, current.ticket_id or 0)
        tx.emit(
            "ticket.created",
            "ticket",
            ticket.id,
            actor=actor(user),
            category=cat.code,
            urgency=cat.urgency.value,
            resident_id=resident_id,
            grid=grid,
            call_id=call_id,
            repeat_of=repeat_of,
            deadline_at=ticket.deadline_at.isoformat() if ticket.deadline_at else None,
        )
        assert ticket.deadline_at is not None
        core.fx.after_commit(tx, ScheduleTimer(TimerKey.deadline(ticket.id), ticket.deadline_at))
        return ticket

    async def _replaceable(self, tx: Tx, call: Call) -> int | None:
        """The call's ticket a new one may replace (a cancelled one, a call back);
        `TicketExists` when the call has a live order already."""
        if call.ticket_id is None:
            return None
        current = await tx.session.get(Ticket, call.ticket_id)
        if (
            current is not None
            and current.state != tm.TicketState.CANCELLED
            and current.category_code not in OPERATOR_TASKS
        ):
            assert call.id is not None
            raise TicketExists(call.id, call.ticket_id)
        return call.ticket_id

    async def get_ticket(self, ticket_id: int) -> Ticket:
        """A ticket by id."""
        async with self.core.store.read() as session:
            ticket = await session.get(Ticket, ticket_id)
            if ticket is None:
                raise repo.NotFound("ticket", ticket_id)
            return ticket

    async def _ticket_event(
        self,
        ticket_id: int,
        event: tm.TicketEvent,
        *,
        user: User | None,
        name: str,
        actor_: str = "system",
        then: tuple[Command, ...] = (),
        **values: Any,
    ) -> Ticket:
        """Apply one event to a ticket a user (a merchant: only their own) acts on."""
        core = self.core
        async with core.store.tx() as tx:
            ticket = await core.get(tx, Ticket, ticket_id, "ticket")
            if (
                user is not None
                and user.merchant_id is not None
                and (ticket.merchant_id != user.merchant_id)
            ):
                raise repo.NotFound("ticket", ticket_id)
            state, commands = tm.transition(ticket.state, event)
            await core.cas(tx, ticket, state=state, **values)
            tx.emit(
                name,
                "ticket",
                ticket.id,
                actor=actor(user) if user is not None else actor_,
                merchant_id=ticket.merchant_id,
            )
            await core.fx.ticket(tx, ticket, commands)
            core.fx.after_commit(tx, *then)
        return ticket

    async def arrive(self, ticket_id: int, *, user: User | None, actor: str = "system") -> Ticket:
        """The merchant is at the door (console, or the merchant's keypad)."""
        return await self._ticket_event(
            ticket_id,
            tm.Arrived(),
            user=user,
            name="ticket.arrived",
            actor_=actor,
            arrived_at=self.core.now(),
        )

    async def complete(self, ticket_id: int, *, user: User | None, actor: str = "system") -> Ticket:
        """The visit is done; the survey call is scheduled, the deadline timers go."""
        return await self._ticket_event(
            ticket_id,
            tm.Completed(),
            user=user,
            name="ticket.completed",
            actor_=actor,
            then=(
                CancelTimer(TimerKey.deadline(ticket_id)),
                CancelTimer(TimerKey.escalate(ticket_id)),
            ),
            completed_at=self.core.now(),
        )

    async def cancel(self, ticket_id: int, *, user: User, reason: str) -> Ticket:
        """Cancel a ticket and withdraw its live offers."""
        core = self.core
        async with core.store.tx() as tx:
            ticket = await core.get(tx, Ticket, ticket_id, "ticket")
            await self.cancel_in(tx, ticket, actor=user.username, reason=reason)
        return ticket

    async def cancel_in(self, tx: Tx, ticket: Ticket, *, actor: str, reason: str) -> None:
        """Cancel a ticket inside a unit of work (an incident takes over a caller's own)."""
        core = self.core
        state, commands = tm.transition(ticket.state, tm.Cancel(reason))
        await core.cas(tx, ticket, state=state, closed_at=core.now())
        tx.emit("ticket.cancelled", "ticket", ticket.id, actor=actor, reason=reason[:200])
        await core.fx.ticket(tx, ticket, commands)
        await self.offers.withdraw_live(tx, ticket)
        core.fx.after_commit(
            tx, *(CancelTimer(TimerKey.of(kind, ticket.id)) for kind in TICKET_KINDS)
        )

    # -- the board's actions: a note, reassigning ---------------------------------------------
    async def add_note(self, ticket_id: int, *, user: User, text: str) -> dict[str, Any]:
        """An operator's note on the ticket's timeline (any state: a closed ticket may still
        need "family rang back, all well"). The note is the event; the ticket row is not
        touched, so a note never races a merchant's accept."""
        async with self.core.store.tx() as tx:
            ticket = await self.core.get(tx, Ticket, ticket_id, "ticket")
            tx.emit("ticket.note", "ticket", ticket.id, actor=user.username, note=text[:500])
            return {"ticket_id": ticket.id, "note": text[:500], "actor": user.username}

    async def assign(self, ticket_id: int, *, user: User, to_user_id: int) -> Ticket:
        """Hand an open ticket to another operator (or a supervisor): their board's "mine"
        shows it from now. A closed ticket, or one the operator has already, is a 409; a
        merchant, an inactive or unknown user is no one to hand it to (422)."""
        core = self.core
        async with core.store.tx() as tx:
            ticket = await core.get(tx, Ticket, ticket_id, "ticket")
            if ticket.state in tm.FINAL:
                raise TicketClosed(ticket_id, ticket.state.value)
            target = await tx.session.get(User, to_user_id)
            if target is None or not target.active or target.role == Role.MERCHANT:
                raise NotAssignable(to_user_id)
            if ticket.assigned_to == to_user_id:
                raise AlreadyAssigned(ticket_id, target.display_name or target.username)
            before = ticket.assigned_to
            await core.cas(tx, ticket, assigned_to=to_user_id)
            tx.emit(
                "ticket.assigned",
                "ticket",
                ticket.id,
                actor=user.username,
                from_user_id=before,
                to_user_id=to_user_id,
                to_operator=target.display_name or target.username,
            )
        return ticket

    async def consent(self, ticket_id: int, *, user: User, who: str) -> Ticket:
        """The resident's consent (to the price) as the operator heard it, from the resident
        or the family member `who` names: a ticket whose category asks for it may be
        dispatched from now. A closed ticket is a 409."""
        core = self.core
        async with core.store.tx() as tx:
            ticket = await core.get(tx, Ticket, ticket_id, "ticket")
            if ticket.state in tm.FINAL:
                raise TicketClosed(ticket_id, ticket.state.value)
            await core.cas(tx, ticket, consent_by=who, consented_at=core.now())
            tx.emit("ticket.consented", "ticket", ticket.id, actor=user.username, who=who)
        return ticket

    async def close_follow_up(self, ticket_id: int, *, user: User, note: str) -> Ticket:
        """A supervisor closes the follow-up a "not satisfied" rating opened."""
        async with self.core.store.tx() as tx:
            ticket = await self.core.get(tx, Ticket, ticket_id, "ticket")
            if not ticket.follow_up:
                raise Invalid(f"ticket {ticket_id} has no open follow-up")
            await self.core.cas(tx, ticket, follow_up=False)
            tx.emit("followup.closed", "ticket", ticket.id, actor=user.username, note=note[:200])
        return ticket

    # -- "same as last time" -------------------------------------------------------------------
    def repeatable(self) -> frozenset[str]:
        """The categories "same as last time" can repeat: the ones the hotline menu's
        `last_category` branch leads to (an emergency, a call back, or a category the menu
        does not take by key is no order to repeat)."""
        steps = self.core.flows.get("hotline").steps.values()
        return frozenset(
            code
            for step in steps
            if isinstance(step, Branch) and step.var == LAST_CATEGORY
            for code in step.cases
        )

    def last_order_query(self, resident_id: int, category: str | None = None) -> Select[Any]:
        """The resident's latest ordinary order (in a category): what key 9 repeats."""
        stmt = select(Ticket).where(
            col(Ticket.resident_id) == resident_id,
            col(Ticket.category_code).in_(sorted(self.repeatable() - OPERATOR_TASKS)),
        )
        if category:
            stmt = stmt.where(col(Ticket.category_code) == category)
        return stmt.order_by(col(Ticket.id).desc()).limit(1)

    async def last_ticket(self, resident_id: int, category: str | None = None) -> Ticket | None:
        """The resident's most recent order (in a category), for "same as last time"."""
        async with self.core.store.read() as session:
            found = await session.execute(self.last_order_query(resident_id, category))
            return found.scalars().first()

    async def repeat(self, last: Ticket, *, user: User | None, call_id: int | None) -> Ticket:
        """A new ticket like `last` (its category and description)."""
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
        refuse_operator_task(last)
        ticket = await self.repeat(last, user=user, call_id=None)
        assert ticket.id is not None
        return await self.offers.dispatch(ticket.id, user=user)

    # -- deadlines and escalation -----------------------------------------------------------
    async def on_deadline(self, key: TimerKey) -> None:
        """A ticket's `deadline:` (operator) or `escalate:` (supervisor) timer fell due."""
        core = self.core
        async with core.store.tx() as tx:
            ticket = await tx.session.get(Ticket, key.id, populate_existing=True)
            if ticket is None:
                return
            decide = dl.on_supervisor_timer if key.kind == Kind.ESCALATE else dl.on_deadline
            decisions = decide(ticket.state, ticket.escalation_level)
            for decision in decisions:
                match decision:
                    case dl.DeclareNoShow():
                        await self.offers.no_show(tx, ticket)
                    case dl.Escalate(level=level, reason=reason):
                        await core.cas(
                            tx,
                            ticket,
                            escalated=True,
                            escalation_level=int(level),
                            escalation_reason=reason[:200],
                        )
                        who = "supervisor" if level == dl.Level.SUPERVISOR else "operator"
                        tx.emit(
                            "ticket.escalated",
                            "ticket",
                            ticket.id,
                            level=who,
                            reason=reason,
                            state=ticket.state.value,
                        )
                        tx.emit("alert.escalated", "ticket", ticket.id, level=who)
                        # late, for the family; a no-show told them already (dispatch.family)
                        if level == dl.Level.OPERATOR and dl.DeclareNoShow() not in decisions:
                            await core.fx.ticket(tx, ticket, [tm.TellFamily("late")])
                    case dl.ScheduleSupervisor():
                        if ticket.deadline_at is not None:
                            at = dl.supervisor_at(ticket.created_at, ticket.deadline_at)
                            core.fx.after_commit(
                                tx, ScheduleTimer(TimerKey.escalate(ticket.id), at)
                            )
