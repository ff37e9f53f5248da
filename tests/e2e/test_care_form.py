"""The operator sets a resident's daily care call and reminders from the desk card, in a
real browser (issue 15: set by the operator, not only through the API)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Pages, login, shot
from tests.e2e.test_console import RESIDENT_1_PHONE, press, sim_call, simulator, staff_api

pytestmark = pytest.mark.e2e


def test_given_a_card_when_the_care_call_and_a_reminder_are_set_then_saved(
    pages: Pages,
) -> None:
    sim = simulator(pages)
    desk = pages.open()
    login(desk, "operator")
    # a caller waits: the desk previews their card
    sim.fill("#dial-number", RESIDENT_1_PHONE)
    sim.click("#dial")
    press(sim_call(sim, number=RESIDENT_1_PHONE, direction="in"), "0")
    expect(desk.locator("#card .name")).not_to_be_empty()
    care = desk.locator("#care-settings")
    expect(care).to_be_visible()
    care.locator("summary").click()
    form = desk.locator("#care-form")
    expect(form).to_be_visible()

    # the care call: on, Monday to Friday, 09:00-10:30, away on one day
    form.locator("input[name='enabled']").check()
    for day in (6, 7):
        form.locator(f"input[name='days'][value='{day}']").uncheck()
    form.locator("input[name='window_start']").fill("09:00")
    form.locator("input[name='window_end']").fill("10:30")
    form.locator("input[name='away_from']").fill("2027-01-04")
    form.locator("input[name='away_until']").fill("2027-01-06")
    form.get_by_role("button", name="添加外出").click()
    expect(desk.locator("#care-away li")).to_have_count(1)
    form.get_by_role("button", name="保存关怀设置").click()
    expect(desk.locator("#toast")).to_contain_text("关怀设置已保存")
    saved = staff_api(desk, "GET", "/residents/1/wellbeing")["body"]
    assert saved["enabled"] and saved["days"] == [1, 2, 3, 4, 5]
    assert (saved["window_start"][:5], saved["window_end"][:5]) == ("09:00", "10:30")
    assert [(a["from"], a["until"]) for a in saved["away"]] == [("2027-01-04", "2027-01-06")]

    # a medication reminder, then deleted again
    add = desk.locator("#reminder-add")
    add.locator("input[name='text']").fill("该吃降压药了")
    add.locator("input[name='at']").fill("08:30")
    add.get_by_role("button", name="添加提醒").click()
    rows = desk.locator("#reminders-form li")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("该吃降压药了")
    (reminder,) = staff_api(desk, "GET", "/residents/1/reminders")["body"]
    assert (reminder["kind"], reminder["at"][:5], reminder["days"]) == (
        "medication", "08:30", [1, 2, 3, 4, 5, 6, 7],
    )  # fmt: skip
    shot(desk, "30-care-form")
    rows.first.get_by_role("button", name="删除").click()
    expect(rows).to_have_count(0)
    assert staff_api(desk, "GET", "/residents/1/reminders")["body"] == []
    assert pages.errors == []
