"""Merchant check-ins by keypad: the service calls the accepted merchant, who presses 1 to
report arrival (`merchant_arrival`) or completion (`merchant_completion`)."""

from __future__ import annotations

import logging
from uuid import uuid4

from sqlalchemy import select
from sqlmodel import col

from dispatch.core import ACTIVE_TICKET_STATES, Core, actor
from dispatch.effects import Command, PlayFlow
from dispatch.errors import Invalid
from dispatch.machines import IllegalTransition
from dispatch.machines import ticket as tm
from dispatch.models import Call, Ticket
from dispatch.outbound import Outbound, Purpose, ticket_parts
from dispatch.tickets import Tickets
from eventlog.store import Tx
from registry.models import Merchant, User

log = logging.getLogger(__name__)

#: check-in kind -> the ticket states in which the call still makes sense
KINDS = {
    "arrival": (tm.TicketState.ACCEPTED,),
    "completion": ACTIVE_TICKET_STATES,
}


class CheckIns:
    """Calls that let a merchant report arrival or completion by keypad."""

    def __init__(self, core: Core, outbound: Outbound, tickets: Tickets) -> None:
        self.core = core
        self.outbound = outbound
        self.tickets = tickets
        for kind in KINDS:
            outbound.serve(
                kind, Purpose(answered=self._answered, wanted=self._wanted, own_caller_id=False)
            )

    async def check_in(self, ticket_id: int, *, kind: str, user: User | None) -> str:
        """Call the accepted merchant to report arrival (1) or completion (1) by keypad."""
        if kind not in KINDS:
            raise Invalid(f"unknown check-in {kind!r}")
        core = self.core
        async with core.store.tx() as tx:
            ticket = await core.get(tx, Ticket, ticket_id, "ticket")
            if ticket.state not in KINDS[kind] or ticket.merchant_id is None:
                raise IllegalTransition("ticket", ticket.state, tm.Arrived())
            merchant = await core.get(tx, Merchant, ticket.merchant_id, "merchant")
            if not merchant.phones:
                raise Invalid(f"merchant {merchant.id} has no phone")
            call = self.outbound.record(
                tx,
                ref=f"{kind}-{ticket.id}-{uuid4().hex[:8]}",
                number=merchant.phones[0],
                purpose=kind,
                ticket_id=ticket.id,
            )
            tx.emit(
                "ticket.check_in",
                "ticket",
                ticket.id,
                actor=actor(user),
                kind=kind,
                merchant_id=merchant.id,
            )
            self.outbound.place(tx, call)
        return call.ref

    async def finished(self, ref: str, outcome: str) -> None:
        """The merchant pressed a key on a check-in call."""
        async with self.core.store.read() as session:
            call = (
                (await session.execute(select(Call).where(col(Call.ref) == ref))).scalars().first()
            )
        if call is None or call.ticket_id is None:
            return
        try:
            if outcome == "arrived":
                await self.tickets.arrive(call.ticket_id, user=None, actor="merchant")
            elif outcome == "completed":
                await self.tickets.complete(call.ticket_id, user=None, actor="merchant")
            elif outcome in ("not_yet", "not_completed"):
                async with self.core.store.tx() as tx:
                    tx.emit(f"ticket.{outcome}", "ticket", call.ticket_id, actor="merchant")
        except IllegalTransition:
            log.info("ticket %s: check-in %s came too late (%s)", call.ticket_id, ref, outcome)

    # -- the check-in call (purposes "arrival", "completion") --------------------------------
    async def _answered(self, tx: Tx, call: Call) -> list[Command]:
        if call.ticket_id is None:
            return []
        _, category, resident = await ticket_parts(tx, call.ticket_id)
        context = {"category": category.name_zh, "address": resident.address if resident else ""}
        return [PlayFlow(call.ref, f"merchant_{call.purpose}", context)]

    async def _wanted(self, tx: Tx, call: Call) -> bool:
        if call.ticket_id is None:
            return False
        ticket = await tx.session.get(Ticket, call.ticket_id, populate_existing=True)
        return ticket is not None and ticket.state in KINDS[call.purpose]
