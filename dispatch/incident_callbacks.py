"""The callback round of a fixed incident: every linked caller hears the news.

Outbound calls of purpose `incident` (flow `incident_fixed`), `incident_callback_batch` at
a time every `incident_callback_gap_s` (the `incident:` timer), never in the quiet hours.
Each call is recorded in the unit of work that writes its ref on the caller's link, so a
restart places none of them twice (one waiting for the line is placed when it is back,
one a restart cut off is not placed again) and forgets none (the reconciler asks
`wanted_timers`). One nobody answers is tried again, `incident_callback_tries` in all.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlmodel import col

from dispatch.core import Core, quiet_until
from dispatch.effects import Command, PlayFlow, ScheduleTimer
from dispatch.machines import incident as im
from dispatch.models import Call, Incident, IncidentCall
from dispatch.outbound import Outbound, Purpose
from dispatch.timer_keys import TimerKey
from eventlog.store import Tx
from providers.base import OriginateFailure
from registry.models import Grid, Resident

log = logging.getLogger(__name__)

PURPOSE = "incident"


def callback_ref(incident_id: int | None, link_id: int | None, attempt: int = 1) -> str:
    """The ref of a linked caller's callback: `incident-3-7`, a second try `incident-3-7.t2`
    (a call the backend lost in an outage is replaced under `<ref>.r1`)."""
    base = f"incident-{incident_id}-{link_id}"
    return base if attempt <= 1 else f"{base}.t{attempt}"


def _waiting(link: IncidentCall) -> bool:
    """A callback still to be placed (first try, or another try)."""
    return link.callback_ref is None and not link.callback_outcome


def _current(link: IncidentCall, ref: str) -> bool:
    """Whether `ref` is the link's callback now (or its replacement after an outage)."""
    now = link.callback_ref
    return now is not None and (ref == now or ref.startswith(now + ".r"))


def _link_id(ref: str) -> int | None:
    head = ref.split(".", 1)[0]
    tail = head.rsplit("-", 1)[-1]
    return int(tail) if head.startswith("incident-") and tail.isdigit() else None


