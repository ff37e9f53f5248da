"""Registry endpoints on the shared `API` table: import / export for the console's upload
page, resident and merchant editing, contracts, the service catalog and the access log.

Handlers parse, authorise, call a registry use case (`registry.usecases`: one unit of
work whose rows and events commit together) and render. Registry errors
(`registry.repository.Invalid`, `Duplicate`, `registry.usecases.StaleVersion`) are
translated here into the API's own 422 / 409 errors, with the field at fault in `details`
so a form can show the message next to it. An edit may carry the `version` it was made
from; a record changed since then is refused with 409. Matching and the search index
follow the use cases' events on the bus; no handler tells them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlmodel import col

from dispatch.errors import Conflict, Invalid
from operator_console.api import API, STAFF, body, int_param, need, ok, query_int, services
from operator_console.errors import FieldInvalid
from registry import exporting, importing, usecases
from registry import repository as repo
from registry.models import Merchant, Role, ServiceCategory, User
from registry.schemas import CategoryIn, ContractIn, MerchantIn, ResidentIn
from registry.search import SearchIndex, match_merchants, search_residents

log = logging.getLogger(__name__)

ADMINS = (Role.ADMIN,)
search_index_key = web.AppKey("search_index", SearchIndex)
#: the largest import file (100,000 surveyed residents take about 10 MB as CSV)
MAX_UPLOAD = 32 * 1024 * 1024


def setup(app: web.Application) -> None:
    """Give the app its resident search index, warmed in the background after start."""
    app[search_index_key] = SearchIndex()
    app.cleanup_ctx.append(_warm_index)


async def _warm_index(app: web.Application) -> AsyncIterator[None]:
    index = app[search_index_key]
    store = services_of(app).store
    # grid names shown in search results follow the registry's grid events
    stop_following = store.bus.listen(index.follow, subjects=("grid",))

    async def warm() -> None:
        async with store.read() as session:
            await index.ensure_loaded(session)

    task = asyncio.create_task(warm(), name="search-index-warm")
    yield
    stop_following()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


def services_of(app: web.Application) -> Any:
    """The app's services (the key lives in the composition root)."""
    from operator_console.app import services_key

    return app[services_key]


