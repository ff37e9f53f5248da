"""Registry endpoints on the shared `API` table: resident search and cards, resident and
merchant editing, contracts and the service catalog (import / export are in `import_api`,
the access log in `access_log_api`, the response models in `registry_views`).

Handlers parse, call a registry use case (`registry.usecases`: one unit of work whose
rows and events commit together) and render; the route table declares who may call
them. Registry errors (`registry.repository.Invalid`, `Duplicate`,
`registry.usecases.StaleVersion`) are translated here into the API's own 422 / 409
errors, with the field at fault in `details` and its machine code (`type`, `ctx`) so a
form can show the words next to it. An edit may carry the `version` it was made from; a
record changed since then is refused with 409 (`stale_version`). Matching and the search
index follow the use cases' events on the bus; no handler tells them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlmodel import col

from dispatch.errors import Conflict
from dispatch.models import Ticket
from operator_console import call_access
from operator_console.api import (
    ADMINS,
    API,
    OPERATORS,
    Strict,
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
from registry import usecases
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
    except usecases.StaleVersion as exc:
        raise FieldConflict(str(exc), "version", code=exc.code, current=exc.current) from exc
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
    # one phone, one resident: 409 when a number is another active resident's
    async with registry_errors():
        saved = await usecases.create_resident(services(request).store, data=data, user=user)
    return ok(saved.card, status=201)


class QuickRegister(Strict):
    """An unknown caller registered at the desk: the number is the call's, never sent."""

    name: str = Field(min_length=1, max_length=64)
    address: str = Field(default="", max_length=200)
    grid_code: str = Field(min_length=1, max_length=32)


@API.route(
    "POST",
    "/calls/{call_id}/register",
    summary="Quick register the unknown caller of one's call with the call's number "
    "(409: the caller is known, or the number is taken)",
    roles=OPERATORS,
    body=QuickRegister,
    tag="registry",
    response=ResidentCard,
    status=201,
)
async def quick_register(request: web.Request) -> web.Response:
    """Register the caller on the operator's call and tie the call to them."""
    user = user_of(request)
    call_id = int_param(request, "call_id")
    given = await body(request, QuickRegister)
    call = await call_access.check(request, call_id, user, "register")
    if call.resident_id is not None:
        raise Conflict(f"call {call_id}: the caller is registered already")
    data = ResidentIn.model_validate(
        given.model_dump() | {"phones": [{"number": call.number, "kind": "other"}]}
    )
    async with registry_errors():
        saved = await usecases.create_resident(services(request).store, data=data, user=user)
    await services(request).dispatch.calls.identify(call_id, saved.resident_id, user=user)
    return ok(saved.card, status=201)


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
    async with registry_errors():
        saved = await usecases.update_resident(
            services(request).store,
            resident_id=resident_id,
            patch=patch,
            version=sent_version,
            user=user,
        )
    return ok(saved.card | {"changed": saved.changed})


# -- merchants --
def merchant_public(merchant: Merchant, data: MerchantIn) -> dict[str, Any]:
    """A merchant for staff, with the version an edit must send back."""
    out = data.model_dump(mode="json")
    out["version"] = usecases.merchant_version(data)
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
    async with registry_errors():
        saved = await usecases.create_merchant(
            services(request).store, data=data, actor=user.username
        )
    return ok(merchant_public(saved.merchant, saved.data), status=201)


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
    async with registry_errors():
        saved = await usecases.update_merchant(
            services(request).store,
            merchant_id=merchant_id,
            patch=patch,
            version=sent_version,
            actor=user.username,
        )
    return ok(merchant_public(saved.merchant, saved.data) | {"changed": saved.changed})


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
    merchant = await usecases.change_contract(
        services(request).store, merchant_id=merchant_id, contract=data, actor=user.username
    )
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
    out["version"] = usecases.category_version(category)
    out["keypad"] = services(request).dispatch.calls.hotline_keys().get(category.code)
    return out


async def _save_category(
    request: web.Request, data: CategoryPut, *, create: bool
) -> tuple[dict[str, Any], bool]:
    user = user_of(request)
    category_in = CategoryIn.model_validate(data.model_dump(exclude={"version"}))
    async with registry_errors():
        category, created = await usecases.save_category(
            services(request).store,
            data=category_in,
            version=data.version,
            create=create,
            actor=user.username,
        )
    return category_public(request, category), created


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
