"""Admin endpoints the registry API did not have: grids, console logins and their roles,
and the contract overview.

Writes follow `registry_api`: the handler calls a registry use case (`registry.usecases`:
one unit of work with its events, ids and field names, never personal data) and renders;
422 / 409 name the field, optional `version` against stale edits. Passwords are
argon2-hashed (`auth.hash_password`) before the use case; a disabled login or a reset
password ends that user's sessions at once (the console's part, given to the use case).
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any

from aiohttp import web
from pydantic import Field
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from operator_console import auth
from operator_console.api import (
    ADMINS,
    API,
    OPERATORS,
    SUPERVISORS,
    TOKEN,
    Model,
    body,
    int_param,
    ok,
    password_login_key,
    query_int,
    services,
    user_of,
)
from operator_console.models import LoginAttempt, LoginSession
from operator_console.password_login import OK, attempt_public
from operator_console.registry_api import registry_errors
from operator_console.ws import revoke
from registry import repository as repo
from registry import usecases
from registry.models import Grid, Merchant, Role, User
from registry.phones import mask
from registry.schemas import DbId, GridIn, Strict

log = logging.getLogger(__name__)

REGISTERED = True
USERNAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


# -- grids --
class GridPatch(Strict):
    """A grid's name and community; `version` is the one the edit was made from."""

    name: str | None = Field(default=None, min_length=1, max_length=64)
    community: str | None = Field(default=None, max_length=64)
    worker_name: str | None = Field(default=None, max_length=64)
    worker_phone: str | None = Field(default=None, max_length=32)
    version: str | None = Field(default=None, max_length=32)


def grid_public(grid: Grid, *, full: bool = True) -> dict[str, Any]:
    """A grid with its version; the grid worker's number masked unless `full` (admins:
    operators ring the grid worker by the grid's code, never by the number)."""
    out = usecases.grid_record(grid)
    if not full:
        out["worker_phone"] = mask(grid.worker_phone) if grid.worker_phone else ""
    return out | {"version": usecases.grid_version(grid)}


class GridOut(Model):
    """A grid with the version an edit sends back."""

    code: str
    name: str
    community: str
    worker_name: str
    #: in full for admins, masked for everyone else
    worker_phone: str
    version: str


class ContractRow(Model):
    """A merchant's contract in the overview."""

    merchant_id: int
    merchant: str
    contract_status: str
    contract_start: date | None
    contract_end: date | None
    contract_signed_by: str


class LoginOut(Model):
    """A console login as the admin page shows it (never the hash)."""

    id: int
    username: str
    display_name: str
    role: str
    merchant_id: int | None
    active: bool
    version: str


class LoginChanged(LoginOut):
    """A changed login and the names of the fields that changed."""

    changed: list[str]


class LoginFailureOut(Model):
    """A failed login: when, which account, from where, why; `counts` toward the limit."""

    id: int
    at: datetime
    username: str
    user_id: int | None
    client: str
    outcome: str
    counts: bool


@API.route(
    "GET",
    "/grids",
    summary="Every grid",
    roles=OPERATORS,
    tag="registry",
    response=list[GridOut],
)
async def list_grids(request: web.Request) -> web.Response:
    """Grids by code."""
    full = user_of(request).role == Role.ADMIN
    async with services(request).store.read() as session:
        return ok([grid_public(g, full=full) for g in await repo.list_grids(session)])


@API.route(
    "POST",
    "/grids",
    summary="Add a grid (409 if the code exists)",
    roles=ADMINS,
    body=GridIn,
    tag="registry",
    response=GridOut,
    status=201,
)
async def create_grid(request: web.Request) -> web.Response:
    """A new grid."""
    user = user_of(request)
    data = await body(request, GridIn)
    async with registry_errors():
        grid = await usecases.create_grid(services(request).store, data=data, actor=user.username)
    return ok(grid_public(grid), status=201)


