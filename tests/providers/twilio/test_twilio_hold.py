"""Hold, resume and transfer on Twilio: participant updates of the caller's desk conference
sent through the real twilio client to the loopback REST fake, and the signed webhooks
that finish a transfer (the new operator answers) and serve the hold prompt."""

from __future__ import annotations

import pytest

from ivr.prompts import render
from providers.base import CallBridged, CallHeld, CallUnheld, TelephonyError, TransferFailed
from tests.providers.twilio.test_twilio_ivr import inbound_on_hold
from tests.providers.twilio.twilio_fakes import ACCOUNT, PUBLIC, Doc, Rig

CALLER = "CA500"


async def at_the_desk(rig: Rig) -> str:
    """The resident is in their desk conference with operator 7; returns its SID."""
    doc = await inbound_on_hold(rig, CALLER)
    await rig.adapter.bridge(CALLER, peer="op-7")
    doc = await rig.twilio.follow(doc, CALLER)
    assert doc.verbs() == ["Dial"]
    assert await rig.events.take() == [CallBridged(CALLER, "op-7")]
    return rig.api.conferences["yijing-desk-CA500"]


def path(conference: str, label: str) -> str:
    """The REST path of one participant, named by its label."""
    return f"/2010-04-01/Accounts/{ACCOUNT}/Conferences/{conference}/Participants/{label}.json"


async def test_given_a_caller_at_the_desk_when_held_and_resumed_then_participant_updates(
    rig: Rig,
) -> None:
    conference = await at_the_desk(rig)

    await rig.adapter.hold(CALLER)
    await rig.adapter.hold(CALLER)  # already held: nothing more sent

    (held,) = rig.api.participants_updated()
    assert held.path == path(conference, "caller")
    assert dict(held.form) == {
        "Hold": "true",
        "HoldUrl": f"{PUBLIC}/hold?ref=CA500",
        "HoldMethod": "POST",
    }
    assert await rig.events.take() == [CallHeld(CALLER)]
    # the operator's leg is left alone: no call is updated or hung up
    assert rig.api.calls_updated() == []

    # what Twilio plays from the hold URL: the calm prompt, a pause, and again
    status, body = await rig.twilio.post(
        "hold", {"CallSid": CALLER, "AccountSid": ACCOUNT}, query={"ref": CALLER}
    )
    hold = Doc(body)
    assert status == 200 and hold.verbs() == ["Say", "Pause", "Redirect"]
    assert hold.said() == [render("desk.on_hold", "zh-CN")]
    assert hold.redirect() == f"{PUBLIC}/hold?ref=CA500"

    await rig.adapter.unhold(CALLER)
    resumed = rig.api.participants_updated()[-1]
    assert resumed.path == path(conference, "caller")
    assert dict(resumed.form) == {"Hold": "false"}
    assert await rig.events.take() == [CallUnheld(CALLER)]
    with pytest.raises(TelephonyError, match="not on hold"):
        await rig.adapter.unhold(CALLER)


async def test_given_a_caller_at_the_desk_when_transferred_then_operators_swap_in_the_room(
    rig: Rig,
) -> None:
    conference = await at_the_desk(rig)
    old_operator_sid = rig.api.sids_created[-1]

    await rig.adapter.transfer(CALLER, peer="op-9")

    keep, hold = rig.api.participants_updated()
    # the old operator may leave without ending the caller's conference ...
    assert keep.path == path(conference, "operator-1")
    assert dict(keep.form) == {"EndConferenceOnExit": "false"}
    # ... the caller holds while the new operator rings ...
    assert hold.path == path(conference, "caller")
    assert hold.form["Hold"] == "true"
    added = rig.api.participants_added()[-1]
    assert added.path.endswith(f"/Conferences/{conference}/Participants.json")
    assert (added.form["To"], added.form["Label"]) == ("client:op-9", "operator-2")
    assert added.form["EndConferenceOnExit"] == "true"
    # ... and the old operator's call is completed
    (done,) = rig.api.calls_updated()
    assert done.path.endswith(f"/Calls/{old_operator_sid}.json")
    assert dict(done.form) == {"Status": "completed"}
    assert await rig.events.take() == [CallBridged(CALLER, "op-9")]

    # the old leg's last status is no business of the call any more
    before = len(rig.api.requests)
    status, _ = await rig.twilio.post(
        "participant",
        {"CallSid": old_operator_sid, "CallStatus": "completed"},
        query={"ref": CALLER, "label": "operator-1"},
    )
    assert status == 204 and len(rig.api.requests) == before
    assert await rig.events.take() == []

    # the new operator answers: the caller comes off hold and talks to them
    status, _ = await rig.twilio.post(
        "participant",
        {"CallSid": rig.api.sids_created[-1], "CallStatus": "in-progress"},
        query={"ref": CALLER, "label": "operator-2"},
    )
    assert status == 204
    unheld = rig.api.participants_updated()[-1]
    assert unheld.path == path(conference, "caller")
    assert dict(unheld.form) == {"Hold": "false"}
    assert await rig.events.take() == [CallUnheld(CALLER)]


