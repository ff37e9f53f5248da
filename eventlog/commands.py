"""Commands from the processes that serve the console to the one that owns the PBX link.

With several processes on one PostgreSQL (DESIGN.md section 12) only the owner (the holder
of the advisory lock, `operator_console.instance`) runs the telephony adapter and the
timers. A use case carried out on a standby still places its calls and sets its timers:
after its commit, the adapter call becomes a row of the `command` table here; the owner
claims rows in order (``FOR UPDATE SKIP LOCKED``), carries them out on its adapters and
writes back the result, which the standby was waiting for. So the rows are the only
channel, a restart of either side loses nothing that was committed, and an owner that
dies mid-command leaves a row the next owner settles (``running`` rows it did not finish
are failed as lost, never carried out twice).

A row's life: ``pending`` (written by the submitter) -> ``running`` (claimed by an owner)
-> ``done`` or ``failed`` (with the error's kind and message); or ``pending`` ->
``abandoned`` (the submitter stopped waiting before anyone claimed it: never carried out).

Arguments and results are JSON; nothing here knows what a command means. Arguments carry
phone numbers (and a merchant's login code on its way to be read out), so they are wiped
when the row reaches its end, whichever end: the table keeps what was done, not to whom.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Index, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Column, Field, SQLModel, col

from eventlog.db import BigId, JSONType, UTCDateTime, utcnow

log = logging.getLogger(__name__)

#: how often a submitter looks for its result (it is written within milliseconds when
#: the owner is up; the cost is one indexed read of one row)
RESULT_POLL_S = 0.01
#: the longest a submitter's poll waits between two looks
RESULT_POLL_MAX_S = 0.05
#: the channel a submitter notifies with its command's id (PostgreSQL)
CHANNEL = "yijing_commands"


class Command(SQLModel, table=True):
    """One adapter call a standby asked the owner to make."""

    __tablename__ = "command"
    __table_args__ = (Index("ix_command_state", "state", "id"),)

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    #: the adapter ("telephony", "timers") and its method
    target: str = Field(max_length=16)
    method: str = Field(max_length=32)
    args: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType))
    state: str = Field(default="pending", max_length=16)
    #: the process that wrote it and the one that carried it out (application names)
    origin: str = Field(default="", max_length=128)
    owner: str = Field(default="", max_length=128)
    result: Any = Field(default=None, sa_column=Column(JSONType))
    #: the error's class name (the submitter raises the same kind) and message
    error: str = Field(default="", max_length=64)
    detail: str = Field(default="", max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    done_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class CommandFailed(Exception):
    """The owner carried the command out and it failed; `kind` names the error's class."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class NoAnswer(Exception):
    """Nobody carried the command out in time; `claimed` says whether an owner took it
    (then its outcome is unknown) or not (then it was withdrawn: it never happens)."""

    def __init__(self, claimed: bool) -> None:
        super().__init__(
            "the owner took the command but did not finish it in time"
            if claimed
            else "no owner took the command in time"
        )
        self.claimed = claimed


_TABLE = Command.__table__  # type: ignore[attr-defined]
_NOTIFY = text(f"SELECT pg_notify('{CHANNEL}', :id)")


