"""What the registry routes answer (residents, merchants, the catalog, the access log):
their response models, which the OpenAPI document shows and tests check answers against."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from operator_console.openapi import Model, OpenModel
from operator_console.views import TicketOut


class CategoryOut(Model):
    """A catalog category, the hotline keys that order it, and (read alone) its version."""

    code: str
    name_zh: str
    name_en: str
    urgency: str
    deadline_minutes: int
    merchant_kinds: list[str]
    sort_order: int
    text_zh: str
    text_en: str
    #: the resident's consent to the price is recorded before a ticket is dispatched
    needs_consent: bool = False
    keypad: list[str] | str | None
    version: str | None = None


class ResidentHit(Model):
    """A search hit: enough to pick the right person, phones masked."""

    id: int
    name: str
    sex: str | None
    birth_year: int | None
    address: str
    grid_code: str
    grid_name: str
    groups: list[str]
    status: str
    phones: list[str]
    score: float
    matched: list[str]


class ResidentCard(OpenModel):
    """A resident's card (`registry.repository.resident_card`: every field of the record,
    the ID number masked), its phones, contacts and status history."""

    id: int
    name: str
    status: str
    phones: list[dict[str, Any]]
    contacts: list[dict[str, Any]]
    status_history: list[dict[str, Any]]
    recent_tickets: list[TicketOut] | None = None
    version: str | None = None
    changed: list[str] | None = None


class MerchantRow(Model):
    """A merchant in the list."""

    id: int
    name: str
    kind: str
    grid_code: str
    contract_status: str
    contract_end: date | None
    capacity: int


class MerchantOut(OpenModel):
    """A merchant (every field of `registry.schemas.MerchantIn`) with its version."""

    id: int
    name: str
    kind: str
    version: str
    contract_status: str
    contract_history: list[dict[str, Any]] | None = None
    changed: list[str] | None = None


class ContractOut(Model):
    """A merchant's contract now."""

    id: int
    contract_status: str
    contract_start: date | None
    contract_end: date | None
    contract_signed_by: str


class AccessOut(Model):
    """Who read which resident record, when and why."""

    id: int
    username: str
    user_id: int | None
    resident_id: int
    reason: str
    ref: str
    at: datetime
