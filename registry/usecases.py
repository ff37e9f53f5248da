"""Registry use cases: every write to the registry, each one unit of work whose rows and
events commit together (`eventlog.store.Store.tx`).

Residents (with their phones and emergency contacts), merchants and their contracts, the
service catalog, grids, console logins, and file imports. The HTTP handlers parse,
authorise, call one of these and render; the CLI calls the same ones. Caches elsewhere
(the merchant index of matching, the search index's grid names) follow the events on the
bus instead of being told by the caller: `MERCHANT_INDEX_EVENTS` names the events that
change what matching reads.

Events carry ids, field names, statuses, dates and counts, never personal data (names,
numbers, addresses, notes). An edit may carry the `version` it was made from; a record
changed since then is refused with `StaleVersion`. Rule violations are the repository's
`Invalid` / `Duplicate` (with the field at fault and the machine `code` an API error
carries) and `NotFound`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from eventlog.store import Store, Tx
from registry import importing
from registry import repository as repo
from registry.models import Grid, Merchant, Role, ServiceCategory, User
from registry.schemas import CategoryIn, ContractIn, GridIn, MerchantIn, ResidentIn

log = logging.getLogger(__name__)

#: events after which matching must read merchants, their services, contracts, grids or
#: the catalog again
MERCHANT_INDEX_EVENTS = frozenset(
    {
        "merchant.created",
        "merchant.updated",
        "merchant.contract_changed",
        "grid.created",
        "grid.updated",
        "category.saved",
        "registry.imported",
    }
)
#: the subjects of those events (what a listener on the bus asks for)
MERCHANT_INDEX_SUBJECTS = frozenset({"merchant", "grid", "category", "import"})

#: ends a login's sessions inside the unit of work that disabled it (given by the console,
#: which owns sessions and live streams)
EndSessions = Callable[[AsyncSession, int], Awaitable[None]]


class StaleVersion(Exception):
    """An edit made from an older copy of the record; `current` is the version now."""

    #: the machine code an API error carries for it
    code = "stale_version"

    def __init__(self, current: str) -> None:
        super().__init__(
            "someone changed this record after you opened it; reload it and edit again"
        )
        self.current = current


# -- versions --
def version_of(values: Any) -> str:
    """A short fingerprint of a record as shown: an edit made from it sends it back."""
    text = json.dumps(values, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_version(sent: object, current: str) -> None:
    """Refuse an edit made from an older copy of the record."""
    if sent is not None and str(sent) != current:
        raise StaleVersion(current)


def resident_version(card: Mapping[str, Any]) -> str:
    """A resident's version: the registry revision of its last change."""
    return str(card.get("revision", ""))


def merchant_version(data: MerchantIn) -> str:
    """A merchant's version, from the fields an admin edits."""
    return version_of(data.model_dump(mode="json"))


def category_version(category: ServiceCategory) -> str:
    """A catalog category's version."""
    return version_of(category.model_dump(mode="json"))


def grid_record(grid: Grid) -> dict[str, Any]:
    """A grid as an admin sees it (the grid worker's number in full)."""
    return {
        "code": grid.code,
        "name": grid.name,
        "community": grid.community,
        "worker_name": grid.worker_name,
        "worker_phone": grid.worker_phone,
    }


def grid_version(grid: Grid) -> str:
    """A grid's version."""
    return version_of(grid_record(grid))


def user_record(user: User) -> dict[str, Any]:
    """A login as the admin page shows it (never the hash)."""
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "role": user.role.value,
        "merchant_id": user.merchant_id,
        "active": user.active,
    }


def user_version(user: User) -> str:
    """A login's version."""
    return version_of(user_record(user))


# -- residents --
@dataclass(frozen=True, slots=True)
class ResidentSaved:
    """A resident after a write: its card (read as an edit, so access-logged) and what
    changed."""

    resident_id: int
    changed: list[str]
    card: dict[str, Any]


def _phones_released(tx: Tx, released: list[int], *, taken_by: int, actor: str) -> None:
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