@API.route(
    "PATCH",
    "/grids/{code}",
    summary="Rename a grid (its code stays; 409 on a stale `version`)",
    roles=ADMINS,
    body=GridPatch,
    tag="registry",
    response=GridOut,
)
async def update_grid(request: web.Request) -> web.Response:
    """Change a grid's name or community."""
    user = user_of(request)
    code = request.match_info["code"][:32]
    patch = await body(request, GridPatch)
    async with registry_errors():
        grid = await usecases.update_grid(
            services(request).store,
            code=code,
            name=patch.name,
            community=patch.community,
            worker_name=patch.worker_name,
            worker_phone=patch.worker_phone,
            version=patch.version,
            actor=user.username,
        )
    return ok(grid_public(grid))


# -- contracts --
@API.route(
    "GET",
    "/contracts",
    summary="Every merchant's contract, those ending first",
    roles=SUPERVISORS,
    tag="registry",
    response=list[ContractRow],
)
async def list_contracts(request: web.Request) -> web.Response:
    """The contract overview (supervisors may read it; admins change contracts)."""
    async with services(request).store.read() as session:
        rows = (await session.execute(select(Merchant).order_by(col(Merchant.id)))).scalars()
        out = [
            {
                "merchant_id": m.id,
                "merchant": m.name,
                "contract_status": m.contract_status.value,
                "contract_start": m.contract_start,
                "contract_end": m.contract_end,
                "contract_signed_by": m.contract_signed_by,
            }
            for m in rows
        ]
    out.sort(key=lambda r: (r["contract_end"] is None, str(r["contract_end"] or "")))
    return ok(out)


# -- users --
class UserIn(Strict):
    """A new console login."""

    username: str = Field(min_length=2, max_length=64, pattern=USERNAME)
    display_name: str = Field(default="", max_length=64)
    role: Role
    merchant_id: DbId | None = None
    password: str = Field(min_length=8, max_length=256)


class UserPatch(Strict):
    """Changes to a login; `version` is the one the edit was made from."""

    display_name: str | None = Field(default=None, max_length=64)
    role: Role | None = None
    merchant_id: DbId | None = None
    active: bool | None = None
    version: str | None = Field(default=None, max_length=32)


class PasswordIn(Strict):
    """A new password set by an admin."""

    password: str = Field(min_length=8, max_length=256)


def user_public(user: User) -> dict[str, Any]:
    """A login as the admin page shows it (never the hash)."""
    return usecases.user_record(user) | {"version": usecases.user_version(user)}


async def _end_sessions(
    request: web.Request, session: AsyncSession, user_id: int, *, keep: str | None = None
) -> None:
    """End a user's sessions (but the one whose token is `keep`) and their live streams.

    The streams are told first, before the transaction commits and publishes its events:
    not even the event that ends the session reaches them (a failed commit only makes
    the client reconnect).
    """
    revoke(request.app, user_id=user_id, keep=keep)
    where = [col(LoginSession.user_id) == user_id]
    if keep is not None:
        where.append(col(LoginSession.token_hash) != auth.digest(keep))
    await session.execute(delete(LoginSession).where(*where))


@API.route(
    "GET",
    "/users",
    summary="Console logins and their roles",
    roles=SUPERVISORS,
    tag="admin",
    response=list[LoginOut],
)
async def list_users(request: web.Request) -> web.Response:
    """Every login (supervisors may read the list; admins change it)."""
    async with services(request).store.read() as session:
        rows = (await session.execute(select(User).order_by(col(User.id)))).scalars()
        return ok([user_public(u) for u in rows])


@API.route(
    "GET",
    "/users/{user_id}",
    summary="One console login",
    roles=SUPERVISORS,
    tag="admin",
    response=LoginOut,
)
async def get_user(request: web.Request) -> web.Response:
    """One login."""
    async with services(request).store.read() as session:
        user_id = int_param(request, "user_id")
        user = await session.get(User, user_id)
        if user is None:
            raise repo.NotFound("user", user_id)
        return ok(user_public(user))


