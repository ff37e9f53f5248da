"""Click-to-call on Asterisk: one Originate of the operator's device into the callout
context (the exact action on the wire, fake AMI on loopback), and the desk's and the
number's legs reported as the port promises."""

from __future__ import annotations

import pytest

from providers.asterisk.config import AsteriskConfig
from providers.base import (
    BackendStatus,
    CallAnswered,
    CallBridged,
    CallEnded,
    CallRinging,
    EndCause,
    OriginateFailed,
    OriginateFailure,
    TelephonyError,
)
from tests.providers.asterisk.conftest import Recorder, eventually, running
from tests.providers.asterisk.fake_ami import FakeAMI, channel_event, frame

DESK, DESK_UID = "PJSIP/7-0000000a", "700.1"
TRUNK, TRUNK_UID = "PJSIP/trunk-0000000b", "700.2"
REF = "callout-1"


def calls(rec: Recorder) -> list[object]:
    """The call events recorded (link status left out)."""
    return [e for e in rec.events if not isinstance(e, BackendStatus)]


async def desk_answers(ami: FakeAMI) -> None:
    """Asterisk rings operator 7's phone with the ref on it, and the operator picks up."""
    var = {"ChanVariable": f"YIJING_REF={REF}", "Context": "yijing-callout", "Exten": "s"}
    await ami.send(
        channel_event("Newchannel", DESK, DESK_UID, ChannelState="0", **var)
        + channel_event("Newstate", DESK, DESK_UID, ChannelState="5", ChannelStateDesc="Ringing",
                        **var)
        + frame(Event="OriginateResponse", ActionID=f"yijing-originate/{REF}",
                Response="Success", Channel=DESK, Reason="4", Uniqueid=DESK_UID)
    )  # fmt: skip


def dial(event: str, status: str) -> bytes:
    """The dialplan's Dial of the number, from the operator's leg."""
    return channel_event(
        event, DESK, DESK_UID, Context="yijing-callout", Exten="s",
        DestChannel=TRUNK, DestUniqueid=TRUNK_UID, DialStatus=status,
    )  # fmt: skip


async def test_given_operator_7_when_calling_out_then_one_originate_of_the_desk_device(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    async with running(config) as (tel, _rec):
        await tel.call_out(ref=REF, desk="operator:7", number="13800000001", timeout_s=25)
        await tel.call_out(ref=REF, desk="operator:7", number="13800000001")  # a retry: no-op
        originates = ami.named("Originate")
        assert len(originates) == 1
        assert originates[0] == {
            "Action": ["Originate"],
            "ActionID": [f"yijing-originate/{REF}"],
            "Async": ["true"],
            "CallerID": ['"Yijing" <12349>'],
            "Channel": ["PJSIP/7"],
            "Context": ["yijing-callout"],
            "Exten": ["s"],
            "Priority": ["1"],
            "Timeout": ["25000"],
            "Variable": [
                f"YIJING_REF={REF}",
                "YIJING_CALLOUT_DIAL=PJSIP/13800000001@trunk",
                "YIJING_CALLOUT_RING_S=25",
            ],
        }


async def test_given_a_callout_when_desk_then_number_answer_then_bridged_ringing_answered_ended(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    async with running(config) as (tel, rec):
        await tel.call_out(ref=REF, desk="operator:7", number="13800000001")
        await desk_answers(ami)
        await eventually(lambda: rec.of(CallBridged))
        assert calls(rec) == [CallBridged(REF, "operator:7")]  # the desk's ringing is silent

        await ami.send(
            dial("DialState", "RINGING")
            + channel_event("Newchannel", TRUNK, TRUNK_UID, ChannelState="0", Linkedid=DESK_UID,
                            Context="from-trunk")
            + dial("DialEnd", "ANSWER")
            + channel_event("BridgeEnter", DESK, DESK_UID, BridgeUniqueid="cb1")
            + channel_event("BridgeEnter", TRUNK, TRUNK_UID, Linkedid=DESK_UID,
                            BridgeUniqueid="cb1")
            + channel_event("Hangup", TRUNK, TRUNK_UID, Linkedid=DESK_UID, Cause="16")
            + channel_event("Hangup", DESK, DESK_UID, Cause="16")
        )  # fmt: skip
        await eventually(lambda: rec.of(CallEnded))
        assert calls(rec) == [
            CallBridged(REF, "operator:7"),
            CallRinging(REF),
            CallAnswered(REF),
            CallEnded(REF, EndCause.NORMAL),
        ]

        # the operator's hang-up button hangs up the desk's leg, which ends both
        await tel.call_out(ref="callout-2", desk="operator:7", number="13800000002")
        var = {"ChanVariable": "YIJING_REF=callout-2", "Context": "yijing-callout"}
        await ami.send(channel_event("Newchannel", "PJSIP/7-0000000c", "700.3", **var))
        await eventually(lambda: tel.correlator.channel_of("callout-2"))
        await tel.hangup("callout-2")
        assert ami.named("Hangup")[-1]["Channel"] == ["PJSIP/7-0000000c"]


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("BUSY", OriginateFailure.BUSY),
        ("NOANSWER", OriginateFailure.NO_ANSWER),
        ("CONGESTION", OriginateFailure.CONGESTION),
        ("CHANUNAVAIL", OriginateFailure.FAILED),
    ],
)
async def test_given_a_number_that_never_answers_when_calling_out_then_originate_failed_once(
    ami: FakeAMI, config: AsteriskConfig, status: str, reason: OriginateFailure
) -> None:
    async with running(config) as (tel, rec):
        await tel.call_out(ref=REF, desk="operator:7", number="13800000001")
        await desk_answers(ami)
        await ami.send(
            dial("DialState", "RINGING")
            + dial("DialEnd", status)
            + channel_event("Hangup", DESK, DESK_UID, Cause="16")
        )
        await eventually(lambda: rec.of(OriginateFailed))
        # the desk's own hang-up after the failed Dial says nothing more
        await ami.send(frame(Event="FullyBooted", Privilege="system,all", Status="x"))
        await eventually(lambda: REF not in tel.correlator.calls)
        assert calls(rec) == [CallBridged(REF, "operator:7"), CallRinging(REF),
                              OriginateFailed(REF, reason)]  # fmt: skip


async def test_given_a_desk_that_does_not_answer_when_calling_out_then_failed_without_a_bridge(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    async with running(config) as (tel, rec):
        await tel.call_out(ref=REF, desk="operator:7", number="13800000001")
        await ami.send(
            frame(Event="OriginateResponse", ActionID=f"yijing-originate/{REF}",
                  Response="Failure", Channel="PJSIP/7", Reason="3", Uniqueid="<unknown>")
        )  # fmt: skip
        await eventually(lambda: rec.of(OriginateFailed))
        assert calls(rec) == [OriginateFailed(REF, OriginateFailure.NO_ANSWER)]


async def test_given_a_bad_desk_or_number_when_calling_out_then_refused_before_the_wire(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    async with running(config) as (tel, _rec):
        with pytest.raises(TelephonyError):
            await tel.call_out(ref=REF, desk="merchant:3", number="13800000001")
        with pytest.raises(TelephonyError):
            await tel.call_out(ref=REF, desk="operator:7", number="138;Hangup")
        assert ami.named("Originate") == []