class CommandQueue:
    """The `command` table, from both ends."""

    def __init__(self, engine: AsyncEngine, *, me: str) -> None:
        self.engine = engine
        self.me = me[:128]

    # -- the submitter's end -------------------------------------------------------------
    async def call(
        self, target: str, method: str, args: dict[str, Any], *, timeout_s: float
    ) -> Any:
        """Write a command, wait for its result; raise `CommandFailed` or `NoAnswer`."""
        async with self.engine.begin() as conn:
            row_id = (
                await conn.execute(
                    _TABLE.insert()
                    .values(
                        target=target,
                        method=method,
                        args=args,
                        state="pending",
                        origin=self.me,
                        owner="",
                        error="",
                        detail="",
                        created_at=utcnow(),
                    )
                    .returning(_TABLE.c.id)
                )
            ).scalar_one()
            if conn.dialect.name == "postgresql":  # SQLite: one process, nothing to wake
                await conn.execute(_NOTIFY, {"id": str(row_id)})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        pause = RESULT_POLL_S
        while True:
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, RESULT_POLL_MAX_S)
            async with self.engine.connect() as conn:
                row = (
                    await conn.execute(
                        select(
                            _TABLE.c.state, _TABLE.c.result, _TABLE.c.error, _TABLE.c.detail
                        ).where(_TABLE.c.id == row_id)
                    )
                ).one()
            if row.state == "done":
                return row.result
            if row.state == "failed":
                raise CommandFailed(row.error, row.detail)
            if loop.time() < deadline:
                continue
            async with self.engine.begin() as conn:
                withdrawn = (
                    await conn.execute(
                        update(_TABLE)
                        .where(_TABLE.c.id == row_id, _TABLE.c.state == "pending")
                        .values(state="abandoned", args={}, done_at=utcnow())
                    )
                ).rowcount
            if withdrawn:
                raise NoAnswer(claimed=False)
            # claimed in the meantime: give the owner one more moment, then say unknown
            if loop.time() > deadline + timeout_s:
                raise NoAnswer(claimed=True)

    # -- the owner's end ------------------------------------------------------------------
    async def settle_lost(self) -> int:
        """At taking over: commands an earlier owner claimed and never finished are
        failed as lost (their outcome is unknown; carrying them out again could place a
        call twice). Returns how many."""
        async with self.engine.begin() as conn:
            lost = (
                await conn.execute(
                    update(_TABLE)
                    .where(_TABLE.c.state == "running", _TABLE.c.owner != self.me)
                    .values(
                        state="failed",
                        args={},
                        error="LostWithOwner",
                        detail="the process that took it stopped before finishing",
                        done_at=utcnow(),
                    )
                )
            ).rowcount
        if lost:
            log.warning("%d command(s) lost with the previous owner", lost)
        return int(lost or 0)

    async def claim(self, limit: int = 50) -> list[Command]:
        """Take the oldest pending commands, in order."""
        async with self.engine.begin() as conn:
            picked = select(_TABLE.c.id).where(_TABLE.c.state == "pending")
            picked = picked.order_by(_TABLE.c.id).limit(limit)
            if conn.dialect.name == "postgresql":
                picked = picked.with_for_update(skip_locked=True)
            rows = (
                await conn.execute(
                    update(_TABLE)
                    .where(col(_TABLE.c.id).in_(picked.scalar_subquery()))
                    .values(state="running", owner=self.me)
                    .returning(*_TABLE.c)
                )
            ).all()
        commands = [Command.model_validate(dict(r._mapping)) for r in rows]
        return sorted(commands, key=lambda c: c.id or 0)

    async def finish(
        self, command_id: int, *, result: Any = None, error: str = "", detail: str = ""
    ) -> None:
        """Write what carrying out a claimed command gave."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(_TABLE)
                .where(_TABLE.c.id == command_id)
                .values(
                    state="failed" if error else "done",
                    args={},
                    result=result,
                    error=error[:64],
                    detail=detail[:500],
                    done_at=utcnow(),
                )
            )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What carrying out one command gave: a JSON result, or an error's kind and text."""

    result: Any = None
    error: str = ""
    detail: str = ""


Executor = Callable[[Command], Awaitable[Outcome]]


async def serve(
    queue: CommandQueue,
    execute: Executor,
    *,
    poll_s: float = 0.02,
    wake: asyncio.Event | None = None,
) -> None:
    """The owner's loop: claim, carry out in order, write back; until cancelled.

    With `wake` (set when `CHANNEL` is notified, see `eventlog.relay.Follower.wake_on`)
    the table is read when woken and every `poll_s` besides (a lost notification delays
    a command by at most that); without it, every `poll_s`.
    One failing command is written back as failed and never stops the loop; a database
    error pauses it a moment (the rows wait)."""
    await queue.settle_lost()
    while True:
        if wake is not None:
            wake.clear()
        try:
            batch = await queue.claim()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("claiming commands failed; retrying")
            await asyncio.sleep(1.0)
            continue
        if not batch:
            if wake is None:
                await asyncio.sleep(poll_s)
            else:
                # asyncio.wait, not wait_for: a cancellation must never be lost here
                waiter = asyncio.ensure_future(wake.wait())
                try:
                    await asyncio.wait({waiter}, timeout=poll_s)
                finally:
                    waiter.cancel()
            continue
        for command in batch:
            outcome = await execute(command)
            assert command.id is not None
            await queue.finish(
                command.id, result=outcome.result, error=outcome.error, detail=outcome.detail
            )
