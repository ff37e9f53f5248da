"""Hold, resume and transfer on Asterisk: the exact AMI actions on the wire (fake AMI on
loopback), the operator's leg kept up while the caller is held, and released after."""

from __future__ import annotations

import pytest

from providers.asterisk.config import AsteriskConfig
from providers.base import (
    CallBridged,
    CallEnded,
    CallHeld,
    CallUnheld,
    TelephonyError,
    TransferFailed,
)
from tests.providers.asterisk.conftest import Recorder, eventually, running
from tests.providers.asterisk.fake_ami import Action, FakeAMI, channel_event

CALLER, CALLER_UID = "PJSIP/trunk-00000001", "500.1"
OPERATOR, OPERATOR_UID = "PJSIP/7-00000002", "500.2"
REF = "ast-500.1"


def wire(action: Action) -> dict[str, list[str]]:
    """An action as sent, without its ActionID (panoramisk numbers those)."""
    return {k: v for k, v in action.items() if k != "ActionID"}


async def connected_to_operator_7(ami: FakeAMI, rec: Recorder, bridge: str = "b1") -> None:
    """A resident's call Dial()ed to operator 7, both channels in one bridge."""
    await ami.send(
        channel_event("Newchannel", CALLER, CALLER_UID, CallerIDNum="13800000001")
        + channel_event("Newchannel", OPERATOR, OPERATOR_UID, Linkedid=CALLER_UID,
                        Context="yijing-operators", Exten="7")
    )  # fmt: skip
    await enter_bridge(ami, rec, bridge)


async def enter_bridge(ami: FakeAMI, rec: Recorder, bridge: str) -> None:
    """Asterisk reports both channels entering a bridge."""
    before = len(rec.of(CallBridged))
    await ami.send(
        channel_event("BridgeEnter", OPERATOR, OPERATOR_UID, BridgeUniqueid=bridge)
        + channel_event("BridgeEnter", CALLER, CALLER_UID, BridgeUniqueid=bridge)
    )
    await eventually(lambda: len(rec.of(CallBridged)) > before)
    assert rec.of(CallBridged)[-1] == CallBridged(REF, "operator:7")


async def leave_bridge(ami: FakeAMI, bridge: str) -> None:
    """Both channels leave a bridge (after a Redirect) and it is destroyed."""
    await ami.send(
        channel_event("BridgeLeave", CALLER, CALLER_UID, BridgeUniqueid=bridge)
        + channel_event("BridgeLeave", OPERATOR, OPERATOR_UID, BridgeUniqueid=bridge)
    )


HOLD = {
    "Action": ["Redirect"],
    "Channel": [CALLER],
    "Context": ["yijing-onhold"],
    "Exten": ["caller"],
    "Priority": ["1"],
    "ExtraChannel": [OPERATOR],
    "ExtraContext": ["yijing-onhold"],
    "ExtraExten": ["operator"],
    "ExtraPriority": ["1"],
}


