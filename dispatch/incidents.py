"""Incidents: many calls about one water, power or gas fault in one grid become one.

An operator links calls to an incident with one click (or accepts a proposal: "3 calls
about 停水 in 第一网格 in the last 30 min"); one ticket goes to the utility carrying the
count of affected residents, and the callers' own open tickets about it are cancelled,
so the cascade offers the fault once. While it is open, later callers from the grid hear
a short announcement before the hotline menu (`announcement`), and a keypad order about
it joins the incident instead of becoming a ticket of its own (`join_keypad`). When the
utility reports it fixed (keypad or merchant page: its ticket completes) or an operator
says so, every linked caller is called back with the news (`dispatch.incident_callbacks`,
started by the machine's `StartCallbacks` through `dispatch.effects`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from dispatch.core import Core, actor
from dispatch.errors import Conflict, Invalid
from dispatch.machines import IllegalTransition
from dispatch.machines import incident as im
from dispatch.machines import ticket as tm
from dispatch.models import Call, Incident, IncidentCall, Ticket
from dispatch.offers import Offers
from dispatch.tickets import Tickets
from eventlog.store import Tx
from registry import repository as repo
from registry.models import Grid, Resident, User

log = logging.getLogger(__name__)

#: how the description of the utility's ticket names the fault
FAULT_ZH = {"water": "停水", "electricity": "停电", "gas": "燃气故障"}
#: a caller's own ticket about the fault that the incident's ticket replaces
REPLACEABLE = frozenset(
    {
        tm.TicketState.NEW,
        tm.TicketState.MATCHING,
        tm.TicketState.OFFERING,
        tm.TicketState.UNASSIGNED,
    }
)
#: a caller's ticket the utility already took: the incident adopts it as its own
ADOPTABLE = frozenset({tm.TicketState.ACCEPTED, tm.TicketState.IN_SERVICE})


class Incidents:
    """Linking calls to an outage, its one ticket, the announcement and the callbacks."""

    def __init__(self, core: Core, *, tickets: Tickets, offers: Offers) -> None:
        self.core = core
        self.tickets = tickets
        self.offers = offers

    # -- opening and linking -----------------------------------------------------------------
    async def open(
        self,
        *,
        user: User | None,
        category: str,
        call_ids: Sequence[int],
        grid_code: str | None = None,
    ) -> Incident:
        """A new incident for a grid and a utility category, with its first calls.

        The grid is the first caller's when not given. `Conflict` when the grid already
        has one open about the category (link to that one instead).
        """
        if category not in im.UTILITY_CATEGORIES:
            raise Invalid(f"an incident is about {', '.join(im.UTILITY_CATEGORIES)}")
        core = self.core
        async with core.store.tx() as tx:
            calls = [await core.get(tx, Call, cid, "call") for cid in dict.fromkeys(call_ids)]
            if grid_code is None:
                grids = [await self._grid_of(tx, c) for c in calls]
                grid_code = next((g for g in grids if g is not None), None)
                if grid_code is None:
                    raise Invalid("give the grid: none of these callers is registered")
            if await tx.session.get(Grid, grid_code) is None:
                raise Invalid(f"unknown grid {grid_code!r}")
            existing = await self._active(tx.session, grid_code, category)
            if existing is not None:
                raise Conflict(f"incident {existing.id} is open for this grid and category")
            incident = Incident(
                grid_code=grid_code,
                category_code=category,
                opened_by=actor(user),
                opened_at=core.now(),
            )
            tx.session.add(incident)
            await tx.session.flush()
            tx.emit(
                "incident.opened",
                "incident",
                incident.id,
                actor=actor(user),
                grid=grid_code,
                category=category,
            )
            for call in calls:
                await self._link(tx, incident, call, user=user)
        log.info("incident %s opened (%s, grid %s)", incident.id, category, grid_code)
        return incident

    async def link(self, incident_id: int, call_id: int, *, user: User | None) -> Incident:
        """Link one more call to an open incident (the console's one click)."""
        core = self.core
        async with core.store.tx() as tx:
            incident = await core.get(tx, Incident, incident_id, "incident")
            call = await core.get(tx, Call, call_id, "call")
            await self._link(tx, incident, call, user=user)
        return incident

    async def _grid_of(self, tx: Tx, call: Call) -> str | None:
        if call.resident_id is None:
            return None
        resident = await tx.session.get(Resident, call.resident_id)
        return resident.grid_code if resident is not None else None

    async def _link(self, tx: Tx, incident: Incident, call: Call, *, user: User | None) -> None:
        if not im.can_link(incident.state):
            raise Conflict(f"incident {incident.id} is {incident.state.value}: nothing to link")
        if call.direction != "in":
            raise Invalid(f"call {call.id} is not a call to the hotline")
        grid = await self._grid_of(tx, call)
        if grid is not None and grid != incident.grid_code:
            raise Invalid(f"call {call.id} is from another grid")
        taken = await tx.session.scalar(
            select(col(IncidentCall.incident_id)).where(col(IncidentCall.call_id) == call.id)
        )
        if taken is not None:
            raise Conflict(f"call {call.id} is linked to incident {taken} already")
        link = IncidentCall(
            incident_id=incident.id,  # type: ignore[arg-type]
            call_id=call.id,  # type: ignore[arg-type]
            resident_id=call.resident_id,
            number=call.number,
            linked_by=actor(user),
            linked_at=self.core.now(),
        )
        tx.session.add(link)
        await tx.session.flush()
        tx.emit(
            "incident.linked",
            "incident",
            incident.id,
            actor=actor(user),
            call_id=call.id,
            resident_id=call.resident_id,
            affected=await self._affected(tx, incident),
        )
        await self._take_over_ticket(tx, incident, call, user=user)

    async def _take_over_ticket(
        self, tx: Tx, incident: Incident, call: Call, *, user: User | None
    ) -> None:
        """The caller's own ticket about the fault: replaced by the incident's, or adopted."""
        if call.ticket_id is None or call.ticket_id == incident.ticket_id:
            return
        ticket = await tx.session.get(Ticket, call.ticket_id, populate_existing=True)
        if ticket is None or ticket.category_code != incident.category_code:
            return
        if ticket.state in ADOPTABLE and incident.state == im.IncidentState.OPEN:
            await self._dispatched(tx, incident, ticket, user=user)
        elif ticket.state in REPLACEABLE:
            reason = f"merged into incident {incident.id}"
            await self.tickets.cancel_in(tx, ticket, actor=actor(user), reason=reason)

    async def _affected(self, tx: Tx, incident: Incident) -> int:
        """How many residents (or unregistered numbers) the incident's callers are."""
        rows = (
            await tx.session.execute(
                select(col(IncidentCall.resident_id), col(IncidentCall.number)).where(
                    col(IncidentCall.incident_id) == incident.id
                )
            )
        ).all()
        return len({rid if rid is not None else number for rid, number in rows})

    async def _active(self, session: Any, grid_code: str, category: str) -> Incident | None:
        return (
            (
                await session.execute(
                    select(Incident)
                    .where(
                        col(Incident.grid_code) == grid_code,
                        col(Incident.category_code) == category,
                        col(Incident.state).in_(list(im.ACTIVE)),
                    )
                    .order_by(col(Incident.id))
                )
            )
            .scalars()
            .first()
        )

    # -- later callers -----------------------------------------------------------------------
    async def announcement(self, session: Any, grid_code: str) -> dict[str, str]:
        """What the hotline announces to a caller of this grid before the menu (variables
        `incident`, `incident_grid`), or nothing when no outage is open there; with
        `incident_<category>` = "open" for every fault open there, which a keypad report
        joins (`join_keypad`), so the flow tells the caller what will happen."""
        incidents = (
            (
                await session.execute(
                    select(Incident)
                    .where(
                        col(Incident.grid_code) == grid_code,
                        col(Incident.state).in_(list(im.ACTIVE)),
                    )
                    .order_by(col(Incident.id))
                )
            )
            .scalars()
            .all()
        )
        if not incidents:
            return {}
        grid = await session.get(Grid, grid_code)
        return {
            "incident": incidents[0].category_code,
            "incident_grid": grid.name if grid is not None else grid_code,
            **{f"incident_{i.category_code}": "open" for i in incidents},
        }

    async def join_keypad(self, call: Call, category: str) -> bool:
        """A keypad order about an open outage of the caller's grid joins the incident
        (no ticket of its own: the utility is on it); True when it did."""
        if category not in im.UTILITY_CATEGORIES or call.resident_id is None:
            return False
        async with self.core.store.tx() as tx:
            grid = await self._grid_of(tx, call)
            incident = await self._active(tx.session, grid, category) if grid else None
            if incident is None:
                return False
            try:
                await self._link(tx, incident, call, user=None)
            except Conflict:
                return True  # linked already (a retried report of the same call)
        return True

    async def late_ticket(self, call_id: int | None) -> bool:
        """A keypad order's ticket made after its call was linked to an incident (an
        operator linked it between the keypad's check and the ticket): the incident takes
        it over as a link would have (adopted, or cancelled as merged); True when it did."""
        async with self.core.store.tx() as tx:
            link = await tx.session.scalar(
                select(IncidentCall).where(col(IncidentCall.call_id) == call_id)
            )
            if link is None:
                return False
            incident = await self.core.get(tx, Incident, link.incident_id, "incident")
            call = await self.core.get(tx, Call, link.call_id, "call")
            await self._take_over_ticket(tx, incident, call, user=None)
        return True

    # -- the one ticket --------------------------------------------------------------------
    async def dispatch(self, incident_id: int, *, user: User | None) -> Incident:
        """One ticket to the utility, carrying the count of affected residents; offered."""
        core = self.core
        async with core.store.read() as session:
            incident = await session.get(Incident, incident_id)
            if incident is None:
                raise repo.NotFound("incident", incident_id)
            if incident.state != im.IncidentState.OPEN:  # refuse early: no stray ticket
                raise IllegalTransition("incident", incident.state, im.Dispatch(0))
            grid = await session.get(Grid, incident.grid_code)
            affected = await session.scalar(
                select(func.count()).where(col(IncidentCall.incident_id) == incident_id)
            )
            # the first registered caller's home: where the ranking looks for the utility
            # serving the grid and where the crew starts (their address, never a number)
            first = await session.scalar(
                select(col(IncidentCall.resident_id))
                .where(
                    col(IncidentCall.incident_id) == incident_id,
                    col(IncidentCall.resident_id).is_not(None),
                )
                .order_by(col(IncidentCall.id))
                .limit(1)
            )
        fault = FAULT_ZH.get(incident.category_code, incident.category_code)
        grid_name = grid.name if grid is not None else incident.grid_code
        ticket = await self.tickets.create_ticket(
            user=user,
            category=incident.category_code,
            description=f"{grid_name}{fault}，已有{affected or 0}户居民来电（事件 {incident_id}）",
            resident_id=first,
        )
        try:
            async with core.store.tx() as tx:
                incident = await core.get(tx, Incident, incident_id, "incident")
                await self._dispatched(tx, incident, ticket, user=user)
        except (Conflict, IllegalTransition):
            # another operator dispatched it first: this ticket is nobody's
            async with core.store.tx() as tx:
                stray = await core.get(tx, Ticket, ticket.id, "ticket")
                await self.tickets.cancel_in(
                    tx, stray, actor=actor(user), reason="incident dispatched twice"
                )
            raise
        assert ticket.id is not None
        await self.offers.dispatch(ticket.id, user=user)
        return incident

    async def _dispatched(
        self, tx: Tx, incident: Incident, ticket: Ticket, *, user: User | None
    ) -> None:
        assert ticket.id is not None
        state, commands = im.transition(incident.state, im.Dispatch(ticket.id))
        await self.core.cas(
            tx, incident, state=state, ticket_id=ticket.id, dispatched_at=self.core.now()
        )
        tx.emit(
            "incident.dispatched",
            "incident",
            incident.id,
            actor=actor(user),
            ticket_id=ticket.id,
            affected=await self._affected(tx, incident),
        )
        await self.core.fx.incident(tx, incident, commands)

    # -- fixed -------------------------------------------------------------------------------
    async def fixed(self, incident_id: int, *, user: User) -> Incident:
        """An operator (or the utility on its merchant page) says the fault is repaired.

        A merchant may only fix the incident whose ticket they hold (`NotFound` otherwise).
        The ticket the utility holds is completed with it; one still looking for a merchant
        is cancelled.
        """
        core = self.core
        async with core.store.read() as session:
            incident = await session.get(Incident, incident_id)
            ticket = (
                await session.get(Ticket, incident.ticket_id)
                if incident is not None and incident.ticket_id is not None
                else None
            )
        if incident is None or (
            user.merchant_id is not None
            and (ticket is None or ticket.merchant_id != user.merchant_id)
        ):
            raise repo.NotFound("incident", incident_id)
        if ticket is not None and ticket.state in ADOPTABLE:
            assert ticket.id is not None
            await self.tickets.complete(ticket.id, user=user)  # fixes it (`ticket_completed`)
            async with core.store.read() as session:
                done = await session.get(Incident, incident_id)
            assert done is not None
            return done
        async with core.store.tx() as tx:
            incident = await core.get(tx, Incident, incident_id, "incident")
            await self._fix(tx, incident, by=actor(user))
            if ticket is not None and ticket.state in REPLACEABLE:
                live = await core.get(tx, Ticket, ticket.id, "ticket")
                await self.tickets.cancel_in(
                    tx, live, actor=actor(user), reason=f"incident {incident_id} fixed"
                )
        return incident

    async def ticket_completed(self, tx: Tx, ticket: Ticket) -> bool:
        """A completed ticket (keypad, merchant page, console): its incident is fixed.
        True when the ticket was an incident's (its callers hear the news, no survey)."""
        incident = (
            (
                await tx.session.execute(
                    select(Incident).where(
                        col(Incident.ticket_id) == ticket.id,
                        col(Incident.state).in_(list(im.ACTIVE)),
                    )
                )
            )
            .scalars()
            .first()
        )
        if incident is not None:
            await self._fix(tx, incident, by="merchant")
        carried = await tx.session.scalar(
            select(func.count()).where(col(Incident.ticket_id) == ticket.id)
        )
        return bool(carried)

    async def _fix(self, tx: Tx, incident: Incident, *, by: str) -> None:
        state, commands = im.transition(incident.state, im.Fixed())
        await self.core.cas(tx, incident, state=state, fixed_at=self.core.now(), fixed_by=by)
        tx.emit(
            "incident.fixed",
            "incident",
            incident.id,
            actor=by,
            ticket_id=incident.ticket_id,
            affected=await self._affected(tx, incident),
        )
        await self.core.fx.incident(tx, incident, commands)
