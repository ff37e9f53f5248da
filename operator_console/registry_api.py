"""Registry endpoints on the shared `API` table: import / export for the console's upload
page, resident and merchant editing, contracts, the service catalog and the access log.

Registry errors (`registry.repository.Invalid`, `Duplicate`) are translated here into the
API's own 422 / 409 errors, with the field at fault in `details` so a form can show the
message next to it. Every write is one unit of work: the rows and an event-log entry
(ids and changed field names only, never personal data) commit together. An edit may
carry the `version` it was made from; a record changed since then is refused with 409.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlmodel import col

from dispatch.errors import Conflict
from dispatch.events import Tx
from dispatch.models import Ticket
from operator_console.api import (
    ADMINS,
    API,
    OPERATORS,
    body,
    int_param,
    ok,
    services,
    user_of,
)
from operator_console.errors import FieldInvalid, field_error
from operator_console.registry_views import (
    CategoryOut,
    ContractOut,
    MerchantOut,
    MerchantRow,
    ResidentCard,
    ResidentHit,
)
from operator_console.resident_search import search
from operator_console.views import ticket_public
from registry import repository as repo
from registry.models import Merchant, ServiceCategory
from registry.schemas import CategoryIn, ContractIn, MerchantIn, ResidentIn
from registry.search import match_merchants

log = logging.getLogger(__name__)


class FieldConflict(Conflict):
    """A 409 that names the field at fault, with a machine `code` (see `errors.py`)."""

    def __init__(
        self,
        message: str,
        field: str | None = None,
        *,
        code: str = "conflict",
        ctx: dict[str, Any] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.details = [field_error(field, message, code, ctx, **extra)] if field else None


@contextlib.asynccontextmanager
async def registry_errors() -> AsyncIterator[None]:
    """Registry rule violations as API errors: 409 for duplicates, 422 otherwise."""
    try:
        yield
    except repo.PhoneTaken as exc:
        raise FieldConflict(
            f"{exc}: a number belongs to one resident; "
            "take it off that resident first if it has really changed hands",
            exc.field,
            code=exc.code,
            ctx={"id": exc.owner},
            resident_id=exc.owner,
            number=exc.number,
        ) from exc
    except repo.Duplicate as exc:
        raise FieldConflict(str(exc), exc.field, code=exc.code) from exc
    except repo.Invalid as exc:
        raise FieldInvalid(str(exc), exc.field, code=exc.code) from exc


def version_of(values: Any) -> str:
    """A short fingerprint of a record as shown: an edit made from it sends it back."""
    text = json.dumps(values, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_version(sent: Any, current: str) -> None:
    """Refuse an edit made from an older copy of the record (409 on `version`)."""
    if sent is not None and str(sent) != current:
        raise FieldConflict(
            "someone changed this record after you opened it; reload it and edit again",
            "version",
            code="stale_version",
            current=current,
        )


# -- residents --
@API.route(
    "GET",
    "/catalog",
    summary="The service catalog in menu order",
    roles=OPERATORS,
    tag="registry",
    response=list[CategoryOut],
)
async def catalog(request: web.Request) -> web.Response:
    """The service catalog."""
    async with services(request).store.read() as session:
        rows = await repo.list_categories(session)
    keys = services(request).dispatch.calls.hotline_keys()
    return ok([c.model_dump(mode="json") | {"keypad": keys.get(c.code)} for c in rows])


@API.route(
    "GET",
    "/residents",
    summary="Search residents: name, pinyin (initials), phone digits, address, grid",
    roles=OPERATORS,
    tag="registry",
    response=list[ResidentHit],
)
async def search_residents(request: web.Request) -> web.Response:
    """Ranked search (registry.search); the residents shown are written to the access log."""
    user = user_of(request)
    q = request.query.get("q", "").strip()[:64]
    if not q:
        return ok([])
    return ok(await search(request, q, user))


@API.route(
    "GET",
    "/residents/{resident_id}",
    summary="A resident's card (the read is logged)",
    roles=OPERATORS,
    tag="registry",
    response=ResidentCard,
)
async def resident(request: web.Request) -> web.Response:
    """The resident card; `?reason=call|ticket|search` goes to the access log."""
    user = user_of(request)
    reason = request.query.get("reason", "console")[:32]
    resident_id = int_param(request, "resident_id")
    async with services(request).store.read() as session:
        card = await repo.resident_card(
            session,
            resident_id=resident_id,
            user=user,
            reason=reason,
            ref=request.query.get("ref", "")[:64],
        )
        tickets = (
            (
                await session.execute(
                    select(Ticket)
                    .where(col(Ticket.resident_id) == resident_id)
                    .order_by(col(Ticket.id).desc())
                    .limit(5)
                )
            )
            .scalars()
            .all()
        )
    card["recent_tickets"] = [ticket_public(t) for t in tickets]
    return ok(card)


class Patch(BaseModel):
    """Any subset of a record's fields (checked after merging with the stored record).

    `version` (optional) is the version the edit was made from.
    """

    model_config = {"extra": "allow"}


class ResidentCreate(ResidentIn):
    """A new resident. `allow_shared_phones` is refused when true: since one phone is one
    resident, a couple's landline is registered on one of them."""

    allow_shared_phones: bool = False


