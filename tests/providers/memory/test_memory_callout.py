"""Click-to-call on the simulated PBX: the operator's desk rings first, then the number;
the two are connected when it answers, and each step is an event of the port."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from providers.base import (
    BackendStatus,
    CallAnswered,
    CallBridged,
    CallEnded,
    CallRinging,
    EndCause,
    OriginateFailed,
    OriginateFailure,
    TelephonyEvent,
    TelephonyUnavailable,
    UnknownCall,
)
from providers.memory import MemoryPBX, Script
from tests.providers.memory.test_memory_hold import Events, pbx_and_events

DESK = "operator:7"
NUMBER = "13800000001"


async def until(
    events: Events, done: Callable[[list[TelephonyEvent]], bool]
) -> list[TelephonyEvent]:
    """Call events seen so far, once `done` says they are complete (waits on the loop)."""
    seen: list[TelephonyEvent] = []
    for _ in range(2000):
        seen += await events.take()
        if done(seen):
            return seen
        await asyncio.sleep(0.001)
    raise AssertionError(f"events never complete: {seen}")


async def test_given_a_free_desk_when_calling_out_then_desk_then_number_then_connected() -> None:
    async with pbx_and_events() as (pbx, events):
        await pbx.call_out(ref="co-1", desk=DESK, number=NUMBER)
        seen = await until(events, lambda s: CallRinging("co-1") in s)
        assert seen == [CallBridged("co-1", DESK), CallRinging("co-1")]
        assert pbx.calls["co-1"].number == NUMBER

        await pbx.answer("co-1")
        assert await until(events, lambda s: bool(s)) == [CallAnswered("co-1")]
        assert pbx.calls["co-1"].state == "bridged"
        assert pbx.calls["co-1"].peer == DESK

        await pbx.party_hangup("co-1")
        assert await until(events, lambda s: bool(s)) == [CallEnded("co-1", EndCause.NORMAL)]


async def test_given_the_same_ref_twice_when_calling_out_then_one_call() -> None:
    async with pbx_and_events() as (pbx, events):
        await pbx.call_out(ref="co-2", desk=DESK, number=NUMBER)
        await pbx.call_out(ref="co-2", desk=DESK, number=NUMBER)
        seen = await until(events, lambda s: CallRinging("co-2") in s)
        assert seen.count(CallBridged("co-2", DESK)) == 1
        assert [c for c in pbx.calls if c == "co-2"] == ["co-2"]


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        ("no_answer", OriginateFailure.NO_ANSWER),
        ("busy", OriginateFailure.BUSY),
        ("fail", OriginateFailure.FAILED),
    ],
)
async def test_given_a_desk_that_does_not_answer_when_calling_out_then_failed_before_dialling(
    action: str, reason: OriginateFailure
) -> None:
    async with MemoryPBX(time_scale=0.001, ring_timeout_s=1.0) as pbx:
        events = Events(pbx)
        pbx.script_desk(DESK, Script(action=action))
        await pbx.call_out(ref="co-3", desk=DESK, number=NUMBER)
        seen = await until(events, lambda s: bool(s))
        # the number was never dialled: no bridge, no ringing
        assert seen == [OriginateFailed("co-3", reason)]
        assert "co-3" not in await pbx.live_calls()
        await events.stop()


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        (Script(action="busy"), OriginateFailure.BUSY),
        (Script(action="no_answer"), OriginateFailure.NO_ANSWER),
    ],
)
async def test_given_a_number_that_does_not_answer_when_calling_out_then_failed_after_the_desk(
    script: Script, reason: OriginateFailure
) -> None:
    async with MemoryPBX(time_scale=0.001, ring_timeout_s=1.0) as pbx:
        events = Events(pbx)
        pbx.script(NUMBER, script)
        await pbx.call_out(ref="co-4", desk=DESK, number=NUMBER)
        seen = await until(events, lambda s: any(isinstance(e, OriginateFailed) for e in s))
        assert seen == [
            CallBridged("co-4", DESK),
            CallRinging("co-4"),
            OriginateFailed("co-4", reason),
        ]
        await events.stop()


async def test_given_a_ringing_callout_when_the_operator_hangs_up_then_it_ends() -> None:
    async with pbx_and_events() as (pbx, events):
        await pbx.call_out(ref="co-5", desk=DESK, number=NUMBER)
        await until(events, lambda s: CallRinging("co-5") in s)
        await pbx.hangup("co-5")
        assert await until(events, lambda s: bool(s)) == [CallEnded("co-5", EndCause.NORMAL)]
        with pytest.raises(UnknownCall):
            await pbx.answer("co-5")


async def test_given_the_link_down_when_calling_out_then_unavailable_and_the_ref_stays_free() -> (
    None
):
    async with pbx_and_events() as (pbx, events):
        pbx.set_link(False)
        with pytest.raises(TelephonyUnavailable):
            await pbx.call_out(ref="co-6", desk=DESK, number=NUMBER)
        pbx.set_link(True)
        await pbx.call_out(ref="co-6", desk=DESK, number=NUMBER)
        seen = await until(events, lambda s: CallRinging("co-6") in s)
        assert [e for e in seen if not isinstance(e, BackendStatus)][-2:] == [
            CallBridged("co-6", DESK),
            CallRinging("co-6"),
        ]
