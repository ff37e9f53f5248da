"""Commands go out through the real twilio REST client to a loopback API that records them."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from typing import Any

import pytest

from ivr.flows import MERCHANT_OFFER, SURVEY
from providers.base import (
    BackendStatus,
    FlowFinished,
    OriginateFailed,
    OriginateFailure,
    Telephony,
    TelephonyError,
    TelephonyUnavailable,
    UnknownCall,
)
from providers.twilio import TwilioConfig, TwilioTelephony
from tests.providers.twilio.twilio_fakes import (
    ACCOUNT,
    PLATFORM,
    PUBLIC,
    TOKEN,
    FakeTwilioApi,
    Recorder,
    Rig,
)


async def test_adapter_satisfies_the_port(rig: Rig) -> None:
    assert isinstance(rig.adapter, Telephony)


async def test_given_originate_then_calls_create_carries_our_webhooks(rig: Rig) -> None:
    await rig.adapter.originate(ref="offer-42", number="+8613900000042", timeout_s=25)

    (created,) = rig.api.calls_created()
    assert created.method == "POST"
    assert created.path == f"/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
    assert created.form["To"] == "+8613900000042"
    assert created.form["From"] == PLATFORM
    assert created.form["Url"] == f"{PUBLIC}/voice?ref=offer-42"
    assert created.form["Method"] == "POST"
    assert created.form["StatusCallback"] == f"{PUBLIC}/status?ref=offer-42"
    assert created.form["StatusCallbackMethod"] == "POST"
    assert created.form.getall("StatusCallbackEvent") == [
        "initiated",
        "ringing",
        "answered",
        "completed",
    ]
    assert created.form["Timeout"] == "25"
    basic = base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
    assert created.authorization == f"Basic {basic}"


async def test_given_caller_id_then_used_as_from(rig: Rig) -> None:
    await rig.adapter.originate(ref="r1", number="+8613900000001", caller_id="+862300000001")
    assert rig.api.calls_created()[0].form["From"] == "+862300000001"


async def test_given_same_ref_twice_then_one_call(rig: Rig) -> None:
    await rig.adapter.originate(ref="offer-1", number="+8613900000001")
    await rig.adapter.originate(ref="offer-1", number="+8613900000001")
    assert len(rig.api.calls_created()) == 1


async def test_given_same_ref_concurrently_then_one_call(rig: Rig) -> None:
    rig.api.create_gate = asyncio.Event()
    first = asyncio.create_task(rig.adapter.originate(ref="offer-1", number="+8613900000001"))
    second = asyncio.create_task(rig.adapter.originate(ref="offer-1", number="+8613900000001"))
    await asyncio.sleep(0.05)
    rig.api.create_gate.set()
    await asyncio.gather(first, second)
    assert len(rig.api.calls_created()) == 1


async def test_given_api_refuses_create_then_originate_failed_and_never_retried(
    rig: Rig,
) -> None:
    rig.api.create_error = (400, "error_invalid_to.json")

    await rig.adapter.originate(ref="offer-1", number="+86bad")
    await rig.adapter.originate(ref="offer-1", number="+86bad")

    assert len(rig.api.calls_created()) == 1
    assert await rig.events.calls() == [OriginateFailed("offer-1", OriginateFailure.FAILED)]
    assert rig.adapter.health().up  # an HTTP answer: the link itself works


async def test_given_live_call_when_hangup_then_status_completed(rig: Rig) -> None:
    await rig.adapter.originate(ref="offer-1", number="+8613900000001")
    sid = rig.api.sids_created[0]

    await rig.adapter.hangup("offer-1")
    await rig.adapter.hangup("offer-1")

    (update,) = rig.api.calls_updated()
    assert update.path == f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{sid}.json"
    assert dict(update.form) == {"Status": "completed"}


async def test_given_unknown_ref_when_hangup_then_nothing_sent(rig: Rig) -> None:
    await rig.adapter.hangup("nobody")
    assert rig.api.calls_updated() == []


async def test_given_hangup_before_sid_known_then_hung_up_once_created(rig: Rig) -> None:
    rig.api.create_gate = asyncio.Event()
    placing = asyncio.create_task(rig.adapter.originate(ref="offer-1", number="+8613900000001"))
    await asyncio.sleep(0.05)

    await rig.adapter.hangup("offer-1")
    assert rig.api.calls_updated() == []
    rig.api.create_gate.set()
    await placing

    (update,) = rig.api.calls_updated()
    assert update.path.endswith(f"/Calls/{rig.api.sids_created[0]}.json")
    assert update.form["Status"] == "completed"


async def test_given_call_in_gather_when_bridged_then_redirected_by_rest(rig: Rig) -> None:
    await rig.adapter.originate(ref="offer-1", number="+8613900000001")
    sid = rig.api.sids_created[0]
    await rig.twilio.voice(sid, ref="offer-1")
    await rig.adapter.run_flow("offer-1", MERCHANT_OFFER, context={})
    doc = await rig.twilio.voice(sid, ref="offer-1")
    assert doc.gather() is not None

    await rig.adapter.bridge("offer-1", peer="op-3")

    (update,) = rig.api.calls_updated()
    assert dict(update.form) == {"Url": f"{PUBLIC}/voice?ref=offer-1", "Method": "POST"}
    after = await rig.twilio.voice(sid, ref="offer-1")
    assert after.verbs() == ["Dial"]


async def test_given_unknown_ref_when_run_flow_or_bridge_then_unknown_call(rig: Rig) -> None:
    with pytest.raises(UnknownCall):
        await rig.adapter.run_flow("nobody", MERCHANT_OFFER, context={})
    with pytest.raises(UnknownCall):
        await rig.adapter.bridge("nobody", peer="op-1")


async def test_given_api_answers_probe_then_health_up(rig: Rig) -> None:
    health = rig.adapter.health()
    assert (health.backend, health.up) == ("twilio", True)
    assert rig.api.requests[0].path == f"/2010-04-01/Accounts/{ACCOUNT}.json"


async def test_given_account_refused_then_health_down(
    api: FakeTwilioApi, config: TwilioConfig
) -> None:
    api.account_status = 401
    async with TwilioTelephony(config) as adapter:
        assert not adapter.health().up
        assert "401" in adapter.health().detail


async def test_given_api_unreachable_then_down_and_originate_unavailable_without_event(
    config: TwilioConfig,
) -> None:
    async with FakeTwilioApi() as gone:
        url = gone.url
    cfg = dataclasses.replace(config, api_base_url=url, http_timeout_s=2.0)
    async with TwilioTelephony(cfg) as adapter:
        recorder = Recorder(adapter)
        assert not adapter.health().up
        with pytest.raises(TelephonyUnavailable):
            await adapter.originate(ref="offer-1", number="+8613900000001")
        # nothing was placed, so nothing failed: the merchant is not reported unreachable
        events: list[Any] = await recorder.calls()
        assert events == []
        await recorder.close()


async def test_given_link_comes_back_then_backend_status_up(
    api: FakeTwilioApi, config: TwilioConfig
) -> None:
    api.account_status = 401
    async with TwilioTelephony(config) as adapter:
        recorder = Recorder(adapter)
        api.account_status = 200
        await adapter.originate(ref="offer-1", number="+8613900000001")
        await recorder.settle()
        statuses = [e for e in recorder.events if isinstance(e, BackendStatus)]
        assert statuses[-1].up and adapter.health().up
        await recorder.close()


async def test_given_closed_then_events_end_and_commands_refused(config: TwilioConfig) -> None:
    adapter = TwilioTelephony(config)
    async with adapter:
        pass
    seen = [event async for event in adapter.events()]
    assert seen[-1] == BackendStatus(up=False, detail="closed")
    assert not adapter.health().up
    with pytest.raises(TelephonyError):
        await adapter.originate(ref="late", number="+8613900000001")


async def test_given_call_in_gather_when_new_flow_then_redirected_and_new_flow_served(
    rig: Rig,
) -> None:
    await rig.adapter.originate(ref="offer-1", number="+8613900000001")
    sid = rig.api.sids_created[0]
    await rig.adapter.run_flow("offer-1", MERCHANT_OFFER, context={})
    first = await rig.twilio.voice(sid, ref="offer-1")

    await rig.adapter.run_flow("offer-1", SURVEY, context={"category": "x"})

    assert [dict(u.form) for u in rig.api.calls_updated()] == [
        {"Url": f"{PUBLIC}/voice?ref=offer-1", "Method": "POST"}
    ]
    doc = await rig.twilio.voice(sid, ref="offer-1")
    assert doc.gather_action() == f"{PUBLIC}/gather?ref=offer-1&turn=2"
    # The abandoned menu's Gather, should it still post, steps nothing.
    await rig.events.take()
    await rig.twilio.gather(first, sid, "1")
    assert await rig.events.take() == []
    doc = await rig.twilio.gather(doc, sid, "3")
    assert (await rig.events.take())[-1] == FlowFinished(
        "offer-1", "survey", "rated", {"category": "x", "rating": "not_satisfied"}
    )
