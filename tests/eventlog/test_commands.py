"""The command table between processes: a standby's call carried out by the owner in order,
its error returned, never carried out when withdrawn, and settled when its owner died.
Two engines on one database stand for two processes: PostgreSQL only, since SQLite is one
process per database (`operator_console.instance`) and never uses the table."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from eventlog.bus import EventBus
from eventlog.clock import ManualClock
from eventlog.commands import (
    CHANNEL,
    Command,
    CommandFailed,
    CommandQueue,
    NoAnswer,
    Outcome,
    serve,
)
from eventlog.db import make_engine, make_sessionmaker
from eventlog.relay import relay
from eventlog.store import Store


@contextlib.asynccontextmanager
async def two_processes(url: str) -> AsyncIterator[tuple[CommandQueue, CommandQueue]]:
    standby, owner = make_engine(url), make_engine(url)
    try:
        yield CommandQueue(standby, me="standby"), CommandQueue(owner, me="owner")
    finally:
        await standby.dispose()
        await owner.dispose()


@contextlib.asynccontextmanager
async def owning(queue: CommandQueue, seen: list[Command]) -> AsyncIterator[None]:
    async def execute(command: Command) -> Outcome:
        seen.append(command)
        if command.method == "hold":
            return Outcome(error="UnknownCall", detail=f"no live call {command.args['ref']}")
        return Outcome(result={"echo": command.args})

    task = asyncio.create_task(serve(queue, execute, poll_s=0.01))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def rows(queue: CommandQueue) -> list[Any]:
    async with queue.engine.connect() as conn:
        return list((await conn.execute(select(Command.__table__).order_by("id"))).all())  # type: ignore[attr-defined]


@pytest.mark.parametrize("migrated_db_url", ["postgresql"], indirect=True)
async def test_given_an_owner_when_a_standby_calls_then_carried_out_in_order_with_results(
    migrated_db_url: str,
) -> None:
    async with two_processes(migrated_db_url) as (standby, owner):
        seen: list[Command] = []
        async with owning(owner, seen):
            results = [
                await standby.call("telephony", "originate", {"ref": f"offer-{n}"}, timeout_s=10)
                for n in range(5)
            ]
            with pytest.raises(CommandFailed) as refused:
                await standby.call("telephony", "hold", {"ref": "gone"}, timeout_s=10)
        assert results == [{"echo": {"ref": f"offer-{n}"}} for n in range(5)]
        assert refused.value.kind == "UnknownCall"
        assert [c.args["ref"] for c in seen] == [*(f"offer-{n}" for n in range(5)), "gone"]
        assert {(r.state, r.origin, r.owner) for r in await rows(owner)} == {
            ("done", "standby", "owner"),
            ("failed", "standby", "owner"),
        }


@pytest.mark.parametrize("migrated_db_url", ["postgresql"], indirect=True)
async def test_given_no_owner_when_a_standby_calls_then_withdrawn_and_never_carried_out(
    migrated_db_url: str,
) -> None:
    async with two_processes(migrated_db_url) as (standby, owner):
        with pytest.raises(NoAnswer) as late:
            await standby.call("telephony", "originate", {"ref": "offer-1"}, timeout_s=0.2)
        assert late.value.claimed is False
        # an owner that comes afterwards does not place the withdrawn call
        seen: list[Command] = []
        async with owning(owner, seen):
            await standby.call("telephony", "originate", {"ref": "offer-2"}, timeout_s=10)
        assert [c.args["ref"] for c in seen] == ["offer-2"]
        assert [r.state for r in await rows(owner)] == ["abandoned", "done"]


@pytest.mark.parametrize("migrated_db_url", ["postgresql"], indirect=True)
async def test_given_an_owner_that_died_mid_command_when_the_next_takes_over_then_lost_not_redone(
    migrated_db_url: str,
) -> None:
    async with two_processes(migrated_db_url) as (standby, first):
        submitted = asyncio.create_task(
            standby.call("telephony", "originate", {"ref": "offer-1"}, timeout_s=5)
        )
        claimed: list[Command] = []
        while not claimed:  # the first owner claims it, then "dies" before finishing
            claimed = await first.claim()
            await asyncio.sleep(0.01)
        second = CommandQueue(first.engine, me="second owner")
        seen: list[Command] = []
        async with owning(second, seen):
            with pytest.raises(CommandFailed) as lost:
                await submitted
        assert lost.value.kind == "LostWithOwner"
        assert seen == []  # never carried out a second time


@pytest.mark.parametrize("migrated_db_url", ["postgresql"], indirect=True)
async def test_given_an_owner_that_polls_rarely_when_a_standby_notifies_then_woken_at_once(
    migrated_db_url: str,
) -> None:
    async with two_processes(migrated_db_url) as (standby, owner):
        store = Store(make_sessionmaker(owner.engine), EventBus(), ManualClock())
        async with relay(store, owner.engine, poll_s=60) as follower:
            assert follower is not None
            woken = asyncio.Event()
            await follower.wake_on(CHANNEL, woken)
            seen: list[Command] = []

            async def execute(command: Command) -> Outcome:
                seen.append(command)
                return Outcome(result="placed")

            looked = asyncio.Event()
            claim = owner.claim

            async def first_look(limit: int = 50) -> list[Command]:
                found = await claim(limit)
                looked.set()
                return found

            owner.claim = first_look  # type: ignore[method-assign]
            task = asyncio.create_task(serve(owner, execute, poll_s=60, wake=woken))
            try:
                await asyncio.wait_for(looked.wait(), 10)  # it found nothing and waits
                # a poll every minute, and an answer long before: the NOTIFY woke it
                assert await standby.call("telephony", "hangup", {"ref": "x"}, timeout_s=10) == (
                    "placed"
                )
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        assert len(seen) == 1