def refuse_shared(flag: object) -> None:
    """422 for a client that still asks for a phone shared between residents."""
    if flag:
        raise FieldInvalid(
            "a phone number belongs to one resident: register a shared landline on one "
            "of them (a call from a shared number could not say who is calling)",
            "allow_shared_phones",
        )


def phones_released(tx: Tx, released: list[int], *, taken_by: int, actor: str) -> None:
    """An event for each resident (moved out or died) whose number another one now holds."""
    for rid in released:
        tx.emit(
            "resident.updated",
            "resident",
            rid,
            actor=actor,
            changed=["phones"],
            reason="phone_taken",
            taken_by=taken_by,
        )


def resident_version(card: dict[str, Any]) -> str:
    """A resident's version: the registry revision of its last change."""
    return str(card.get("revision", ""))


@API.route(
    "POST",
    "/residents",
    summary="Register a resident with phones and contacts (409: a phone is taken)",
    roles=OPERATORS,
    body=ResidentCreate,
    tag="registry",
    response=ResidentCard,
    status=201,
)
async def create_resident(request: web.Request) -> web.Response:
    """A new resident; the card comes back (and the read is logged as an edit)."""
    user = user_of(request)
    given = await body(request, ResidentCreate)
    refuse_shared(given.allow_shared_phones)
    data = ResidentIn.model_validate(given.model_dump(exclude={"allow_shared_phones"}))
    async with services(request).store.tx() as tx, registry_errors():
        session = tx.session
        # one phone, one resident: 409 when a number is another active resident's
        released = await repo.claim_phones(
            session, numbers=[p.number for p in data.phones], resident_id=None
        )
        resident, changes = await repo.save_resident(session, data=data, actor=user.username)
        assert resident.id is not None
        tx.emit("resident.created", "resident", resident.id, actor=user.username, changed=changes)
        phones_released(tx, released, taken_by=resident.id, actor=user.username)
        card = await repo.resident_card(session, resident_id=resident.id, user=user, reason="edit")
    card["version"] = resident_version(card)
    log.info("resident %s registered by %s", resident.id, user.username)
    return ok(card, status=201)


@API.route(
    "PATCH",
    "/residents/{resident_id}",
    summary="Change a resident (status changes keep their history; 409 on a stale `version`)",
    roles=OPERATORS,
    body=Patch,
    tag="registry",
    response=ResidentCard,
)
async def update_resident(request: web.Request) -> web.Response:
    """Merge the given fields into the resident and save what changed."""
    user = user_of(request)
    resident_id = int_param(request, "resident_id")
    patch = (await body(request, Patch)).model_dump()
    sent_version = patch.pop("version", None)
    refuse_shared(patch.pop("allow_shared_phones", False))
    async with services(request).store.tx() as tx, registry_errors():
        session = tx.session
        resident = await repo.get_resident(session, resident_id=resident_id)
        check_version(sent_version, str(resident.revision))
        current = await repo.resident_input(session, resident=resident)
        data = ResidentIn.model_validate(current.model_dump(exclude={"status_reason"}) | patch)
        before = {p.number for p in current.phones}
        released = await repo.claim_phones(
            session,
            numbers=[p.number for p in data.phones if p.number not in before],
            resident_id=resident_id,
        )
        phones_released(tx, released, taken_by=resident_id, actor=user.username)
        old_status = resident.status.value
        _, changes = await repo.save_resident(
            session, data=data, resident_id=resident_id, actor=user.username
        )
        if changes:
            tx.emit(
                "resident.updated", "resident", resident_id, actor=user.username, changed=changes
            )
        if data.status.value != old_status:
            tx.emit(
                "resident.status_changed",
                "resident",
                resident_id,
                actor=user.username,
                from_status=old_status,
                to_status=data.status.value,
            )
        card = await repo.resident_card(session, resident_id=resident_id, user=user, reason="edit")
    log.info("resident %s changed by %s: %s", resident_id, user.username, ",".join(changes))
    card["changed"] = changes
    card["version"] = resident_version(card)
    return ok(card)


