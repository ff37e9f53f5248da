"""The on-call list: the community duty phone and the supervisors' mobiles an emergency
overflows to, rung in `position` order. Kept by admins (`operator_console.emergency_api`);
an empty list is seeded once from `YIJING_ONCALL_PHONES`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlmodel import col

from dispatch.core import Core
from dispatch.errors import Invalid
from dispatch.models import OnCallPhone
from registry import repository as repo
from registry.phones import mask, normalize

log = logging.getLogger(__name__)


class OnCall:
    """The on-call phones, in the order an emergency rings them."""

    def __init__(self, core: Core) -> None:
        self.core = core

    async def phones(self, *, active_only: bool = False) -> list[OnCallPhone]:
        """The list in ring order."""
        async with self.core.store.read() as session:
            stmt = select(OnCallPhone).order_by(col(OnCallPhone.position), col(OnCallPhone.id))
            if active_only:
                stmt = stmt.where(col(OnCallPhone.active))
            return list((await session.execute(stmt)).scalars().all())

    async def add(self, *, phone: str, label: str = "", actor: str = "system") -> OnCallPhone:
        """Put a phone at the end of the list."""
        try:
            number = normalize(phone, strict=True)
        except ValueError as exc:
            raise Invalid(f"not a phone number: {exc}") from exc
        async with self.core.store.tx() as tx:
            last = (await tx.session.execute(select(func.max(OnCallPhone.position)))).scalar()
            row = OnCallPhone(phone=number, label=label[:64], position=(last or 0) + 1)
            tx.session.add(row)
            await tx.session.flush()
            tx.emit("oncall.added", "oncall", row.id, actor=actor, phone=mask(number))
        return row

    async def update(
        self,
        phone_id: int,
        *,
        label: str | None = None,
        position: int | None = None,
        active: bool | None = None,
        actor: str = "system",
    ) -> OnCallPhone:
        """Change a phone's label, place in the list, or whether it is rung."""
        async with self.core.store.tx() as tx:
            row = await tx.session.get(OnCallPhone, phone_id, populate_existing=True)
            if row is None:
                raise repo.NotFound("oncall phone", phone_id)
            if label is not None:
                row.label = label[:64]
            if position is not None:
                row.position = position
            if active is not None:
                row.active = active
            tx.emit(
                "oncall.changed", "oncall", row.id, actor=actor, position=row.position,
                active=row.active,
            )  # fmt: skip
        return row

    async def remove(self, phone_id: int, *, actor: str = "system") -> None:
        """Take a phone off the list."""
        async with self.core.store.tx() as tx:
            row = await tx.session.get(OnCallPhone, phone_id)
            if row is None:
                raise repo.NotFound("oncall phone", phone_id)
            await tx.session.delete(row)
            tx.emit("oncall.removed", "oncall", phone_id, actor=actor)

    async def seed(self, phones: Sequence[str]) -> int:
        """Fill an empty list from the configured phones (`YIJING_ONCALL_PHONES`) once."""
        if not phones or await self.phones():
            return 0
        added = 0
        for i, phone in enumerate(phones, 1):
            try:
                await self.add(phone=phone, label=f"on-call {i}")
                added += 1
            except Invalid:
                log.warning("on-call phone %s of the settings is not a number", i)
        return added
