"""What the API shows of calls, tickets and offers (shared by the calls, desk, tickets and
figures routes), with the response models that document it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from dispatch.booking_slot import window_of
from dispatch.models import Call, Offer, Ticket
from eventlog.clock import LOCAL_TZ
from eventlog.models import Event
from operator_console.openapi import Model
from registry.models import Resident
from registry.phones import mask


def ticket_public(ticket: Ticket) -> dict[str, Any]:
    """A ticket on the API."""
    data = ticket.model_dump(exclude={"plan", "version", "booked_on", "booked_from",
                                      "booked_until"})  # fmt: skip
    for key, value in data.items():
        if isinstance(value, datetime):
            data[key] = value.isoformat()
    data["state"] = ticket.state.value
    data["deadline_local"] = (
        ticket.deadline_at.astimezone(LOCAL_TZ).strftime("%m-%d %H:%M")
        if ticket.deadline_at
        else None
    )
    data["booking"] = _booking(ticket)
    return data


def _booking(ticket: Ticket) -> dict[str, str] | None:
    """A booked visit's window (local date, from, until), None: as soon as possible."""
    slot = window_of(ticket)
    return slot.public() if slot is not None else None


def merchant_ticket_public(ticket: Ticket, resident: Resident | None) -> dict[str, Any]:
    """What a merchant may see of a ticket: what, where, when; never the resident's phone."""
    return {
        "id": ticket.id,
        "state": ticket.state.value,
        "category": ticket.category_code,
        "description": ticket.description,
        "address": resident.address if resident else "",
        "deadline_at": ticket.deadline_at.isoformat() if ticket.deadline_at else None,
        "code_word": ticket.code_word,
        "booking": _booking(ticket),
    }


def offer_public(offer: Offer) -> dict[str, Any]:
    """An offer on the API."""
    return {
        "id": offer.id,
        "ticket_id": offer.ticket_id,
        "merchant_id": offer.merchant_id,
        "rank": offer.rank,
        "state": offer.state.value,
        "placed_at": offer.placed_at.isoformat(),
        "decided_at": offer.decided_at.isoformat() if offer.decided_at else None,
    }


#: what a caller did in the menu before the desk: the keys pressed, and how it ended
MENU_EVENTS = ("call.digit", "call.queued")


async def menu_paths(
    session: AsyncSession, call_ids: Sequence[int]
) -> dict[int, tuple[list[str], str | None]]:
    """Each call's menu path before it reached the queue: its keys (`call.digit`) up to the
    first `call.queued`, and that event's outcome (transfer, emergency, menu_lost...).
    Keys pressed later (the queue's call-back offer) are no part of the way in."""
    paths: dict[int, tuple[list[str], str | None]] = {i: ([], None) for i in call_ids}
    if not call_ids:
        return paths
    rows = await session.execute(
        select(col(Event.subject_id), col(Event.name), col(Event.data))
        .where(
            col(Event.subject) == "call",
            col(Event.subject_id).in_([str(i) for i in call_ids]),
            col(Event.name).in_(MENU_EVENTS),
        )
        .order_by(col(Event.seq))
    )
    for subject_id, name, data in rows:
        keys, outcome = paths[int(subject_id)]
        if outcome is not None:
            continue
        if name == "call.queued":
            paths[int(subject_id)] = (keys, str(data.get("outcome") or "transfer"))
        elif isinstance(data.get("digit"), str):
            keys.append(data["digit"])
    return paths


async def call_public(
    session: AsyncSession, call: Call, menu: tuple[list[str], str | None] | None = None
) -> dict[str, Any]:
    """A call on the API, with a short resident summary for the queue and its menu path
    (`menu`: read already for many calls at once)."""
    assert call.id is not None
    if menu is None:
        menu = (await menu_paths(session, [call.id]))[call.id]
    data: dict[str, Any] = {
        "id": call.id,
        "ref": call.ref,
        "direction": call.direction,
        "purpose": call.purpose,
        "state": call.state.value,
        "number": mask(call.number),
        "registered": call.registered,
        "resident_id": call.resident_id,
        "ticket_id": call.ticket_id,
        "operator_id": call.operator_id,
        "emergency": call.emergency,
        "emergency_reason": call.emergency_reason,
        "started_at": call.started_at.isoformat(),
        "queued_at": call.queued_at.isoformat() if call.queued_at else None,
        "answered_at": call.answered_at.isoformat() if call.answered_at else None,
        "held_at": call.held_at.isoformat() if call.held_at else None,
        "menu_keys": menu[0],
        "menu_outcome": menu[1],
    }
    if call.resident_id is not None:
        resident = await session.get(Resident, call.resident_id)
        if resident is not None:
            data["resident_name"] = resident.name
            data["resident_status"] = resident.status.value
    return data


