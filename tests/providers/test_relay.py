"""The port on a standby: calls made through the owner's adapters, the port's own errors
back, timers set on the owner's timers, and direct calls once this process owns the link.
The owner's backend is the memory PBX; two engines on one PostgreSQL database are the two
processes (SQLite is one process per database: no relay there)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from dispatch.timers import ManualTimers
from eventlog.clock import ManualClock
from eventlog.commands import Command, CommandQueue, serve
from eventlog.db import make_engine
from ivr.library import FlowLibrary
from providers.base import TelephonyError, TelephonyUnavailable, UnknownCall
from providers.memory import MemoryPBX
from providers.relay import Executor, RelayTelephony, RelayTimers
from tests.conftest import eventually


@contextlib.asynccontextmanager
async def standby_and_owner(
    url: str,
) -> AsyncIterator[tuple[RelayTelephony, RelayTimers, MemoryPBX, ManualTimers]]:
    engines = make_engine(url), make_engine(url)
    pbx, timers = MemoryPBX(), ManualTimers(ManualClock(datetime(2026, 12, 3, 9, tzinfo=UTC)))
    standby = CommandQueue(engines[0], me="standby")
    owner = CommandQueue(engines[1], me="owner")
    executor = Executor(pbx, timers, FlowLibrary(None).get)
    async with pbx:
        task = asyncio.create_task(serve(owner, executor, poll_s=0.01))
        try:
            yield (
                RelayTelephony(standby, backend="memory", timeout_s=10),
                RelayTimers(standby, timeout_s=10),
                pbx,
                timers,
            )
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            for engine in engines:
                await engine.dispose()


async def commands(tel: RelayTelephony) -> int:
    async with tel.queue.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(Command))).scalar_one())


@pytest.mark.parametrize("migrated_db_url", ["postgresql"], indirect=True)
async def test_given_a_standby_when_originating_then_the_owner_places_it_once(
    migrated_db_url: str,
) -> None:
    async with standby_and_owner(migrated_db_url) as (tel, _timers, pbx, _t):
        await tel.originate(ref="offer-1", number="13900000001", timeout_s=20)
        await tel.originate(ref="offer-1", number="13900000001", timeout_s=20)  # a retry
        assert [c["ref"] for c in pbx.snapshot() if c["direction"] == "out"] == ["offer-1"]
        await tel.hangup("offer-1")
        assert [c["state"] for c in pbx.snapshot() if c["direction"] == "out"] == ["ended"]


@pytest.mark.parametrize("migrated_db_url", ["postgresql"], indirect=True)
async def test_given_a_standby_when_the_owner_refuses_then_the_same_port_error(
    migrated_db_url: str,
) -> None:
    async with standby_and_owner(migrated_db_url) as (tel, _timers, _pbx, _t):
        with pytest.raises(UnknownCall):
            await tel.hold("no-such-call")


@pytest.mark.parametrize("migrated_db_url", ["postgresql"], indirect=True)
async def test_given_a_standby_when_setting_timers_then_the_owners_timers_hold_them(
    migrated_db_url: str,
) -> None:
    async with standby_and_owner(migrated_db_url) as (_tel, timers, _pbx, owners):
        at = datetime(2026, 12, 3, 9, 5, tzinfo=UTC)
        await timers.schedule("offer:7", at)
        await timers.schedule("deadline:3", at + timedelta(hours=1))
        await timers.cancel("deadline:3")
        assert await timers.keys() == {"offer:7"}
        assert await owners.keys() == {"offer:7"}


@pytest.mark.parametrize("migrated_db_url", ["postgresql"], indirect=True)
async def test_given_no_owner_then_line_unavailable_and_once_attached_direct(
    migrated_db_url: str,
) -> None:
    engine = make_engine(migrated_db_url)
    try:
        tel = RelayTelephony(CommandQueue(engine, me="standby"), backend="memory", timeout_s=0.2)
        with pytest.raises(TelephonyUnavailable):
            await tel.originate(ref="offer-1", number="13900000001")
        assert tel.health().up is False
        assert tel.hears_speech is False  # a standby's pump takes no PBX events
        async with MemoryPBX() as pbx:
            tel.attach(pbx)
            assert tel.hears_speech is True  # the memory PBX's phones speak
            await tel.originate(ref="offer-2", number="13900000002")
            assert [c["ref"] for c in pbx.snapshot() if c["direction"] == "out"] == ["offer-2"]
            assert tel.health() == pbx.health()
        assert await commands(tel) == 1  # only the withdrawn one went through the table
    finally:
        await engine.dispose()


class SlowPBX(MemoryPBX):
    """The owner's PBX, stalled in `originate` until released (a loaded box, a slow AMI)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.taken = asyncio.Event()

    async def originate(self, **kw: Any) -> None:
        self.taken.set()
        await self.release.wait()
        await super().originate(**kw)

    async def call_out(self, **kw: Any) -> None:
        self.taken.set()
        await self.release.wait()
        await super().call_out(**kw)


@pytest.mark.parametrize("migrated_db_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("method", ["originate", "call_out"])
async def test_given_an_owner_slow_to_finish_a_placed_call_then_no_failure_and_placed_once(
    migrated_db_url: str, method: str
) -> None:
    """Outcome unknown is not a failure of the merchant's phone: a failure would move the
    offer on (a second merchant called while the first one's phone rings, seen in CI on a
    box at load 11). The standby takes it as placed; the owner places it once."""
    engines = make_engine(migrated_db_url), make_engine(migrated_db_url)
    pbx = SlowPBX()
    timers = ManualTimers(ManualClock(datetime(2026, 12, 3, 9, tzinfo=UTC)))
    executor = Executor(pbx, timers, FlowLibrary(None).get)
    tel = RelayTelephony(CommandQueue(engines[0], me="standby"), backend="memory", timeout_s=0.2)
    async with pbx:
        owner = CommandQueue(engines[1], me="owner")
        task = asyncio.create_task(serve(owner, executor, poll_s=0.01))
        try:
            args: dict[str, Any] = {"ref": "offer-9", "number": "13900000009"}
            if method == "call_out":
                args["desk"] = "operator:2"
            await asyncio.wait_for(getattr(tel, method)(**args), 15)  # no TelephonyError
            assert pbx.taken.is_set()
            assert await commands(tel) == 1
            pbx.release.set()

            async def placed() -> list[str]:
                return [c["ref"] for c in pbx.snapshot() if c["direction"] == "out"]

            assert await eventually(placed) in (["offer-9"], ["offer-9", "offer-9:desk"])
        finally:
            pbx.release.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            for engine in engines:
                await engine.dispose()


@pytest.mark.parametrize("migrated_db_url", ["postgresql"], indirect=True)
async def test_given_a_standby_when_consulting_then_the_owners_backend_holds_and_rings(
    migrated_db_url: str,
) -> None:
    """A consult (warm) transfer from a standby's desk goes through the owner as every
    other command does (it was refused with consult_unsupported on every process that
    may stand by: Asterisk and Twilio on PostgreSQL)."""
    async with standby_and_owner(migrated_db_url) as (tel, _timers, pbx, _t):
        ref = await pbx.dial_in("+8613900000001")
        await tel.bridge(ref, peer="op1")
        await tel.consult(ref, peer="op2")
        assert pbx.consults[ref].peer == "op2"
        await tel.cancel_consult(ref, peer="op2")
        assert ref not in pbx.consults
        with pytest.raises(TelephonyError):  # the owner's own refusal comes back as it is
            await tel.complete_consult(ref, peer="op2")
