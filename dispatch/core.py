"""What every dispatch feature shares: the unit of work, the clock, the settings, the
command interpreter, and the row helpers (compare-and-set, get, a call by its ref).

Features take a `Core` and the features they need; none of them talks to the telephony
or timer adapters except through `core.fx` (`dispatch.effects`). `core.health()` is the
one query of the backend a feature may make: whether the phone line is up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import select, update
from sqlmodel import SQLModel, col

from dispatch.config import DispatchConfig
from dispatch.effects import Effects, TouchMerchant
from dispatch.errors import Conflict
from dispatch.machines import call as cm
from dispatch.machines import ticket as tm
from dispatch.models import Call, Offer, Ticket
from eventlog.clock import LOCAL_TZ, Clock
from eventlog.store import Store, Tx
from ivr.library import FlowLibrary
from providers.base import Health
from registry import repository as repo
from registry.models import User

M = TypeVar("M", bound=SQLModel)

#: a ticket a merchant is working on (counts against their capacity)
ACTIVE_TICKET_STATES = (tm.TicketState.ACCEPTED, tm.TicketState.IN_SERVICE)
#: the outbound calls that ask a resident (or their family) for a rating
SURVEY_PURPOSES = ("survey", "survey_family")


def actor(user: User | None) -> str:
    """Who did it, for the event log."""
    return user.username if user is not None else "system"


def undialed(call: Call) -> bool:
    """An outbound call still waiting to be handed to the backend (a phone outage)."""
    return call.direction == "out" and call.dialed_at is None and call.state not in cm.FINAL


def quiet_until(config: DispatchConfig, when: datetime) -> datetime | None:
    """The end of the quiet hours `when` falls in, or None outside them."""
    local = when.astimezone(LOCAL_TZ)
    start, end = config.quiet_start, config.quiet_end
    at_end = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if local.time() >= start:
        return at_end + timedelta(days=1)
    if local.time() < end:
        return at_end
    return None


@dataclass(slots=True)
class Core:
    """The shared parts every feature service is built on."""

    store: Store
    clock: Clock
    config: DispatchConfig
    flows: FlowLibrary
    fx: Effects
    #: the telephony backend's link state (a query; commands go through `fx`)
    health: Callable[[], Health]

    def now(self) -> datetime:
        """The clock's now."""
        return self.clock.now()

    async def cas(self, tx: Tx, row: Any, **values: Any) -> None:
        """Write `values` to a versioned row only if nobody else wrote it since it was read.

        `Conflict` when someone did. A changed offer, or a rating, changes its merchant's
        record: the ranking's cached copy is dropped after the commit.
        """
        model = type(row)
        pk = model.__table__.primary_key.columns.values()[0].name
        key = getattr(row, pk)
        stmt = (
            update(model)
            .where(getattr(model, pk) == key, model.version == row.version)
            .values(**values, version=row.version + 1)
        )
        result = await tx.session.execute(stmt)
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict(f"{model.__name__.lower()} {key} was changed by someone else")
        for name, value in values.items():
            setattr(row, name, value)
        row.version += 1
        if isinstance(row, Offer) or (isinstance(row, Ticket) and "rating" in values):
            self.fx.after_commit(tx, TouchMerchant(row.merchant_id))

    async def get(self, tx: Tx, model: type[M], key: object, what: str) -> M:
        """A row read fresh in this unit of work; `NotFound` when there is none."""
        row = await tx.session.get(model, key, populate_existing=True)
        if row is None:
            raise repo.NotFound(what, key)
        return row

    async def call_by_ref(self, tx: Tx, ref: str) -> Call | None:
        """The call the backend names `ref`, if it is ours."""
        return (
            (await tx.session.execute(select(Call).where(col(Call.ref) == ref))).scalars().first()
        )

    async def self_served(self, tx: Tx, call: Call, **data: Any) -> None:
        """The caller got what they called for by keypad: the call ends served, not
        abandoned (calling again soon is no emergency)."""
        state, commands = cm.transition(call.state, cm.SelfServed())
        await self.cas(tx, call, state=state, ended_at=self.now(), cause="self_served")
        tx.emit("call.self_served", "call", call.id, **data)
        await self.fx.call(tx, call, commands)