async def calls_public(session: AsyncSession, calls: Sequence[Call]) -> list[dict[str, Any]]:
    """Many calls on the API: their residents and menu paths read in one query each, not
    one per call."""
    ids = {c.resident_id for c in calls if c.resident_id is not None}
    # held here, so the session's identity map (weak) keeps them: `call_public`'s
    # `session.get` then finds each one without a query
    residents = (
        (await session.execute(select(Resident).where(col(Resident.id).in_(ids)))).scalars().all()
        if ids
        else []
    )
    menus = await menu_paths(session, [c.id for c in calls if c.id is not None])
    out = [await call_public(session, c, menus.get(c.id or 0)) for c in calls]
    del residents
    return out


# -- response models (what the functions above answer) --
class TicketOut(Model):
    """A ticket for staff."""

    id: int
    resident_id: int | None
    call_id: int | None
    category_code: str
    description: str
    urgency: str
    state: str
    escalated: bool
    escalation_reason: str | None
    escalation_level: int
    follow_up: bool
    repeat_of: int | None
    rated_by: str | None
    deadline_at: datetime | None
    deadline_local: str | None = Field(description="MM-DD HH:MM in Asia/Shanghai")
    booking: dict[str, str] | None = Field(
        default=None, description="a booked visit: date, from, until (Asia/Shanghai)"
    )
    merchant_id: int | None
    code_word: str
    rating: str | None
    survey_attempts: int
    created_by: str
    assigned_to: int | None = None
    needs_consent: bool = False
    consent_by: str | None = None
    consented_at: datetime | None = None
    created_at: datetime
    accepted_at: datetime | None
    arrived_at: datetime | None
    completed_at: datetime | None
    rated_at: datetime | None
    closed_at: datetime | None


class MerchantTicketOut(Model):
    """What a merchant sees of a ticket: what, where, when; never the resident's phone."""

    id: int
    state: str
    category: str
    description: str
    address: str
    deadline_at: datetime | None
    code_word: str
    booking: dict[str, str] | None = Field(
        default=None, description="a booked visit: date, from, until (Asia/Shanghai)"
    )


class OfferOut(Model):
    """An offer."""

    id: int
    ticket_id: int
    merchant_id: int
    rank: int
    state: str
    placed_at: datetime
    decided_at: datetime | None


class CallOut(Model):
    """A call, with a short resident summary for the queue (`number` is masked)."""

    id: int
    ref: str
    direction: str
    purpose: str
    state: str
    number: str
    registered: bool
    resident_id: int | None
    ticket_id: int | None
    operator_id: int | None
    emergency: bool
    #: key, silent or repeat (why the call is an emergency); None for a routine call
    emergency_reason: str | None
    started_at: datetime
    queued_at: datetime | None
    #: when an operator took the call (the desk's talk time runs from here)
    answered_at: datetime | None = None
    held_at: datetime | None
    #: the keys the caller pressed in the menu before the queue, in order
    menu_keys: list[str] = Field(default_factory=list)
    #: how the menu ended: transfer (0 or no choice), emergency, menu_lost...; None while
    #: the caller is still in the menu or never went through one
    menu_outcome: str | None = None
    resident_name: str | None = None
    resident_status: str | None = None


class EventOut(Model):
    """One event-log entry (ids and field names, never personal data)."""

    seq: int
    name: str
    subject: str
    subject_id: str
    occurred_at: datetime
    actor: str
    data: dict[str, Any]


class EmergenciesToday(Model):
    """A period's emergency calls (today's on the wallboard): how many, how fast a human
    took them, overflows, 120."""

    emergencies: int
    taken: int
    time_to_human_median_s: float | None
    time_to_human_p90_s: float | None
    answered_15s: int
    answered_15s_rate: float | None
    overflows: int
    connected_120: int