async def create_resident(store: Store, *, data: ResidentIn, user: User) -> ResidentSaved:
    """Register a resident with phones and contacts; `repo.PhoneTaken` when a number is
    another active resident's."""
    async with store.tx() as tx:
        session = tx.session
        released = await repo.claim_phones(
            session, numbers=[p.number for p in data.phones], resident_id=None
        )
        resident, changes = await repo.save_resident(session, data=data, actor=user.username)
        assert resident.id is not None
        tx.emit("resident.created", "resident", resident.id, actor=user.username, changed=changes)
        _phones_released(tx, released, taken_by=resident.id, actor=user.username)
        card = await repo.resident_card(session, resident_id=resident.id, user=user, reason="edit")
    card["version"] = resident_version(card)
    log.info("resident %s registered by %s", resident.id, user.username)
    return ResidentSaved(resident.id, changes, card)


async def update_resident(
    store: Store,
    *,
    resident_id: int,
    patch: Mapping[str, Any],
    version: object = None,
    user: User,
) -> ResidentSaved:
    """Merge `patch` into the resident and save what changed (a status change keeps its
    history and has an event of its own)."""
    async with store.tx() as tx:
        session = tx.session
        resident = await repo.get_resident(session, resident_id=resident_id)
        check_version(version, str(resident.revision))
        current = await repo.resident_input(session, resident=resident)
        merged = current.model_dump(exclude={"status_reason"}) | dict(patch)
        data = ResidentIn.model_validate(merged)
        before = {p.number for p in current.phones}
        released = await repo.claim_phones(
            session,
            numbers=[p.number for p in data.phones if p.number not in before],
            resident_id=resident_id,
        )
        _phones_released(tx, released, taken_by=resident_id, actor=user.username)
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
    card["version"] = resident_version(card)
    log.info("resident %s changed by %s: %s", resident_id, user.username, ",".join(changes))
    return ResidentSaved(resident_id, changes, card)


# -- merchants and contracts --
@dataclass(frozen=True, slots=True)
class MerchantSaved:
    """A merchant after a write, the fields it now has and what changed."""

    merchant: Merchant
    data: MerchantIn
    changed: list[str]


async def create_merchant(store: Store, *, data: MerchantIn, actor: str) -> MerchantSaved:
    """Add a merchant with its services."""
    async with store.tx() as tx:
        merchant, changes = await repo.save_merchant(tx.session, data=data, actor=actor)
        tx.emit("merchant.created", "merchant", merchant.id, actor=actor, changed=changes)
    log.info("merchant %s added by %s", merchant.id, actor)
    return MerchantSaved(merchant, data, changes)


async def update_merchant(
    store: Store,
    *,
    merchant_id: int,
    patch: Mapping[str, Any],
    version: object = None,
    actor: str,
) -> MerchantSaved:
    """Merge `patch` into the merchant and save what changed."""
    async with store.tx() as tx:
        session = tx.session
        merchant = await repo.get_merchant(session, merchant_id=merchant_id)
        current = await repo.merchant_input(session, merchant=merchant)
        check_version(version, merchant_version(current))
        data = MerchantIn.model_validate(current.model_dump() | dict(patch))
        merchant, changes = await repo.save_merchant(
            session, data=data, merchant_id=merchant_id, actor=actor
        )
        if changes:
            tx.emit("merchant.updated", "merchant", merchant_id, actor=actor, changed=changes)
    log.info("merchant %s changed by %s: %s", merchant_id, actor, ",".join(changes))
    return MerchantSaved(merchant, data, changes)


async def change_contract(
    store: Store, *, merchant_id: int, contract: ContractIn, actor: str
) -> Merchant:
    """Set a merchant's contract status and dates; the change is kept in the history."""
    async with store.tx() as tx:
        merchant = await repo.change_contract(
            tx.session, merchant_id=merchant_id, contract=contract, actor=actor
        )
        tx.emit(
            "merchant.contract_changed",
            "merchant",
            merchant_id,
            actor=actor,
            status=contract.status.value,
            start=contract.start.isoformat() if contract.start else None,
            end=contract.end.isoformat() if contract.end else None,
        )
    log.info("merchant %s contract set to %s by %s", merchant_id, contract.status.value, actor)
    return merchant


