"""The simulated PBX holds, resumes and transfers a caller as the real backends do: the
caller hears the hold prompt, the operator stays the peer, events report each step."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from ivr.prompts import render
from providers.base import (
    BackendStatus,
    CallBridged,
    CallEnded,
    CallHeld,
    CallUnheld,
    EndCause,
    PromptPlayed,
    Telephony,
    TelephonyError,
    TelephonyEvent,
    TransferFailed,
    UnknownCall,
)
from providers.memory import MemoryPBX, Script


class Events:
    """Reads the PBX's public event stream in the background."""

    def __init__(self, pbx: MemoryPBX) -> None:
        self.seen: list[TelephonyEvent] = []
        self._task = asyncio.get_running_loop().create_task(self._read(pbx))

    async def _read(self, pbx: MemoryPBX) -> None:
        async for event in pbx.events():
            self.seen.append(event)

    async def take(self) -> list[TelephonyEvent]:
        """Call events since the last take (backend status left out)."""
        for _ in range(5):
            await asyncio.sleep(0)
        out = [e for e in self.seen if not isinstance(e, BackendStatus)]
        self.seen.clear()
        return out

    async def stop(self) -> None:
        """Stop reading."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@contextlib.asynccontextmanager
async def pbx_and_events() -> AsyncIterator[tuple[MemoryPBX, Events]]:
    """An open simulated PBX and a reader of its events."""
    async with MemoryPBX(time_scale=0.01) as pbx:
        events = Events(pbx)
        try:
            yield pbx, events
        finally:
            await events.stop()


async def test_given_a_caller_with_an_operator_when_held_resumed_transferred_then_events() -> None:
    async with pbx_and_events() as (pbx, events):
        assert isinstance(pbx, Telephony)
        ref = await pbx.dial_in("+862354000001")
        await pbx.bridge(ref, peer="operator:2")
        await events.take()

        await pbx.hold(ref)
        await pbx.hold(ref)  # already held: no second prompt
        assert pbx.snapshot()[0]["state"] == "held"
        assert pbx.snapshot()[0]["peer"] == "operator:2"  # the operator stays on the line
        text = render("desk.on_hold", "zh-CN")
        assert await events.take() == [PromptPlayed(ref, "desk.on_hold", text), CallHeld(ref)]
        assert pbx.snapshot()[0]["transcript"][-1] == text

        await pbx.unhold(ref)
        assert pbx.snapshot()[0]["state"] == "bridged"
        assert await events.take() == [CallUnheld(ref)]
        with pytest.raises(TelephonyError):
            await pbx.unhold(ref)

        await pbx.hold(ref)
        await events.take()
        await pbx.transfer(ref, peer="operator:3")
        assert (pbx.snapshot()[0]["state"], pbx.snapshot()[0]["peer"]) == (
            "bridged",
            "operator:3",
        )
        assert await events.take() == [CallUnheld(ref), CallBridged(ref, "operator:3")]


async def test_given_a_held_caller_who_hangs_up_then_the_call_ends() -> None:
    async with pbx_and_events() as (pbx, events):
        ref = await pbx.dial_in("+862354000001")
        await pbx.bridge(ref, peer="operator:2")
        await pbx.hold(ref)
        await events.take()
        await pbx.party_hangup(ref)
        assert await events.take() == [CallEnded(ref, EndCause.NORMAL)]
        with pytest.raises(UnknownCall):
            await pbx.unhold(ref)


async def test_given_a_caller_not_with_an_operator_then_hold_and_transfer_refused() -> None:
    async with pbx_and_events() as (pbx, _events):
        ref = await pbx.dial_in("+862354000001")
        with pytest.raises(TelephonyError, match="not bridged"):
            await pbx.hold(ref)
        with pytest.raises(TelephonyError, match="not with an operator"):
            await pbx.transfer(ref, peer="operator:3")
        await asyncio.sleep(0)
        assert pbx.snapshot()[0]["state"] == "answered"


@pytest.mark.parametrize("action", ["no_answer", "busy"])
async def test_given_a_desk_that_does_not_answer_when_transferred_then_transfer_failed(
    action: str,
) -> None:
    async with pbx_and_events() as (pbx, events):
        pbx.ring_timeout_s = 2.0  # 20 ms at this time scale
        pbx.script_desk("operator:3", Script(action=action, answer_after_s=0.5))
        ref = await pbx.dial_in("+862354000001")
        await pbx.bridge(ref, peer="operator:2")
        await events.take()

        await pbx.transfer(ref, peer="operator:3")

        # while the new desk rings the caller holds; nothing says they reached it
        text = render("desk.on_hold", "zh-CN")
        assert (pbx.snapshot()[0]["state"], pbx.snapshot()[0]["peer"]) == ("held", "operator:3")
        assert await events.take() == [PromptPlayed(ref, "desk.on_hold", text)]
        await asyncio.sleep(0.05)
        assert await events.take() == [TransferFailed(ref, "operator:3")]
        assert (pbx.snapshot()[0]["state"], pbx.snapshot()[0]["peer"]) == ("answered", None)

        # the caller waits for the next bridge, which connects them as usual
        await pbx.bridge(ref, peer="operator:4")
        assert await events.take() == [CallBridged(ref, "operator:4")]
        await asyncio.sleep(0.05)
        assert await events.take() == []
