"""Masked calls: the merchant and the resident of an open order talk through the service,
and neither ever sees the other's number (issue 16).

Three ways in, one call shape. The merchant asks from their phone page ("I am at the
gate"): the service rings the merchant's registered phone first (`masked_wait`:
"connecting you to the resident"), then the resident's, and joins the two when the
resident answers. The merchant presses 4 on the service's arrival check-in call: the
resident is rung and joined with that call. Or the resident presses 4 in the status menu
of the hotline: the accepted merchant is rung and joined with the waiting caller. Every
leg the service places shows the hotline's caller ID; the join is the port's `bridge` of
two calls (memory PBX: the calls' peers; Asterisk: the masked bridge context, which sets
the hotline's caller ID on the resident's channel first; Twilio: a conference named by
both calls). Either side hanging up hangs up the other.

The legs the service places for it are calls of purpose `masked`. The merchant's leg is
the masked call (its id is `masked_id` on the timeline): a `masked` call, or the check-in
call the merchant pressed 4 on; the resident's leg is its child (`parent_call_id`), or,
when the resident rang in, the hotline call is the merchant leg's parent. The ticket's
timeline has `masked.started` (who asked: `initiated_by` merchant | resident),
`masked.connected`, then `masked.ended` (`hung_up_by`) or `masked.failed` (`reason`);
never a number. Only while the order is being served (accepted, in service), one at a
time per ticket and `masked_per_hour` an hour.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from dispatch.core import Core, actor
from dispatch.effects import Command, Connect, Hangup, PlayFlow
from dispatch.errors import Conflict, Invalid
from dispatch.machines import call as cm
from dispatch.machines import ticket as tm
from dispatch.models import Call, Ticket
from dispatch.outbound import Outbound, Purpose
from eventlog.models import Event
from eventlog.store import Tx
from providers.base import FlowFinished, OriginateFailure, TelephonyUnavailable
from registry import repository as repo
from registry.models import Merchant, ResidentPhone, User

log = logging.getLogger(__name__)

MASKED = "masked"
#: the ticket states in which merchant and resident may be connected
SERVED = frozenset({tm.TicketState.ACCEPTED, tm.TicketState.IN_SERVICE})
#: the events that close a masked call on the timeline
_CLOSING = ("masked.ended", "masked.failed")


class OrderNotOpen(Conflict):
    """The order is not being served (not accepted yet, or done): nobody is connected."""

    error_id = "order_not_open"

    def __init__(self, ticket_id: int, state: str) -> None:
        super().__init__(
            f"ticket {ticket_id} is {state}: merchant and resident are connected only while "
            "the order is being served (accepted or in service)"
        )
        self.details = {"ticket_id": ticket_id, "state": state}


class MaskedBusy(Conflict):
    """A masked call of the ticket is under way already."""

    error_id = "masked_busy"

    def __init__(self, ticket_id: int) -> None:
        super().__init__(f"a call for ticket {ticket_id} is under way already")
        self.details = {"ticket_id": ticket_id}


class MaskedLimit(Conflict):
    """The ticket had its masked calls for this hour (`retry_after_s`)."""

    error_id = "masked_limit"

    def __init__(self, ticket_id: int, retry_after_s: int) -> None:
        super().__init__(f"ticket {ticket_id} had enough calls this hour; try again later")
        self.retry_after_s = retry_after_s
        self.details = {"ticket_id": ticket_id, "retry_after_s": retry_after_s}


class Masked:
    """Masked calls between a merchant and the resident of an open order."""

    def __init__(self, core: Core, outbound: Outbound) -> None:
        self.core = core
        self.outbound = outbound
        outbound.serve(
            MASKED,
            Purpose(
                answered=self._answered,
                wanted=self._wanted,
                ended=self._ended,
                failed=self._failed,
                lost=self._lost,
                replace_when_lost=False,
            ),
        )

    # -- the three ways in ----------------------------------------------------------------
    async def merchant_to_resident(self, ticket_id: int, *, user: User) -> Call:
        """The merchant (page) asks to talk to the resident: their phone rings first.

        `NotFound` for a ticket that is not theirs, `OrderNotOpen`, `MaskedBusy`,
        `MaskedLimit`, `Invalid` when the merchant has no phone; `TelephonyUnavailable`
        while the line is down (nothing is recorded)."""
        core = self.core
        if not core.health().up:
            raise TelephonyUnavailable("the phone line is down: nobody can be connected")
        async with core.store.tx() as tx:
            ticket = await tx.session.get(Ticket, ticket_id, populate_existing=True)
            if ticket is None or user.merchant_id is None or ticket.merchant_id != user.merchant_id:
                raise repo.NotFound("ticket", ticket_id)
            await self._may_connect(tx, ticket)
            call = await self._merchant_leg(tx, ticket, parent=None)
            if call is None:
                raise Invalid("your shop has no phone number registered to be called")
            self._started(tx, ticket, call, who=actor(user), initiated_by="merchant")
        log.info("masked call %s for ticket %s asked by the merchant", call.ref, ticket_id)
        return call

    async def resident_to_merchant(self, event: FlowFinished) -> None:
        """The resident pressed 4 in the status menu (outcome `connect`, on the line):
        the accepted merchant is rung; anything in the way is said to the caller."""
        core = self.core
        order = event.variables.get("order", "")
        started: Call | None = None
        async with core.store.tx() as tx:
            caller = await core.call_by_ref(tx, event.ref)
            if caller is None or caller.state != cm.CallState.IVR or not order.isdigit():
                return
            ticket = await tx.session.get(Ticket, int(order), populate_existing=True)
            try:
                if ticket is None or ticket.resident_id != caller.resident_id:
                    raise repo.NotFound("ticket", order)
                if not core.health().up:
                    raise TelephonyUnavailable("the phone line is down")
                await self._may_connect(tx, ticket)
                started = await self._merchant_leg(tx, ticket, parent=caller)
                if started is not None:
                    self._started(tx, ticket, started, who="resident", initiated_by="resident")
            except (repo.NotFound, Conflict, TelephonyUnavailable) as exc:
                log.info("call %s: merchant of ticket %s not rung (%s)", event.ref, order, exc)
            if started is None:
                core.fx.after_commit(tx, self._sorry(caller, side="resident"))

    async def merchant_on_call(self, event: FlowFinished) -> None:
        """The merchant pressed 4 on their arrival check-in call ("I am at the gate", on
        the line): the resident is rung and joined with that call."""
        core = self.core
        async with core.store.tx() as tx:
            call = await core.call_by_ref(tx, event.ref)
            if call is None or call.state in cm.FINAL or call.ticket_id is None:
                return
            ticket = await tx.session.get(Ticket, call.ticket_id, populate_existing=True)
            leg: Call | None = None
            try:
                if ticket is None:
                    raise repo.NotFound("ticket", call.ticket_id)
                if not core.health().up:
                    raise TelephonyUnavailable("the phone line is down")
                await self._may_connect(tx, ticket)
                leg = await self._resident_leg(tx, ticket, merchant=call)
                if leg is not None:
                    self._started(tx, ticket, call, who="merchant", initiated_by="merchant")
            except (repo.NotFound, Conflict, TelephonyUnavailable) as exc:
                log.info(
                    "call %s: resident of ticket %s not rung (%s)", event.ref, call.ticket_id, exc
                )
            if leg is None:
                core.fx.after_commit(tx, self._sorry(call, side="merchant"))

    async def unreached_told(self, event: FlowFinished) -> None:
        """A resident heard the merchant could not be reached and needs nothing more."""
        if event.outcome != "goodbye":
            return
        async with self.core.store.tx() as tx:
            call = await self.core.call_by_ref(tx, event.ref)
            if call is not None and call.direction == "in" and call.state == cm.CallState.IVR:
                await self.core.self_served(tx, call, flow="masked_unreached")

    async def parent_ended(self, tx: Tx, call: Call) -> None:
        """A call ended that a masked leg hangs on (a hotline caller waiting for their
        merchant, a merchant's check-in call waiting for the resident): the leg goes too."""
        if call.purpose == MASKED:
            return  # its own purpose hook says it (`_ended`)
        # among the few live outbound calls (ix_call_direction_state), not every call ever
        found = await tx.session.execute(
            select(Call).where(
                col(Call.direction) == "out",
                col(Call.state).not_in(list(cm.FINAL)),
                col(Call.purpose) == MASKED,
                col(Call.parent_call_id) == call.id,
            )
        )
        for leg in found.scalars().all():
            if leg.resident_id is None:  # the merchant rung for a hotline caller
                await self._leg_ended(tx, leg, ended=call, side="resident")
            else:  # the resident rung for a merchant on their check-in call
                await self._leg_ended(tx, call, ended=call, side="merchant")

    # -- the rules -------------------------------------------------------------------------
    async def _may_connect(self, tx: Tx, ticket: Ticket) -> None:
        assert ticket.id is not None
        if ticket.state not in SERVED or ticket.merchant_id is None:
            raise OrderNotOpen(ticket.id, ticket.state.value)
        live = await tx.session.execute(
            select(col(Call.id)).where(
                col(Call.direction) == "out",
                col(Call.state).not_in(list(cm.FINAL)),
                col(Call.purpose) == MASKED,
                col(Call.ticket_id) == ticket.id,
            )
        )
        if live.first() is not None:
            raise MaskedBusy(ticket.id)
        since = self.core.now() - timedelta(hours=1)
        started = await tx.session.execute(
            select(col(Event.occurred_at))
            .where(
                col(Event.subject) == "ticket",
                col(Event.subject_id) == str(ticket.id),
                col(Event.name) == "masked.started",
                col(Event.occurred_at) > since,
            )
            .order_by(col(Event.occurred_at))
        )
        recent = list(started.scalars())
        limit = self.core.config.masked_per_hour
        if len(recent) >= limit:
            wait = recent[-limit] - since
            raise MaskedLimit(ticket.id, max(1, int(wait.total_seconds()) + 1))

    # -- placing the legs ------------------------------------------------------------------
    async def _merchant_leg(self, tx: Tx, ticket: Ticket, *, parent: Call | None) -> Call | None:
        merchant = await tx.session.get(Merchant, ticket.merchant_id)
        if merchant is None or not merchant.phones:
            return None
        call = self.outbound.record(
            tx,
            ref=f"mk-{secrets.token_hex(8)}",
            number=merchant.phones[0],
            purpose=MASKED,
            ticket_id=ticket.id,
            parent_call_id=parent.id if parent is not None else None,
        )
        await tx.session.flush()
        # the merchant waits for nobody when they asked; a waiting resident rings shorter
        ring_s = self.core.config.masked_ring_s if parent is not None else None
        self.outbound.place(tx, call, ring_s=ring_s)
        return call

    async def _resident_leg(self, tx: Tx, ticket: Ticket, *, merchant: Call) -> Call | None:
        """Ring the resident for a merchant on the line; None when they have no phone."""
        number = await self._resident_number(tx, ticket.resident_id)
        if not number:
            return None
        leg = self.outbound.record(
            tx,
            ref=f"{merchant.ref}-r"[:64],
            number=number,
            purpose=MASKED,
            resident_id=ticket.resident_id,
            registered=True,
            ticket_id=ticket.id,
            parent_call_id=merchant.id,
        )
        await tx.session.flush()
        self.outbound.place(tx, leg, ring_s=self.core.config.masked_ring_s)
        return leg

    def _started(self, tx: Tx, ticket: Ticket, call: Call, *, who: str, initiated_by: str) -> None:
        tx.emit(
            "masked.started",
            "ticket",
            ticket.id,
            actor=who,
            masked_id=call.id,
            initiated_by=initiated_by,
            merchant_id=ticket.merchant_id,
        )

    async def _resident_number(self, tx: Tx, resident_id: int | None) -> str:
        if resident_id is None:
            return ""
        number = (
            await tx.session.execute(
                select(col(ResidentPhone.number))
                .where(col(ResidentPhone.resident_id) == resident_id)
                .order_by(col(ResidentPhone.kind) != "mobile", col(ResidentPhone.id))
                .limit(1)
            )
        ).scalar()
        return number or ""

    # -- what the backend says about a leg (the outbound purpose) ---------------------------
    async def _wanted(self, tx: Tx, call: Call) -> bool:
        return False  # a conversation is now or never: never placed later

    async def _answered(self, tx: Tx, call: Call) -> Sequence[Command]:
        merchant, resident = await self._legs(tx, call)
        if merchant is None or (resident is None and call is not merchant):
            return [Hangup(call.ref)]
        if call is merchant and merchant.parent_call_id is None:
            # the merchant asked and picked up: now the resident's phone
            ticket = await tx.session.get(Ticket, call.ticket_id)
            if ticket is None or await self._resident_leg(tx, ticket, merchant=call) is None:
                await self._close(tx, merchant, "masked.failed", reason="no_resident_phone")
                return [Hangup(call.ref)]
            return [PlayFlow(call.ref, "masked_wait", {}, "zh-CN")]
        # the second leg answered: join them, the resident's leg masked
        assert resident is not None
        if resident.direction == "in":
            if resident.state != cm.CallState.IVR:  # the caller gave up meanwhile
                return [Hangup(call.ref)]
            await self.core.self_served(tx, resident, flow="masked")
        elif merchant.state in cm.FINAL:
            return [Hangup(call.ref)]
        tx.emit("masked.connected", "ticket", merchant.ticket_id, masked_id=merchant.id)
        return [Connect(resident.ref, merchant.ref)]

    async def _failed(self, tx: Tx, call: Call, reason: OriginateFailure) -> None:
        await self._unreached(tx, call, reason.value)

    async def _lost(self, tx: Tx, call: Call) -> None:
        await self._unreached(tx, call, "lost")

    async def _unreached(self, tx: Tx, call: Call, why: str) -> None:
        """A leg never answered: the side on the line hears so, the timeline says why."""
        merchant, resident = await self._legs(tx, call)
        if merchant is None:
            return
        unreached = "merchant_unreached" if call is merchant else "resident_unreached"
        if not await self._close(tx, merchant, "masked.failed", reason=unreached, cause=why):
            return
        waiting = resident if call is merchant else merchant
        if waiting is not None and waiting is not call and waiting.state not in cm.FINAL:
            side = "resident" if waiting is resident else "merchant"
            self.core.fx.after_commit(tx, self._sorry(waiting, side=side))

    async def _ended(self, tx: Tx, call: Call) -> None:
        merchant, _ = await self._legs(tx, call)
        if merchant is not None:
            await self._leg_ended(
                tx, merchant, ended=call, side="merchant" if call is merchant else "resident"
            )

    async def _leg_ended(self, tx: Tx, merchant: Call, *, ended: Call, side: str) -> None:
        """One side hung up: the other is hung up too, and the masked call is over."""
        _, resident = await self._legs(tx, merchant)
        other = resident if ended is merchant else merchant
        # a hotline caller joined with the merchant is served (ended) by our records while
        # still on the line: their leg is hung up whatever its row says
        if other is not None and (other.direction == "in" or other.state not in cm.FINAL):
            self.core.fx.after_commit(tx, Hangup(other.ref))
        # talking since the second leg answered: the resident's when the merchant asked
        second = merchant if merchant.parent_call_id is not None else resident
        if second is not None and second.answered_at is not None:
            length = round((self.core.now() - second.answered_at).total_seconds())
            await self._close(tx, merchant, "masked.ended", hung_up_by=side, duration_s=length)
        else:
            await self._close(tx, merchant, "masked.failed", reason="hung_up", hung_up_by=side)

    # -- helpers ---------------------------------------------------------------------------
    async def _legs(self, tx: Tx, call: Call) -> tuple[Call | None, Call | None]:
        """(the merchant's leg, the resident's leg) of the masked call `call` belongs to."""
        if call.purpose != MASKED:
            # a call a masked leg hangs on: a hotline caller (the resident) or a merchant's
            # check-in call
            child = await self._child(tx, call)
            if child is None:
                return None, None
            return (child, call) if child.resident_id is None else (call, child)
        parent = await tx.session.get(Call, call.parent_call_id) if call.parent_call_id else None
        if call.resident_id is not None:  # the resident's leg
            return parent, call
        return call, parent if parent is not None else await self._child(tx, call)

    async def _child(self, tx: Tx, call: Call) -> Call | None:
        found = await tx.session.execute(
            select(Call)
            .where(col(Call.purpose) == MASKED, col(Call.parent_call_id) == call.id)
            .order_by(col(Call.id).desc())
        )
        return found.scalars().first()

    async def _close(self, tx: Tx, merchant: Call, name: str, **data: Any) -> bool:
        """Put the masked call's end on the ticket's timeline once; False when it was."""
        said = await tx.session.execute(
            select(col(Event.data)).where(
                col(Event.subject) == "ticket",
                col(Event.subject_id) == str(merchant.ticket_id),
                col(Event.name).in_(_CLOSING),
            )
        )
        if any(d.get("masked_id") == merchant.id for d in said.scalars()):
            return False
        tx.emit(name, "ticket", merchant.ticket_id, masked_id=merchant.id, **data)
        log.info("masked call %s: %s", merchant.ref, name)
        return True

    def _sorry(self, call: Call, *, side: str) -> PlayFlow:
        return PlayFlow(call.ref, "masked_unreached", {"side": side}, "zh-CN")