# -- catalog --
async def save_category(
    store: Store, *, data: CategoryIn, version: object = None, create: bool, actor: str
) -> tuple[ServiceCategory, bool]:
    """Add (`create`: `Duplicate` if the code exists) or replace a catalog category;
    returns it and whether it is new."""
    async with store.tx() as tx:
        existing = await tx.session.get(ServiceCategory, data.code)
        if existing is not None:
            if create:
                raise repo.Duplicate(f"category {data.code} exists already", field="code")
            check_version(version, category_version(existing))
        category = await repo.save_category(tx.session, data=data)
        tx.emit("category.saved", "category", data.code, actor=actor, created=existing is None)
    log.info("catalog category %s saved by %s", data.code, actor)
    return category, existing is None


# -- grids --
async def create_grid(store: Store, *, data: GridIn, actor: str) -> Grid:
    """Add a grid (`Duplicate` if the code exists)."""
    async with store.tx() as tx:
        grid = await repo.save_grid(tx.session, data=data, create=True)
        tx.emit("grid.created", "grid", grid.code, actor=actor)
    log.info("grid %s added by %s", grid.code, actor)
    return grid


async def update_grid(
    store: Store,
    *,
    code: str,
    name: str | None = None,
    community: str | None = None,
    worker_name: str | None = None,
    worker_phone: str | None = None,
    version: object = None,
    actor: str,
) -> Grid:
    """Change a grid's name, community or grid worker (its code stays); None keeps a field."""
    async with store.tx() as tx:
        grid = await tx.session.get(Grid, code)
        if grid is None:
            raise repo.NotFound("grid", code)
        check_version(version, grid_version(grid))
        data = GridIn(
            code=code,
            name=name if name is not None else grid.name,
            community=community if community is not None else grid.community,
            worker_name=worker_name if worker_name is not None else grid.worker_name,
            worker_phone=worker_phone if worker_phone is not None else grid.worker_phone,
        )
        grid = await repo.save_grid(tx.session, data=data, create=False)
        tx.emit("grid.updated", "grid", code, actor=actor)
    log.info("grid %s changed by %s", code, actor)
    return grid


# -- console logins --
def _check_merchant_link(role: Role, merchant_id: int | None) -> None:
    if role == Role.MERCHANT and merchant_id is None:
        raise repo.Invalid("a merchant login needs merchant_id", field="merchant_id")
    if role != Role.MERCHANT and merchant_id is not None:
        raise repo.Invalid("only a merchant login has a merchant_id", field="merchant_id")


async def _merchant_exists(session: AsyncSession, merchant_id: int | None) -> None:
    if merchant_id is not None and await session.get(Merchant, merchant_id) is None:
        raise repo.Invalid(
            f"unknown merchant {merchant_id}", field="merchant_id", code="unknown_merchant"
        )


