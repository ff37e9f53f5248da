"""Queries over the registry. Functions take a session and keyword-only arguments."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from registry.demo import DemoCommunity
from registry.models import (
    AccessLog,
    EmergencyContact,
    Merchant,
    MerchantService,
    Resident,
    ResidentPhone,
    ServiceCategory,
    User,
)


class NotFound(LookupError):
    """No such record."""

    def __init__(self, what: str, key: object) -> None:
        super().__init__(f"{what} {key} not found")
        self.what = what
        self.key = key


async def resident_by_phone(session: AsyncSession, *, number: str) -> Resident | None:
    """The resident who owns a normalized number, registered ones first."""
    rows = (
        await session.execute(
            select(Resident)
            .join(ResidentPhone, col(ResidentPhone.resident_id) == Resident.id)
            .where(col(ResidentPhone.number) == number)
            .order_by(col(Resident.status), col(Resident.id))
        )
    ).scalars()
    return rows.first()


async def get_resident(session: AsyncSession, *, resident_id: int) -> Resident:
    """A resident by id."""
    resident = await session.get(Resident, resident_id)
    if resident is None:
        raise NotFound("resident", resident_id)
    return resident


async def resident_card(
    session: AsyncSession, *, resident_id: int, user: User | None, reason: str
) -> dict[str, Any]:
    """A resident's card for an operator, with phones and contacts; the read is logged."""
    resident = await get_resident(session, resident_id=resident_id)
    phones = (
        (
            await session.execute(
                select(ResidentPhone).where(col(ResidentPhone.resident_id) == resident_id)
            )
        )
        .scalars()
        .all()
    )
    contacts = (
        (
            await session.execute(
                select(EmergencyContact)
                .where(col(EmergencyContact.resident_id) == resident_id)
                .order_by(col(EmergencyContact.position))
            )
        )
        .scalars()
        .all()
    )
    session.add(
        AccessLog(
            user_id=user.id if user else None,
            username=user.username if user else "system",
            resident_id=resident_id,
            reason=reason,
        )
    )
    card = resident.model_dump()
    card["id_number"] = mask_id_number(resident.id_number)
    card["created_at"] = resident.created_at.isoformat()
    card["phones"] = [{"number": p.number, "kind": p.kind} for p in phones]
    card["contacts"] = [
        {
            "name": c.name,
            "relation": c.relation,
            "phone": c.phone,
            "when_to_call": c.when_to_call,
        }
        for c in contacts
    ]
    return card


def mask_id_number(id_number: str | None) -> str:
    """An ID number with only its first 3 and last 4 characters shown."""
    if not id_number:
        return ""
    return id_number[:3] + "*" * max(0, len(id_number) - 7) + id_number[-4:]


async def get_category(session: AsyncSession, *, code: str) -> ServiceCategory:
    """A catalog category by code."""
    category = await session.get(ServiceCategory, code)
    if category is None:
        raise NotFound("category", code)
    return category


async def list_categories(session: AsyncSession) -> Sequence[ServiceCategory]:
    """The catalog in menu order."""
    return (
        (await session.execute(select(ServiceCategory).order_by(col(ServiceCategory.sort_order))))
        .scalars()
        .all()
    )


async def merchants_for_category(session: AsyncSession, *, code: str) -> Sequence[Merchant]:
    """Every merchant that takes a category, whatever its contract (matching filters)."""
    return (
        (
            await session.execute(
                select(Merchant)
                .join(MerchantService, col(MerchantService.merchant_id) == Merchant.id)
                .where(col(MerchantService.category_code) == code)
                .order_by(col(Merchant.id))
            )
        )
        .scalars()
        .all()
    )


async def get_merchant(session: AsyncSession, *, merchant_id: int) -> Merchant:
    """A merchant by id."""
    merchant = await session.get(Merchant, merchant_id)
    if merchant is None:
        raise NotFound("merchant", merchant_id)
    return merchant


async def is_empty(session: AsyncSession) -> bool:
    """True when no resident or merchant has been registered yet."""
    first = (await session.execute(select(col(Merchant.id)).limit(1))).first()
    return first is None


async def add_community(session: AsyncSession, *, community: DemoCommunity) -> None:
    """Add a generated community, parents before children."""
    for batch in (
        community.grids,
        community.catalog,
        community.merchants,
        community.residents,
    ):
        session.add_all(batch)
        await session.flush()
    session.add_all(community.services)
    session.add_all(community.phones)
    session.add_all(community.contacts)
    await session.flush()
    await resync_sequences(session)


async def resync_sequences(session: AsyncSession) -> None:
    """After rows were added with explicit ids, move PostgreSQL's sequences past them."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for table in ("resident", "resident_phone", "emergency_contact", "merchant"):
        await session.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
            )
        )