async def test_given_a_held_caller_when_transferred_then_not_held_twice(rig: Rig) -> None:
    conference = await at_the_desk(rig)
    await rig.adapter.hold(CALLER)
    sent = len(rig.api.participants_updated())

    await rig.adapter.transfer(CALLER, peer="op-9")

    updates = rig.api.participants_updated()[sent:]
    assert [(u.path, dict(u.form)) for u in updates] == [
        (path(conference, "operator-1"), {"EndConferenceOnExit": "false"})
    ]


async def test_given_a_caller_not_at_the_desk_then_hold_and_transfer_refused(rig: Rig) -> None:
    await inbound_on_hold(rig, CALLER)
    with pytest.raises(TelephonyError, match="not with an operator"):
        await rig.adapter.hold(CALLER)
    with pytest.raises(TelephonyError, match="not with an operator"):
        await rig.adapter.transfer(CALLER, peer="op-9")
    assert rig.api.participants_updated() == [] and rig.api.participants_added() == []


@pytest.mark.parametrize("outcome", ["no-answer", "busy", "failed"])
async def test_given_a_transfer_when_the_new_operator_never_answers_then_transfer_failed(
    rig: Rig, outcome: str
) -> None:
    await at_the_desk(rig)
    await rig.adapter.transfer(CALLER, peer="op-9")
    assert await rig.events.take() == [CallBridged(CALLER, "op-9")]
    new_operator_sid = rig.api.sids_created[-1]
    updated = len(rig.api.calls_updated())

    status, _ = await rig.twilio.post(
        "participant",
        {"CallSid": new_operator_sid, "CallStatus": outcome},
        query={"ref": CALLER, "label": "operator-2"},
    )

    assert status == 204
    assert await rig.events.take() == [TransferFailed(CALLER, "op-9")]
    # the caller is pulled out of the empty desk conference into the hold loop ...
    (back,) = rig.api.calls_updated()[updated:]
    assert back.path.endswith(f"/Calls/{CALLER}.json")
    assert dict(back.form) == {"Url": f"{PUBLIC}/voice?ref={CALLER}", "Method": "POST"}
    status, body = await rig.twilio.post(
        "voice", {"CallSid": CALLER, "AccountSid": ACCOUNT}, query={"ref": CALLER}
    )
    assert status == 200 and Doc(body).verbs()[-1] == "Redirect"
    # ... a retried webhook says nothing twice, and hold/transfer are refused meanwhile
    await rig.twilio.post(
        "participant",
        {"CallSid": new_operator_sid, "CallStatus": outcome},
        query={"ref": CALLER, "label": "operator-2"},
    )
    assert await rig.events.take() == []
    with pytest.raises(TelephonyError, match="not with an operator"):
        await rig.adapter.hold(CALLER)
    # ... until dispatch bridges the caller again: a fresh operator joins the desk
    await rig.adapter.bridge(CALLER, peer="op-4")
    added = rig.api.participants_added()[-1]
    assert (added.form["To"], added.form["Label"]) == ("client:op-4", "operator-3")
    # the emptied room ended when the caller left it: the new one is opened by its name
    assert added.path.endswith("/Conferences/yijing-desk-CA500/Participants.json")


async def test_given_a_first_bridge_the_operator_never_answers_then_no_transfer_failed(
    rig: Rig,
) -> None:
    await at_the_desk(rig)
    status, _ = await rig.twilio.post(
        "participant",
        {"CallSid": rig.api.sids_created[-1], "CallStatus": "no-answer"},
        query={"ref": CALLER, "label": "operator-1"},
    )
    assert status == 204
    assert await rig.events.take() == []
