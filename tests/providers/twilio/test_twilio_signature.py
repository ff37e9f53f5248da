"""Every webhook's X-Twilio-Signature is checked against the public URL; failures change nothing."""

from __future__ import annotations

import pytest

from providers.base import CallOffered, CallRinging
from tests.providers.twilio.twilio_fakes import ACCOUNT, PUBLIC, TOKEN, Rig, sign

INBOUND = {"CallSid": "CA100", "AccountSid": ACCOUNT, "From": "+8613800000001", "To": "12349"}


async def test_given_signature_for_public_url_when_posted_on_loopback_then_accepted(
    rig: Rig,
) -> None:
    status, body = await rig.twilio.post("voice", INBOUND)

    assert status == 200
    assert body.startswith("<?xml")
    assert await rig.events.calls() == [CallOffered("CA100", "+8613800000001", "12349")]


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param(sign("not-the-token", f"{PUBLIC}/voice", INBOUND), id="wrong-token"),
        pytest.param(sign(TOKEN, "http://127.0.0.1/twilio/voice", INBOUND), id="request-url"),
        pytest.param(sign(TOKEN, f"{PUBLIC}/status", INBOUND), id="other-route"),
        pytest.param(sign(TOKEN, f"{PUBLIC}/voice", {**INBOUND, "From": "+1"}), id="other-form"),
    ],
)
async def test_given_bad_signature_when_posted_then_403_and_no_event(
    rig: Rig, signature: str | None
) -> None:
    status, _ = await rig.twilio.post("voice", INBOUND, signature=signature)

    assert status == 403
    assert await rig.events.calls() == []
    # No state either: the same call signed properly is still new.
    await rig.twilio.post("voice", INBOUND)
    assert await rig.events.calls() == [CallOffered("CA100", "+8613800000001", "12349")]


async def test_given_signature_made_with_the_servers_own_url_then_refused(rig: Rig) -> None:
    own = str(rig.twilio.client.make_url("/twilio/voice"))
    assert own.startswith("http://127.0.0.1:")

    status, _ = await rig.twilio.post("voice", INBOUND, signature=sign(TOKEN, own, INBOUND))

    assert status == 403


async def test_given_query_altered_after_signing_then_refused(rig: Rig) -> None:
    await rig.adapter.originate(ref="offer-1", number="+8613900000002")
    params = {"CallSid": rig.api.sids_created[0], "CallStatus": "ringing", "AccountSid": ACCOUNT}
    signed_for_other_ref = sign(TOKEN, f"{PUBLIC}/status?ref=offer-2", params)

    status, _ = await rig.twilio.post(
        "status", params, query={"ref": "offer-1"}, signature=signed_for_other_ref
    )

    assert status == 403
    assert await rig.events.calls() == []


async def test_given_forged_status_callback_then_call_state_unchanged(rig: Rig) -> None:
    await rig.adapter.originate(ref="offer-1", number="+8613900000002")
    sid = rig.api.sids_created[0]
    params = {"CallSid": sid, "CallStatus": "in-progress", "AccountSid": ACCOUNT}

    status, _ = await rig.twilio.post(
        "status", params, query={"ref": "offer-1"}, signature="Zm9yZ2Vk"
    )
    assert status == 403

    # Had the forged "in-progress" counted, a later "ringing" would be dropped as late.
    assert await rig.twilio.status(sid, "ringing", ref="offer-1") == 204
    assert await rig.events.calls() == [CallRinging("offer-1")]


async def test_given_unknown_route_then_404_without_signature_check(rig: Rig) -> None:
    resp = await rig.twilio.client.post("/twilio/nowhere", data={})
    assert resp.status == 404
