"""The same keys take the same path in the memory PBX and through the TwiML rendering."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from ivr.flow import STAY, Flow
from ivr.flows import MERCHANT_OFFER, SURVEY
from providers.base import DigitPressed, FlowFinished, PromptPlayed, TelephonyEvent
from providers.memory.pbx import MemoryPBX
from tests.ivr.walk import drive
from tests.providers.twilio.twilio_fakes import Doc, Rig

OFFER = {"category": "送水", "description": "两桶", "address": "3号楼", "deadline": "10:00"}
SURVEY_CONTEXT = {"category": "送水"}

Keys = Sequence[str | None]  # None: the caller keys nothing until the Gather times out

CASES: list[tuple[Flow, Mapping[str, str], Keys]] = [
    (MERCHANT_OFFER, OFFER, ["1"]),
    (MERCHANT_OFFER, OFFER, ["2"]),
    (MERCHANT_OFFER, OFFER, ["9", "1"]),
    (MERCHANT_OFFER, OFFER, ["9", "9", "2"]),
    (MERCHANT_OFFER, OFFER, [None, "1"]),
    (MERCHANT_OFFER, OFFER, [None, None, None]),
    (MERCHANT_OFFER, OFFER, ["5", "2"]),
    (MERCHANT_OFFER, OFFER, ["5", None, "#"]),
    (MERCHANT_OFFER, OFFER, [None, "9", None, "1"]),
    (SURVEY, SURVEY_CONTEXT, ["1"]),
    (SURVEY, SURVEY_CONTEXT, ["2"]),
    (SURVEY, SURVEY_CONTEXT, ["3"]),
    (SURVEY, SURVEY_CONTEXT, ["9", "3"]),
    (SURVEY, SURVEY_CONTEXT, [None, "2"]),
    (SURVEY, SURVEY_CONTEXT, [None, None, None]),
    (SURVEY, SURVEY_CONTEXT, ["4", "0", "1"]),
]


def path(events: Sequence[TelephonyEvent]) -> list[tuple[str, ...]]:
    """What the caller heard and did, and how the flow ended."""
    steps: list[tuple[str, ...]] = []
    for event in events:
        if isinstance(event, PromptPlayed):
            steps.append(("said", event.prompt, event.text))
        elif isinstance(event, DigitPressed):
            steps.append(("pressed", event.digit))
        elif isinstance(event, FlowFinished):
            variables = ",".join(f"{k}={v}" for k, v in sorted(event.variables.items()))
            steps.append(("finished", event.flow, event.outcome, variables))
    return steps


async def memory_path(flow: Flow, context: Mapping[str, Any], keys: Keys) -> list[tuple[str, ...]]:
    """Drive the memory PBX: press keys, or let its input timer run out."""
    events: list[TelephonyEvent] = []
    arrived = asyncio.Condition()
    async with MemoryPBX(time_scale=0.005) as pbx:

        async def pump() -> None:
            async for event in pbx.events():
                async with arrived:
                    events.append(event)
                    arrived.notify_all()

        pumping = asyncio.create_task(pump())
        await pbx.originate(ref="m-1", number="+8613900000001")
        await pbx.answer("m-1")
        await pbx.run_flow("m-1", flow, context=context)
        call = pbx.calls["m-1"]
        for key in keys:
            if key is None:
                # The simulator's transcript grows when its input timer fires.
                said = len(call.transcript)
                async with arrived:
                    await asyncio.wait_for(
                        arrived.wait_for(lambda said=said: len(call.transcript) > said), 2.0
                    )
            else:
                await pbx.press("m-1", key)
        async with arrived:
            done = lambda: any(isinstance(e, FlowFinished) for e in events)  # noqa: E731
            await asyncio.wait_for(arrived.wait_for(done), 2.0)
    pumping.cancel()
    await asyncio.gather(pumping, return_exceptions=True)
    return path(events)


async def twilio_path(
    rig: Rig, flow: Flow, context: Mapping[str, Any], keys: Keys
) -> list[tuple[str, ...]]:
    """Drive the Twilio adapter through signed webhooks: Gather posts with or without Digits."""
    await rig.adapter.originate(ref="t-1", number="+8613900000001")
    sid = rig.api.sids_created[-1]
    await rig.twilio.status(sid, "in-progress", ref="t-1")
    await rig.adapter.run_flow("t-1", flow, context=context)
    doc: Doc = await rig.twilio.voice(sid, ref="t-1")
    for key in keys:
        doc = await rig.twilio.gather(doc, sid, key)
    # a flow that ends with STAY leaves the call waiting (Redirect) for the next flow
    stays = drive(flow, keys, dict(context)).finish.transfer == STAY  # type: ignore[union-attr]
    assert doc.verbs()[-1] == ("Redirect" if stays else "Hangup"), doc.xml
    return path(await rig.events.calls())


@pytest.mark.parametrize(
    ("flow", "context", "keys"),
    CASES,
    ids=[f"{f.name}-{''.join(k or '_' for k in keys)}" for f, _, keys in CASES],
)
async def test_same_keys_same_path(
    rig: Rig, flow: Flow, context: Mapping[str, Any], keys: Keys
) -> None:
    memory = await memory_path(flow, context, keys)
    twilio = await twilio_path(rig, flow, context, keys)

    assert memory == twilio
    assert memory[-1][0] == "finished"
