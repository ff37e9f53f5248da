"""Who: residents, their phones and emergency contacts, merchants, the service catalog, grids.

Tables follow the Base -> Create/Update -> Table -> Public pattern where an API shows them.
Residents and merchants are never hard-deleted; a status keeps their history.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import Column, Index, event
from sqlalchemy import true as sa_true
from sqlmodel import Field, SQLModel

from eventlog.db import BigId, EnumText, JSONType, UTCDateTime, utcnow
from registry.names import pinyin_keys


class Urgency(enum.StrEnum):
    """How fast a category of need must be served."""

    EMERGENCY = "emergency"
    URGENT = "urgent"
    ROUTINE = "routine"


class PriceKind(enum.StrEnum):
    """Who pays for a merchant's service: said on the offer call and to the resident."""

    SUBSIDISED = "subsidised"
    SELF_PAID = "self_paid"
    FREE = "free"


class ResidentStatus(enum.StrEnum):
    """Where a resident stands with the service."""

    REGISTERED = "registered"
    SUSPENDED = "suspended"
    MOVED_OUT = "moved_out"
    DECEASED = "deceased"


class ContractStatus(enum.StrEnum):
    """A merchant's contract with the community."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    ENDED = "ended"


class Role(enum.StrEnum):
    """Who a console user is."""

    OPERATOR = "operator"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"
    MERCHANT = "merchant"


class Grid(SQLModel, table=True):
    """A 网格: the smallest unit of community management."""

    code: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=64)
    community: str = Field(max_length=64)
    #: the grid's 网格员: rung from the operator's emergency panel (never shown to merchants)
    worker_name: str = Field(default="", max_length=64)
    worker_phone: str = Field(default="", max_length=32)


class ServiceCategory(SQLModel, table=True):
    """A kind of need from the service catalog."""

    __tablename__ = "service_category"

    code: str = Field(primary_key=True, max_length=32)
    name_zh: str = Field(max_length=64)
    name_en: str = Field(max_length=64)
    urgency: Urgency = Field(default=Urgency.ROUTINE, sa_type=EnumText(Urgency))
    deadline_minutes: int = 120
    merchant_kinds: list[str] = Field(default_factory=list, sa_column=Column(JSONType))
    sort_order: int = 0
    #: what an operator reads or a prompt says for the category (falls back to the name)
    text_zh: str = Field(default="", max_length=200)
    text_en: str = Field(default="", max_length=200)
    #: the resident's consent (to pay, typically) is on the ticket before it is dispatched
    needs_consent: bool = False


class ResidentBase(SQLModel):
    """Fields an operator or admin may set on a resident."""

    name: str = Field(max_length=64, min_length=1)
    sex: str = Field(default="", max_length=8)
    birth_year: int | None = Field(default=None, ge=1900, le=2100)
    #: unique when present (several residents may have none); shown masked
    id_number: str | None = Field(default=None, max_length=32)
    address: str = Field(default="", max_length=200)
    building: str = Field(default="", max_length=16)
    unit: str = Field(default="", max_length=16)
    room: str = Field(default="", max_length=16)
    grid_code: str = Field(foreign_key="grid.code", max_length=32)
    lat: float | None = None
    lon: float | None = None
    community: str = Field(default="", max_length=64)
    groups: list[str] = Field(default_factory=list, sa_column=Column(JSONType))
    mobility: str = Field(default="", max_length=32)
    hearing: str = Field(default="", max_length=32)
    sight: str = Field(default="", max_length=32)
    dialect: str = Field(default="", max_length=32)
    health_notes: str = Field(default="", max_length=2000)
    conditions: str = Field(default="", max_length=500)
    medicines: str = Field(default="", max_length=500)
    #: what an operator must know first in an emergency (falls, oxygen, lives alone, ...)
    risk_notes: str = Field(default="", max_length=500)
    #: who holds a key to the home (name and how to reach them), and where a key safe is
    key_holder: str = Field(default="", max_length=100)
    key_safe: str = Field(default="", max_length=200)
    #: notes for operators: "ring after 4 pm", "speak slowly", "key with neighbour in 302"
    notes: str = Field(default="", max_length=1000)
    language: str = Field(default="zh-CN", max_length=16)
    #: a merchant id; checked on write rather than by a foreign key so imports of residents
    #: and merchants can come in either order
    usual_pharmacy_id: int | None = Field(default=None, sa_type=BigId)
    #: category code -> merchant id the resident prefers for it
    preferred_merchants: dict[str, int] = Field(default_factory=dict, sa_column=Column(JSONType))
    status: ResidentStatus = Field(
        default=ResidentStatus.REGISTERED, sa_type=EnumText(ResidentStatus)
    )


class Resident(ResidentBase, table=True):
    """A registered resident (被服务对象)."""

    __table_args__ = (
        Index("ix_resident_name_initials", "name_initials"),
        Index("ix_resident_name_pinyin", "name_pinyin"),
        Index("ux_resident_id_number", "id_number", unique=True),
    )

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    #: kept by `registry.search.pinyin_keys` on every write: "wangxiuying" / "wxy"
    name_pinyin: str = Field(default="", max_length=200)
    name_initials: str = Field(default="", max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    #: the registry revision of the last change to the resident or their phones: search
    #: indexes (in this process or another) catch up with `revision > last seen`
    revision: int = Field(default=0, sa_type=BigId, index=True)


class RegistryRevision(SQLModel, table=True):
    """A counter bumped by every resident write, in the writing transaction.

    Its row lock orders writers, so revisions become visible in increasing order and a
    reader that saw revision N has seen every change up to N.
    """

    __tablename__ = "registry_revision"

    key: str = Field(primary_key=True, max_length=32)
    value: int = Field(default=0, sa_type=BigId)


class ResidentStatusChange(SQLModel, table=True):
    """One change of a resident's status: the history is kept, the resident never deleted."""

    __tablename__ = "resident_status_change"

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    resident_id: int = Field(foreign_key="resident.id", index=True, sa_type=BigId)
    from_status: str = Field(default="", max_length=32)
    to_status: str = Field(max_length=32)
    reason: str = Field(default="", max_length=200)
    by: str = Field(default="", max_length=64)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ResidentPhone(SQLModel, table=True):
    """A phone a resident calls from; numbers are stored normalized (E.164).

    One number, one resident: the unique index makes the database refuse a second holder,
    so a caller ID never has to choose between two people (`repository.claim_phones` is
    the rule the API and the import apply before writing).
    """

    __tablename__ = "resident_phone"
    __table_args__ = (Index("ux_resident_phone_number", "number", unique=True),)

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    resident_id: int = Field(foreign_key="resident.id", index=True, sa_type=BigId)
    number: str = Field(max_length=32)
    kind: str = Field(default="mobile", max_length=16)