async def test_given_a_caller_with_operator_7_when_held_and_resumed_then_redirect_then_bridge(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    async with running(config) as (tel, rec):
        await connected_to_operator_7(ami, rec)

        await tel.hold(REF)
        assert wire(ami.named("Redirect")[-1]) == HOLD
        # the waiting leg is marked with its caller first: a restarted Yijing finds it
        assert wire(ami.named("Setvar")[-1]) == {
            "Action": ["Setvar"],
            "Channel": [OPERATOR],
            "Variable": ["YIJING_HELD_FOR"],
            "Value": [REF],
        }
        await eventually(lambda: rec.of(CallHeld))
        assert rec.of(CallHeld) == [CallHeld(REF)]
        await tel.hold(REF)  # already held: nothing more on the wire
        assert len(ami.named("Redirect")) == 1
        await leave_bridge(ami, "b1")

        await tel.unhold(REF)
        assert wire(ami.named("Bridge")[-1]) == {
            "Action": ["Bridge"],
            "Channel1": [CALLER],
            "Channel2": [OPERATOR],
            "Tone": ["no"],
        }
        await eventually(lambda: rec.of(CallUnheld))
        assert rec.of(CallUnheld) == [CallUnheld(REF)]
        await enter_bridge(ami, rec, "b2")
        # no hang-up anywhere: the operator's leg stayed up the whole time
        assert ami.named("Hangup") == []
        with pytest.raises(TelephonyError):
            await tel.unhold(REF)


async def test_given_a_held_caller_when_transferred_then_one_redirect_moves_both_legs(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    async with running(config) as (tel, rec):
        await connected_to_operator_7(ami, rec)
        await tel.hold(REF)
        await leave_bridge(ami, "b1")

        await tel.transfer(REF, peer="operator:9")

        assert wire(ami.named("Redirect")[-1]) == {
            "Action": ["Redirect"],
            "Channel": [CALLER],
            "Context": ["yijing-operators"],
            "Exten": ["9"],
            "Priority": ["1"],
            "ExtraChannel": [OPERATOR],
            "ExtraContext": ["yijing-onhold"],
            "ExtraExten": ["release"],
            "ExtraPriority": ["1"],
        }
        await eventually(lambda: rec.of(CallUnheld))
        # the dialplan's "release" hangs the old leg up; no Bridge, no separate Hangup
        assert ami.named("Bridge") == [] and ami.named("Hangup") == []


async def test_given_a_connected_caller_when_transferred_then_old_operator_leg_released(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    async with running(config) as (tel, rec):
        await connected_to_operator_7(ami, rec)

        await tel.transfer(REF, peer="operator:supervisor2")

        sent = wire(ami.named("Redirect")[-1])
        assert sent["Exten"] == ["supervisor2"] and sent["Context"] == ["yijing-operators"]
        assert sent["ExtraChannel"] == [OPERATOR] and sent["ExtraExten"] == ["release"]
        assert rec.of(CallUnheld) == []  # it was never held
        with pytest.raises(TelephonyError):
            await tel.transfer(REF, peer="merchant-3")  # only operator endpoints
        with pytest.raises(TelephonyError):
            await tel.transfer(REF, peer="operator:x;Hangup")


async def test_given_a_held_caller_who_hangs_up_then_the_waiting_operator_leg_is_hung_up(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    async with running(config) as (tel, rec):
        await connected_to_operator_7(ami, rec)
        await tel.hold(REF)
        await leave_bridge(ami, "b1")

        await ami.send(channel_event("Hangup", CALLER, CALLER_UID, Cause="16"))

        await eventually(lambda: ami.named("Hangup"))
        assert wire(ami.named("Hangup")[0]) == {
            "Action": ["Hangup"],
            "Channel": [OPERATOR],
            "Cause": ["16"],
        }
        assert CallEnded(REF) in rec.events


@pytest.mark.parametrize("how", ["leg hung up", "bridge refused"])
async def test_given_the_operator_leg_gone_when_resumed_then_the_operator_is_rung_again(
    ami: FakeAMI, config: AsteriskConfig, how: str
) -> None:
    async with running(config) as (tel, rec):
        await connected_to_operator_7(ami, rec)
        await tel.hold(REF)
        await leave_bridge(ami, "b1")
        if how == "leg hung up":
            await ami.send(channel_event("Hangup", OPERATOR, OPERATOR_UID, Cause="16"))
            await eventually(lambda: not tel.correlator.channel_alive(OPERATOR))
        else:
            ami.refuse["bridge"] = "Channel2 does not exist: PJSIP/7-00000002"

        await tel.unhold(REF)

        assert len(ami.named("Bridge")) == (0 if how == "leg hung up" else 1)
        assert wire(ami.named("Redirect")[-1]) == {
            "Action": ["Redirect"],
            "Channel": [CALLER],
            "Context": ["yijing-operators"],
            "Exten": ["7"],
            "Priority": ["1"],
        }
        await eventually(lambda: rec.of(CallUnheld))


async def test_given_a_call_not_bridged_when_held_then_refused_and_nothing_sent(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    async with running(config) as (tel, _rec):
        await ami.send(channel_event("Newchannel", CALLER, CALLER_UID, CallerIDNum="1380"))
        await eventually(lambda: tel.correlator.channel_of(REF))
        sent = len(ami.actions)
        with pytest.raises(TelephonyError, match="not bridged"):
            await tel.hold(REF)
        with pytest.raises(TelephonyError, match="not on hold"):
            await tel.unhold(REF)
        assert len(ami.actions) == sent


def dial_end(status: str, exten: str = "9") -> bytes:
    """The caller's Dial in yijing-operators,<exten> ends with `status`."""
    return channel_event(
        "DialEnd",
        CALLER,
        CALLER_UID,
        Context="yijing-operators",
        Exten=exten,
        DestChannel=f"PJSIP/{exten}-00000003",
        DestUniqueid="500.3",
        DialStatus=status,
    )


@pytest.mark.parametrize("status", ["NOANSWER", "BUSY", "CHANUNAVAIL", "CONGESTION"])
async def test_given_a_transfer_when_the_new_operators_dial_is_not_answered_then_failed(
    ami: FakeAMI, config: AsteriskConfig, status: str
) -> None:
    async with running(config) as (tel, rec):
        await connected_to_operator_7(ami, rec)
        await tel.transfer(REF, peer="operator:9")
        await leave_bridge(ami, "b1")

        await ami.send(dial_end(status))

        await eventually(lambda: rec.of(TransferFailed))
        assert rec.of(TransferFailed) == [TransferFailed(REF, "operator:9")]
        # reported once; the dialplan has the caller waiting in yijing-hold, and a new
        # bridge sends them to another operator as usual
        await ami.send(dial_end(status))
        await tel.bridge(REF, peer="operator:4")
        assert wire(ami.named("Redirect")[-1])["Exten"] == ["4"]
        assert len(rec.of(TransferFailed)) == 1


async def test_given_a_transfer_answered_or_a_first_bridge_unanswered_then_no_failure(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    async with running(config) as (tel, rec):
        await connected_to_operator_7(ami, rec)
        await tel.transfer(REF, peer="operator:9")
        await leave_bridge(ami, "b1")
        await ami.send(dial_end("ANSWER"))
        await ami.send(dial_end("NOANSWER"))  # a later Dial (a bridge) is no transfer
        await tel.bridge(REF, peer="operator:4")
        await ami.send(dial_end("NOANSWER", exten="4"))
        await ami.send(channel_event("Hangup", CALLER, CALLER_UID, Cause="16"))
        await eventually(lambda: rec.of(CallEnded))
        assert rec.of(TransferFailed) == []


def held_after_restart(marked: bool) -> list[dict[str, str]]:
    """What CoreShowChannels lists for a caller on hold with operator 7 waiting."""
    leg = {"Channel": OPERATOR, "Uniqueid": OPERATOR_UID, "Linkedid": CALLER_UID,
           "Context": "yijing-onhold", "Exten": "operator", "ChannelState": "6",
           "Application": "Wait", "ApplicationData": "3600"}  # fmt: skip
    if marked:
        leg["ChanVariable"] = f"YIJING_HELD_FOR={REF}"
    return [
        {"Channel": CALLER, "Uniqueid": CALLER_UID, "Linkedid": CALLER_UID,
         "Context": "yijing-onhold", "Exten": "caller", "ChannelState": "6",
         "CallerIDNum": "13800000001", "Application": "MusicOnHold",
         "ChanVariable": f"YIJING_REF={REF}"},
        leg,
    ]  # fmt: skip


@pytest.mark.parametrize("marked", [True, False], ids=["by variable", "by linkedid"])
async def test_given_a_restart_while_on_hold_when_resumed_then_bridged_with_the_waiting_leg(
    ami: FakeAMI, config: AsteriskConfig, marked: bool
) -> None:
    ami.channels = held_after_restart(marked)
    async with running(config) as (tel, rec):
        await eventually(lambda: tel.correlator.channel_of(REF))
        await tel.hold(REF)  # already on hold at the PBX: nothing sent
        assert ami.named("Redirect") == [] and ami.named("Setvar") == []

        await tel.unhold(REF)

        assert wire(ami.named("Bridge")[-1]) == {
            "Action": ["Bridge"],
            "Channel1": [CALLER],
            "Channel2": [OPERATOR],
            "Tone": ["no"],
        }
        assert ami.named("Redirect") == []  # the operator is not rung again
        await eventually(lambda: rec.of(CallUnheld))


async def test_given_a_restart_while_on_hold_when_transferred_then_the_old_leg_released(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    ami.channels = held_after_restart(True)
    async with running(config) as (tel, rec):
        await eventually(lambda: tel.correlator.channel_of(REF))

        await tel.transfer(REF, peer="operator:9")

        sent = wire(ami.named("Redirect")[-1])
        assert (sent["Channel"], sent["Exten"]) == ([CALLER], ["9"])
        assert (sent["ExtraChannel"], sent["ExtraExten"]) == ([OPERATOR], ["release"])
        await eventually(lambda: rec.of(CallUnheld))


async def test_given_a_restart_while_on_hold_when_the_caller_hangs_up_then_leg_hung_up(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    ami.channels = held_after_restart(True)
    async with running(config) as (tel, rec):
        await eventually(lambda: tel.correlator.channel_of(REF))

        await ami.send(channel_event("Hangup", CALLER, CALLER_UID, Cause="16"))

        await eventually(lambda: ami.named("Hangup"))
        assert wire(ami.named("Hangup")[0])["Channel"] == [OPERATOR]
        assert CallEnded(REF) in rec.events


async def test_given_an_on_hold_leg_of_no_live_call_then_nothing_recovered(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    ami.channels = held_after_restart(True)[1:]  # the caller is gone; the leg lingers
    async with running(config) as (tel, _rec):
        await eventually(lambda: tel.correlator.channel_alive(OPERATOR))
        with pytest.raises(TelephonyError):
            await tel.unhold(REF)
        assert ami.named("Bridge") == []
