"""Survey rules: sensible hours, retries, a family contact on the resident's behalf,
follow-ups for "not satisfied", and closing after the survey window."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from eventlog.clock import LOCAL_TZ
from registry.models import EmergencyContact
from tests.conftest import Harness, eventually
from tests.dispatch.test_cascade import live_offer_count, names, new_ticket
from tests.operator_console.test_whole_path import ringing_out, ticket_state, waiting_for_keys


async def completed_ticket(h: Harness) -> int:
    tid = await new_ticket(h, "medicine")
    await h.call("POST", f"/tickets/{tid}/dispatch", json={})
    [offer] = await live_offer_count(h, tid, 1)
    await h.call("POST", f"/offers/{offer['id']}/accept")
    await h.call("POST", f"/tickets/{tid}/complete")
    await h.settle()
    return tid


async def _retried_or_closed(h: Harness, tid: int) -> bool:
    if f"survey:{tid}" in h.timers.pending:
        return True
    return bool((await h.call("GET", f"/tickets/{tid}"))["state"] == "closed")


async def survey_rings(h: Harness, seen: set[str]) -> dict[str, Any]:
    call = await ringing_out(h, exclude=seen)
    seen.add(call["ref"])
    return dict(call)


def test_given_a_late_evening_when_scheduling_a_survey_then_it_waits_for_the_morning(
    harness: Harness,
) -> None:
    h = harness
    h.clock.set(datetime(2026, 11, 21, 21, 30, tzinfo=LOCAL_TZ))
    when = h.services.dispatch.surveys.survey_time(0)
    assert (when.day, when.hour, when.minute) == (22, 8, 30)
    h.clock.set(datetime(2026, 11, 22, 3, 0, tzinfo=LOCAL_TZ))
    when = h.services.dispatch.surveys.survey_time(0)
    assert (when.day, when.hour, when.minute) == (22, 8, 30)
    h.clock.set(datetime(2026, 11, 22, 15, 0, tzinfo=LOCAL_TZ))
    assert h.services.dispatch.surveys.survey_time(0).hour == 15


async def test_given_no_answer_when_surveying_then_retry_then_family_then_not_rated(
    harness: Harness,
) -> None:
    h = harness
    tid = await completed_ticket(h)
    seen = {c["ref"] for c in h.pbx.snapshot()}
    async with h.services.store.read() as session:
        contact = (
            (
                await session.execute(
                    select(EmergencyContact)
                    .where(EmergencyContact.resident_id == 1)
                    .order_by(EmergencyContact.position, EmergencyContact.id)  # type: ignore[arg-type]
                )
            )
            .scalars()
            .first()
        )
    assert contact is not None
    numbers = []
    for wait in (61, 1801, 1801):
        assert f"survey:{tid}" in await h.timers.advance(wait)
        call = await survey_rings(h, seen)
        numbers.append(call["number"])
        await h.pbx.party_hangup(call["ref"])  # nobody picks up
        await eventually(lambda: _retried_or_closed(h, tid))
    assert numbers[0] == numbers[1] != numbers[2] == contact.phone
    detail = await ticket_state(h, tid, "closed")
    assert detail["rating"] is None
    timeline = names(detail)
    assert timeline.count("survey.calling") == 3 and timeline.count("survey.retry") == 2
    assert "survey.not_rated" in timeline


async def test_given_a_family_contact_when_asked_then_they_rate_on_the_residents_behalf(
    harness: Harness,
) -> None:
    h = harness
    tid = await completed_ticket(h)
    seen = {c["ref"] for c in h.pbx.snapshot()}
    await h.call("POST", f"/tickets/{tid}/survey-family", expect=202)
    call = await survey_rings(h, seen)
    await h.pbx.answer(call["ref"])
    await waiting_for_keys(h, call["ref"])
    await h.pbx.press(call["ref"], "2")
    detail = await ticket_state(h, tid, "closed")
    assert detail["rating"] == "basically_satisfied" and detail["rated_by"] == "family"
    assert f"survey:{tid}" not in h.timers.pending and f"close:{tid}" not in h.timers.pending


async def test_given_not_satisfied_when_rated_then_a_supervisor_follow_up_opens(
    harness: Harness,
) -> None:
    h = harness
    tid = await completed_ticket(h)
    seen = {c["ref"] for c in h.pbx.snapshot()}
    await h.timers.advance(61)
    call = await survey_rings(h, seen)
    await h.pbx.answer(call["ref"])
    await waiting_for_keys(h, call["ref"])
    await h.pbx.press(call["ref"], "3")
    detail = await ticket_state(h, tid, "closed")
    assert detail["rating"] == "not_satisfied" and detail["follow_up"] is True
    assert {"followup.opened", "alert.not_satisfied"} <= set(names(detail))
    # an operator may not close it; a supervisor does
    await h.call("POST", f"/tickets/{tid}/follow-up/close", json={"note": "x"}, expect=403)
    done = await h.call(
        "POST", f"/tickets/{tid}/follow-up/close", json={"note": "回访已道歉"}, as_user="supervisor"
    )
    assert done["follow_up"] is False


async def test_given_no_rating_when_the_survey_window_ends_then_the_ticket_closes(
    harness: Harness,
) -> None:
    h = harness
    tid = await completed_ticket(h)
    fired = await h.timers.advance(3 * 24 * 3600 + 1)
    assert f"close:{tid}" in fired
    detail = await ticket_state(h, tid, "closed")
    closed = [e for e in detail["timeline"] if e["name"] == "ticket.closed"]
    assert closed[-1]["data"] == {"rated": False, "reason": "survey window passed"}