async def _get_user(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise repo.NotFound("user", user_id)
    return user


async def create_user(
    store: Store,
    *,
    username: str,
    display_name: str,
    role: Role,
    merchant_id: int | None,
    password_hash: str,
    actor: str,
) -> User:
    """Add a console login (`Duplicate` if the username is taken); the password comes
    hashed (hashing is slow and never runs inside a unit of work)."""
    async with store.tx() as tx:
        taken = (
            await tx.session.execute(select(col(User.id)).where(col(User.username) == username))
        ).first()
        if taken is not None:
            raise repo.Duplicate(f"username {username} is taken", field="username")
        _check_merchant_link(role, merchant_id)
        await _merchant_exists(tx.session, merchant_id)
        user = User(
            username=username,
            display_name=display_name,
            password_hash=password_hash,
            role=role,
            merchant_id=merchant_id,
        )
        tx.session.add(user)
        await tx.session.flush()
        tx.emit("user.created", "user", user.id, actor=actor, role=role.value)
    log.info("user %s (%s) added by %s", user.id, role.value, actor)
    return user


async def update_user(
    store: Store,
    *,
    user_id: int,
    changes: Mapping[str, Any],
    version: object = None,
    admin: User,
    end_sessions: EndSessions,
) -> tuple[User, list[str]]:
    """Change a login's display name, role, merchant or `active`; returns it and what
    changed. Disabling it or changing its role ends its sessions; an admin cannot disable
    their own login or change their own role."""
    async with store.tx() as tx:
        user = await _get_user(tx.session, user_id)
        check_version(version, user_version(user))
        if user.id == admin.id and changes.get("active") is False:
            raise repo.Invalid("you cannot disable your own login", field="active")
        if user.id == admin.id and changes.get("role", user.role) != user.role:
            raise repo.Invalid("you cannot change your own role", field="role")
        role = Role(changes.get("role", user.role))
        merchant_id = changes.get("merchant_id", user.merchant_id)
        if role != Role.MERCHANT and "merchant_id" not in changes:
            merchant_id = None  # a login that stops being a merchant drops the link
        _check_merchant_link(role, merchant_id)
        await _merchant_exists(tx.session, merchant_id)
        changed = []
        for key, value in (
            ("display_name", changes.get("display_name", user.display_name)),
            ("role", role),
            ("merchant_id", merchant_id),
            ("active", changes.get("active", user.active)),
        ):
            if getattr(user, key) != value:
                setattr(user, key, value)
                changed.append(key)
        if changed:
            assert user.id is not None
            if ("active" in changed and not user.active) or "role" in changed:
                await end_sessions(tx.session, user.id)
            tx.emit("user.updated", "user", user.id, actor=admin.username, changed=changed)
        await tx.session.flush()
    log.info("user %s changed by %s: %s", user_id, admin.username, ",".join(changed))
    return user, changed


async def set_password(
    store: Store, *, user_id: int, password_hash: str, actor: str, end_sessions: EndSessions
) -> User:
    """An admin sets a login's new password (hashed already); `end_sessions` ends the
    login's sessions in the same unit of work."""
    async with store.tx() as tx:
        user = await _get_user(tx.session, user_id)
        user.password_hash = password_hash
        await end_sessions(tx.session, user_id)
        tx.emit("user.password_reset", "user", user_id, actor=actor)
        await tx.session.flush()
    log.info("user %s password reset by %s", user_id, actor)
    return user


# -- import --
async def run_import(
    store: Store,
    *,
    kind: str,
    name: str,
    data: bytes,
    dry_run: bool,
    actor: str,
    source: str,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[importing.ImportReport, str | None]:
    """One file as one unit of work: the rows and one `registry.imported` event commit
    together. The event carries counts, the file's SHA-256 and the import id, never a
    row's contents nor the file name (offices name files after people); a resident who
    moved out or died and whose number a row now holds gets a `resident.updated` event.
    A dry run or a bad file writes nothing. Returns the report and the import id of a
    committed run; `importing.Stopped` when `should_stop` said so (nothing written).

    A residents file is checked and staged on sessions of its own without the write lock
    (they never write the registry before the final step, so `Store.busy` need not count
    them); the lock is held only for the final, set-based write (`registry.bulk`).
    Merchants files are small and run in one ordinary unit of work.
    """
    import_id = uuid.uuid4().hex[:16]
    unit: Tx | None = None

    async def record(report: importing.ImportReport) -> None:
        assert unit is not None
        unit.emit(
            "registry.imported",
            "import",
            import_id,
            actor=actor,
            source=source,
            file_sha256=hashlib.sha256(data).hexdigest(),
            **report.summary(),
        )
        for resident_id, taken_by in report.released:
            unit.emit(
                "resident.updated",
                "resident",
                resident_id,
                actor=actor,
                changed=["phones"],
                reason="phone_taken",
                taken_by=taken_by,
            )

    if kind == "merchants":
        async with store.tx() as unit:
            report = await importing.import_merchants(
                unit.session,
                name=name,
                data=data,
                dry_run=dry_run,
                actor=actor,
                before_commit=record,
                should_stop=should_stop,
            )
        return report, import_id if report.committed else None

    @contextlib.asynccontextmanager
    async def final(
        session: AsyncSession, waiting: Callable[[], Awaitable[None]] | None
    ) -> AsyncIterator[None]:
        nonlocal unit
        async with store.tx(session=session, waiting=waiting) as unit:
            yield

    async with store.sessions() as session:
        report = await importing.import_residents(
            session,
            name=name,
            data=data,
            dry_run=dry_run,
            actor=actor,
            before_commit=record,
            final=final,
            should_stop=should_stop,
        )
    return report, import_id if report.committed else None
