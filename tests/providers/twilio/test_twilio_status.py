"""Status callbacks become the port's events: mapping, retries, and out-of-order delivery."""

from __future__ import annotations

from typing import Any

import pytest

from ivr.flows import SURVEY
from providers.base import (
    CallAnswered,
    CallEnded,
    CallRinging,
    EndCause,
    OriginateFailed,
    OriginateFailure,
    TelephonyEvent,
)
from providers.twilio.status import Progress, advance
from tests.providers.twilio.twilio_fakes import Rig

REF = "offer-7"


async def _placed(rig: Rig) -> str:
    await rig.adapter.originate(ref=REF, number="+8613900000007")
    await rig.events.take()
    return rig.api.sids_created[-1]


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (
            ["initiated", "ringing", "in-progress", "completed"],
            [CallRinging(REF), CallAnswered(REF), CallEnded(REF, EndCause.NORMAL)],
        ),
        (["initiated", "ringing", "busy"], [CallRinging(REF), OriginateFailed(REF, "busy")]),
        (["ringing", "no-answer"], [CallRinging(REF), OriginateFailed(REF, "no_answer")]),
        (["failed"], [OriginateFailed(REF, OriginateFailure.FAILED)]),
        (["ringing", "canceled"], [CallRinging(REF), CallEnded(REF, EndCause.NORMAL)]),
        (["in-progress", "failed"], [CallAnswered(REF), CallEnded(REF, EndCause.FAILED)]),
    ],
)
async def test_given_outbound_call_when_statuses_arrive_then_mapped(
    rig: Rig, statuses: list[str], expected: list[TelephonyEvent]
) -> None:
    sid = await _placed(rig)
    for status in statuses:
        assert await rig.twilio.status(sid, status, ref=REF) == 204
    assert await rig.events.calls() == expected


async def test_given_failed_with_sip_503_then_congestion(rig: Rig) -> None:
    sid = await _placed(rig)
    await rig.twilio.status(sid, "failed", ref=REF, SipResponseCode="503")
    assert await rig.events.calls() == [OriginateFailed(REF, OriginateFailure.CONGESTION)]


async def test_given_retried_callback_then_one_event(rig: Rig) -> None:
    sid = await _placed(rig)
    for _ in range(3):
        await rig.twilio.status(sid, "ringing", ref=REF, SequenceNumber="1")
    assert await rig.events.calls() == [CallRinging(REF)]


async def test_given_voice_retried_with_idempotency_token_then_same_turn_and_no_repeat(
    rig: Rig,
) -> None:
    sid = await _placed(rig)
    await rig.adapter.run_flow(REF, SURVEY, context={"category": "x"})
    params = {"CallSid": sid, "CallStatus": "in-progress"}
    headers = {"I-Twilio-Idempotency-Token": f"{sid}-voice-1"}

    first = await rig.twilio.post("voice", params, query={"ref": REF}, headers=headers)
    second = await rig.twilio.post("voice", params, query={"ref": REF}, headers=headers)

    # Without the token the retry would find the first turn consumed and put the call on hold.
    assert first == second
    assert "<Gather" in first[1]
    events = await rig.events.calls()
    assert [type(e).__name__ for e in events] == ["CallAnswered", "PromptPlayed", "PromptPlayed"]


async def test_given_late_ringing_after_in_progress_then_ignored(rig: Rig) -> None:
    sid = await _placed(rig)
    await rig.twilio.status(sid, "in-progress", ref=REF, SequenceNumber="2")
    await rig.twilio.status(sid, "ringing", ref=REF, SequenceNumber="1")
    await rig.twilio.status(sid, "initiated", ref=REF, SequenceNumber="0")
    assert await rig.events.calls() == [CallAnswered(REF)]


async def test_given_completed_before_in_progress_then_answered_then_ended_once(
    rig: Rig,
) -> None:
    sid = await _placed(rig)
    await rig.twilio.status(sid, "completed", ref=REF, SequenceNumber="3")
    await rig.twilio.status(sid, "in-progress", ref=REF, SequenceNumber="2")
    await rig.twilio.status(sid, "ringing", ref=REF, SequenceNumber="1")
    assert await rig.events.calls() == [CallAnswered(REF), CallEnded(REF, EndCause.NORMAL)]


async def test_given_answered_by_voice_webhook_then_in_progress_callback_adds_nothing(
    rig: Rig,
) -> None:
    sid = await _placed(rig)
    await rig.twilio.voice(sid, ref=REF)
    await rig.twilio.status(sid, "in-progress", ref=REF)
    assert await rig.events.calls() == [CallAnswered(REF)]


async def test_given_status_without_ref_then_found_by_call_sid(rig: Rig) -> None:
    sid = await _placed(rig)
    await rig.twilio.status(sid, "ringing")
    assert await rig.events.calls() == [CallRinging(REF)]


async def test_given_inbound_call_when_completed_then_ended(rig: Rig) -> None:
    await rig.twilio.voice("CA55", From="+8613800000055", To="12349")
    await rig.events.take()
    await rig.twilio.status("CA55", "ringing")
    await rig.twilio.status("CA55", "completed")
    assert await rig.events.calls() == [CallEnded("CA55", EndCause.NORMAL)]


async def test_given_unknown_call_then_204_and_nothing(rig: Rig) -> None:
    assert await rig.twilio.status("CA404", "completed") == 204
    assert await rig.events.calls() == []


def test_progress_never_moves_back() -> None:
    progress, events = advance(Progress(), "in-progress", ref="r", outbound=True)
    assert events == [CallAnswered("r")]
    again, events = advance(progress, "ringing", ref="r", outbound=True)
    assert (again, events) == (progress, [])
    assert not progress.ended
    final, events = advance(progress, "completed", ref="r", outbound=True)
    assert final.ended and events == [CallEnded("r", EndCause.NORMAL)]
    assert advance(final, "failed", ref="r", outbound=True) == (final, [])


def test_unknown_status_is_ignored() -> None:
    assert advance(Progress(), "exploded", ref="r", outbound=True) == (Progress(), [])


async def test_given_machine_detection_then_asked_for_and_the_answer_says_who(
    make_rig: Any,
) -> None:
    """`machine_detection` asks Twilio for `MachineDetection=Enable` on the call (not on an
    operator's click-to-call desk leg); the answer's `AnsweredBy` says who picked up."""
    rig = await make_rig(machine_detection=True)
    for n, (by, want) in enumerate(
        [
            ("machine_start", "machine"),
            ("human", "human"),
            ("fax", "machine"),
            ("unknown", "unknown"),
        ]
    ):
        ref = f"wb-{n}-1"
        await rig.adapter.originate(ref=ref, number=f"+861390000000{n}")
        sid = rig.api.sids_created[-1]
        assert rig.api.calls_created()[-1].form.get("MachineDetection") == "Enable"
        if n % 2:  # the answer webhook, or the status callback, whichever comes first
            await rig.twilio.voice(sid, ref=ref, AnsweredBy=by)
        else:
            await rig.twilio.status(sid, "in-progress", ref=ref, AnsweredBy=by)
        assert await rig.events.take() == [CallAnswered(ref, want)]
    await rig.adapter.call_out(ref="co-1", desk="operator:3", number="+8613900000001")
    assert "MachineDetection" not in rig.api.calls_created()[-1].form


async def test_given_no_machine_detection_then_not_asked_for(rig: Rig) -> None:
    await rig.adapter.originate(ref=REF, number="+8613900000009")
    assert "MachineDetection" not in rig.api.calls_created()[-1].form
