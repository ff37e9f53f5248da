"""Who: residents, their phones and emergency contacts, merchants, the service catalog, grids.

Tables follow the Base -> Create/Update -> Table -> Public pattern where an API shows them.
Residents and merchants are never hard-deleted; a status keeps their history.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from registry.db import BigId, EnumText, JSONType, UTCDateTime, utcnow


class Urgency(enum.StrEnum):
    """How fast a category of need must be served."""

    EMERGENCY = "emergency"
    URGENT = "urgent"
    ROUTINE = "routine"


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


class ServiceCategory(SQLModel, table=True):
    """A kind of need from the service catalog."""

    __tablename__ = "service_category"

    code: str = Field(primary_key=True, max_length=32)
    name_zh: str = Field(max_length=64)
    name_en: str = Field(max_length=64)
    urgency: Urgency = Field(default=Urgency.ROUTINE, sa_type=EnumText(Urgency))
    deadline_minutes: int = 120
    merchant_kinds: list[str] = Field(default_factory=list, sa_column=Column(JSONType))
    menu_digit: str | None = Field(default=None, max_length=1)
    sort_order: int = 0


class ResidentBase(SQLModel):
    """Fields an operator or admin may set on a resident."""

    name: str = Field(max_length=64, min_length=1)
    sex: str = Field(default="", max_length=8)
    birth_year: int | None = Field(default=None, ge=1900, le=2100)
    id_number: str | None = Field(default=None, max_length=32)
    address: str = Field(default="", max_length=200)
    building: str = Field(default="", max_length=16)
    unit: str = Field(default="", max_length=16)
    room: str = Field(default="", max_length=16)
    grid_code: str = Field(foreign_key="grid.code", max_length=32)
    lat: float | None = None
    lon: float | None = None
    groups: list[str] = Field(default_factory=list, sa_column=Column(JSONType))
    health_notes: str = Field(default="", max_length=2000)
    conditions: str = Field(default="", max_length=500)
    medicines: str = Field(default="", max_length=500)
    notes: str = Field(default="", max_length=1000)
    language: str = Field(default="zh-CN", max_length=16)
    status: ResidentStatus = Field(
        default=ResidentStatus.REGISTERED, sa_type=EnumText(ResidentStatus)
    )


class Resident(ResidentBase, table=True):
    """A registered resident (被服务对象)."""

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ResidentPhone(SQLModel, table=True):
    """A phone a resident calls from; numbers are stored normalized (E.164)."""

    __tablename__ = "resident_phone"
    __table_args__ = (UniqueConstraint("number", "resident_id"),)

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    resident_id: int = Field(foreign_key="resident.id", index=True, sa_type=BigId)
    number: str = Field(index=True, max_length=32)
    kind: str = Field(default="mobile", max_length=16)


class EmergencyContact(SQLModel, table=True):
    """One step of a resident's emergency-contact cascade, in `position` order."""

    __tablename__ = "emergency_contact"

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    resident_id: int = Field(foreign_key="resident.id", index=True, sa_type=BigId)
    position: int = 0
    name: str = Field(max_length=64)
    relation: str = Field(default="", max_length=32)
    phone: str = Field(max_length=32)
    when_to_call: str = Field(default="", max_length=100)


class Merchant(SQLModel, table=True):
    """A contracted responder (应答资源): pharmacy, shop, clinic, utility, ..."""

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    name: str = Field(max_length=100)
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
    #: order-call phones in the order they are tried (shop line, owner mobile)
    phones: list[str] = Field(default_factory=list, sa_column=Column(JSONType))
    contract_status: ContractStatus = Field(
        default=ContractStatus.ACTIVE, sa_type=EnumText(ContractStatus)
    )
    contract_start: date | None = None
    contract_end: date | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class MerchantService(SQLModel, table=True):
    """A catalog category a merchant takes, with its price note."""

    __tablename__ = "merchant_service"

    merchant_id: int = Field(foreign_key="merchant.id", primary_key=True, sa_type=BigId)
    category_code: str = Field(foreign_key="service_category.code", primary_key=True)
    price_note: str = Field(default="", max_length=100)


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
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