class FieldConflict(Conflict):
    """A 409 that names the field at fault."""

    def __init__(self, message: str, field: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.details = [{"field": field, "message": message, **extra}] if field else None


@contextlib.asynccontextmanager
async def registry_errors() -> AsyncIterator[None]:
    """Registry rule violations as API errors: 409 for duplicates, 422 otherwise."""
    try:
        yield
    except usecases.StaleVersion as exc:
        raise FieldConflict(str(exc), "version", current=exc.current) from exc
    except repo.PhoneTaken as exc:
        raise FieldConflict(
            f"{exc}: a number belongs to one resident; "
            "take it off that resident first if it has really changed hands",
            exc.field,
            resident_id=exc.owner,
            number=exc.number,
        ) from exc
    except repo.Duplicate as exc:
        raise FieldConflict(str(exc), exc.field) from exc
    except repo.Invalid as exc:
        raise FieldInvalid(str(exc), exc.field) from exc


async def search(request: web.Request, query: str, user: User, limit: int = 20) -> list[Any]:
    """Search residents for the console; the residents shown go to the access log."""
    index = request.app[search_index_key]
    async with services(request).store.read() as session:
        hits = await search_residents(index, session, query=query, limit=limit)
        repo.log_access(
            session, resident_ids=[h.entry.id for h in hits], user=user, reason="search"
        )
    return [h.public(index.grid_names) for h in hits]


# -- import / export --
async def read_upload(request: web.Request) -> tuple[str, bytes, bool]:
    """The multipart upload, read as a stream: its file name and bytes, and `dry_run`.

    Streamed so a big survey file (up to MAX_UPLOAD) needs no larger body limit for the
    rest of the API.
    """
    flag = request.query.get("dry_run", "false")
    if not request.content_type.startswith("multipart/"):
        raise Invalid("send the file as multipart field `file`")
    filename, data = "", None
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "file":
                filename = part.filename or ""
                chunks, size = [], 0
                while chunk := await part.read_chunk(1 << 16):
                    size += len(chunk)
                    if size > MAX_UPLOAD:
                        raise FieldInvalid(
                            f"the file is larger than {MAX_UPLOAD // (1 << 20)} MB; split it",
                            "file",
                        )
                    chunks.append(chunk)
                data = b"".join(chunks)
            elif part.name == "dry_run":
                flag = (await part.text())[:8]
    except Invalid:
        raise
    except (ValueError, HttpProcessingError) as exc:  # a broken multipart body
        raise FieldInvalid("send the file as a multipart form (field `file`)", "file") from exc
    if data is None:
        raise FieldInvalid("send the file as multipart field `file`", "file")
    return filename, data, flag.lower() in ("1", "true", "yes", "on")


@API.route(
    "POST",
    "/registry/import/{kind}",
    summary="Import residents or merchants from CSV/XLSX (multipart `file`, `dry_run`)",
    roles=("admin",),
    tag="registry",
)
async def import_file(request: web.Request) -> web.Response:
    """All-or-nothing import of one file; 422 with the report when a row is bad.

    The import stops (and writes nothing) when the client goes away: aiohttp does not
    cancel a handler on disconnect, so the import asks between slices of its work.
    """
    from operator_console.errors import error_response

    user = need(request, *ADMINS)
    kind = request.match_info["kind"]
    if kind not in ("residents", "merchants"):
        raise Invalid("kind must be residents or merchants")
    filename, data, dry_run = await read_upload(request)

    def client_gone() -> bool:
        transport = request.transport
        return transport is None or transport.is_closing()

    try:
        report, import_id = await usecases.run_import(
            services(request).store,
            kind=kind,
            name=filename,
            data=data,
            dry_run=dry_run,
            actor=user.username,
            source="console",
            should_stop=client_gone,
        )
    except importing.Stopped:
        return error_response(400, "import_stopped", "the client went away; nothing was imported")
    if not report.ok:
        return error_response(
            422,
            "import_rejected",
            f"{len(report.errors)} bad rows; nothing was imported",
            report.public(),
        )
    return ok(report.public() | {"import_id": import_id})


@API.route(
    "GET",
    "/registry/export/{kind}",
    summary="Download residents or merchants as ?format=csv|xlsx",
    roles=("admin",),
    tag="registry",
)
async def export_file(request: web.Request) -> web.Response:
    """A CSV or XLSX download; ID numbers masked unless ?full_id_numbers=1."""
    user = need(request, *ADMINS)
    kind = request.match_info["kind"]
    fmt = request.query.get("format", "csv")
    if kind not in ("residents", "merchants") or fmt not in ("csv", "xlsx"):
        raise Invalid("export residents|merchants as format=csv|xlsx")
    async with services(request).store.read() as session:
        if kind == "residents":
            full = request.query.get("full_id_numbers") in ("1", "true")
            data = await exporting.export_residents(
                session, fmt=fmt, user=user, full_id_numbers=full
            )
        else:
            data = await exporting.export_merchants(session, fmt=fmt)
    content_type = (
        "text/csv; charset=utf-8"
        if fmt == "csv"
        else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    return web.Response(
        body=data,
        headers={
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="{kind}.{fmt}"',
        },
    )


# -- residents --
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
    roles=("operator",),
    body=ResidentCreate,
    tag="registry",
)
async def create_resident(request: web.Request) -> web.Response:
    """A new resident; the card comes back (and the read is logged as an edit)."""
    user = need(request, *STAFF)
    given = await body(request, ResidentCreate)
    refuse_shared(given.allow_shared_phones)
    data = ResidentIn.model_validate(given.model_dump(exclude={"allow_shared_phones"}))
    # one phone, one resident: 409 when a number is another active resident's
    async with registry_errors():
        saved = await usecases.create_resident(services(request).store, data=data, user=user)
    return ok(saved.card, status=201)


@API.route(
    "PATCH",
    "/residents/{resident_id}",
    summary="Change a resident (status changes keep their history; 409 on a stale `version`)",
    roles=("operator",),
    body=Patch,
    tag="registry",
)
async def update_resident(request: web.Request) -> web.Response:
    """Merge the given fields into the resident and save what changed."""
    user = need(request, *STAFF)
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
    roles=("operator",),
    tag="registry",
)
async def list_merchants(request: web.Request) -> web.Response:
    """Merchants with kind and contract, for the console."""
    need(request, *STAFF)
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
    roles=("operator",),
    tag="registry",
)
async def merchant_detail(request: web.Request) -> web.Response:
    """One merchant."""
    need(request, *STAFF)
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
    roles=("admin",),
    body=MerchantIn,
    tag="registry",
)
async def create_merchant(request: web.Request) -> web.Response:
    """A new merchant."""
    user = need(request, *ADMINS)
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
    roles=("admin",),
    body=MerchantPatch,
    tag="registry",
)
async def update_merchant(request: web.Request) -> web.Response:
    """Merge the given fields into the merchant."""
    user = need(request, *ADMINS)
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
    roles=("admin",),
    body=ContractIn,
    tag="registry",
)
async def change_contract(request: web.Request) -> web.Response:
    """Set the contract status and dates; the change is kept in the history."""
    user = need(request, *ADMINS)
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
    user = need(request, *ADMINS)
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
    roles=("operator",),
    tag="registry",
)
async def get_category(request: web.Request) -> web.Response:
    """A category."""
    need(request, *STAFF)
    async with services(request).store.read() as session:
        category = await repo.get_category(session, code=request.match_info["code"][:32])
        return ok(category_public(request, category))


