"""Consult (warm) transfer on Asterisk (the fake AMI on loopback): the caller held, the
colleague's desk Originated into yijing-consult, the two operator legs joined by AMI
Bridge once they answer; completing hands the caller over, cancelling gives them back, no
answer or the colleague leaving fails the consult, and a caller who hangs up frees both."""

from __future__ import annotations

import pytest

from providers.asterisk.config import AsteriskConfig
from providers.base import (
    CallBridged,
    CallEnded,
    CallHeld,
    CallUnheld,
    Consult,
    ConsultAnswered,
    ConsultFailed,
    TelephonyError,
)
from tests.providers.asterisk.conftest import Recorder, eventually, running
from tests.providers.asterisk.fake_ami import FakeAMI, channel_event, frame
from tests.providers.asterisk.test_ami_hold import (
    CALLER,
    CALLER_UID,
    HOLD,
    OPERATOR,
    REF,
    connected_to_operator_7,
    leave_bridge,
    wire,
)

DESK9, DESK9_UID = "PJSIP/9-00000005", "500.5"
PEER = "operator:9"


def desk9_rings() -> bytes:
    """Asterisk creates the colleague's desk leg of the consult Originate (as in the
    captures: Newchannel, then VarSet of the Originate's variables, then ringing)."""
    return (
        channel_event("Newchannel", DESK9, DESK9_UID, ChannelState="0",
                      ChannelStateDesc="Down", Context="yijing-consult", Exten="s")
        + channel_event("VarSet", DESK9, DESK9_UID, ChannelState="0", Context="yijing-consult",
                        Exten="s", Variable="YIJING_CONSULT_FOR", Value=REF)
        + channel_event("Newstate", DESK9, DESK9_UID, ChannelState="5",
                        ChannelStateDesc="Ringing", Context="yijing-consult", Exten="s")
    )  # fmt: skip


def originate_response(success: bool, reason: str = "4") -> bytes:
    """The consult Originate's outcome (a failure names the dial string, as Asterisk does)."""
    if success:
        return frame(Event="OriginateResponse", Privilege="call,all",
                     ActionID=f"yijing-consult/{REF}", Response="Success", Channel=DESK9,
                     Context="yijing-consult", Exten="s", Reason=reason, Uniqueid=DESK9_UID,
                     CallerIDNum="12349", CallerIDName="Yijing")  # fmt: skip
    return frame(Event="OriginateResponse", Privilege="call,all",
                 ActionID=f"yijing-consult/{REF}", Response="Failure", Channel="PJSIP/9",
                 Context="yijing-consult", Exten="s", Reason=reason, Uniqueid="<unknown>",
                 CallerIDNum="12349", CallerIDName="Yijing")  # fmt: skip


CONSULT_ORIGINATE = {
    "Action": ["Originate"],
    "Channel": ["PJSIP/9"],
    "Context": ["yijing-consult"],
    "Exten": ["s"],
    "Priority": ["1"],
    "CallerID": ['"Yijing" <12349>'],
    "Timeout": ["30000"],
    "Variable": [f"YIJING_CONSULT_FOR={REF}"],
    "Async": ["true"],
}


async def consulting(ami: FakeAMI, rec: Recorder, tel: object) -> None:
    """Operator 7's caller held, colleague 9 rung and answered, their legs joined."""
    assert isinstance(tel, Consult)
    await connected_to_operator_7(ami, rec)
    await tel.consult(REF, peer=PEER)
    await leave_bridge(ami, "b1")
    await ami.send(desk9_rings() + originate_response(True))
    await eventually(lambda: rec.of(ConsultAnswered))


