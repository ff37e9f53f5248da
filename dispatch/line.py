"""The phone line: outages and resuming after them.

An outbound call the backend cannot take (`TelephonyUnavailable`, or the backend reports
itself down) is not a failure. Its row stays undialed (`dialed_at` None), its offer stays
live and does not expire while it waits (`offer.waiting`), and it is placed again with
the same ref when `BackendStatus(up=True)` arrives (an offer's clock starts then,
`offer.resumed`). Ticket deadlines keep running, so a long outage escalates to an
operator as usual. When the link drops, every caller who was live (ringing, in the menu,
queued, connected, on hold) gets one callback task. A call the backend lost mid-ring
(`OriginateFailed(LOST)`) is placed again under a new ref (`<ref>.r1`), or just ends when
its purpose says so (a login code).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlmodel import col

from dispatch.core import Core, quiet_until, undialed
from dispatch.effects import PlaceCall, ScheduleTimer
from dispatch.machines import call as cm
from dispatch.machines import offer as om
from dispatch.models import Call, Offer, OutboundJob
from dispatch.outbound import Outbound
from dispatch.queue import Queue
from dispatch.timer_keys import TimerKey

log = logging.getLogger(__name__)

#: calls still waiting for their turn in the outbound engine's queue: not "waiting for the
#: line", the engine places them
_QUEUED = select(col(OutboundJob.ref)).where(col(OutboundJob.state) == "queued")

#: inbound calls whose caller may be lost when the phone line drops
LIVE_INBOUND = (
    cm.CallState.RINGING,
    cm.CallState.IVR,
    cm.CallState.QUEUED,
    cm.CallState.CONNECTED,
    cm.CallState.ON_HOLD,
    cm.CallState.CONSULT_RINGING,
    cm.CallState.CONSULTING,
)


def retry_ref(ref: str) -> str:
    """A new ref for a call placed again after the backend lost the first: `x` -> `x.r1`."""
    base, sep, n = ref.rpartition(".r")
    if sep and n.isdigit():
        return f"{base}.r{int(n) + 1}"
    return f"{ref}.r1"


@dataclass(slots=True)
class _Outage:
    """The phone line is down since `since`; `callbacks` callers got a callback task."""

    since: datetime
    callbacks: int = 0


class PhoneLine:
    """Undialed calls, outages, and placing what waited once the line is back."""

    def __init__(self, core: Core, outbound: Outbound, queue: Queue) -> None:
        self.core = core
        self.outbound = outbound
        self.queue = queue
        #: the phone line as the last BackendStatus said (None: not heard yet)
        self._line_up: bool | None = None
        self._outage: _Outage | None = None
        self._resume_lock = asyncio.Lock()

    # -- what the interpreter reports about a placed call -----------------------------------
    async def deferred(self, ref: str) -> None:
        """Record that an outbound call (and its offer) waits for the phone line."""
        core = self.core
        async with core.store.tx() as tx:
            call = await core.call_by_ref(tx, ref)
            if call is None or not undialed(call):
                return
            tx.emit(
                "call.deferred",
                "call",
                call.id,
                purpose=call.purpose,
                ticket_id=call.ticket_id,
                offer_id=call.offer_id,
            )
            if call.offer_id is not None:
                offer = await tx.session.get(Offer, call.offer_id, populate_existing=True)
                if offer is not None and offer.state in om.LIVE:
                    tx.emit(
                        "offer.waiting",
                        "ticket",
                        offer.ticket_id,
                        offer_id=offer.id,
                        merchant_id=offer.merchant_id,
                    )

    async def dialed(self, ref: str, waited: bool) -> None:
        """The backend took the call: note when. An offer whose call waited for the line
        gets its full timeout from now, the moment the merchant's phone really rings."""
        core = self.core
        now = core.now()
        async with core.store.tx() as tx:
            # only the first to note it acts: a twin attempt (same ref) changes nothing
            result = await tx.session.execute(
                update(Call)
                .where(col(Call.ref) == ref, col(Call.dialed_at).is_(None))
                .values(dialed_at=now)
            )
            if result.rowcount != 1 or not waited:  # type: ignore[attr-defined]
                return
            call = await core.call_by_ref(tx, ref)
            if call is None:
                return
            tx.emit(
                "call.redialed",
                "call",
                call.id,
                purpose=call.purpose,
                ticket_id=call.ticket_id,
                waited_s=round((now - call.started_at).total_seconds(), 1),
            )
            if call.offer_id is None:
                return
            offer = await tx.session.get(Offer, call.offer_id, populate_existing=True)
            if offer is None or offer.state not in om.LIVE or offer.call_ref != ref:
                return
            expires = now + timedelta(seconds=core.config.offer_timeout_s)
            # no version bump: only this writes expires_at after the offer is made, and a
            # racing state change (ringing) must not be refused for it
            await tx.session.execute(
                update(Offer).where(col(Offer.id) == offer.id).values(expires_at=expires)
            )
            tx.emit(
                "offer.resumed",
                "ticket",
                offer.ticket_id,
                offer_id=offer.id,
                merchant_id=offer.merchant_id,
            )
            core.fx.after_commit(tx, ScheduleTimer(TimerKey.offer(offer.id), expires))

    # -- placing what waited ---------------------------------------------------------------
    async def redial(self, call_id: int) -> bool:
        """Place a call that waited for the phone line, if it is still wanted; True when the
        backend took it. A survey is not rung in the quiet hours: it waits for their end."""
        core = self.core
        now = core.now()
        async with core.store.tx() as tx:
            call = await tx.session.get(Call, call_id, populate_existing=True)
            if call is None or not undialed(call) or core.fx.dialing(call.ref):
                return False
            if await self.outbound.queued(tx, call):
                return False  # its turn in the outbound engine's queue has not come
            if not await self.outbound.wanted(tx, call):
                # the ticket moved on while the line was down: nobody needs this call now
                state, commands = cm.transition(call.state, cm.Hangup(inbound=False))
                await core.cas(tx, call, state=state, ended_at=now, cause="not_dialed")
                tx.emit("call.ended", "call", call.id, cause="not_dialed", ticket_id=call.ticket_id)
                await core.fx.call(tx, call, commands)
                return False
            quiet = quiet_until(core.config, now) if self.outbound.quiet_hours(call) else None
            if quiet is not None:
                core.fx.after_commit(tx, ScheduleTimer(TimerKey.redial(call.id), quiet))
                return False
            place = PlaceCall(
                call.ref, call.number, caller_id=self.outbound.caller_id(call.purpose), waited=True
            )
        return await core.fx.run(place)

    async def resume_outbound(self) -> int:
        """Place every outbound call that waited for the phone line, oldest first, each with
        its own ref; returns how many the backend took."""
        async with self._resume_lock:
            async with self.core.store.read() as session:
                ids = (
                    (
                        await session.execute(
                            select(col(Call.id))
                            .where(
                                col(Call.direction) == "out",
                                col(Call.dialed_at).is_(None),
                                col(Call.state).not_in(list(cm.FINAL)),
                                col(Call.ref).not_in(_QUEUED),
                            )
                            .order_by(col(Call.id))
                        )
                    )
                    .scalars()
                    .all()
                )
            placed = 0
            for call_id in ids:
                if not self.core.health().up:
                    break  # down again: the rest keep waiting for the next BackendStatus(up)
                if call_id is not None and await self.redial(call_id):
                    placed += 1
            if ids:
                log.info("phone line back: %s of %s waiting calls placed", placed, len(ids))
            return placed

    async def _waiting_calls(self) -> int:
        async with self.core.store.read() as session:
            return int(
                (
                    await session.execute(
                        select(func.count()).where(
                            col(Call.direction) == "out",
                            col(Call.dialed_at).is_(None),
                            col(Call.state).not_in(list(cm.FINAL)),
                            col(Call.ref).not_in(_QUEUED),
                        )
                    )
                ).scalar_one()
            )

    # -- the link going down and up ----------------------------------------------------------
    async def status(self, up: bool, detail: str) -> None:
        """The backend link went up or down: record it at once (the console's banner reads
        the event), then rescue the callers (down) or resume the waiting calls (up)."""
        if up == self._line_up:
            log.info("telephony still %s (%s)", "up" if up else "down", detail)
            return
        first, self._line_up = self._line_up is None, up
        now = self.core.now()
        if up:
            outage, self._outage = self._outage, None
            extra: dict[str, Any] = {}
            if outage is not None:
                extra = {
                    "down_s": round((now - outage.since).total_seconds(), 1),
                    "callbacks": outage.callbacks,
                }
            waiting = await self._waiting_calls()
            async with self.core.store.tx() as tx:
                tx.emit(
                    "telephony.up",
                    "system",
                    "telephony",
                    detail=detail,
                    waiting_calls=waiting,
                    **extra,
                )
            log.info("telephony up (%s): %s calls waited for the line", detail, waiting)
            await self.resume_outbound()
            return
        async with self.core.store.read() as session:
            live = (
                (
                    await session.execute(
                        select(Call)
                        .where(col(Call.direction) == "in", col(Call.state).in_(LIVE_INBOUND))
                        .order_by(col(Call.id))
                    )
                )
                .scalars()
                .all()
            )
        async with self.core.store.tx() as tx:
            tx.emit(
                "telephony.down",
                "system",
                "telephony",
                detail=detail,
                live_calls=len(live),
                at_start=first,
            )
        self._outage = _Outage(since=now)
        for call in live:
            try:
                if await self.queue.callback_once(call, "phone line lost during the call"):
                    self._outage.callbacks += 1
            except Exception:  # one caller's task failing must not cost the others theirs
                log.exception("call %s: no callback task after the outage", call.ref)
        log.warning(
            "telephony down (%s): %s live callers, %s callback tasks",
            detail,
            len(live),
            self._outage.callbacks,
        )

    async def lost(self, ref: str) -> None:
        """The backend lost an outbound call in an outage (it may never have rung).

        Nothing counts against the far end. A call still wanted gets a new ref (the old one
        is spent: the backend may have placed it) and waits for the line like any other;
        a call of another use case (a login code) just ends: its ref was its delivery.
        """
        core = self.core
        now = core.now()
        replacement: Call | None = None
        async with core.store.tx() as tx:
            call = await core.call_by_ref(tx, ref)
            if call is None or call.state in cm.FINAL:
                return
            wanted = self.outbound.replace_when_lost(call) and await self.outbound.wanted(tx, call)
            state, commands = cm.transition(call.state, cm.Hangup(inbound=False))
            await core.cas(tx, call, state=state, ended_at=now, cause="lost")
            tx.emit("call.lost", "call", call.id, purpose=call.purpose, ticket_id=call.ticket_id)
            await core.fx.call(tx, call, commands)
            if not wanted:
                await self.outbound.lost(tx, call)
            if wanted:
                replacement = self.outbound.record(
                    tx,
                    ref=retry_ref(ref),
                    number=call.number,
                    purpose=call.purpose,
                    ticket_id=call.ticket_id,
                    offer_id=call.offer_id,
                    resident_id=call.resident_id,
                    registered=call.registered,
                )
                await tx.session.flush()
                if call.offer_id is not None:
                    offer = await core.get(tx, Offer, call.offer_id, "offer")
                    await core.cas(tx, offer, call_ref=replacement.ref)
                    tx.emit(
                        "offer.waiting",
                        "ticket",
                        offer.ticket_id,
                        offer_id=offer.id,
                        merchant_id=offer.merchant_id,
                    )
                tx.emit(
                    "call.deferred",
                    "call",
                    replacement.id,
                    purpose=replacement.purpose,
                    ticket_id=replacement.ticket_id,
                    offer_id=replacement.offer_id,
                    replaces=call.id,
                )
        log.warning("call %s lost by the backend in an outage", ref)
        if replacement is not None and replacement.id is not None:
            await self.redial(replacement.id)
