"""Admin endpoints the registry API did not have: grids, console logins and their roles,
and the contract overview.

Writes follow `registry_api`: one unit of work with an event-log entry (ids and field
names, never personal data), 422 / 409 naming the field, optional `version` against stale
edits. Passwords are argon2-hashed (`auth.hash_password`); a disabled login or a reset
password ends that user's sessions at once.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from pydantic import Field
from sqlalchemy import delete, select
from sqlmodel import col

from operator_console import auth
from operator_console.api import (
    API,
    STAFF,
    SUPERVISORS,
    TOKEN,
    body,
    int_param,
    need,
    ok,
    password_login_key,
    query_int,
    services,
)
from operator_console.models import LoginAttempt, LoginSession
from operator_console.password_login import OK, attempt_public
from operator_console.registry_api import (
    ADMINS,
    FieldConflict,
    FieldInvalid,
    check_version,
    registry_errors,
    search_index_key,
    version_of,
)
from operator_console.ws import revoke
from registry import repository as repo
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
    out = {
        "code": grid.code,
        "name": grid.name,
        "community": grid.community,
        "worker_name": grid.worker_name,
        "worker_phone": grid.worker_phone,
    }
    version = version_of(out)
    if not full:
        out["worker_phone"] = mask(grid.worker_phone) if grid.worker_phone else ""
    return out | {"version": version}


@API.route("GET", "/grids", summary="Every grid", roles=("operator",), tag="registry")
async def list_grids(request: web.Request) -> web.Response:
    """Grids by code."""
    user = need(request, *STAFF)
    full = user.role == Role.ADMIN
    async with services(request).store.read() as session:
        return ok([grid_public(g, full=full) for g in await repo.list_grids(session)])


@API.route(
    "POST",
    "/grids",
    summary="Add a grid (409 if the code exists)",
    roles=("admin",),
    body=GridIn,
    tag="registry",
)
async def create_grid(request: web.Request) -> web.Response:
    """A new grid."""
    user = need(request, *ADMINS)
    data = await body(request, GridIn)
    async with services(request).store.tx() as tx, registry_errors():
        grid = await repo.save_grid(tx.session, data=data, create=True)
        tx.emit("grid.created", "grid", grid.code, actor=user.username)
        out = grid_public(grid)
    _grid_changed(request, grid)
    log.info("grid %s added by %s", grid.code, user.username)
    return ok(out, status=201)


@API.route(
    "PATCH",
    "/grids/{code}",
    summary="Rename a grid (its code stays; 409 on a stale `version`)",
    roles=("admin",),
    body=GridPatch,
    tag="registry",
)
async def update_grid(request: web.Request) -> web.Response:
    """Change a grid's name or community."""
    user = need(request, *ADMINS)
    code = request.match_info["code"][:32]
    patch = await body(request, GridPatch)
    async with services(request).store.tx() as tx, registry_errors():
        grid = await tx.session.get(Grid, code)
        if grid is None:
            raise repo.NotFound("grid", code)
        check_version(patch.version, grid_public(grid)["version"])
        data = GridIn(
            code=code,
            name=patch.name if patch.name is not None else grid.name,
            community=patch.community if patch.community is not None else grid.community,
            worker_name=patch.worker_name if patch.worker_name is not None else grid.worker_name,
            worker_phone=(
                patch.worker_phone if patch.worker_phone is not None else grid.worker_phone
            ),
        )
        grid = await repo.save_grid(tx.session, data=data, create=False)
        tx.emit("grid.updated", "grid", code, actor=user.username)
        out = grid_public(grid)
    _grid_changed(request, grid)
    log.info("grid %s changed by %s", code, user.username)
    return ok(out)


def _grid_changed(request: web.Request, grid: Grid) -> None:
    # search shows grid names and finds residents by them; matching looks at grids
    request.app[search_index_key].grid_names[grid.code] = grid.name
    services(request).dispatch.ranking.invalidate_merchants()


# -- contracts --
@API.route(
    "GET",
    "/contracts",
    summary="Every merchant's contract, those ending first",
    roles=("supervisor",),
    tag="registry",
)
async def list_contracts(request: web.Request) -> web.Response:
    """The contract overview (supervisors may read it; admins change contracts)."""
    need(request, *SUPERVISORS)
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


def _check_merchant_link(role: Role, merchant_id: int | None) -> None:
    if role == Role.MERCHANT and merchant_id is None:
        raise ValueError("a merchant login needs merchant_id")
    if role != Role.MERCHANT and merchant_id is not None:
        raise ValueError("only a merchant login has a merchant_id")


def user_public(user: User) -> dict[str, Any]:
    """A login as the admin page shows it (never the hash)."""
    out = auth.user_public(user) | {"active": user.active}
    return out | {"version": version_of(out)}


async def _merchant_exists(session: Any, merchant_id: int | None) -> None:
    if merchant_id is not None and await session.get(Merchant, merchant_id) is None:
        raise FieldInvalid(f"unknown merchant {merchant_id}", "merchant_id")


