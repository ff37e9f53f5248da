"""Queries over the registry. Functions take a session and keyword-only arguments."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import flag_modified
from sqlmodel import col

from registry.demo import DemoCommunity
from registry.models import (
    AccessLog,
    ContractChange,
    EmergencyContact,
    Grid,
    Merchant,
    MerchantService,
    Resident,
    ResidentPhone,
    ResidentStatus,
    ResidentStatusChange,
    ServiceCategory,
    User,
)
from registry.phones import mask
from registry.schemas import (
    CategoryIn,
    ContactIn,
    ContractIn,
    GridIn,
    MerchantIn,
    PhoneIn,
    ResidentIn,
)

#: reasons an access-log row may give
READ_REASONS = ("call", "ticket", "search", "console", "edit", "export", "admin")


class Invalid(ValueError):
    """Input that refers to something that does not exist or breaks a registry rule.

    `field` names the input field at fault (a form shows the message next to it); `code`
    is the machine code an API error carries (the browser words it).
    """

    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        if code is not None:
            self.code = code


class Duplicate(Invalid):
    """Input that would give two records the same key (ID number, external code)."""

    code = "duplicate"


class NotFound(LookupError):
    """No such record."""

    def __init__(self, what: str, key: object) -> None:
        super().__init__(f"{what} {key} not found")
        self.what = what
        self.key = key


#: statuses whose residents hold their numbers; a resident who moved out or died does not
#: (a new household may have been given the same line)
HOLDING = (ResidentStatus.REGISTERED.value, ResidentStatus.SUSPENDED.value)
#: numbers per IN (...) list: well under every driver's limit on bound parameters
IN_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a caller ID belongs to: one resident, nobody, or several (`shared_by`, ids).

    A number several residents hold never picks one of them (`resident` is None): the
    greeting, the resident card and keypad orders would all go to a guess.
    """

    resident: Resident | None = None
    shared_by: tuple[int, ...] = ()


async def caller_by_phone(session: AsyncSession, *, number: str) -> Caller:
    """The resident a normalized number belongs to, if exactly one does.

    The one registered or suspended holder; else, when nobody active holds it, its only
    holder (a number whose owner moved out or died still finds them, so the call is
    flagged by the resident's status instead of passing as an unknown caller). Two active
    holders, or several inactive ones and no active one, are ambiguous: no resident.
    The unique index on the number prevents that since 0009; this guards data from
    before it (and a database restored without the index).
    """
    holders = list(
        (
            await session.execute(
                select(Resident)
                .join(ResidentPhone, col(ResidentPhone.resident_id) == Resident.id)
                .where(col(ResidentPhone.number) == number)
                .order_by(col(Resident.id))
            )
        )
        .scalars()
        .unique()
    )
    active = [r for r in holders if r.status.value in HOLDING]
    candidates = active or holders
    if len(candidates) == 1:
        return Caller(candidates[0])
    return Caller(None, tuple(int(r.id) for r in candidates if r.id is not None))


async def get_resident(session: AsyncSession, *, resident_id: int) -> Resident:
    """A resident by id."""
    resident = await session.get(Resident, resident_id)
    if resident is None:
        raise NotFound("resident", resident_id)
    return resident


def log_access(
    session: AsyncSession,
    *,
    resident_ids: Sequence[int],
    user: User | None,
    reason: str,
    ref: str = "",
) -> None:
    """Write one access-log row per resident read (who, when, why)."""
    if reason not in READ_REASONS:
        reason = "console"
    session.add_all(
        AccessLog(
            user_id=user.id if user else None,
            username=user.username if user else "system",
            resident_id=rid,
            reason=reason,
            ref=ref[:64],
        )
        for rid in resident_ids
    )


