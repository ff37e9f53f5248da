"""The resident card on the desk shows the daily care call (issue 15): its days and
window, or that it is off."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Pages, Server, login
from tests.e2e.test_console import RESIDENT_1_PHONE, simulator, staff_api

pytestmark = pytest.mark.e2e


def test_given_a_care_call_when_the_operator_opens_the_resident_then_the_card_shows_it(
    pages: Pages, server: Server
) -> None:
    desk = pages.open()
    login(desk, "operator")
    plan = {"days": [1, 3, 5], "window_start": "09:00", "window_end": "09:30"}
    answer = staff_api(desk, "PUT", "/residents/1/wellbeing", plan)
    assert answer["status"] == 200, answer
    sim = simulator(pages)
    sim.fill("#dial-number", RESIDENT_1_PHONE)
    sim.click("#dial")
    card = desk.locator("#card")
    expect(card).to_contain_text("关爱电话")
    expect(card).to_contain_text("周一、周三、周五 09:00–09:30")
    assert pages.errors == []