#: what a family contact may hear about (dispatch.family), in the order forms show them
FAMILY_EVENTS = ("accepted", "arrived", "completed", "late", "no_show", "emergency")
#: what a new contact hears about: when something goes wrong
FAMILY_EVENTS_DEFAULT = ("late", "no_show", "emergency")
#: how a contact is told
FAMILY_CHANNELS = ("text", "call")


class EmergencyContact(SQLModel, table=True):
    """One step of a resident's emergency-contact cascade, in `position` order."""

    __tablename__ = "emergency_contact"

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    resident_id: int = Field(foreign_key="resident.id", index=True, sa_type=BigId)
    position: int = 0
    name: str = Field(max_length=64)
    relation: str = Field(default="", max_length=32)
    #: the first phone to try (kept for dispatch); `phones` holds all of them in order
    phone: str = Field(max_length=32)
    phones: list[str] = Field(default_factory=list, sa_column=Column(JSONType))
    #: family, neighbour, grid_worker, community_staff
    kind: str = Field(default="family", max_length=32)
    when_to_call: str = Field(default="", max_length=100)
    #: the ticket events this contact is told about (FAMILY_EVENTS)
    notify_events: list[str] = Field(
        default_factory=lambda: list(FAMILY_EVENTS_DEFAULT),
        sa_column=Column(
            JSONType, nullable=False, server_default='["late", "no_show", "emergency"]'
        ),
    )
    #: told by a text or a short call (FAMILY_CHANNELS)
    notify_by: str = Field(
        default="text", max_length=8, sa_column_kwargs={"server_default": "text"}
    )
    #: nothing but emergencies at night: told when the quiet hours end
    notify_quiet: bool = Field(default=True, sa_column_kwargs={"server_default": sa_true()})


