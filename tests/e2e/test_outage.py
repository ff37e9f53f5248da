"""A phone outage in a real browser: the simulator takes the memory PBX's line down, the
operator's desk and the supervisor's wallboard show the banner at once (and a page opened
meanwhile shows it from the start), the caller waiting in the queue gets a callback task
on the board, and the banners go when the line is back."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Pages, login, shot
from tests.e2e.test_console import RESIDENT_1_PHONE, press, sim_call

pytestmark = pytest.mark.e2e

BANNER = "电话线路中断：外呼暂停，恢复后自动继续"


def test_given_the_line_drops_then_desk_and_wallboard_show_it_until_it_is_back(
    pages: Pages,
) -> None:
    desk = pages.open()
    login(desk, "operator")
    wall = pages.open()
    login(wall, "supervisor", "/")
    wall.goto("/wallboard")
    wall.wait_for_selector("body[data-ready='1']")
    sim = pages.open()
    login(sim, "demo")
    sim.goto("/simulator")
    sim.wait_for_selector("body[data-ready='1']")
    for page in (desk, wall, sim):
        expect(page.locator("#phone-outage")).to_be_hidden()

    # a resident waits in the queue when the line drops
    sim.fill("#dial-number", RESIDENT_1_PHONE)
    sim.click("#dial")
    press(sim_call(sim, number=RESIDENT_1_PHONE, direction="in"), "0")
    expect(desk.locator("#queue li[data-state='queued']")).to_be_visible()
    sim.click("#line-down")

    for page in (desk, wall, sim):
        expect(page.locator("#phone-outage")).to_be_visible()
        expect(page.locator("#phone-outage")).to_contain_text(BANNER)
        expect(page.locator("#phone-outage .since")).to_contain_text("起")
    # the caller who may have been lost is a callback task on the desk's board
    expect(desk.locator("#tickets tr[data-state='new']")).to_have_count(1)
    shot(desk, "30-desk-phone-outage")
    shot(wall, "31-wallboard-phone-outage")

    # a page opened during the outage shows it from its first paint
    late = pages.open()
    login(late, "operator")
    expect(late.locator("#phone-outage")).to_be_visible()
    late.goto("/?lang=en")
    late.wait_for_selector("body[data-ready='1']")
    expect(late.locator("#phone-outage")).to_contain_text("Phone line down")
    shot(late, "32-en-desk-phone-outage")

    sim.click("#line-up")
    for page in (desk, wall, sim, late):
        expect(page.locator("#phone-outage")).to_be_hidden()
    assert pages.errors == []
