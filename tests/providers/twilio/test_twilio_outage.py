"""The Twilio API down or failing: nothing placed is reported unavailable (the ref stays
free), an answer lost in flight is reported lost (the ref stays spent), and the adapter
notices on its own when the API answers again. Real twilio REST client, loopback API."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from providers.base import (
    BackendStatus,
    OriginateFailed,
    OriginateFailure,
    TelephonyUnavailable,
)
from providers.twilio import TwilioConfig, TwilioTelephony
from tests.conftest import eventually
from tests.providers.twilio.twilio_fakes import FakeTwilioApi, Recorder, Rig

FAST_PROBE = {"probe_initial_s": 0.02, "probe_max_s": 0.1}


def statuses(rig: Rig) -> list[bool]:
    return [e.up for e in rig.events.events if isinstance(e, BackendStatus)]


async def test_given_api_refusing_connections_then_unavailable_and_the_ref_placed_once_later(
    api: FakeTwilioApi, make_rig: Callable[..., Any]
) -> None:
    # down before the adapter's first request: no kept-alive connection reaches it
    await api.go_down()
    rig: Rig = await make_rig(**FAST_PROBE)

    with pytest.raises(TelephonyUnavailable):
        await rig.adapter.originate(ref="offer-1", number="+8613900000001")

    assert not rig.adapter.health().up
    assert await rig.events.calls() == []  # no OriginateFailed: nobody was called
    # the API answers again: the probe notices without any command being sent
    await rig.api.come_back()

    async def back() -> bool:
        return rig.adapter.health().up and statuses(rig)[-1:] == [True]

    await eventually(back)
    assert False in statuses(rig)
    await rig.adapter.originate(ref="offer-1", number="+8613900000001")
    await rig.adapter.originate(ref="offer-1", number="+8613900000001")
    assert len(rig.api.calls_created()) == 1  # the same ref, placed exactly once


async def test_given_api_answers_503_then_unavailable_down_and_up_again_when_it_recovers(
    make_rig: Callable[..., Any],
) -> None:
    rig: Rig = await make_rig(**FAST_PROBE)
    rig.api.outage_status = 503

    with pytest.raises(TelephonyUnavailable):
        await rig.adapter.originate(ref="offer-1", number="+8613900000001")

    assert not rig.adapter.health().up
    assert "503" in rig.adapter.health().detail
    assert await rig.events.calls() == []
    rig.api.outage_status = None

    async def back() -> bool:
        # the health is read at once, the status event once the rig's reader has it
        return rig.adapter.health().up and statuses(rig)[-1:] == [True]

    await eventually(back)
    assert statuses(rig)[-2:] == [False, True]
    await rig.adapter.originate(ref="offer-1", number="+8613900000001")
    # one refused attempt and one placed call, both for offer-1
    assert [r.form["Url"] for r in rig.api.calls_created()] == [
        "https://care.example.org/twilio/voice?ref=offer-1"
    ] * 2
    assert len(rig.api.sids_created) == 1


async def test_given_api_drops_the_connection_mid_create_then_lost_and_never_placed_again(
    rig: Rig,
) -> None:
    rig.api.drop_create = True

    await rig.adapter.originate(ref="offer-1", number="+8613900000001")
    await rig.adapter.originate(ref="offer-1", number="+8613900000001")

    # Twilio may have placed it: the ref stays spent, and the outcome is "lost", which
    # tells nothing against the merchant
    assert len(rig.api.calls_created()) == 1
    assert await rig.events.calls() == [OriginateFailed("offer-1", OriginateFailure.LOST)]


async def test_given_api_answers_503_when_hanging_up_then_unavailable(rig: Rig) -> None:
    await rig.adapter.originate(ref="offer-1", number="+8613900000001")
    rig.api.outage_status = 503

    with pytest.raises(TelephonyUnavailable):
        await rig.adapter.hangup("offer-1")

    assert not rig.adapter.health().up


async def test_given_api_down_at_start_then_down_reported_and_probed_until_up(
    api: FakeTwilioApi, config: TwilioConfig
) -> None:
    api.outage_status = 503
    adapter = TwilioTelephony(dataclasses.replace(config, **FAST_PROBE))
    async with adapter:
        recorder = Recorder(adapter)
        assert not adapter.health().up
        api.outage_status = None

        async def back() -> bool:
            return adapter.health().up

        await eventually(back)
        await recorder.settle()
        assert [e.up for e in recorder.events if isinstance(e, BackendStatus)] == [False, True]
        await recorder.close()