@API.route(
    "POST",
    "/catalog",
    summary="Add a catalog category (409 if the code exists)",
    roles=("admin",),
    body=CategoryPut,
    tag="registry",
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
    roles=("admin",),
    body=CategoryPut,
    tag="registry",
)
async def put_category(request: web.Request) -> web.Response:
    """Edit the service catalog."""
    need(request, *ADMINS)
    data = await body(request, CategoryPut)
    if data.code != request.match_info["code"]:
        raise FieldInvalid("the code in the path and the body differ", "code")
    out, created = await _save_category(request, data, create=False)
    return ok(out, status=201 if created else 200)


# -- access log --
def _local_day(q: Any, name: str) -> datetime | None:
    from operator_console.figures_api import local_day

    value = q.get(name, "")
    return local_day(value, name) if value else None


@API.route(
    "GET",
    "/access-log",
    summary=(
        "Who read which resident record, when and why "
        "(?resident_id, ?username, ?from, ?to as local dates, ?before, ?limit)"
    ),
    roles=("admin",),
    tag="registry",
)
async def read_access_log(request: web.Request) -> web.Response:
    """The access log, newest first, `limit` (at most 200) rows a page; page on with `before`."""
    need(request, *ADMINS)
    q = request.query
    resident_id = query_int(request, "resident_id")
    before_id = query_int(request, "before")
    limit = query_int(request, "limit", 200, maximum=200) or 200
    since = _local_day(q, "from")
    until = _local_day(q, "to")
    if until is not None:
        until += timedelta(days=1)  # the whole of the last day
    async with services(request).store.read() as session:
        rows = await repo.access_log(
            session,
            resident_id=resident_id,
            username=q.get("username", "")[:64] or None,
            before_id=before_id,
            since=since,
            until=until,
            limit=limit,
        )
    return ok(
        [
            {
                "id": r.id,
                "username": r.username,
                "user_id": r.user_id,
                "resident_id": r.resident_id,
                "reason": r.reason,
                "ref": r.ref,
                "at": r.at.isoformat(),
            }
            for r in rows
        ]
    )