# -- merchants --
def merchant_public(merchant: Merchant, data: MerchantIn) -> dict[str, Any]:
    """A merchant for staff, with the version an edit must send back."""
    out = data.model_dump(mode="json")
    out["version"] = version_of(out)
    out["id"] = merchant.id
    out["hours"] = merchant.hours
    out["holidays"] = merchant.holidays
    return out


class MerchantPatch(Patch):
    """Any subset of a merchant's fields, and the `version` the edit was made from."""


@API.route(
    "GET",
    "/merchants",
    summary="Every merchant, or ?q= name, pinyin (initials), id or code, best first",
    roles=OPERATORS,
    tag="registry",
    response=list[MerchantRow],
)
async def list_merchants(request: web.Request) -> web.Response:
    """Merchants with kind and contract, for the console."""
    q = request.query.get("q", "").strip()[:64]
    async with services(request).store.read() as session:
        found = (await session.execute(select(Merchant).order_by(col(Merchant.id)))).scalars()
        rows = match_merchants(found, q) if q else list(found)
        return ok(
            [
                {
                    "id": m.id,
                    "name": m.name,
                    "kind": m.kind,
                    "grid_code": m.grid_code,
                    "contract_status": m.contract_status.value,
                    "contract_end": m.contract_end,
                    "capacity": m.capacity,
                }
                for m in rows
            ]
        )


@API.route(
    "GET",
    "/merchants/{merchant_id}",
    summary="A merchant with services and contract history",
    roles=OPERATORS,
    tag="registry",
    response=MerchantOut,
)
async def merchant_detail(request: web.Request) -> web.Response:
    """One merchant."""
    merchant_id = int_param(request, "merchant_id")
    async with services(request).store.read() as session:
        merchant = await repo.get_merchant(session, merchant_id=merchant_id)
        out = merchant_public(merchant, await repo.merchant_input(session, merchant=merchant))
        out["contract_history"] = [
            h.model_dump(mode="json", exclude={"merchant_id"})
            for h in await repo.contract_history(session, merchant_id=merchant_id)
        ]
    return ok(out)


@API.route(
    "POST",
    "/merchants",
    summary="Add a merchant",
    roles=ADMINS,
    body=MerchantIn,
    tag="registry",
    response=MerchantOut,
    status=201,
)
async def create_merchant(request: web.Request) -> web.Response:
    """A new merchant."""
    user = user_of(request)
    data = await body(request, MerchantIn)
    async with services(request).store.tx() as tx, registry_errors():
        merchant, changes = await repo.save_merchant(tx.session, data=data, actor=user.username)
        tx.emit("merchant.created", "merchant", merchant.id, actor=user.username, changed=changes)
        out = merchant_public(merchant, data)
    log.info("merchant %s added by %s", merchant.id, user.username)
    # matching keeps an index of merchants; it must see this change at once
    services(request).dispatch.ranking.invalidate_merchants()
    return ok(out, status=201)


@API.route(
    "PATCH",
    "/merchants/{merchant_id}",
    summary="Change a merchant (409 on a stale `version`)",
    roles=ADMINS,
    body=MerchantPatch,
    tag="registry",
    response=MerchantOut,
)
async def update_merchant(request: web.Request) -> web.Response:
    """Merge the given fields into the merchant."""
    user = user_of(request)
    merchant_id = int_param(request, "merchant_id")
    patch = (await body(request, MerchantPatch)).model_dump()
    sent_version = patch.pop("version", None)
    async with services(request).store.tx() as tx, registry_errors():
        session = tx.session
        merchant = await repo.get_merchant(session, merchant_id=merchant_id)
        current = await repo.merchant_input(session, merchant=merchant)
        check_version(sent_version, version_of(current.model_dump(mode="json")))
        data = MerchantIn.model_validate(current.model_dump() | patch)
        merchant, changes = await repo.save_merchant(
            session, data=data, merchant_id=merchant_id, actor=user.username
        )
        if changes:
            tx.emit(
                "merchant.updated", "merchant", merchant_id, actor=user.username, changed=changes
            )
        out = merchant_public(merchant, data)
    out["changed"] = changes
    log.info("merchant %s changed by %s: %s", merchant_id, user.username, ",".join(changes))
    # matching keeps an index of merchants; it must see this change at once
    services(request).dispatch.ranking.invalidate_merchants()
    return ok(out)


