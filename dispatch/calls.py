"""Calls to the hotline: a caller known by caller ID is greeted by name and hears the menu
(or goes straight to an operator); a routine need taken by keypad becomes a ticket that is
dispatched at once; anything else queues for an operator (`dispatch.queue`). And the end
of every call, inbound or outbound: what a hang-up means for the caller, the operator and
the outbound call's purpose.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select, update
from sqlmodel import col

from dispatch.consult import Consults
from dispatch.core import Core
from dispatch.emergency import Emergency
from dispatch.errors import Conflict, ConsentRequired
from dispatch.incidents import Incidents
from dispatch.machines import call as cm
from dispatch.machines import operator as opm
from dispatch.masked import Masked
from dispatch.models import Call
from dispatch.offers import Offers
from dispatch.operators import Operators
from dispatch.outbound import Outbound
from dispatch.queue import Queue
from dispatch.status import OrderStatus
from dispatch.tickets import LAST_CATEGORY, Tickets
from dispatch.wellbeing_away import AwayByKeypad
from eventlog.clock import LOCAL_TZ
from ivr.flow import keypad_paths
from ivr.prompts import pick_lang
from providers.base import CallOffered, FlowFinished
from registry import repository as repo
from registry.models import User
from registry.phones import mask, try_normalize

log = logging.getLogger(__name__)

#: the queue outcome of a caller whose menu died with a restart of ours (`Calls.waiting`)
MENU_LOST = "menu_lost"


class Calls:
    """Inbound calls from offer to end, and the end of outbound ones."""

    def __init__(
        self,
        core: Core,
        *,
        queue: Queue,
        emergency: Emergency,
        operators: Operators,
        tickets: Tickets,
        offers: Offers,
        outbound: Outbound,
        incidents: Incidents,
        status: OrderStatus,
        away: AwayByKeypad,
        masked: Masked | None = None,
        consults: Consults | None = None,
    ) -> None:
        self.core = core
        self.consults = consults
        self.status = status
        self.away = away
        self.masked = masked
        self.incidents = incidents
        self.queue = queue
        self.emergency = emergency
        self.operators = operators
        self.tickets = tickets
        self.offers = offers
        self.outbound = outbound

    def hotline_keys(self) -> dict[str, str]:
        """The keys a caller presses in the hotline menu for each category ("5 1": water)."""
        return keypad_paths(self.core.flows.get("hotline"))

    async def inbound(self, event: CallOffered) -> None:
        """A call reached the hotline: the caller hears the flow for who they are."""
        core = self.core
        number = try_normalize(event.caller)
        async with core.store.tx() as tx:
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
                started_at=core.now(),
            )
            tx.session.add(call)
            await tx.session.flush()
            if resident is None:
                flow = "hotline_unknown"
            else:
                flow = "hotline" if core.config.hotline_menu else "hotline_no_menu"
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
                assert resident.id is not None
                last = (
                    (await tx.session.execute(self.tickets.last_order_query(resident.id)))
                    .scalars()
                    .first()
                )
                context = {
                    "name": resident.name,
                    "sex": resident.sex,
                    "birth_year": resident.birth_year or "",
                    "today": core.now().astimezone(LOCAL_TZ).date(),
                    LAST_CATEGORY: last.category_code if last is not None else "",
                    # incidents: an outage known in the grid is announced before the menu
                    **await self.incidents.announcement(tx.session, resident.grid_code),
                    # daily care calls: 7 says away for some days, or back home
                    **await self.away.context(tx.session, resident.id),
                }
                lang = pick_lang(resident.language)
                if flow == "hotline":
                    # an open order: its status first (then 1 is the menu, 0 an operator)
                    order = await self.status.context(tx.session, resident)
                    if order:
                        flow = "status"
                        context.update(order)
            state, commands = cm.transition(call.state, cm.StartIvr(flow))
            call.state = state
            await core.fx.call(tx, call, commands, context=context, lang=lang)
        log.info("call %s offered (registered=%s)", event.ref, call.registered)

    async def hotline_finished(self, event: FlowFinished) -> None:
        """The hotline menu ended: a keypad order, or the caller waits for an operator."""
        category = event.variables.get("category", "")
        if await self.away.finished(event):
            return
        if event.outcome == "need":
            repeat = category == event.variables.get(LAST_CATEGORY)
            await self.keypad_need(event.ref, category, repeat=repeat)
            return
        await self.to_operator(event.ref, event.outcome, event.variables.get("category"))

    async def to_operator(self, ref: str, outcome: str, category: str | None = None) -> None:
        """A menu ended with the caller for an operator: an emergency, the desk closed
        (they hear when it opens), or the queue."""
        reason = await self.emergency.reason_for(ref, outcome)
        if reason is not None:
            await self.emergency.start(ref, reason, category)
        elif await self.emergency.desk_closed_now():
            await self.emergency.desk_closed(ref)
        else:
            await self.queue.enqueue(ref, outcome, category)

    async def waiting(self, ref: str) -> None:
        """The PBX holds a caller for an operator (`CallWaiting`). Still in the menu by our
        records: the menu died with a restart of ours and the caller stayed on; they are
        a caller who wants an operator now (never left in music nobody watches). A call
        queued or further on already changes nothing."""
        async with self.core.store.read() as session:
            call = (
                await session.execute(select(Call).where(col(Call.ref) == ref))
            ).scalar_one_or_none()
        if call is None or call.direction != "in" or call.state != cm.CallState.IVR:
            return
        await self.call_event(ref, "call.menu_lost")
        log.info("call %s: the menu was cut off; the caller waits for an operator", ref)
        # its own outcome: a menu we cut off is not a caller who stayed silent in it
        await self.to_operator(ref, MENU_LOST, None)

    async def keypad_need(self, ref: str, category: str, *, repeat: bool = False) -> None:
        """A routine need taken by the keypad menu: a ticket, dispatched automatically
        (unless its category asks for the resident's consent: then a call back asks it).

        The same category as the resident's last order ("9, same as last time") repeats
        that order: its description, and its merchant first in line.
        """
        core = self.core
        async with core.store.tx() as tx:
            call = await core.call_by_ref(tx, ref)
            if call is None or call.state != cm.CallState.IVR:
                return
            await core.self_served(tx, call, category=category, repeat=repeat)
        if await self.incidents.join_keypad(call, category):
            return  # an outage the utility is on already: the caller is called back
        last = (
            await self.tickets.last_ticket(call.resident_id, category)
            if repeat and call.resident_id is not None
            else None
        )
        if last is not None:
            ticket = await self.tickets.repeat(last, user=None, call_id=call.id)
        else:
            ticket = await self.tickets.create_ticket(
                user=None, category=category, resident_id=call.resident_id, call_id=call.id
            )
        assert ticket.id is not None
        if await self.incidents.late_ticket(call.id):
            return  # linked to an outage while its ticket was being made: the outage has it
        try:
            await self.offers.dispatch(ticket.id, user=None)
        except ConsentRequired:
            # a self-paid need waits for the resident's consent: an operator rings back,
            # records it on the ticket and dispatches
            async with core.store.tx() as tx:
                tx.emit("ticket.awaiting_consent", "ticket", ticket.id, call_id=call.id)
            await self.queue.callback_once(call, "the resident's consent to the price")

    async def identify(self, call_id: int, resident_id: int, *, user: User) -> None:
        """An unknown caller was registered at the desk: the call is theirs from now on
        (`Conflict` when the call knew its caller already)."""
        async with self.core.store.tx() as tx:
            known = await tx.session.execute(
                update(Call)
                .where(col(Call.id) == call_id, col(Call.resident_id).is_(None))
                .values(resident_id=resident_id, registered=True)
            )
            if known.rowcount != 1:  # type: ignore[attr-defined]
                raise Conflict(f"call {call_id}: the caller is registered already")
            tx.emit(
                "call.identified", "call", call_id, actor=user.username, resident_id=resident_id
            )
        log.info("call %s: caller registered as resident %s", call_id, resident_id)

    async def call_event(self, ref: str, name: str, **data: Any) -> None:
        """Put something the backend said about a call on its timeline."""
        async with self.core.store.tx() as tx:
            call = await self.core.call_by_ref(tx, ref)
            if call is not None:
                tx.emit(name, "call", call.id, ticket_id=call.ticket_id, **data)

    async def ended(self, ref: str, cause: str) -> None:
        """A call hung up: its operator wraps up, an outbound call's purpose hears of it, a
        caller who hung up while waiting gets a call back (once)."""
        core = self.core
        async with core.store.tx() as tx:
            call = await core.call_by_ref(tx, ref)
            if call is not None and self.masked is not None:
                # a masked call's leg that hangs on this call goes with it (a caller joined
                # with a merchant is served by our records before hanging up)
                await self.masked.parent_ended(tx, call)
            # in wrap-up the caller has hung up already: a late or second report of the
            # hang-up (a restart's lost-call check, the operator's leg) changes nothing
            if call is None or call.state in cm.FINAL or call.state == cm.CallState.WRAP_UP:
                return
            was_held = call.state in (cm.CallState.ON_HOLD, *cm.CONSULT)
            if self.consults is not None and call.state in cm.CONSULT:
                await self.consults.caller_left(tx, call)
            # an operator wraps up after a caller, and after an answered click-to-call; a
            # caller taken away from the desk (on-call phone, contact, 120) has no wrap-up
            desk_side = call.direction == "in" or (
                call.state in cm.AT_DESK and self.outbound.wraps_up(call)
            )
            state, commands = cm.transition(
                call.state, cm.Hangup(inbound=desk_side, desk=call.operator_id is not None)
            )
            await core.cas(tx, call, state=state, ended_at=core.now(), cause=cause, held_at=None)
            name = "call.abandoned" if state == cm.CallState.ABANDONED else "call.ended"
            extra: dict[str, Any] = {"on_hold": True} if was_held else {}
            tx.emit(name, "call", call.id, cause=cause, ticket_id=call.ticket_id, **extra)
            await core.fx.call(tx, call, commands)
            if call.operator_id is not None and state == cm.CallState.WRAP_UP:
                await self.operators.event(tx, call.operator_id, opm.CallFinished(), call)
            if call.direction == "out":
                await self.outbound.ended(tx, call)
            abandoned = state == cm.CallState.ABANDONED and call.queued_at is not None
            if abandoned:
                self.queue.left(tx, call)
            await self.emergency.caller_left(tx, call)
        log.info("call %s ended (%s)", ref, cause)
        if abandoned:
            # a caller an outage dropped has their callback task already
            await self.queue.callback_once(call, "caller hung up while waiting")
