"""What an admin or operator may write: validated input shapes for residents, merchants,
contracts and the catalog. The import and the API both go through these, so a row from a
spreadsheet and a form on the console are checked by the same rules."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from registry.models import (
    FAMILY_CHANNELS,
    FAMILY_EVENTS,
    FAMILY_EVENTS_DEFAULT,
    ContractStatus,
    PriceKind,
    ResidentStatus,
    Urgency,
)
from registry.phones import normalize

GROUPS = ("孤寡", "空巢", "残疾")
CONTACT_KINDS = ("family", "neighbour", "grid_worker", "community_staff")
PHONE_KINDS = ("mobile", "landline", "other")
_HHMM = r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$"


#: control characters (C0 but tab, line feed and carriage return; DEL; C1) and lone
#: surrogates: PostgreSQL refuses NUL, UTF-8 cannot carry a surrogate, and none of them
#: belongs in a name, an address or a note
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
#: the largest id a 64-bit key column holds
MAX_ID = 2**63 - 1
#: a database id as input: a positive 64-bit integer
DbId = Annotated[int, Field(ge=1, le=MAX_ID)]


class Rule(ValueError):
    """A registry rule a value breaks; `code` is the machine code an API error carries
    (pydantic reports it per field as a `value_error`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def has_control(value: Any) -> bool:
    """True if a string, or any string inside a list, tuple or dict, has a control character."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if CONTROL.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set):
            stack.extend(item)
    return False


class Strict(BaseModel):
    """Inputs refuse unknown fields, trim strings and refuse control characters."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        if has_control(value):
            raise Rule("control_characters", "control characters are not allowed")
        return value


def _phones(values: list[str]) -> list[str]:
    out: list[str] = []
    for raw in values:
        number = normalize(
            raw, strict=True
        )  # BadPhone is a ValueError: pydantic reports it per field
        if number not in out:
            out.append(number)
    return out


class PhoneIn(Strict):
    """A resident's phone."""

    number: str = Field(min_length=1, max_length=32)
    kind: str = Field(default="mobile", pattern=f"^({'|'.join(PHONE_KINDS)})$")

    @field_validator("number")
    @classmethod
    def _normal(cls, value: str) -> str:
        return normalize(value, strict=True)


class ContactIn(Strict):
    """One step of the emergency cascade; its position is its place in the list."""

    name: str = Field(min_length=1, max_length=64)
    relation: str = Field(default="", max_length=32)
    kind: str = Field(default="family", max_length=32)
    phones: list[str] = Field(min_length=1, max_length=5)
    when_to_call: str = Field(default="", max_length=100)
    #: the ticket events they are told about (dispatch.family)
    notify_events: list[str] = Field(
        default_factory=lambda: list(FAMILY_EVENTS_DEFAULT), max_length=len(FAMILY_EVENTS)
    )
    #: told by "text" or "call"
    notify_by: str = "text"
    #: not at night (emergencies always go at once)
    notify_quiet: bool = True

    @field_validator("phones")
    @classmethod
    def _normal(cls, value: list[str]) -> list[str]:
        return _phones(value)

    @field_validator("notify_events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        unknown = [e for e in value if e not in FAMILY_EVENTS]
        if unknown:
            raise Rule(
                "unknown_notify_event",
                f"unknown event {unknown[0]!r} to tell a contact about; "
                f"use {', '.join(FAMILY_EVENTS)}",
            )
        return [e for e in FAMILY_EVENTS if e in value]

    @field_validator("notify_by")
    @classmethod
    def _channel(cls, value: str) -> str:
        if value not in FAMILY_CHANNELS:
            raise Rule(
                "unknown_notify_channel",
                f"a contact is told by {' or '.join(FAMILY_CHANNELS)}, not {value!r}",
            )
        return value


class ResidentIn(Strict):
    """A resident as an admin or operator writes it (create, or the merged result of an edit)."""

    name: str = Field(min_length=1, max_length=64)
    sex: str = Field(default="", pattern="^(男|女|)$")
    birth_year: int | None = Field(default=None, ge=1900, le=2100)
    id_number: str | None = Field(default=None, max_length=32, pattern=r"^[0-9]{17}[0-9Xx]$")
    address: str = Field(default="", max_length=200)
    building: str = Field(default="", max_length=16)
    unit: str = Field(default="", max_length=16)
    room: str = Field(default="", max_length=16)
    grid_code: str = Field(min_length=1, max_length=32)
    community: str = Field(default="", max_length=64)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    groups: list[str] = Field(default_factory=list, max_length=5)
    mobility: str = Field(default="", max_length=32)
    hearing: str = Field(default="", max_length=32)
    sight: str = Field(default="", max_length=32)
    dialect: str = Field(default="", max_length=32)
    health_notes: str = Field(default="", max_length=2000)
    conditions: str = Field(default="", max_length=500)
    medicines: str = Field(default="", max_length=500)
    risk_notes: str = Field(default="", max_length=500)
    key_holder: str = Field(default="", max_length=100)
    key_safe: str = Field(default="", max_length=200)
    notes: str = Field(default="", max_length=1000)
    language: str = Field(default="zh-CN", max_length=16)
    usual_pharmacy_id: DbId | None = None
    preferred_merchants: dict[str, DbId] = Field(default_factory=dict, max_length=50)
    status: ResidentStatus = ResidentStatus.REGISTERED
    status_reason: str = Field(default="", max_length=200)
    phones: list[PhoneIn] = Field(default_factory=list, max_length=6)
    contacts: list[ContactIn] = Field(default_factory=list, max_length=10)

    @field_validator("id_number", mode="before")
    @classmethod
    def _id_upper(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().upper()
            return value or None
        return value

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: list[str]) -> list[str]:
        unknown = [g for g in value if g not in GROUPS]
        if unknown:
            raise Rule("unknown_group", f"unknown group {unknown[0]!r}; use {', '.join(GROUPS)}")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _one_owner_per_number(self) -> ResidentIn:
        numbers = [p.number for p in self.phones]
        if len(numbers) != len(set(numbers)):
            raise Rule("phone_listed_twice", "the same phone is listed twice")
        return self


class ContractIn(Strict):
    """A contract change."""

    status: ContractStatus
    start: date | None = None
    end: date | None = None
    signed_by: str = Field(default="", max_length=64)
    note: str = Field(default="", max_length=200)

    @model_validator(mode="after")
    def _order(self) -> ContractIn:
        if self.start and self.end and self.end < self.start:
            raise Rule("contract_ends_before_start", "the contract ends before it starts")
        return self


class ServiceIn(Strict):
    """A catalog category a merchant takes, with its price note."""

    category: str = Field(min_length=1, max_length=32)
    price_note: str = Field(default="", max_length=100)
    #: who pays (None: not stated); the resident's share in whole yuan, if known
    price_kind: PriceKind | None = None
    price_yuan: int | None = Field(default=None, ge=0, le=100_000)


class MerchantIn(Strict):
    """A merchant as an admin writes it."""

    external_code: str | None = Field(default=None, max_length=32)
    name: str = Field(min_length=1, max_length=100)
    kind: str = Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")
    address: str = Field(default="", max_length=200)
    grid_code: str = Field(min_length=1, max_length=32)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    service_grids: list[str] = Field(default_factory=list, max_length=50)
    radius_m: int = Field(default=0, ge=0, le=100_000)
    capacity: int = Field(default=3, ge=0, le=1000)
    hours: dict[str, list[tuple[str, str]]] = Field(default_factory=dict)
    holidays: dict[date, list[tuple[str, str]]] = Field(default_factory=dict)
    phones: list[str] = Field(default_factory=list, max_length=5)
    services: list[ServiceIn] = Field(default_factory=list, max_length=30)
    contract_status: ContractStatus = ContractStatus.ACTIVE
    contract_start: date | None = None
    contract_end: date | None = None
    contract_signed_by: str = Field(default="", max_length=64)

    @field_validator("external_code", mode="before")
    @classmethod
    def _code(cls, value: Any) -> Any:
        return (value.strip() or None) if isinstance(value, str) else value

    @field_validator("phones")
    @classmethod
    def _normal(cls, value: list[str]) -> list[str]:
        return _phones(value)

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: dict[str, list[tuple[str, str]]]) -> dict[str, list[tuple[str, str]]]:
        for day, spans in value.items():
            if day not in {str(d) for d in range(7)}:
                raise Rule("bad_weekday", f"weekday {day!r} must be 0 (Monday) .. 6 (Sunday)")
            _check_spans(spans)
        return value

    @field_validator("holidays")
    @classmethod
    def _holidays(
        cls, value: dict[date, list[tuple[str, str]]]
    ) -> dict[date, list[tuple[str, str]]]:
        for spans in value.values():
            _check_spans(spans)
        return value

    def hours_json(self) -> dict[str, Any]:
        """Hours as stored."""
        return {day: [list(s) for s in spans] for day, spans in sorted(self.hours.items())}

    def holidays_json(self) -> dict[str, Any]:
        """Holiday exceptions as stored."""
        items = sorted(self.holidays.items())
        return {d.isoformat(): [list(s) for s in spans] for d, spans in items}


def _check_spans(spans: list[tuple[str, str]]) -> None:
    import re

    for start, end in spans:
        if not re.match(_HHMM, start) or not re.match(_HHMM, end) or not start < end:
            raise Rule("bad_opening_span", f"opening span {start}-{end} is not HH:MM-HH:MM")


class CategoryIn(Strict):
    """A catalog category as an admin writes it."""

    code: str = Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")
    name_zh: str = Field(min_length=1, max_length=64)
    name_en: str = Field(min_length=1, max_length=64)
    urgency: Urgency = Urgency.ROUTINE
    deadline_minutes: int = Field(default=120, ge=1, le=7 * 24 * 60)
    merchant_kinds: list[str] = Field(default_factory=list, max_length=20)
    sort_order: int = Field(default=0, ge=0, le=1000)
    text_zh: str = Field(default="", max_length=200)
    text_en: str = Field(default="", max_length=200)
    needs_consent: bool = False


class GridIn(Strict):
    """A grid as an admin writes it; the code is its key and never changes."""

    code: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    name: str = Field(min_length=1, max_length=64)
    community: str = Field(default="", max_length=64)
    worker_name: str = Field(default="", max_length=64)
    worker_phone: str = Field(default="", max_length=32)

    @field_validator("worker_phone")
    @classmethod
    def _worker_phone(cls, value: str) -> str:
        return normalize(value, strict=True) if value else ""
