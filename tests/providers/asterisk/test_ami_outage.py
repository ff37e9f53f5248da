"""The AMI link down: commands are refused as unavailable before anything is sent (the
same ref may be placed once the link is back), calls lost while nobody watched are
reported lost. The adapter through panoramisk against the fake AMI server on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest

from providers.asterisk.config import AsteriskConfig
from providers.base import (
    BackendStatus,
    CallRinging,
    OriginateFailed,
    OriginateFailure,
    TelephonyUnavailable,
)
from tests.providers.asterisk.conftest import GRACE_S, WAIT_S, eventually, running
from tests.providers.asterisk.fake_ami import FakeAMI, channel_event, frame


async def test_given_asterisk_gone_when_originating_then_unavailable_and_placed_once_when_back(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    async with running(config) as (tel, rec):
        await ami.go_away()
        await eventually(lambda: not tel.health().up and BackendStatus in map(type, rec.events))

        with pytest.raises(TelephonyUnavailable):
            await tel.originate(ref="offer-1", number="8001")

        # refused before anything was sent or queued: panoramisk has nothing to replay
        assert ami.named("Originate") == []
        assert rec.of(OriginateFailed) == []
        await ami.come_back()
        await eventually(lambda: tel.health().up)
        assert [e.up for e in rec.events if isinstance(e, BackendStatus)][-2:] == [False, True]
        await tel.originate(ref="offer-1", number="8001")
        await tel.originate(ref="offer-1", number="8001")
        originates = ami.named("Originate")
        assert len(originates) == 1
        assert originates[0]["Variable"] == ["YIJING_REF=offer-1"]
        assert rec.of(OriginateFailed) == []


async def test_given_a_ringing_offer_call_when_it_vanishes_during_an_outage_then_lost(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    async with running(config) as (tel, rec):
        await tel.originate(ref="offer-7", number="13900000007")
        var = {"ChanVariable": "YIJING_REF=offer-7", "Context": "yijing-outbound"}
        chan, uid = "PJSIP/trunk-07", "200.7"
        await ami.send(
            channel_event("Newchannel", chan, uid, ChannelState="0", **var)
            + channel_event("Newstate", chan, uid, ChannelState="5", ChannelStateDesc="Ringing")
        )
        await eventually(lambda: CallRinging("offer-7") in rec.events)
        ami.channels = []  # while we are away the merchant's phone stops ringing
        ami.drop()
        await eventually(lambda: ami.connections == 2 and tel.health().up)
        await eventually(lambda: rec.of(OriginateFailed))
        # nobody saw whether the merchant was reached: lost, not failed
        assert rec.of(OriginateFailed) == [OriginateFailed("offer-7", OriginateFailure.LOST)]
        assert len(ami.named("Originate")) == 1


async def test_given_a_reasonless_originate_failure_then_failed_only_after_the_grace(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    async with running(config) as (tel, rec):
        await tel.originate(ref="offer-9", number="13900000009")
        sent = asyncio.get_running_loop().time()
        await ami.send(
            frame(Event="OriginateResponse", ActionID="yijing-originate/offer-9",
                  Response="Failure", Channel="PJSIP/13900000009@trunk", Reason="0",
                  Uniqueid="<unknown>")
        )  # fmt: skip
        await eventually(lambda: rec.of(OriginateFailed))
        # held back for the grace in case the PBX is going away, then the far end's failure
        assert asyncio.get_running_loop().time() - sent >= GRACE_S
        assert rec.of(OriginateFailed) == [OriginateFailed("offer-9", OriginateFailure.FAILED)]


async def test_given_a_reasonless_failure_then_asterisk_shuts_down_within_the_grace_then_lost(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    # a long grace, so the Shutdown surely comes inside it however loaded the machine is
    async with running(config, originate_failure_grace_s=WAIT_S) as (tel, rec):
        await tel.originate(ref="offer-9", number="13900000009")
        await ami.send(
            frame(Event="OriginateResponse", ActionID="yijing-originate/offer-9",
                  Response="Failure", Channel="PJSIP/13900000009@trunk", Reason="0",
                  Uniqueid="<unknown>")
            + frame(Event="Shutdown", Privilege="system,all", Shutdown="Cleanly",
                    Restart="True")
        )  # fmt: skip
        await eventually(lambda: rec.of(OriginateFailed))
        # lost with the PBX, not the merchant's failure: dispatch places it again later
        assert rec.of(OriginateFailed) == [OriginateFailed("offer-9", OriginateFailure.LOST)]
