"""Consult (warm) transfer on Twilio: the caller's participant held in their desk room, the
colleague added to the same room (the real twilio client against the loopback REST fake),
their signed participant webhooks saying they answered or not; completing swaps the
operators, cancelling ends the colleague's call; a caller who hangs up frees both."""

from __future__ import annotations

import pytest

from providers.base import (
    CallBridged,
    CallHeld,
    CallUnheld,
    Consult,
    ConsultAnswered,
    ConsultFailed,
    TelephonyError,
)
from tests.conftest import eventually
from tests.providers.twilio.test_twilio_hold import CALLER, at_the_desk, path
from tests.providers.twilio.twilio_fakes import ACCOUNT, Rig

PEER = "op-9"


async def participant(rig: Rig, label: str, sid: str, status: str) -> None:
    """Twilio's signed status callback of one participant of the caller's room."""
    code, _ = await rig.twilio.post(
        "participant",
        {"CallSid": sid, "CallStatus": status, "AccountSid": ACCOUNT},
        query={"ref": CALLER, "label": label},
    )
    assert code == 204


async def consulting(rig: Rig) -> tuple[str, str, str]:
    """Operator 7's caller held, colleague 9 rung into the room and answered; returns
    (conference, first operator's call SID, colleague's call SID)."""
    conference = await at_the_desk(rig)
    first = rig.api.sids_created[-1]
    assert isinstance(rig.adapter, Consult)
    await rig.adapter.consult(CALLER, peer=PEER)
    colleague = rig.api.sids_created[-1]
    assert await rig.events.take() == [CallHeld(CALLER)]
    await participant(rig, "consult-2", colleague, "in-progress")
    assert await rig.events.take() == [ConsultAnswered(CALLER, PEER)]
    return conference, first, colleague


async def test_given_a_caller_at_the_desk_when_consulting_then_held_and_colleague_added(
    rig: Rig,
) -> None:
    conference = await at_the_desk(rig)

    await rig.adapter.consult(CALLER, peer=PEER)

    (held,) = rig.api.participants_updated()
    assert held.path == path(conference, "caller") and held.form["Hold"] == "true"
    added = rig.api.participants_added()[-1]
    assert added.path.endswith(f"/Conferences/{conference}/Participants.json")
    assert (added.form["To"], added.form["Label"]) == ("client:op-9", "consult-2")
    # the colleague leaving must not end the caller's room
    assert added.form["EndConferenceOnExit"] == "false"
    assert added.form["StatusCallback"].endswith("/participant?ref=CA500&label=consult-2")
    assert rig.api.calls_updated() == []  # nobody hung up
    assert await rig.events.take() == [CallHeld(CALLER)]
    with pytest.raises(TelephonyError, match="under way"):
        await rig.adapter.consult(CALLER, peer="op-4")


async def test_given_a_consult_when_completed_then_the_colleague_has_the_room(rig: Rig) -> None:
    conference, first, _colleague = await consulting(rig)
    with pytest.raises(TelephonyError, match="no answered consult"):
        await rig.adapter.complete_consult(CALLER, peer="op-4")
    sent = len(rig.api.participants_updated())

    await rig.adapter.complete_consult(CALLER, peer=PEER)

    updates = [(u.path, dict(u.form)) for u in rig.api.participants_updated()[sent:]]
    assert updates == [
        (path(conference, "operator-1"), {"EndConferenceOnExit": "false"}),
        (path(conference, "consult-2"), {"EndConferenceOnExit": "true"}),
        (path(conference, "caller"), {"Hold": "false"}),
    ]
    (done,) = rig.api.calls_updated()
    assert done.path.endswith(f"/Calls/{first}.json") and dict(done.form) == {"Status": "completed"}
    assert await rig.events.take() == [CallUnheld(CALLER), CallBridged(CALLER, PEER)]
    # the colleague is the desk now: hold works on their room as for any operator
    await rig.adapter.hold(CALLER)
    assert await rig.events.take() == [CallHeld(CALLER)]


async def test_given_a_consult_when_cancelled_then_colleague_ended_and_caller_unheld(
    rig: Rig,
) -> None:
    conference, _first, colleague = await consulting(rig)

    await rig.adapter.cancel_consult(CALLER, peer=PEER)

    (done,) = rig.api.calls_updated()
    assert done.path.endswith(f"/Calls/{colleague}.json")
    assert dict(done.form) == {"Status": "completed"}
    unheld = rig.api.participants_updated()[-1]
    assert (unheld.path, dict(unheld.form)) == (path(conference, "caller"), {"Hold": "false"})
    assert await rig.events.take() == [CallUnheld(CALLER)]
    # the colleague's leg ending afterwards says nothing more
    await participant(rig, "consult-2", colleague, "completed")
    assert await rig.events.take() == []


@pytest.mark.parametrize("outcome", ["no-answer", "busy", "failed"])
async def test_given_the_colleague_never_answers_then_consult_failed_caller_still_held(
    rig: Rig, outcome: str
) -> None:
    await at_the_desk(rig)
    await rig.adapter.consult(CALLER, peer=PEER)
    assert await rig.events.take() == [CallHeld(CALLER)]

    await participant(rig, "consult-2", rig.api.sids_created[-1], outcome)

    assert await rig.events.take() == [ConsultFailed(CALLER, PEER)]
    assert rig.api.calls_updated() == []
    # the desk then resumes the caller with the first operator, still in the room
    await rig.adapter.unhold(CALLER)
    assert await rig.events.take() == [CallUnheld(CALLER)]


async def test_given_a_consult_when_the_colleague_hangs_up_then_consult_failed(rig: Rig) -> None:
    _conference, _first, colleague = await consulting(rig)

    await participant(rig, "consult-2", colleague, "completed")

    assert await rig.events.take() == [ConsultFailed(CALLER, PEER)]
    await rig.adapter.cancel_consult(CALLER, peer=PEER)  # the desk gives the caller back
    assert await rig.events.take() == [CallUnheld(CALLER)]
    assert rig.api.calls_updated() == []


async def test_given_a_ringing_consult_when_the_caller_hangs_up_then_the_colleague_is_ended(
    rig: Rig,
) -> None:
    await at_the_desk(rig)
    await rig.adapter.consult(CALLER, peer=PEER)
    colleague = rig.api.sids_created[-1]

    assert await rig.twilio.status(CALLER, "completed", ref=CALLER) == 204

    async def ended() -> bool:
        return any(r.path.endswith(f"/Calls/{colleague}.json") for r in rig.api.calls_updated())

    await eventually(ended)
    (done,) = [r for r in rig.api.calls_updated() if r.path.endswith(f"/Calls/{colleague}.json")]
    assert dict(done.form) == {"Status": "completed"}
