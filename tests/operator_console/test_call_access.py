"""Only the operator on a call acts on it (a supervisor may also hang any call up), on
SQLite and PostgreSQL: another operator's caller, a waiting caller, a merchant's offer call
and a survey call are refused with 403 and the reason, and stay as they were."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import col

from dispatch.models import Call
from tests.conftest import Harness, eventually
from tests.dispatch.test_hold_transfer import add_operator, answered
from tests.dispatch.test_queue import PHONES, press, wait_queued
from tests.dispatch.test_surveys import completed_ticket
from tests.operator_console.test_whole_path import ringing_out


async def outbound(h: Harness, purpose: str) -> Call:
    """The newest outbound call placed for a purpose."""

    async def check() -> Call | None:
        async with h.services.store.read() as session:
            return (
                (
                    await session.execute(
                        select(Call)
                        .where(col(Call.direction) == "out", col(Call.purpose) == purpose)
                        .order_by(col(Call.id).desc())
                    )
                )
                .scalars()
                .first()
            )

    found: Call = await eventually(check)
    return found


async def state_of(h: Harness, call_id: int) -> str:
    async with h.services.store.read() as session:
        call = await session.get(Call, call_id)
        assert call is not None
        return str(call.state)


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("hangup", None),
        ("wrap-up", {"disposition": "x"}),
        ("hold", None),
        ("unhold", None),
        ("transfer", {"to": "supervisor"}),
    ],
)
async def test_given_another_operators_caller_when_acting_on_it_then_403_with_the_reason(
    harness: Harness, path: str, payload: dict[str, Any] | None
) -> None:
    h = harness
    await add_operator(h, "operator2")
    call, ref = await answered(h)

    body = await h.call(
        "POST", f"/calls/{call['id']}/{path}", as_user="operator2", json=payload, expect=403
    )

    assert body["error_id"] == "forbidden" and body["details"]["reason"] == "another_operator"
    assert "another operator" in body["message"]
    assert await state_of(h, call["id"]) == "connected"
    assert h.pbx.calls[ref].state == "bridged"


async def test_given_a_waiting_caller_when_an_operator_hangs_up_then_403_not_answered(
    harness: Harness,
) -> None:
    h = harness
    ref = await h.pbx.dial_in(PHONES[0])
    await press(h, ref, "0")
    (queued,) = await wait_queued(h, 1)

    body = await h.call("POST", f"/calls/{queued['id']}/hangup", expect=403)

    assert body["details"]["reason"] == "not_answered"
    assert await state_of(h, queued["id"]) == "queued"


async def test_given_a_merchants_offer_call_when_an_operator_hangs_up_then_403(
    harness: Harness,
) -> None:
    h = harness
    ticket = await h.call(
        "POST", "/tickets", json={"category": "medicine", "resident_id": 1}, expect=201
    )
    await h.call("POST", f"/tickets/{ticket['id']}/dispatch", json={})
    ringing = await ringing_out(h)
    offer_call = await outbound(h, "offer")

    body = await h.call("POST", f"/calls/{offer_call.id}/hangup", expect=403)

    assert body["details"]["reason"] == "outbound_call"
    assert h.pbx.calls[ringing["ref"]].state == "ringing"
    # a supervisor may end it
    await h.call("POST", f"/calls/{offer_call.id}/hangup", as_user="supervisor")
    await eventually(lambda: _ended(h, ringing["ref"]))


async def _ended(h: Harness, ref: str) -> bool:
    return h.pbx.calls[ref].state == "ended"


async def test_given_a_survey_call_when_an_operator_hangs_up_then_403(harness: Harness) -> None:
    h = harness
    tid = await completed_ticket(h)
    assert f"survey:{tid}" in await h.timers.advance(61)
    survey = await outbound(h, "survey")

    body = await h.call("POST", f"/calls/{survey.id}/hangup", expect=403)

    assert body["details"]["reason"] == "outbound_call"


async def test_given_the_operators_own_caller_then_they_and_a_supervisor_may_hang_up(
    harness: Harness,
) -> None:
    h = harness
    call, ref = await answered(h)
    await h.call("POST", f"/calls/{call['id']}/hold")
    await h.call("POST", f"/calls/{call['id']}/unhold")
    await h.call("POST", f"/calls/{call['id']}/hangup", as_user="supervisor")
    await eventually(lambda: _ended(h, ref))