async def access_log(
    session: AsyncSession,
    *,
    resident_id: int | None = None,
    username: str | None = None,
    limit: int = 200,
    before_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Sequence[AccessLog]:
    """Access-log rows, newest first; `since` inclusive, `until` exclusive."""
    stmt = select(AccessLog).order_by(col(AccessLog.id).desc()).limit(limit)
    if since is not None:
        stmt = stmt.where(col(AccessLog.at) >= since)
    if until is not None:
        stmt = stmt.where(col(AccessLog.at) < until)
    if resident_id is not None:
        stmt = stmt.where(col(AccessLog.resident_id) == resident_id)
    if username:
        stmt = stmt.where(col(AccessLog.username) == username)
    if before_id is not None:
        stmt = stmt.where(col(AccessLog.id) < before_id)
    return (await session.execute(stmt)).scalars().all()


async def resident_card(
    session: AsyncSession,
    *,
    resident_id: int,
    user: User | None,
    reason: str,
    ref: str = "",
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
    log_access(session, resident_ids=[resident_id], user=user, reason=reason, ref=ref)
    history = (
        (
            await session.execute(
                select(ResidentStatusChange)
                .where(col(ResidentStatusChange.resident_id) == resident_id)
                .order_by(col(ResidentStatusChange.id))
            )
        )
        .scalars()
        .all()
    )
    card = resident.model_dump()
    card["id_number"] = mask_id_number(resident.id_number)
    card["created_at"] = resident.created_at.isoformat()
    card["updated_at"] = resident.updated_at.isoformat()
    card["phones"] = [{"number": p.number, "kind": p.kind} for p in phones]
    card["contacts"] = [
        {
            "id": c.id,
            "name": c.name,
            "relation": c.relation,
            "kind": c.kind,
            "phone": c.phone,
            "phones": c.phones or [c.phone],
            "when_to_call": c.when_to_call,
            "notify_events": list(c.notify_events),
            "notify_by": c.notify_by,
            "notify_quiet": c.notify_quiet,
        }
        for c in contacts
    ]
    card["status_history"] = [
        {
            "from": h.from_status,
            "to": h.to_status,
            "reason": h.reason,
            "by": h.by,
            "at": h.at.isoformat(),
        }
        for h in history
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
    for table in (
        "resident",
        "resident_phone",
        "emergency_contact",
        "merchant",
        "resident_status_change",
        "contract_change",
    ):
        await session.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
            )
        )


# -- writing the registry --
async def grid_codes(session: AsyncSession) -> set[str]:
    """Every known grid code."""
    return set((await session.execute(select(col(Grid.code)))).scalars())


async def resident_input(session: AsyncSession, *, resident: Resident) -> ResidentIn:
    """A stored resident in the shape it is written in (for diffs, edits and export)."""
    assert resident.id is not None
    phones = (
        await session.execute(
            select(ResidentPhone)
            .where(col(ResidentPhone.resident_id) == resident.id)
            .order_by(col(ResidentPhone.id))
        )
    ).scalars()
    contacts = (
        await session.execute(
            select(EmergencyContact)
            .where(col(EmergencyContact.resident_id) == resident.id)
            .order_by(col(EmergencyContact.position), col(EmergencyContact.id))
        )
    ).scalars()
    values = resident.model_dump(
        exclude={"id", "created_at", "updated_at", "revision", "name_pinyin", "name_initials"}
    )
    return ResidentIn.model_construct(
        **values,
        status_reason="",
        phones=[PhoneIn.model_construct(number=p.number, kind=p.kind) for p in phones],
        contacts=[
            ContactIn.model_construct(
                name=c.name,
                relation=c.relation,
                kind=c.kind,
                phones=list(c.phones or [c.phone]),
                when_to_call=c.when_to_call,
                notify_events=list(c.notify_events),
                notify_by=c.notify_by,
                notify_quiet=c.notify_quiet,
            )
            for c in contacts
        ],
    )


def resident_changes(old: ResidentIn | None, new: ResidentIn) -> list[str]:
    """The fields an edit would change (every field for a new resident)."""
    fresh = new.model_dump(mode="json", exclude={"status_reason"})
    if old is None:
        return sorted(k for k, v in fresh.items() if v not in (None, "", [], {}))
    before = old.model_dump(mode="json", exclude={"status_reason"})
    return sorted(k for k in fresh if fresh[k] != before.get(k))


async def check_resident(
    session: AsyncSession, *, data: ResidentIn, resident_id: int | None
) -> None:
    """Refuse an unknown grid, an ID number another resident has, unknown merchants."""
    if await session.get(Grid, data.grid_code) is None:
        raise Invalid(f"unknown grid {data.grid_code!r}", field="grid_code", code="unknown_grid")
    if data.id_number:
        other = (
            await session.execute(
                select(col(Resident.id)).where(col(Resident.id_number) == data.id_number)
            )
        ).scalar()
        if other is not None and other != resident_id:
            raise Duplicate(f"ID number already belongs to resident {other}", field="id_number")
    wanted = {data.usual_pharmacy_id, *data.preferred_merchants.values()} - {None}
    if wanted:
        found = set(
            (
                await session.execute(select(col(Merchant.id)).where(col(Merchant.id).in_(wanted)))
            ).scalars()
        )
        missing = sorted(m for m in wanted if m not in found and m is not None)
        if missing:
            pharmacy = data.usual_pharmacy_id in missing
            where = "usual_pharmacy_id" if pharmacy else "preferred_merchants"
            raise Invalid(f"unknown merchant {missing[0]}", field=where, code="unknown_merchant")


async def save_resident(
    session: AsyncSession,
    *,
    data: ResidentIn,
    resident_id: int | None = None,
    actor: str,
) -> tuple[Resident, list[str]]:
    """Create or update a resident with phones and contacts; returns it and what changed.

    An update that changes nothing writes nothing. A status change is kept as history.
    """
    await check_resident(session, data=data, resident_id=resident_id)
    resident = None
    old: ResidentIn | None = None
    if resident_id is not None:
        resident = await get_resident(session, resident_id=resident_id)
        old = await resident_input(session, resident=resident)
    changes = resident_changes(old, data)
    if resident is not None and not changes:
        return resident, []
    fields = data.model_dump(exclude={"phones", "contacts", "status_reason"})
    previous_status = resident.status.value if resident is not None else ""
    if resident is None:
        resident = Resident.model_validate(fields)
        session.add(resident)
    else:
        for key, value in fields.items():
            setattr(resident, key, value)
        if "phones" in changes or "contacts" in changes:
            # phones and contacts live in their own tables; the resident row still moves
            # revision so search indexes (in any process) pick the change up
            flag_modified(resident, "updated_at")
    await session.flush()
    assert resident.id is not None
    if resident_id is None or "phones" in changes:
        held = {p.number for p in old.phones} if old is not None else set()
        await claim_phones(
            session,
            numbers=[p.number for p in data.phones if p.number not in held],
            resident_id=resident.id,
        )
        await session.execute(
            delete(ResidentPhone).where(col(ResidentPhone.resident_id) == resident.id)
        )
        session.add_all(
            ResidentPhone(resident_id=resident.id, number=p.number, kind=p.kind)
            for p in data.phones
        )
    if resident_id is None or "contacts" in changes:
        await session.execute(
            delete(EmergencyContact).where(col(EmergencyContact.resident_id) == resident.id)
        )
        session.add_all(
            EmergencyContact(
                resident_id=resident.id,
                position=i,
                name=c.name,
                relation=c.relation,
                kind=c.kind,
                phone=c.phones[0],
                phones=list(c.phones),
                when_to_call=c.when_to_call,
                notify_events=list(c.notify_events),
                notify_by=c.notify_by,
                notify_quiet=c.notify_quiet,
            )
            for i, c in enumerate(data.contacts)
        )
    if data.status.value != previous_status:
        session.add(
            ResidentStatusChange(
                resident_id=resident.id,
                from_status=previous_status,
                to_status=data.status.value,
                reason=data.status_reason,
                by=actor,
            )
        )
    await session.flush()
    return resident, changes


@dataclass(frozen=True, slots=True)
class PhoneHolder:
    """A resident who has a number stored, and whether they hold it (`HOLDING` status)."""

    number: str
    resident_id: int
    holds: bool


class PhoneTaken(Duplicate):
    """A number another registered or suspended resident calls from (one phone, one resident)."""

    code = "phone_taken"

    def __init__(self, number: str, owner: int) -> None:
        super().__init__(
            f"phone {mask(number)} already belongs to resident {owner}", field="phones"
        )
        self.number = number
        self.owner = owner


async def phone_holders(
    session: AsyncSession, *, numbers: Iterable[str]
) -> dict[str, list[PhoneHolder]]:
    """Everyone who has one of `numbers` stored, by number (one query per 500 numbers)."""
    wanted = list(dict.fromkeys(numbers))
    out: dict[str, list[PhoneHolder]] = {}
    for start in range(0, len(wanted), IN_CHUNK):
        rows = await session.execute(
            select(col(ResidentPhone.number), col(ResidentPhone.resident_id), col(Resident.status))
            .join(Resident, col(Resident.id) == ResidentPhone.resident_id)
            .where(col(ResidentPhone.number).in_(wanted[start : start + IN_CHUNK]))
            .order_by(col(ResidentPhone.id))
        )
        for number, owner, status in rows.all():
            held = str(getattr(status, "value", status)) in HOLDING
            out.setdefault(number, []).append(PhoneHolder(number, int(owner), held))
    return out


def phone_owner(holders: Iterable[PhoneHolder], *, resident_id: int | None) -> int | None:
    """The one-phone-one-resident rule: the other resident who holds the number, if any.

    A number another registered or suspended resident calls from may not be given to
    `resident_id` (None: a new resident); one left on residents who moved out or died may
    (`phones_to_release` takes it off them). The API and the import both decide here.
    """
    return next((h.resident_id for h in holders if h.holds and h.resident_id != resident_id), None)


def phones_to_release(holders: Iterable[PhoneHolder], *, resident_id: int | None) -> list[int]:
    """The residents (moved out or died) a number is taken off when `resident_id` gets it."""
    return [h.resident_id for h in holders if not h.holds and h.resident_id != resident_id]


async def claim_phones(
    session: AsyncSession, *, numbers: Iterable[str], resident_id: int | None
) -> list[int]:
    """Make `numbers` free for a resident: `PhoneTaken` if another active resident holds
    one; numbers left on residents who moved out or died are taken off them. Returns the
    ids of the residents who lost a number (their revision moves, for search indexes).
    """
    holders = await phone_holders(session, numbers=numbers)
    for number, found in sorted(holders.items()):
        owner = phone_owner(found, resident_id=resident_id)
        if owner is not None:
            raise PhoneTaken(number, owner)
    released: dict[int, list[str]] = {}
    for number, found in holders.items():
        for rid in phones_to_release(found, resident_id=resident_id):
            released.setdefault(rid, []).append(number)
    for rid, gone in sorted(released.items()):
        await session.execute(
            delete(ResidentPhone).where(
                col(ResidentPhone.resident_id) == rid, col(ResidentPhone.number).in_(gone)
            )
        )
        other = await session.get(Resident, rid)
        if other is not None:
            flag_modified(other, "updated_at")  # its revision moves at the next flush
    return sorted(released)


async def find_resident_for(session: AsyncSession, *, data: ResidentIn) -> Resident | None:
    """The stored resident a written one means: same ID number, else same name and address."""
    if data.id_number:
        found = (
            await session.execute(select(Resident).where(col(Resident.id_number) == data.id_number))
        ).scalar()
        if found is not None:
            return found
    return (
        await session.execute(
            select(Resident)
            .where(
                col(Resident.name) == data.name,
                col(Resident.address) == data.address,
                col(Resident.building) == data.building,
                col(Resident.unit) == data.unit,
                col(Resident.room) == data.room,
            )
            .order_by(col(Resident.id))
        )
    ).scalar()


async def merchant_input(session: AsyncSession, *, merchant: Merchant) -> MerchantIn:
    """A stored merchant in the shape it is written in."""
    services = (
        await session.execute(
            select(MerchantService)
            .where(col(MerchantService.merchant_id) == merchant.id)
            .order_by(col(MerchantService.category_code))
        )
    ).scalars()
    values = merchant.model_dump(exclude={"id", "created_at", "hours", "holidays"})
    return MerchantIn.model_validate(
        {
            **values,
            "hours": merchant.hours or {},
            "holidays": merchant.holidays or {},
            "services": [
                {
                    "category": s.category_code,
                    "price_note": s.price_note,
                    "price_kind": s.price_kind,
                    "price_yuan": s.price_yuan,
                }
                for s in services
            ],
        }
    )


def merchant_changes(old: MerchantIn | None, new: MerchantIn) -> list[str]:
    """The fields an edit would change (every set field for a new merchant)."""
    fresh = new.model_dump(mode="json")
    fresh["services"] = sorted(fresh["services"], key=lambda s: s["category"])
    if old is None:
        return sorted(k for k, v in fresh.items() if v not in (None, "", [], {}))
    before = old.model_dump(mode="json")
    before["services"] = sorted(before["services"], key=lambda s: s["category"])
    return sorted(k for k in fresh if fresh[k] != before.get(k))


async def save_merchant(
    session: AsyncSession, *, data: MerchantIn, merchant_id: int | None = None, actor: str
) -> tuple[Merchant, list[str]]:
    """Create or update a merchant with its services; contract changes are kept as history."""
    known = await grid_codes(session)
    if data.grid_code not in known:
        raise Invalid(f"unknown grid {data.grid_code!r}", field="grid_code", code="unknown_grid")
    for code in data.service_grids:
        if code not in known:
            raise Invalid(f"unknown grid {code!r}", field="service_grids", code="unknown_grid")
    categories = set((await session.execute(select(col(ServiceCategory.code)))).scalars())
    for service in data.services:
        if service.category not in categories:
            raise Invalid(
                f"unknown category {service.category!r}", field="services", code="unknown_category"
            )
    if data.external_code:
        other = (
            await session.execute(
                select(col(Merchant.id)).where(col(Merchant.external_code) == data.external_code)
            )
        ).scalar()
        if other is not None and other != merchant_id:
            raise Duplicate(
                f"external code already belongs to merchant {other}", field="external_code"
            )
    merchant = None
    old: MerchantIn | None = None
    if merchant_id is not None:
        merchant = await get_merchant(session, merchant_id=merchant_id)
        old = await merchant_input(session, merchant=merchant)
    changes = merchant_changes(old, data)
    if merchant is not None and not changes:
        return merchant, []
    fields = data.model_dump(exclude={"services", "hours", "holidays"})
    fields["hours"] = data.hours_json()
    fields["holidays"] = data.holidays_json()
    if merchant is None:
        merchant = Merchant.model_validate(fields)
        session.add(merchant)
    else:
        for key, value in fields.items():
            setattr(merchant, key, value)
    await session.flush()
    assert merchant.id is not None
    if "services" in changes:
        await session.execute(
            delete(MerchantService).where(col(MerchantService.merchant_id) == merchant.id)
        )
        session.add_all(
            MerchantService(
                merchant_id=merchant.id,
                category_code=s.category,
                price_note=s.price_note,
                price_kind=s.price_kind,
                price_yuan=s.price_yuan,
            )
            for s in data.services
        )
    contract_fields = {"contract_status", "contract_start", "contract_end", "contract_signed_by"}
    if contract_fields & set(changes):
        session.add(
            ContractChange(
                merchant_id=merchant.id,
                status=data.contract_status.value,
                start=data.contract_start,
                end=data.contract_end,
                signed_by=data.contract_signed_by,
                by=actor,
            )
        )
    await session.flush()
    return merchant, changes


async def change_contract(
    session: AsyncSession, *, merchant_id: int, contract: ContractIn, actor: str
) -> Merchant:
    """Set a merchant's contract; takes effect in matching at once, history is kept."""
    merchant = await get_merchant(session, merchant_id=merchant_id)
    merchant.contract_status = contract.status
    merchant.contract_start = contract.start
    merchant.contract_end = contract.end
    merchant.contract_signed_by = contract.signed_by
    session.add(
        ContractChange(
            merchant_id=merchant_id,
            status=contract.status.value,
            start=contract.start,
            end=contract.end,
            signed_by=contract.signed_by,
            note=contract.note,
            by=actor,
        )
    )
    await session.flush()
    return merchant


async def contract_history(session: AsyncSession, *, merchant_id: int) -> Sequence[ContractChange]:
    """A merchant's contract changes, oldest first."""
    return (
        (
            await session.execute(
                select(ContractChange)
                .where(col(ContractChange.merchant_id) == merchant_id)
                .order_by(col(ContractChange.id))
            )
        )
        .scalars()
        .all()
    )


async def find_merchant_for(session: AsyncSession, *, data: MerchantIn) -> Merchant | None:
    """The stored merchant a written one means: same external code, else name and address."""
    if data.external_code:
        found = (
            await session.execute(
                select(Merchant).where(col(Merchant.external_code) == data.external_code)
            )
        ).scalar()
        if found is not None:
            return found
    return (
        await session.execute(
            select(Merchant)
            .where(col(Merchant.name) == data.name, col(Merchant.address) == data.address)
            .order_by(col(Merchant.id))
        )
    ).scalar()


async def save_category(session: AsyncSession, *, data: CategoryIn) -> ServiceCategory:
    """Create or replace a catalog category (its keypad keys come from the hotline flow)."""
    category = await session.get(ServiceCategory, data.code)
    values = data.model_dump()
    if category is None:
        category = ServiceCategory.model_validate(values)
        session.add(category)
    else:
        for key, value in values.items():
            setattr(category, key, value)
    await session.flush()
    return category


async def list_grids(session: AsyncSession) -> Sequence[Grid]:
    """Every grid, by code."""
    return (await session.execute(select(Grid).order_by(col(Grid.code)))).scalars().all()


async def save_grid(session: AsyncSession, *, data: GridIn, create: bool) -> Grid:
    """Create a grid (a code already taken is a `Duplicate`) or change its name."""
    grid = await session.get(Grid, data.code)
    if create and grid is not None:
        raise Duplicate(f"grid {data.code} exists already", field="code")
    if grid is None:
        if not create:
            raise NotFound("grid", data.code)
        grid = Grid.model_validate(data.model_dump())
        session.add(grid)
    else:
        grid.name, grid.community = data.name, data.community
        grid.worker_name, grid.worker_phone = data.worker_name, data.worker_phone
    await session.flush()
    return grid


async def count_residents(session: AsyncSession) -> int:
    """How many residents are registered (any status)."""
    return int((await session.execute(select(func.count()).select_from(Resident))).scalar_one())