@API.route(
    "POST",
    "/merchants/{merchant_id}/contract",
    summary="Change a merchant's contract (takes effect in matching at once)",
    roles=ADMINS,
    body=ContractIn,
    tag="registry",
    response=ContractOut,
)
async def change_contract(request: web.Request) -> web.Response:
    """Set the contract status and dates; the change is kept in the history."""
    user = user_of(request)
    merchant_id = int_param(request, "merchant_id")
    data = await body(request, ContractIn)
    async with services(request).store.tx() as tx:
        merchant = await repo.change_contract(
            tx.session, merchant_id=merchant_id, contract=data, actor=user.username
        )
        tx.emit(
            "merchant.contract_changed",
            "merchant",
            merchant_id,
            actor=user.username,
            status=data.status.value,
            start=data.start.isoformat() if data.start else None,
            end=data.end.isoformat() if data.end else None,
        )
    log.info("merchant %s contract set to %s by %s", merchant_id, data.status.value, user.username)
    # matching keeps an index of merchants; it must see this change at once
    services(request).dispatch.ranking.invalidate_merchants()
    return ok(
        {
            "id": merchant.id,
            "contract_status": merchant.contract_status.value,
            "contract_start": merchant.contract_start,
            "contract_end": merchant.contract_end,
            "contract_signed_by": merchant.contract_signed_by,
        }
    )


# -- catalog --
class CategoryPut(CategoryIn):
    """A catalog category, and the `version` the edit was made from (optional)."""

    version: str | None = Field(default=None, max_length=32)


def category_public(request: web.Request, category: ServiceCategory) -> dict[str, Any]:
    """A category with its version and the hotline keys that order it (from the flow)."""
    out = category.model_dump(mode="json")
    out["version"] = version_of(out)
    out["keypad"] = services(request).dispatch.calls.hotline_keys().get(category.code)
    return out


async def _save_category(
    request: web.Request, data: CategoryPut, *, create: bool
) -> tuple[dict[str, Any], bool]:
    user = user_of(request)
    category_in = CategoryIn.model_validate(data.model_dump(exclude={"version"}))
    async with services(request).store.tx() as tx, registry_errors():
        existing = await tx.session.get(ServiceCategory, data.code)
        if existing is not None:
            if create:
                raise FieldConflict(
                    f"category {data.code} exists already", "code", code="duplicate"
                )
            check_version(data.version, category_public(request, existing)["version"])
        category = await repo.save_category(tx.session, data=category_in)
        tx.emit(
            "category.saved",
            "category",
            data.code,
            actor=user.username,
            created=existing is None,
        )
        out = category_public(request, category)
    log.info("catalog category %s saved by %s", data.code, user.username)
    # matching keeps an index of merchants; it must see this change at once
    services(request).dispatch.ranking.invalidate_merchants()
    return out, existing is None


@API.route(
    "GET",
    "/catalog/{code}",
    summary="One catalog category with its version",
    roles=OPERATORS,
    tag="registry",
    response=CategoryOut,
)
async def get_category(request: web.Request) -> web.Response:
    """A category."""
    async with services(request).store.read() as session:
        category = await repo.get_category(session, code=request.match_info["code"][:32])
        return ok(category_public(request, category))


@API.route(
    "POST",
    "/catalog",
    summary="Add a catalog category (409 if the code exists)",
    roles=ADMINS,
    body=CategoryPut,
    tag="registry",
    response=CategoryOut,
    status=201,
)
async def create_category(request: web.Request) -> web.Response:
    """A new category."""
    data = await body(request, CategoryPut)
    out, _ = await _save_category(request, data, create=True)
    return ok(out, status=201)


@API.route(
    "PUT",
    "/catalog/{code}",
    summary="Create or replace a catalog category (409 on a stale `version`)",
    roles=ADMINS,
    body=CategoryPut,
    tag="registry",
    response=CategoryOut,
)
async def put_category(request: web.Request) -> web.Response:
    """Edit the service catalog."""
    data = await body(request, CategoryPut)
    if data.code != request.match_info["code"]:
        raise FieldInvalid("the code in the path and the body differ", "code")
    out, created = await _save_category(request, data, create=False)
    return ok(out, status=201 if created else 200)