async def _end_sessions(
    request: web.Request, session: Any, user_id: int, *, keep: str | None = None
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


async def _get_user(session: Any, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise repo.NotFound("user", user_id)
    return user


@API.route(
    "GET",
    "/users",
    summary="Console logins and their roles",
    roles=("supervisor",),
    tag="admin",
)
async def list_users(request: web.Request) -> web.Response:
    """Every login (supervisors may read the list; admins change it)."""
    need(request, *SUPERVISORS)
    async with services(request).store.read() as session:
        rows = (await session.execute(select(User).order_by(col(User.id)))).scalars()
        return ok([user_public(u) for u in rows])


@API.route(
    "GET", "/users/{user_id}", summary="One console login", roles=("supervisor",), tag="admin"
)
async def get_user(request: web.Request) -> web.Response:
    """One login."""
    need(request, *SUPERVISORS)
    async with services(request).store.read() as session:
        return ok(user_public(await _get_user(session, int_param(request, "user_id"))))


@API.route(
    "POST",
    "/users",
    summary="Add a console login (409 if the username is taken)",
    roles=("admin",),
    body=UserIn,
    tag="admin",
)
async def create_user(request: web.Request) -> web.Response:
    """A new login with an argon2-hashed password."""
    admin = need(request, *ADMINS)
    data = await body(request, UserIn)
    hashed = await auth.hash_password_async(data.password)
    async with services(request).store.tx() as tx:
        taken = (
            await tx.session.execute(
                select(col(User.id)).where(col(User.username) == data.username)
            )
        ).first()
        if taken is not None:
            raise FieldConflict(f"username {data.username} is taken", "username")
        try:
            _check_merchant_link(data.role, data.merchant_id)
        except ValueError as exc:
            raise FieldInvalid(str(exc), "merchant_id") from exc
        await _merchant_exists(tx.session, data.merchant_id)
        user = User(
            username=data.username,
            display_name=data.display_name,
            password_hash=hashed,
            role=data.role,
            merchant_id=data.merchant_id,
        )
        tx.session.add(user)
        await tx.session.flush()
        tx.emit("user.created", "user", user.id, actor=admin.username, role=data.role.value)
        out = user_public(user)
    log.info("user %s (%s) added by %s", user.id, data.role.value, admin.username)
    return ok(out, status=201)


@API.route(
    "PATCH",
    "/users/{user_id}",
    summary="Change a login's name, role, merchant or enable / disable it",
    roles=("admin",),
    body=UserPatch,
    tag="admin",
)
async def update_user(request: web.Request) -> web.Response:
    """Change a login; disabling it ends its sessions. Admins cannot lock themselves out."""
    admin = need(request, *ADMINS)
    user_id = int_param(request, "user_id")
    patch = await body(request, UserPatch)
    given = patch.model_dump(exclude_unset=True, exclude={"version"})
    async with services(request).store.tx() as tx:
        user = await _get_user(tx.session, user_id)
        check_version(patch.version, user_public(user)["version"])
        if user.id == admin.id and given.get("active") is False:
            raise FieldInvalid("you cannot disable your own login", "active")
        if user.id == admin.id and given.get("role", user.role) != user.role:
            raise FieldInvalid("you cannot change your own role", "role")
        role = Role(given.get("role", user.role))
        merchant_id = given.get("merchant_id", user.merchant_id)
        if role != Role.MERCHANT and "merchant_id" not in given:
            merchant_id = None  # a login that stops being a merchant drops the link
        try:
            _check_merchant_link(role, merchant_id)
        except ValueError as exc:
            raise FieldInvalid(str(exc), "merchant_id") from exc
        await _merchant_exists(tx.session, merchant_id)
        changed = []
        for key, value in (
            ("display_name", given.get("display_name", user.display_name)),
            ("role", role),
            ("merchant_id", merchant_id),
            ("active", given.get("active", user.active)),
        ):
            if getattr(user, key) != value:
                setattr(user, key, value)
                changed.append(key)
        if changed:
            assert user.id is not None
            if ("active" in changed and not user.active) or "role" in changed:
                await _end_sessions(request, tx.session, user.id)
            tx.emit("user.updated", "user", user.id, actor=admin.username, changed=changed)
        await tx.session.flush()
        out = user_public(user) | {"changed": changed}
    log.info("user %s changed by %s: %s", user_id, admin.username, ",".join(changed))
    return ok(out)


@API.route(
    "POST",
    "/users/{user_id}/password",
    summary="Set a new password for a login (ends its sessions)",
    roles=("admin",),
    body=PasswordIn,
    tag="admin",
)
async def reset_password(request: web.Request) -> web.Response:
    """An admin sets a new password; the user's open sessions end."""
    admin = need(request, *ADMINS)
    user_id = int_param(request, "user_id")
    data = await body(request, PasswordIn)
    hashed = await auth.hash_password_async(data.password)
    own = user_id == admin.id
    async with services(request).store.tx() as tx:
        user = await _get_user(tx.session, user_id)
        user.password_hash = hashed
        # every session of the login ends; an admin resetting their own keeps this one
        await _end_sessions(request, tx.session, user_id, keep=request[TOKEN] if own else None)
        tx.emit("user.password_reset", "user", user_id, actor=admin.username)
        await tx.session.flush()
        out = user_public(user)
        username = user.username
    # the new password starts with a clean slate: earlier failures stop counting
    await request.app[password_login_key].clear(username)
    log.info("user %s password reset by %s", user_id, admin.username)
    return ok(out)


# -- failed logins --
@API.route(
    "GET",
    "/login-failures",
    summary="Failed staff logins, newest first (?username, ?client, ?before, ?limit)",
    roles=("admin",),
    tag="admin",
)
async def login_failures(request: web.Request) -> web.Response:
    """Who failed to log in, from where and when; `counts` is false once cleared (a right
    password, or a new one set by an admin). `limit` (at most 200) rows a page."""
    need(request, *ADMINS)
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