async def test_given_operator_7_consults_9_then_hold_originate_and_the_legs_joined(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    async with running(config) as (tel, rec):
        assert isinstance(tel, Consult)
        await connected_to_operator_7(ami, rec)

        await tel.consult(REF, peer=PEER)

        # the caller held exactly as by hold(): one Redirect for both legs
        assert wire(ami.named("Redirect")[-1]) == HOLD
        (originate,) = ami.named("Originate")
        assert originate["ActionID"] == [f"yijing-consult/{REF}"]
        assert wire(originate) == CONSULT_ORIGINATE
        assert rec.of(CallHeld) == [CallHeld(REF)]
        await leave_bridge(ami, "b1")
        await ami.send(desk9_rings())
        assert ami.named("Bridge") == [] and rec.of(ConsultAnswered) == []

        await ami.send(originate_response(True))

        await eventually(lambda: rec.of(ConsultAnswered))
        assert rec.of(ConsultAnswered) == [ConsultAnswered(REF, PEER)]
        # the colleague talks with operator 7's waiting leg; the caller still on hold
        assert wire(ami.named("Bridge")[-1]) == {
            "Action": ["Bridge"],
            "Channel1": [OPERATOR],
            "Channel2": [DESK9],
            "Tone": ["no"],
        }
        assert rec.of(CallUnheld) == [] and ami.named("Hangup") == []
        with pytest.raises(TelephonyError, match="under way"):
            await tel.consult(REF, peer="operator:4")


async def test_given_a_consult_when_completed_then_the_caller_bridged_to_9_and_7_released(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    async with running(config) as (tel, rec):
        await consulting(ami, rec, tel)
        with pytest.raises(TelephonyError, match="no answered consult"):
            await tel.complete_consult(REF, peer="operator:4")

        await tel.complete_consult(REF, peer=PEER)

        assert wire(ami.named("Bridge")[-1]) == {
            "Action": ["Bridge"],
            "Channel1": [CALLER],
            "Channel2": [DESK9],
            "Tone": ["no"],
        }
        assert wire(ami.named("Hangup")[-1]) == {
            "Action": ["Hangup"],
            "Channel": [OPERATOR],
            "Cause": ["16"],
        }
        await eventually(lambda: rec.of(CallUnheld))
        # Asterisk reports the caller entering the bridge with the colleague's leg
        await ami.send(
            channel_event("BridgeEnter", DESK9, DESK9_UID, BridgeUniqueid="b3")
            + channel_event("BridgeEnter", CALLER, CALLER_UID, BridgeUniqueid="b3")
        )
        await eventually(lambda: CallBridged(REF, PEER) in rec.events)
        # a caller hanging up later hangs up nobody by hand: the bridge ends both legs
        hangups = len(ami.named("Hangup"))
        await ami.send(channel_event("Hangup", CALLER, CALLER_UID, Cause="16"))
        await eventually(lambda: rec.of(CallEnded))
        assert len(ami.named("Hangup")) == hangups


async def test_given_a_consult_when_cancelled_then_the_caller_back_with_7_and_9_hung_up(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    async with running(config) as (tel, rec):
        await consulting(ami, rec, tel)

        await tel.cancel_consult(REF, peer=PEER)

        assert wire(ami.named("Bridge")[-1]) == {
            "Action": ["Bridge"],
            "Channel1": [CALLER],
            "Channel2": [OPERATOR],
            "Tone": ["no"],
        }
        assert [wire(a)["Channel"] for a in ami.named("Hangup")] == [[DESK9]]
        assert rec.of(CallUnheld) == [CallUnheld(REF)]
        with pytest.raises(TelephonyError):
            await tel.complete_consult(REF, peer=PEER)


async def test_given_9_still_ringing_when_cancelled_then_their_ringing_leg_hung_up(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    async with running(config) as (tel, rec):
        await connected_to_operator_7(ami, rec)
        await tel.consult(REF, peer=PEER)
        await leave_bridge(ami, "b1")
        await ami.send(desk9_rings())
        await eventually(lambda: tel._consults.by_ref[REF].channel == DESK9)

        await tel.cancel_consult(REF, peer=PEER)

        assert [wire(a)["Channel"] for a in ami.named("Hangup")] == [[DESK9]]
        assert wire(ami.named("Bridge")[-1])["Channel2"] == [OPERATOR]
        # the Originate's failure that follows the hang-up says nothing more
        await ami.send(channel_event("Hangup", DESK9, DESK9_UID, Cause="16"))
        await ami.send(originate_response(False, reason="1"))
        await ami.send(channel_event("Hangup", CALLER, CALLER_UID, Cause="16"))
        await eventually(lambda: rec.of(CallEnded))
        assert rec.of(ConsultFailed) == [] and rec.of(ConsultAnswered) == []


@pytest.mark.parametrize("reason", ["3", "5", "0"], ids=["no answer", "busy", "failed"])
async def test_given_9_never_answers_then_consult_failed_and_the_caller_still_held(
    ami: FakeAMI, config: AsteriskConfig, reason: str
) -> None:
    async with running(config) as (tel, rec):
        await connected_to_operator_7(ami, rec)
        await tel.consult(REF, peer=PEER)
        await leave_bridge(ami, "b1")
        await ami.send(desk9_rings())
        await ami.send(channel_event("Hangup", DESK9, DESK9_UID, Cause="19"))

        await ami.send(originate_response(False, reason=reason))

        await eventually(lambda: rec.of(ConsultFailed))
        assert rec.of(ConsultFailed) == [ConsultFailed(REF, PEER)]
        assert ami.named("Bridge") == [] and ami.named("Hangup") == []
        # the desk then resumes the call: the caller back with operator 7's waiting leg
        await tel.unhold(REF)
        assert wire(ami.named("Bridge")[-1])["Channel2"] == [OPERATOR]
        await eventually(lambda: rec.of(CallUnheld))


async def test_given_a_consult_when_9_hangs_up_while_talking_then_consult_failed(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    async with running(config) as (tel, rec):
        await consulting(ami, rec, tel)

        await ami.send(channel_event("Hangup", DESK9, DESK9_UID, Cause="16"))

        await eventually(lambda: rec.of(ConsultFailed))
        assert rec.of(ConsultFailed) == [ConsultFailed(REF, PEER)]
        # the desk cancels: the caller goes back to operator 7 (nothing left to hang up)
        await tel.cancel_consult(REF, peer=PEER)
        assert wire(ami.named("Bridge")[-1])["Channel2"] == [OPERATOR]
        assert ami.named("Hangup") == []


async def test_given_a_consult_when_the_caller_hangs_up_then_both_operator_legs_hung_up(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    async with running(config) as (tel, rec):
        await consulting(ami, rec, tel)

        await ami.send(channel_event("Hangup", CALLER, CALLER_UID, Cause="16"))

        await eventually(lambda: len(ami.named("Hangup")) == 2)
        assert {wire(a)["Channel"][0] for a in ami.named("Hangup")} == {DESK9, OPERATOR}
        assert CallEnded(REF) in rec.events
        assert rec.of(ConsultFailed) == []


async def test_given_the_consult_originate_refused_then_telephony_error_and_no_consult(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    async with running(config) as (tel, rec):
        await connected_to_operator_7(ami, rec)
        ami.refuse["originate"] = "Extension does not exist."

        with pytest.raises(TelephonyError, match="refused"):
            await tel.consult(REF, peer=PEER)

        assert REF not in tel._consults.by_ref
        with pytest.raises(TelephonyError):
            await tel.consult(REF, peer="merchant-3")  # only operator endpoints


def consulting_after_restart(desk9_state: str) -> list[dict[str, str]]:
    """What CoreShowChannels lists for a consult under way: the caller on hold, operator
    7's leg waiting (or talking to 9: its dialplan place stays), colleague 9's leg."""
    return [
        {"Channel": CALLER, "Uniqueid": CALLER_UID, "Linkedid": CALLER_UID,
         "Context": "yijing-onhold", "Exten": "caller", "ChannelState": "6",
         "CallerIDNum": "13800000001", "Application": "MusicOnHold",
         "ChanVariable": f"YIJING_REF={REF}"},
        {"Channel": OPERATOR, "Uniqueid": "500.2", "Linkedid": CALLER_UID,
         "Context": "yijing-onhold", "Exten": "operator", "ChannelState": "6",
         "Application": "Wait", "ChanVariable": f"YIJING_HELD_FOR={REF}"},
        {"Channel": DESK9, "Uniqueid": DESK9_UID, "Linkedid": DESK9_UID,
         "Context": "yijing-consult", "Exten": "s", "ChannelState": desk9_state,
         "Application": "Wait", "ChanVariable": f"YIJING_CONSULT_FOR={REF}"},
    ]  # fmt: skip


async def test_given_a_restart_mid_consult_when_completed_then_the_caller_to_9(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    ami.channels = consulting_after_restart("6")
    async with running(config) as (tel, rec):
        await eventually(lambda: REF in tel._consults.by_ref)
        assert tel._consults.by_ref[REF].peer == PEER and tel._consults.by_ref[REF].answered

        await tel.complete_consult(REF, peer=PEER)

        assert wire(ami.named("Bridge")[-1])["Channel2"] == [DESK9]
        assert [wire(a)["Channel"] for a in ami.named("Hangup")] == [[OPERATOR]]
        await eventually(lambda: rec.of(CallUnheld))


async def test_given_a_restart_while_9_rings_when_they_answer_then_the_legs_joined(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    ami.channels = consulting_after_restart("5")
    async with running(config) as (tel, rec):
        await eventually(lambda: REF in tel._consults.by_ref)
        assert not tel._consults.by_ref[REF].answered

        await ami.send(originate_response(True))

        await eventually(lambda: rec.of(ConsultAnswered))
        assert wire(ami.named("Bridge")[-1]) == {
            "Action": ["Bridge"],
            "Channel1": [OPERATOR],
            "Channel2": [DESK9],
            "Tone": ["no"],
        }


async def test_given_a_consult_leg_of_no_live_call_after_a_restart_then_nothing_taken(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    ami.channels = consulting_after_restart("6")[2:]  # the caller is gone; 9's leg lingers
    async with running(config) as (tel, _rec):
        await eventually(lambda: tel.correlator.channel_alive(DESK9))
        assert tel._consults.by_ref == {}


@pytest.mark.parametrize(
    ("channel", "template", "endpoint"),
    [
        ("PJSIP/9-00000005", "PJSIP/{endpoint}", "9"),
        ("SIP/desk12-0000002a", "SIP/desk{endpoint}", "12"),
        ("SIP/12-0000002a", "PJSIP/{endpoint}", None),
        ("PJSIP/trunk-00000001", "SIP/desk{endpoint}", None),
    ],
)
def test_given_a_desk_channel_then_its_operator_endpoint_by_the_desk_template(
    channel: str, template: str, endpoint: str | None
) -> None:
    from providers.asterisk.consult import desk_endpoint

    assert desk_endpoint(channel, template) == endpoint