class Merchant(SQLModel, table=True):
    """A contracted responder (应答资源): pharmacy, shop, clinic, utility, ..."""

    __table_args__ = (Index("ux_merchant_external_code", "external_code", unique=True),)

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    #: the community office's own code for the merchant, if it keeps one (import key)
    external_code: str | None = Field(default=None, max_length=32)
    name: str = Field(max_length=100)
    #: an open list: pharmacy, supermarket, shop, clinic, ... or whatever a community adds
    kind: str = Field(max_length=32, index=True)
    address: str = Field(default="", max_length=200)
    grid_code: str = Field(foreign_key="grid.code", max_length=32)
    lat: float | None = None
    lon: float | None = None
    service_grids: list[str] = Field(default_factory=list, sa_column=Column(JSONType))
    radius_m: int = 0
    capacity: int = 3
    #: weekday ("0" Monday .. "6" Sunday) -> list of ["08:00", "20:00"] spans, local time
    hours: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType))
    #: local date "2026-10-01" -> spans that replace the weekday's hours ([] = closed)
    holidays: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType))
    #: order-call phones in the order they are tried (shop line, owner mobile)
    phones: list[str] = Field(default_factory=list, sa_column=Column(JSONType))
    contract_status: ContractStatus = Field(
        default=ContractStatus.ACTIVE, sa_type=EnumText(ContractStatus)
    )
    contract_start: date | None = None
    contract_end: date | None = None
    contract_signed_by: str = Field(default="", max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ContractChange(SQLModel, table=True):
    """One change of a merchant's contract, kept as history."""

    __tablename__ = "contract_change"

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    merchant_id: int = Field(foreign_key="merchant.id", index=True, sa_type=BigId)
    status: str = Field(max_length=32)
    start: date | None = None
    end: date | None = None
    signed_by: str = Field(default="", max_length=64)
    note: str = Field(default="", max_length=200)
    by: str = Field(default="", max_length=64)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class MerchantService(SQLModel, table=True):
    """A catalog category a merchant takes, with its price note: who pays (`price_kind`,
    None when not stated), the resident's share in whole yuan, and a short text."""

    __tablename__ = "merchant_service"

    merchant_id: int = Field(foreign_key="merchant.id", primary_key=True, sa_type=BigId)
    category_code: str = Field(foreign_key="service_category.code", primary_key=True)
    price_note: str = Field(default="", max_length=100)
    price_kind: PriceKind | None = Field(default=None, sa_type=EnumText(PriceKind))
    price_yuan: int | None = None


class User(SQLModel, table=True):
    """A console login: operator, supervisor, admin or merchant."""

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    username: str = Field(unique=True, max_length=64)
    display_name: str = Field(default="", max_length=64)
    password_hash: str = Field(max_length=256)
    role: Role = Field(sa_type=EnumText(Role))
    merchant_id: int | None = Field(default=None, foreign_key="merchant.id", sa_type=BigId)
    active: bool = True


class AccessLog(SQLModel, table=True):
    """One read of a resident record: who, when, why."""

    __tablename__ = "access_log"

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    user_id: int | None = Field(default=None, sa_type=BigId)
    username: str = Field(max_length=64)
    resident_id: int = Field(index=True, sa_type=BigId)
    reason: str = Field(max_length=64)
    #: what the read was for, e.g. "call:12", "ticket:7" (never personal data)
    ref: str = Field(default="", max_length=64)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)


@event.listens_for(Resident, "before_insert")
@event.listens_for(Resident, "before_update")
def _resident_keys(_mapper: Any, conn: Any, target: Resident) -> None:
    """Every ORM write keeps the pinyin keys, `updated_at` and `revision` current."""
    target.name_pinyin, target.name_initials = pinyin_keys(target.name)
    target.updated_at = utcnow()
    target.revision = next_revision(conn)
    if target.id_number == "":
        target.id_number = None


def next_revision(conn: Any) -> int:
    """Bump the registry revision inside the caller's transaction and return it."""
    table = RegistryRevision.__table__  # type: ignore[attr-defined]
    value = conn.execute(
        table.update()
        .where(table.c.key == "resident")
        .values(value=table.c.value + 1)
        .returning(table.c.value)
    ).scalar()
    if value is None:  # a database that was not made by the migrations
        conn.execute(table.insert().values(key="resident", value=1))
        value = 1
    return int(value)


@event.listens_for(EmergencyContact, "before_insert")
@event.listens_for(EmergencyContact, "before_update")
def _contact_phones(_mapper: Any, _conn: Any, target: EmergencyContact) -> None:
    """`phone` is always the first of `phones`, whichever of the two was set."""
    if target.phones:
        target.phone = target.phones[0]
    elif target.phone:
        target.phones = [target.phone]
