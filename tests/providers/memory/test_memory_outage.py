"""The memory PBX's simulated outage: the link reports down, commands are refused as
unavailable (nothing placed, the ref still free), live calls drop and are reported the
way a real backend reports them after reconnecting."""

from __future__ import annotations

import asyncio

import pytest

from providers.base import (
    BackendStatus,
    CallEnded,
    CallRinging,
    EndCause,
    OriginateFailed,
    OriginateFailure,
    TelephonyEvent,
    TelephonyUnavailable,
)
from providers.memory import MemoryPBX

PHONE = "+8613900000001"


def drain(pbx: MemoryPBX) -> list[TelephonyEvent]:
    """Every event the PBX has queued so far (its queue is in-process)."""
    out: list[TelephonyEvent] = []
    while not pbx._events.empty():
        out.append(pbx._events.get_nowait())
    return out


async def test_given_an_outage_when_originating_then_unavailable_and_placed_once_after() -> None:
    async with MemoryPBX() as pbx:
        drain(pbx)
        pbx.set_link(False)
        assert drain(pbx) == [BackendStatus(up=False, detail="simulated outage")]
        assert not pbx.health().up

        with pytest.raises(TelephonyUnavailable):
            await pbx.originate(ref="offer-1", number=PHONE)

        assert pbx.placed == set()
        pbx.set_link(True)
        assert drain(pbx) == [BackendStatus(up=True, detail="memory")]
        await pbx.originate(ref="offer-1", number=PHONE)
        await pbx.originate(ref="offer-1", number=PHONE)
        assert drain(pbx) == [CallRinging("offer-1")]


async def test_given_live_calls_when_the_link_drops_then_they_are_reported_when_it_is_back() -> (
    None
):
    async with MemoryPBX() as pbx:
        inbound = await pbx.dial_in("+862354000001")
        await pbx.originate(ref="offer-1", number=PHONE)
        await pbx.originate(ref="survey-1", number=PHONE)
        await pbx.answer("survey-1")
        drain(pbx)

        pbx.set_link(False)
        assert drain(pbx) == [BackendStatus(up=False, detail="simulated outage")]
        assert all(c["state"] == "ended" for c in pbx.snapshot())
        await pbx.hangup("offer-1")  # a dropped call: nothing to hang up, no error
        pbx.set_link(True)

        assert drain(pbx) == [
            CallEnded(inbound, EndCause.FAILED),
            OriginateFailed("offer-1", OriginateFailure.LOST),  # nobody knows if it rang
            CallEnded("survey-1", EndCause.FAILED),
            BackendStatus(up=True, detail="memory"),
        ]


async def test_given_an_outage_then_the_event_stream_goes_on_until_closed() -> None:
    pbx = MemoryPBX()
    seen: list[TelephonyEvent] = []
    async with pbx:

        async def collect() -> None:
            async for event in pbx.events():
                seen.append(event)

        task = asyncio.create_task(collect())
        pbx.set_link(False)
        pbx.set_link(True)
    await asyncio.wait_for(task, 2)
    assert [e.up for e in seen if isinstance(e, BackendStatus)] == [True, False, True, False]
