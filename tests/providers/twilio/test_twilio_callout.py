"""Click-to-call on Twilio: the REST call to the operator's Twilio Client first (the
request asserted on the loopback REST fake), then, when it answers, a `<Dial>` of the
number; the number's progress comes back through signed webhooks."""

from __future__ import annotations

import pytest

from providers.base import (
    CallAnswered,
    CallBridged,
    CallEnded,
    CallRinging,
    EndCause,
    OriginateFailed,
    OriginateFailure,
)
from tests.providers.twilio.twilio_fakes import ACCOUNT, PLATFORM, PUBLIC, Doc, Rig

REF = "callout-1"
NUMBER = "+8613800000001"


async def desk_answers(rig: Rig) -> tuple[str, Doc]:
    """The operator's Twilio Client rings and picks up; returns its SID and the TwiML."""
    await rig.adapter.call_out(ref=REF, desk="operator:7", number=NUMBER, timeout_s=25)
    sid = rig.api.sids_created[-1]
    assert await rig.twilio.status(sid, "ringing", ref=REF) == 204
    assert await rig.events.take() == []  # the desk ringing says nothing yet
    doc = await rig.twilio.voice(sid, ref=REF)
    assert await rig.events.take() == [CallBridged(REF, "operator:7")]
    return sid, doc


async def number(rig: Rig, status: str, **extra: str) -> int:
    """Twilio posts the `<Number>` leg's progress to /callout (signed)."""
    params = {"CallSid": "CA_number", "CallStatus": status, "AccountSid": ACCOUNT, **extra}
    code, _ = await rig.twilio.post("callout", params, query={"ref": REF})
    return code


async def dial_ended(rig: Rig, sid: str, dial_status: str) -> Doc:
    """The `<Dial>`'s action: how the Dial of the number ended."""
    params = {"CallSid": sid, "AccountSid": ACCOUNT, "DialCallStatus": dial_status}
    code, body = await rig.twilio.post("dial", params, query={"ref": REF})
    assert code == 200
    return Doc(body)


async def test_given_operator_7_when_calling_out_then_the_client_is_called_first(
    rig: Rig,
) -> None:
    await rig.adapter.call_out(ref=REF, desk="operator:7", number=NUMBER, timeout_s=25)
    await rig.adapter.call_out(ref=REF, desk="operator:7", number=NUMBER)  # a retry: no-op
    (created,) = rig.api.calls_created()
    assert created.path == f"/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
    # the desk is rung, not the number; nobody's number reaches the operator's client
    assert created.form["To"] == "client:operator_7"
    assert created.form["From"] == PLATFORM
    assert created.form["Url"] == f"{PUBLIC}/voice?ref={REF}"
    assert created.form["StatusCallback"] == f"{PUBLIC}/status?ref={REF}"
    assert created.form["Timeout"] == "25"
    assert NUMBER not in str(dict(created.form))


async def test_given_the_desk_answers_then_the_number_is_dialled_rings_answers_and_ends(
    rig: Rig,
) -> None:
    sid, doc = await desk_answers(rig)
    assert doc.verbs() == ["Dial"]
    dial = doc.root.find("Dial")
    assert dial is not None
    assert dial.get("callerId") == PLATFORM
    assert dial.get("action") == f"{PUBLIC}/dial?ref={REF}"
    assert dial.get("timeout") == "25"
    called = dial.find("Number")
    assert called is not None and (called.text or "").strip() == NUMBER
    assert called.get("statusCallback") == f"{PUBLIC}/callout?ref={REF}"
    assert called.get("statusCallbackEvent") == "ringing answered completed"

    assert await number(rig, "ringing") == 204
    assert await number(rig, "ringing") == 204  # a retry says nothing twice
    assert await rig.events.take() == [CallRinging(REF)]
    assert await number(rig, "in-progress") == 204
    assert await rig.events.take() == [CallAnswered(REF)]

    assert await number(rig, "completed") == 204
    assert (await dial_ended(rig, sid, "completed")).verbs() == ["Hangup"]
    assert await rig.twilio.status(sid, "completed", ref=REF) == 204
    assert await rig.events.take() == [CallEnded(REF, EndCause.NORMAL)]


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("busy", OriginateFailure.BUSY),
        ("no-answer", OriginateFailure.NO_ANSWER),
        ("failed", OriginateFailure.FAILED),
    ],
)
async def test_given_a_number_that_never_answers_then_originate_failed_once(
    rig: Rig, status: str, reason: OriginateFailure
) -> None:
    sid, _ = await desk_answers(rig)
    assert await number(rig, status) == 204
    assert (await dial_ended(rig, sid, status)).verbs() == ["Hangup"]
    assert await rig.twilio.status(sid, "completed", ref=REF) == 204
    assert await rig.events.take() == [OriginateFailed(REF, reason)]


async def test_given_the_number_status_lost_then_the_dial_action_says_it(rig: Rig) -> None:
    sid, _ = await desk_answers(rig)
    assert (await dial_ended(rig, sid, "busy")).verbs() == ["Hangup"]
    assert await rig.twilio.status(sid, "completed", ref=REF) == 204
    assert await rig.events.take() == [OriginateFailed(REF, OriginateFailure.BUSY)]


async def test_given_a_desk_that_does_not_answer_then_failed_and_never_dialled(
    rig: Rig,
) -> None:
    await rig.adapter.call_out(ref=REF, desk="operator:7", number=NUMBER)
    sid = rig.api.sids_created[-1]
    assert await rig.twilio.status(sid, "no-answer", ref=REF) == 204
    assert await rig.events.take() == [OriginateFailed(REF, OriginateFailure.NO_ANSWER)]
    assert len(rig.api.calls_created()) == 1


async def test_given_an_unsigned_callout_webhook_then_403_and_nothing_happens(rig: Rig) -> None:
    await desk_answers(rig)
    params = {"CallSid": "CA_number", "CallStatus": "in-progress", "AccountSid": ACCOUNT}
    code, _ = await rig.twilio.post("callout", params, query={"ref": REF}, signature=None)
    assert code == 403
    code, _ = await rig.twilio.post("callout", params, query={"ref": REF}, signature="bad")
    assert code == 403
    assert await rig.events.take() == []


async def test_given_a_live_callout_when_hung_up_then_the_desk_leg_is_completed(rig: Rig) -> None:
    sid, _ = await desk_answers(rig)
    await rig.adapter.hangup(REF)
    (done,) = rig.api.calls_updated()
    assert done.path.endswith(f"/Calls/{sid}.json")
    assert dict(done.form) == {"Status": "completed"}
