"""What the console shows of incidents (a read model): the list, one incident with its
linked calls and callbacks, and the proposals ("3 calls about 停水 in 第一网格 in the last
30 min: link?"). The use cases are `dispatch.incidents`.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from dispatch.core import Core
from dispatch.machines import incident as im
from dispatch.machines import ticket as tm
from dispatch.models import Incident, IncidentCall, Ticket
from registry import repository as repo
from registry.models import Grid, Resident
from registry.phones import mask


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


class IncidentBoard:
    """Incidents as the console and the wallboard read them."""

    def __init__(self, core: Core) -> None:
        self.core = core

    async def _grid_names(self, session: Any) -> dict[str, str]:
        return {g.code: g.name for g in (await session.execute(select(Grid))).scalars()}

    def _public(
        self, incident: Incident, links: list[IncidentCall], grids: dict[str, str]
    ) -> dict[str, Any]:
        outcomes: dict[str, int] = defaultdict(int)
        for link in links:
            outcomes[link.callback_outcome or ("placed" if link.callback_ref else "pending")] += 1
        return {
            "id": incident.id,
            "grid_code": incident.grid_code,
            "grid_name": grids.get(incident.grid_code, incident.grid_code),
            "category": incident.category_code,
            "state": incident.state.value,
            "ticket_id": incident.ticket_id,
            "linked": len(links),
            "affected": len({x.resident_id or x.number for x in links}),
            "callbacks": dict(outcomes),
            "opened_by": incident.opened_by,
            "opened_at": _iso(incident.opened_at),
            "dispatched_at": _iso(incident.dispatched_at),
            "fixed_at": _iso(incident.fixed_at),
            "done_at": _iso(incident.done_at),
        }

    async def incidents(
        self, *, active: bool = False, grid_code: str | None = None
    ) -> list[dict[str, Any]]:
        """Incidents, newest first; `active`: only those still open or dispatched."""
        stmt = select(Incident).order_by(col(Incident.id).desc()).limit(200)
        if active:
            stmt = stmt.where(col(Incident.state).in_(list(im.ACTIVE)))
        if grid_code:
            stmt = stmt.where(col(Incident.grid_code) == grid_code)
        async with self.core.store.read() as session:
            rows = list((await session.execute(stmt)).scalars())
            ids = [r.id for r in rows]
            links: dict[int, list[IncidentCall]] = defaultdict(list)
            for link in (
                await session.execute(
                    select(IncidentCall).where(col(IncidentCall.incident_id).in_(ids))
                )
            ).scalars():
                links[link.incident_id].append(link)
            grids = await self._grid_names(session)
        return [self._public(r, links[r.id or 0], grids) for r in rows]

    async def incident(self, incident_id: int) -> dict[str, Any]:
        """One incident with its linked calls (numbers masked) and their callbacks."""
        async with self.core.store.read() as session:
            incident = await session.get(Incident, incident_id)
            if incident is None:
                raise repo.NotFound("incident", incident_id)
            rows = (
                await session.execute(
                    select(IncidentCall, Resident)
                    .outerjoin(Resident, col(Resident.id) == IncidentCall.resident_id)
                    .where(col(IncidentCall.incident_id) == incident_id)
                    .order_by(col(IncidentCall.id))
                )
            ).all()
            grids = await self._grid_names(session)
        data = self._public(incident, [link for link, _ in rows], grids)
        data["calls"] = [
            {
                "call_id": link.call_id,
                "resident_id": link.resident_id,
                "resident_name": resident.name if resident is not None else "",
                "number": mask(link.number),
                "linked_by": link.linked_by,
                "linked_at": _iso(link.linked_at),
                "callback": link.callback_outcome or ("placed" if link.callback_ref else None),
            }
            for link, resident in rows
        ]
        return data

    async def for_merchant(self, incident_id: int, merchant_id: int) -> dict[str, Any]:
        """What the utility holding the incident's ticket sees: where, what, how many; no
        caller, no number. `NotFound` for any other merchant."""
        async with self.core.store.read() as session:
            incident = await session.get(Incident, incident_id)
            ticket = (
                await session.get(Ticket, incident.ticket_id)
                if incident is not None and incident.ticket_id is not None
                else None
            )
            if incident is None or ticket is None or ticket.merchant_id != merchant_id:
                raise repo.NotFound("incident", incident_id)
            links = list(
                (
                    await session.execute(
                        select(IncidentCall).where(col(IncidentCall.incident_id) == incident_id)
                    )
                ).scalars()
            )
            grids = await self._grid_names(session)
        return {
            "id": incident.id,
            "grid_name": grids.get(incident.grid_code, incident.grid_code),
            "category": incident.category_code,
            "state": incident.state.value,
            "affected": len({x.resident_id or x.number for x in links}),
            "ticket": {
                "id": ticket.id,
                "state": ticket.state.value,
                "description": ticket.description,
                "deadline_at": _iso(ticket.deadline_at),
            },
        }

    async def proposals(self) -> list[dict[str, Any]]:
        """Grids with several recent calls about one utility fault not linked yet.

        A call counts when the ticket taken on it (by an operator or the keypad) is about
        water, electricity or gas, was made within `incident_window_s` and is not
        cancelled; `incident_propose_min` distinct residents make a proposal. Where an
        incident is open already, the proposal is to link the calls to it.
        """
        config = self.core.config
        since = self.core.now() - timedelta(seconds=config.incident_window_s)
        async with self.core.store.read() as session:
            rows = (
                await session.execute(
                    select(
                        col(Ticket.call_id),
                        col(Ticket.category_code),
                        col(Resident.grid_code),
                        col(Resident.id),
                    )
                    .join(Resident, col(Resident.id) == Ticket.resident_id)
                    .outerjoin(IncidentCall, col(IncidentCall.call_id) == Ticket.call_id)
                    .where(
                        col(Ticket.category_code).in_(list(im.UTILITY_CATEGORIES)),
                        col(Ticket.created_at) >= since,
                        col(Ticket.state) != tm.TicketState.CANCELLED,
                        col(Ticket.call_id).is_not(None),
                        col(IncidentCall.id).is_(None),
                    )
                    .order_by(col(Ticket.id))
                )
            ).all()
            open_ones = {
                (i.grid_code, i.category_code): i.id
                for i in (
                    await session.execute(
                        select(Incident).where(col(Incident.state).in_(list(im.ACTIVE)))
                    )
                ).scalars()
            }
            grids = await self._grid_names(session)
        groups: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
        for call_id, category, grid_code, resident_id in rows:
            if call_id is not None and resident_id is not None:
                groups[(grid_code, category)].setdefault(resident_id, call_id)
        out = []
        for (grid_code, category), by_resident in groups.items():
            incident_id = open_ones.get((grid_code, category))
            if len(by_resident) < config.incident_propose_min and incident_id is None:
                continue
            out.append(
                {
                    "grid_code": grid_code,
                    "grid_name": grids.get(grid_code, grid_code),
                    "category": category,
                    "calls": len(by_resident),
                    "call_ids": sorted(by_resident.values()),
                    "minutes": round(config.incident_window_s / 60),
                    "incident_id": incident_id,
                }
            )
        return out