@API.route(
    "POST",
    "/users",
    summary="Add a console login (409 if the username is taken)",
    roles=ADMINS,
    body=UserIn,
    tag="admin",
    response=LoginOut,
    status=201,
)
async def create_user(request: web.Request) -> web.Response:
    """A new login with an argon2-hashed password."""
    admin = user_of(request)
    data = await body(request, UserIn)
    hashed = await auth.hash_password_async(data.password)
    async with registry_errors():
        user = await usecases.create_user(
            services(request).store,
            username=data.username,
            display_name=data.display_name,
            role=data.role,
            merchant_id=data.merchant_id,
            password_hash=hashed,
            actor=admin.username,
        )
    return ok(user_public(user), status=201)


@API.route(
    "PATCH",
    "/users/{user_id}",
    summary="Change a login's name, role, merchant or enable / disable it",
    roles=ADMINS,
    body=UserPatch,
    tag="admin",
    response=LoginChanged,
)
async def update_user(request: web.Request) -> web.Response:
    """Change a login; disabling it ends its sessions. Admins cannot lock themselves out."""
    admin = user_of(request)
    user_id = int_param(request, "user_id")
    patch = await body(request, UserPatch)
    given = patch.model_dump(exclude_unset=True, exclude={"version"})

    async def end_sessions(session: Any, user_id: int) -> None:
        await _end_sessions(request, session, user_id)

    async with registry_errors():
        user, changed = await usecases.update_user(
            services(request).store,
            user_id=user_id,
            changes=given,
            version=patch.version,
            admin=admin,
            end_sessions=end_sessions,
        )
    return ok(user_public(user) | {"changed": changed})


@API.route(
    "POST",
    "/users/{user_id}/password",
    summary="Set a new password for a login (ends its sessions)",
    roles=ADMINS,
    body=PasswordIn,
    tag="admin",
    response=LoginOut,
)
async def reset_password(request: web.Request) -> web.Response:
    """An admin sets a new password; the user's open sessions end."""
    admin = user_of(request)
    user_id = int_param(request, "user_id")
    data = await body(request, PasswordIn)
    hashed = await auth.hash_password_async(data.password)
    own = user_id == admin.id

    async def end_sessions(session: Any, user_id: int) -> None:
        # every session of the login ends; an admin resetting their own keeps this one
        await _end_sessions(request, session, user_id, keep=request[TOKEN] if own else None)

    user = await usecases.set_password(
        services(request).store,
        user_id=user_id,
        password_hash=hashed,
        actor=admin.username,
        end_sessions=end_sessions,
    )
    # the new password starts with a clean slate: earlier failures stop counting
    await request.app[password_login_key].clear(user.username)
    return ok(user_public(user))


# -- failed logins --
@API.route(
    "GET",
    "/login-failures",
    summary="Failed staff logins, newest first (?username, ?client, ?before, ?limit)",
    roles=ADMINS,
    tag="admin",
    response=list[LoginFailureOut],
)
async def login_failures(request: web.Request) -> web.Response:
    """Who failed to log in, from where and when; `counts` is false once cleared (a right
    password, or a new one set by an admin). `limit` (at most 200) rows a page."""
    q = request.query
    before_id = query_int(request, "before")
    limit = query_int(request, "limit", 100, maximum=200) or 100
    stmt = (
        select(LoginAttempt)
        .where(col(LoginAttempt.outcome).not_in(["checking", OK]))
        .order_by(col(LoginAttempt.id).desc())
        .limit(limit)
    )
    if before_id is not None:
        stmt = stmt.where(col(LoginAttempt.id) < before_id)
    if username := q.get("username", "").strip()[:64]:
        stmt = stmt.where(col(LoginAttempt.username) == username)
    if client := q.get("client", "").strip()[:64]:
        stmt = stmt.where(col(LoginAttempt.client) == client)
    async with services(request).store.read() as session:
        rows = (await session.execute(stmt)).scalars().all()
    return ok([attempt_public(r) for r in rows])
