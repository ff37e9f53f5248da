"""The simulated PBX's consult (warm) transfer: the caller held with the hold prompt, the
colleague's desk rung and answered (or not), then completed or cancelled; a caller who
hangs up takes the consult with them."""

from __future__ import annotations

import pytest

from ivr.prompts import render
from providers.base import (
    CallBridged,
    CallEnded,
    CallHeld,
    CallUnheld,
    Consult,
    ConsultAnswered,
    ConsultFailed,
    EndCause,
    PromptPlayed,
    TelephonyError,
)
from providers.memory import Script
from tests.conftest import eventually
from tests.providers.memory.test_memory_hold import pbx_and_events


async def test_given_a_caller_with_an_operator_when_consulting_then_held_answered_completed() -> (
    None
):
    async with pbx_and_events() as (pbx, events):
        assert isinstance(pbx, Consult)
        ref = await pbx.dial_in("+862354000001")
        await pbx.bridge(ref, peer="operator:2")
        await events.take()

        await pbx.consult(ref, peer="operator:3")
        with pytest.raises(TelephonyError, match="under way"):
            await pbx.consult(ref, peer="operator:4")

        async def answered() -> bool:
            return pbx.consults[ref].answered

        await eventually(answered)
        text = render("desk.on_hold", "zh-CN")
        assert await events.take() == [
            PromptPlayed(ref, "desk.on_hold", text),
            CallHeld(ref),
            ConsultAnswered(ref, "operator:3"),
        ]
        # the caller waits on hold with their operator while the two talk
        assert (pbx.calls[ref].state, pbx.calls[ref].peer) == ("held", "operator:2")

        await pbx.complete_consult(ref, peer="operator:3")

        assert (pbx.calls[ref].state, pbx.calls[ref].peer) == ("bridged", "operator:3")
        assert await events.take() == [CallUnheld(ref), CallBridged(ref, "operator:3")]
        assert ref not in pbx.consults


async def test_given_a_desk_not_answering_when_consulted_then_failed_and_cancel_unholds() -> None:
    async with pbx_and_events() as (pbx, events):
        pbx.script_desk("operator:3", Script(action="busy"))
        ref = await pbx.dial_in("+862354000001")
        await pbx.bridge(ref, peer="operator:2")
        await pbx.consult(ref, peer="operator:3")

        async def failed() -> bool:
            return ref not in pbx.consults

        await eventually(failed)
        assert ConsultFailed(ref, "operator:3") in await events.take()
        # still on hold with their operator until taken back
        assert (pbx.calls[ref].state, pbx.calls[ref].peer) == ("held", "operator:2")
        with pytest.raises(TelephonyError, match="no answered consult"):
            await pbx.complete_consult(ref, peer="operator:3")

        await pbx.cancel_consult(ref, peer="operator:3")
        assert await events.take() == [CallUnheld(ref)]
        assert (pbx.calls[ref].state, pbx.calls[ref].peer) == ("bridged", "operator:2")


async def test_given_a_consult_ringing_when_the_caller_hangs_up_then_the_consult_goes() -> None:
    async with pbx_and_events() as (pbx, events):
        pbx.script_desk("operator:3", Script(action="no_answer"))
        ref = await pbx.dial_in("+862354000001")
        await pbx.bridge(ref, peer="operator:2")
        await pbx.consult(ref, peer="operator:3")

        await pbx.party_hangup(ref)

        assert ref not in pbx.consults
        seen = await events.take()
        assert seen[-1] == CallEnded(ref, EndCause.NORMAL)
        assert not any(isinstance(e, (ConsultFailed, ConsultAnswered)) for e in seen)