class IncidentCallbacks:
    """Calls every linked caller of a fixed incident back, paced, once each."""

    def __init__(self, core: Core, outbound: Outbound) -> None:
        self.core = core
        self.outbound = outbound
        outbound.serve(
            PURPOSE,
            Purpose(
                answered=self._answered,
                wanted=self._wanted,
                ended=self._ended,
                failed=self._failed,
                quiet_hours=True,
            ),
        )

    async def callback_round(self, incident_id: int) -> None:
        """Place the next few callbacks of a fixed incident (the `incident:` timer).

        Each call is recorded in the unit of work that writes its ref on the link: a
        restart finds it placed (or waiting for the line), never places it again. A
        number called back already for this incident is not called twice; one nobody
        answered is tried again after `incident_callback_retry_s`.
        """
        core = self.core
        config = core.config
        now = core.now()
        async with core.store.tx() as tx:
            incident = await tx.session.get(Incident, incident_id, populate_existing=True)
            if incident is None or incident.state != im.IncidentState.FIXED:
                return
            quiet = quiet_until(config, now)
            if quiet is not None:
                core.fx.after_commit(tx, ScheduleTimer(TimerKey.incident(incident_id), quiet))
                return
            links = await self._links(tx, incident_id)
            called: dict[str, int | None] = {}
            for link in links:
                if link.attempts:
                    called.setdefault(link.number, link.id)
            placed = 0
            for link in links:
                if not _waiting(link):
                    continue
                if called.get(link.number, link.id) != link.id:
                    link.callback_outcome = "same_number"
                    continue
                if link.retry_at is not None and link.retry_at > now:
                    continue
                if placed >= max(1, config.incident_callback_batch):
                    break
                link.attempts += 1
                ref = callback_ref(incident_id, link.id, link.attempts)
                call = self.outbound.record(
                    tx,
                    ref=ref,
                    number=link.number,
                    purpose=PURPOSE,
                    resident_id=link.resident_id,
                    registered=link.resident_id is not None,
                )
                link.callback_ref, link.retry_at = ref, None
                called[link.number] = link.id
                await tx.session.flush()
                tx.emit(
                    "incident.callback",
                    "incident",
                    incident_id,
                    call_id=call.id,
                    link_id=link.id,
                    resident_id=link.resident_id,
                    attempt=link.attempts,
                )
                self.outbound.place(tx, call)
                placed += 1
            left = [link for link in links if _waiting(link)]
            if left:
                later = [x.retry_at for x in left if x.retry_at is not None and x.retry_at > now]
                gap = now + timedelta(seconds=config.incident_callback_gap_s)
                at = gap if len(later) < len(left) else min(later)
                core.fx.after_commit(tx, ScheduleTimer(TimerKey.incident(incident_id), at))
            else:
                await self._maybe_done(tx, incident, links)
        log.info("incident %s: %s callbacks placed", incident_id, placed)

    async def _links(self, tx: Tx, incident_id: int) -> list[IncidentCall]:
        return list(
            (
                await tx.session.execute(
                    select(IncidentCall)
                    .where(col(IncidentCall.incident_id) == incident_id)
                    .order_by(col(IncidentCall.id))
                    .execution_options(populate_existing=True)
                )
            ).scalars()
        )

    async def _maybe_done(self, tx: Tx, incident: Incident, links: list[IncidentCall]) -> None:
        if incident.state != im.IncidentState.FIXED or any(not x.callback_outcome for x in links):
            return
        state, commands = im.transition(incident.state, im.CallbacksFinished())
        await self.core.cas(tx, incident, state=state, done_at=self.core.now())
        told = sum(1 for x in links if x.callback_outcome == "told")
        tx.emit("incident.callbacks_done", "incident", incident.id, told=told, linked=len(links))
        await self.core.fx.incident(tx, incident, commands)

    async def _outcome(self, tx: Tx, call: Call, outcome: str) -> None:
        """A callback ended: its link's outcome (the first one counts), and maybe the end."""
        link_id = _link_id(call.ref)
        link = await tx.session.get(IncidentCall, link_id) if link_id is not None else None
        if link is None or link.callback_outcome or not _current(link, call.ref):
            return  # decided already, or a late report of an earlier try
        config = self.core.config
        if outcome in ("unanswered", "failed") and link.attempts < config.incident_callback_tries:
            retry = self.core.now() + timedelta(seconds=config.incident_callback_retry_s)
            link.callback_ref, link.retry_at = None, retry
            tx.emit(
                "incident.callback_retry",
                "incident",
                link.incident_id,
                call_id=call.id,
                link_id=link.id,
                outcome=outcome,
                at=retry.isoformat(),
            )
            # the round finds when it is due (fresh callbacks keep their pace meanwhile)
            soon = self.core.now() + timedelta(seconds=config.incident_callback_gap_s)
            self.core.fx.after_commit(tx, ScheduleTimer(TimerKey.incident(link.incident_id), soon))
            return
        link.callback_outcome = outcome
        tx.emit(
            "incident.callback_ended",
            "incident",
            link.incident_id,
            call_id=call.id,
            link_id=link.id,
            outcome=outcome,
        )
        await tx.session.flush()
        incident = await tx.session.get(Incident, link.incident_id, populate_existing=True)
        if incident is not None:
            await self._maybe_done(tx, incident, await self._links(tx, incident.id))  # type: ignore[arg-type]

    async def wanted_timers(self) -> dict[TimerKey, datetime]:
        """For the reconciler: every fixed incident with callers not called back yet needs
        its `incident:` timer (a crash right after the fix left none)."""
        async with self.core.store.read() as session:
            ids = (
                await session.execute(
                    select(col(Incident.id))
                    .join(IncidentCall, col(IncidentCall.incident_id) == Incident.id)
                    .where(
                        col(Incident.state) == im.IncidentState.FIXED,
                        col(IncidentCall.callback_ref).is_(None),
                        col(IncidentCall.callback_outcome).is_(None),
                    )
                    .distinct()
                )
            ).scalars()
            now = self.core.now()
            return {TimerKey.incident(i): now for i in ids}

    # -- the callback call (purpose "incident") ----------------------------------------------
    async def _answered(self, tx: Tx, call: Call) -> list[Command]:
        link_id = _link_id(call.ref)
        link = await tx.session.get(IncidentCall, link_id) if link_id is not None else None
        if link is None:
            return []
        incident = await tx.session.get(Incident, link.incident_id)
        if incident is None:
            return []
        grid = await tx.session.get(Grid, incident.grid_code)
        resident = await tx.session.get(Resident, link.resident_id) if link.resident_id else None
        context = {
            "incident": incident.category_code,
            "incident_grid": grid.name if grid is not None else incident.grid_code,
        }
        lang = resident.language if resident is not None else "zh-CN"
        return [PlayFlow(call.ref, "incident_fixed", context, lang)]

    async def told(self, ref: str) -> None:
        """The callback's flow said it all (the caller heard the news)."""
        async with self.core.store.tx() as tx:
            call = await self.core.call_by_ref(tx, ref)
            if call is not None:
                await self._outcome(tx, call, "told")

    async def _ended(self, tx: Tx, call: Call) -> None:
        # answered and hung up before the end of the news still counts as told; a call a
        # restart cut off may have rung: it is not placed again
        if call.cause == "lost":
            await self._outcome(tx, call, "lost")
        else:
            await self._outcome(tx, call, "told" if call.answered_at else "unanswered")

    async def _failed(self, tx: Tx, call: Call, reason: OriginateFailure) -> None:
        await self._outcome(tx, call, "failed")

    async def _wanted(self, tx: Tx, call: Call) -> bool:
        link_id = _link_id(call.ref)
        link = await tx.session.get(IncidentCall, link_id) if link_id is not None else None
        return link is not None and not link.callback_outcome and _current(link, call.ref)
