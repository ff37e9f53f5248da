"""A resident's reminders on the API: operators, supervisors and admins add, change and
remove them, merchants may not; bad input is a 422 naming what is wrong (a time in the
quiet hours is refused, as for the wellbeing window)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Harness

DAILY: dict[str, Any] = {"kind": "medication", "text": "该吃降压药了。", "at": "12:00",
                         "days": [1, 3, 5], "language": "zh-CN"}  # fmt: skip
APPOINTMENT: dict[str, Any] = {"kind": "appointment", "text": "社区医院复查。", "at": "09:30",
                               "on_date": "2099-03-12"}  # fmt: skip


async def test_given_an_operator_when_adding_then_it_is_listed_and_scheduled(
    harness: Harness,
) -> None:
    h = harness
    body = await h.call("POST", "/residents/2/reminders", json=DAILY, expect=201)
    assert (body["kind"], body["at"], body["days"], body["updated_by"]) == (
        "medication", "12:00", [1, 3, 5], "operator",
    )  # fmt: skip
    assert f"reminder:{body['id']}" in h.timers.pending
    listed = await h.call("GET", "/residents/2/reminders", as_user="supervisor")
    assert [r["id"] for r in listed] == [body["id"]] and listed[0]["text"] == DAILY["text"]
    other = await h.call("POST", "/residents/2/reminders", json=APPOINTMENT, as_user="demo",
                         expect=201)  # fmt: skip
    assert (other["on_date"], other["days"]) == ("2099-03-12", [])


async def test_given_a_reminder_when_changed_and_removed_then_its_timer_follows(
    harness: Harness,
) -> None:
    h = harness
    rem = await h.call("POST", "/residents/2/reminders", json=DAILY, expect=201)
    key = f"reminder:{rem['id']}"
    body = await h.call("PATCH", f"/reminders/{rem['id']}", json={"enabled": False},
                        as_user="supervisor")  # fmt: skip
    assert body["enabled"] is False and body["updated_by"] == "supervisor"
    assert key not in h.timers.pending
    body = await h.call("PATCH", f"/reminders/{rem['id']}", json={"enabled": True, "at": "15:00"})
    assert body["at"] == "15:00" and key in h.timers.pending
    await h.call("DELETE", f"/reminders/{rem['id']}")
    assert key not in h.timers.pending
    assert await h.call("GET", "/residents/2/reminders") == []
    await h.call("PATCH", f"/reminders/{rem['id']}", json={"enabled": True}, expect=404)
    await h.call("DELETE", f"/reminders/{rem['id']}", expect=404)


async def test_given_a_merchant_when_calling_then_refused(harness: Harness) -> None:
    h = harness
    rem = await h.call("POST", "/residents/2/reminders", json=DAILY, expect=201)
    await h.call("GET", "/residents/2/reminders", as_user="merchant1", expect=403)
    await h.call("POST", "/residents/2/reminders", as_user="merchant1", json=DAILY, expect=403)
    await h.call("PATCH", f"/reminders/{rem['id']}", as_user="merchant1", json={}, expect=403)
    await h.call("DELETE", f"/reminders/{rem['id']}", as_user="merchant1", expect=403)


async def test_given_no_such_resident_when_calling_then_404(harness: Harness) -> None:
    await harness.call("GET", "/residents/99999/reminders", expect=404)
    await harness.call("POST", "/residents/99999/reminders", json=DAILY, expect=404)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({**DAILY, "at": "22:00"}, "quiet hours (21:00-08:30)"),
        ({**DAILY, "at": "07:00"}, "quiet hours"),
        ({**DAILY, "days": []}, "needs days"),
        ({**DAILY, "days": [0, 8]}, "ISO weekdays"),
        ({**DAILY, "days": [1, 1]}, "repeat"),
        ({**DAILY, "text": ""}, "text"),
        ({**DAILY, "text": "很" * 201}, "text"),
        ({**DAILY, "kind": "birthday"}, "kind"),
        ({**DAILY, "at": "25:00"}, "at"),
        ({**DAILY, "language": "fr"}, "language"),
        ({**DAILY, "bogus": 1}, "bogus"),
        ({**APPOINTMENT, "on_date": None}, "needs on_date"),
        ({**APPOINTMENT, "on_date": "2020-01-01"}, "in the past"),
    ],
)
async def test_given_bad_input_when_adding_then_422_with_a_clear_error(
    harness: Harness, body: dict[str, Any], words: str
) -> None:
    result = await harness.call("POST", "/residents/2/reminders", json=body, expect=422)
    assert result["error_id"] == "invalid_input"
    assert words in str(result), result


async def test_given_a_reminder_when_moved_into_the_quiet_hours_then_422(harness: Harness) -> None:
    h = harness
    rem = await h.call("POST", "/residents/2/reminders", json=DAILY, expect=201)
    result = await h.call("PATCH", f"/reminders/{rem['id']}", json={"at": "23:30"}, expect=422)
    assert "quiet hours" in str(result)
    result = await h.call("PATCH", f"/reminders/{rem['id']}", json={"days": []}, expect=422)
    assert "needs days" in str(result)
    assert (await h.call("GET", "/residents/2/reminders"))[0]["at"] == "12:00"
