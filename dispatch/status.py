"""A resident with an open order who phones the hotline hears where it stands first
(flow `status`): "您的送药订单已由和平药房接单，预计十点前到". 9 hears it again, 2 then 1
cancels the order (the ticket's usual cancel: its live offers are withdrawn), 3 goes on
to the normal menu (`hotline`), 4 (an accepted order, or one in service) is a masked call
with the merchant (`dispatch.masked`), 0 (or no clear key, as in the menu) to an operator
(`Calls.to_operator`). What is said is what the ticket says: its category, the accepted
merchant's name, its deadline.

An order waiting for the resident's consent to pay (a self-paid category ordered by
keypad, or made by an operator who has not recorded it) asks for it first: 1 is the
resident's own consent by key (`ticket.consented`, by: key) and the order is dispatched
at once; 2 goes on to the status menu. The call-back task the keypad order opened for
the consent stays for the operator to close.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from dispatch.core import Core
from dispatch.effects import PlayFlow
from dispatch.errors import Conflict, Invalid
from dispatch.machines import IllegalTransition
from dispatch.machines import call as cm
from dispatch.machines import ticket as tm
from dispatch.masked import Masked
from dispatch.models import Call, Ticket
from dispatch.tickets import Tickets
from eventlog.clock import LOCAL_TZ
from ivr.prompts import pick_lang
from providers.base import FlowFinished
from registry import repository as repo
from registry.catalog import OPERATOR_TASKS
from registry.models import Merchant, Resident

log = logging.getLogger(__name__)

#: the ticket states a resident calling in hears about (the visit is not done yet)
HEARD_STATES = (
    tm.TicketState.NEW,
    tm.TicketState.MATCHING,
    tm.TicketState.OFFERING,
    tm.TicketState.UNASSIGNED,
    tm.TicketState.ACCEPTED,
    tm.TicketState.IN_SERVICE,
)


#: the order state a caller hears when their order waits for their consent to pay
AWAITING_CONSENT = "awaiting_consent"
#: who consented, when the resident pressed 1 themselves (as the console says "老人本人")
BY_KEY = "老人本人（按键）"

#: the order's part of the status flow's context (the hotline menu after it starts afresh)
ORDER_KEYS = frozenset({"order_status", "order", "category", "merchant", "deadline"})


class OrderStatus:
    """The status of a caller's open order, and what they do about it by keypad."""

    def __init__(self, core: Core, tickets: Tickets, masked: Masked | None = None) -> None:
        self.core = core
        self.tickets = tickets
        self.masked = masked

    async def context(self, session: AsyncSession, resident: Resident) -> dict[str, Any]:
        """The `status` flow's order context for the resident's latest open order, or {}."""
        ticket = (
            (
                await session.execute(
                    select(Ticket)
                    .where(
                        col(Ticket.resident_id) == resident.id,
                        col(Ticket.state).in_(HEARD_STATES),
                        col(Ticket.category_code).not_in(OPERATOR_TASKS),
                    )
                    .order_by(col(Ticket.id).desc())
                    .limit(1)
                )
            )
            .scalars()
            .first()
        )
        if ticket is None:
            return {}
        waiting = ticket.needs_consent and ticket.consented_at is None
        category = await repo.get_category(session, code=ticket.category_code)
        merchant = await session.get(Merchant, ticket.merchant_id) if ticket.merchant_id else None
        english = pick_lang(resident.language) == "en"
        return {
            # a new order waiting for the resident's consent asks for it (1 consents)
            "order_status": (
                AWAITING_CONSENT
                if waiting and ticket.state == tm.TicketState.NEW
                else ticket.state.value
            ),
            "order": str(ticket.id),
            "category": category.name_en if english else category.name_zh,
            "merchant": merchant.name if merchant else "",
            "deadline": ticket.deadline_at or "",
        }

    async def finished(self, event: FlowFinished) -> None:
        """The status menu ended without an operator: the menu, or a cancel."""
        if event.outcome == "menu":
            await self._menu(event)
        elif event.outcome == "cancel":
            await self._cancel(event)
        elif event.outcome == "connect" and self.masked is not None:
            await self.masked.resident_to_merchant(event)
        elif event.outcome == "consent":
            await self._consent(event)

    async def cancelled_told(self, event: FlowFinished) -> None:
        """The caller heard their order is cancelled: the call served itself."""
        await self._self_served(event.ref, "status_cancelled")

    async def _lang(self, call: Call) -> str:
        async with self.core.store.read() as session:
            resident = await session.get(Resident, call.resident_id) if call.resident_id else None
        return pick_lang(resident.language if resident else None)

    async def _menu(self, event: FlowFinished) -> None:
        async with self.core.store.read() as session:
            call = (
                (await session.execute(select(Call).where(col(Call.ref) == event.ref)))
                .scalars()
                .first()
            )
        if call is None or call.state != cm.CallState.IVR:
            return
        context: dict[str, Any] = {k: v for k, v in event.variables.items() if k not in ORDER_KEYS}
        context["today"] = self.core.now().astimezone(LOCAL_TZ).date()
        flow = "hotline" if self.core.config.hotline_menu else "hotline_no_menu"
        await self.core.fx.run(PlayFlow(event.ref, flow, context, await self._lang(call)))

    async def _cancel(self, event: FlowFinished) -> None:
        """2 then 1: the order is cancelled (if it still can be), then the caller is told."""
        core = self.core
        order = event.variables.get("order", "")
        cancelled = False
        async with core.store.tx() as tx:
            call = await core.call_by_ref(tx, event.ref)
            if call is None or call.state != cm.CallState.IVR or not order.isdigit():
                return
            ticket = await tx.session.get(Ticket, int(order), populate_existing=True)
            if ticket is not None and ticket.resident_id == call.resident_id:
                try:
                    await self.tickets.cancel_in(
                        tx, ticket, actor="resident", reason="cancelled by the resident by phone"
                    )
                    cancelled = True
                except IllegalTransition:
                    log.info("call %s: ticket %s can no longer be cancelled", call.ref, order)
            tx.emit(
                "call.order_cancel",
                "call",
                call.id,
                ticket_id=int(order),
                cancelled=cancelled,
            )
        context = {
            "cancelled": "yes" if cancelled else "no",
            "category": event.variables.get("category", ""),
        }
        await core.fx.run(PlayFlow(event.ref, "status_cancelled", context, await self._lang(call)))

    async def _consent(self, event: FlowFinished) -> None:
        """1 on the consent question: the resident's own consent, by key, is on the ticket
        (`ticket.consented`, who: resident, by: key) and the order is dispatched."""
        core = self.core
        order = event.variables.get("order", "")
        async with core.store.tx() as tx:
            call = await core.call_by_ref(tx, event.ref)
            if call is None or not order.isdigit():
                return
            ticket = await tx.session.get(Ticket, int(order), populate_existing=True)
            if ticket is None or ticket.resident_id != call.resident_id:
                return
            if ticket.state != tm.TicketState.NEW or ticket.consented_at is not None:
                log.info("call %s: ticket %s needs no consent now", call.ref, order)
                return
            await core.cas(tx, ticket, consent_by=BY_KEY, consented_at=core.now())
            tx.emit("ticket.consented", "ticket", ticket.id, actor="resident", who=BY_KEY, by="key")
            if call.state == cm.CallState.IVR:
                await core.self_served(tx, call, flow="status", consent=True)
        try:
            await self.tickets.offers.dispatch(int(order), user=None)
        except (Conflict, Invalid, IllegalTransition) as exc:
            # someone dispatched it meanwhile, or it cannot be: the ticket's timeline says so
            log.info("ticket %s: consented by key, not dispatched (%s)", order, type(exc).__name__)

    async def _self_served(self, ref: str, flow: str) -> None:
        """The caller got what they called for without an operator."""
        core = self.core
        async with core.store.tx() as tx:
            call = await core.call_by_ref(tx, ref)
            if call is None or call.state != cm.CallState.IVR:
                return
            await core.self_served(tx, call, flow=flow)
