"""Incidents in a real browser: three residents of 第一网格 report a water cut by keypad on
the simulator; the desk proposes them as one outage and links them with one click; a
fourth caller hears the outage announced before the menu, reaches the operator, who links
the call on the desk; "fixed" calls every linked caller back."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Pages, login, shot
from tests.e2e.test_console import press, sim_call, simulator

pytestmark = pytest.mark.e2e

#: residents 6, 12, 18 and 24 of the demo community live in 第一网格
GRID_PHONES = ["+862354000006", "+862354000012", "+862354000018", "+862354000024"]


def _dial(sim: object, phone: str) -> object:
    sim.fill("#dial-number", phone)  # type: ignore[attr-defined]
    sim.click("#dial")  # type: ignore[attr-defined]
    return sim_call(sim, number=phone, direction="in")


def test_given_three_water_calls_when_linked_on_the_console_then_one_outage_and_callbacks(
    pages: Pages,
) -> None:
    desk = pages.open()
    login(desk, "operator")
    desk.wait_for_selector("#incidents-panel[data-ready='1']")
    sim = simulator(pages)

    for phone in GRID_PHONES[:3]:
        card = _dial(sim, phone)
        for digit in "511":  # utility, water, confirm
            press(card, digit)
        expect(sim_call(sim, number=phone, direction="in", state="ended")).to_be_visible()

    proposal = desk.locator("#inc-proposals li.proposal[data-grid='BG01'][data-category='water']")
    expect(proposal).to_contain_text("第一网格最近30分钟有3个停水来电")
    shot(desk, "40-incident-proposal")
    proposal.locator(".link-all").click()
    outage = desk.locator("#incidents li.incident[data-state='open']")
    expect(outage).to_contain_text("来电 3 个 · 涉及 3 户")
    expect(desk.locator("#inc-proposals li")).to_have_count(0)

    # a fourth caller hears it first, then asks for an operator, who links the call
    fourth = _dial(sim, GRID_PHONES[3])
    expect(fourth.locator(".transcript")).to_contain_text("我们已经知道您所在的第一网格停水")
    press(fourth, "0")
    expect(desk.locator("#queue li[data-state='queued'] .answer")).to_be_visible()
    desk.keyboard.press("F2")
    expect(desk.locator("#call-now")).to_have_attribute("data-state", "connected")
    outage.locator(".link-call").click()
    expect(outage).to_contain_text("来电 4 个 · 涉及 4 户")
    shot(desk, "41-incident-linked")

    # the wallboard counts the outage
    board = pages.open()
    login(board, "supervisor")
    board.goto("/wallboard")
    expect(board.locator("#w-incidents")).to_have_text("停水停电停气事件 1")

    # the utility phoned: fixed; every linked caller's phone rings with the news
    outage.locator(".fixed-incident").click()
    expect(desk.locator("#incidents li.incident[data-state='fixed']")).to_be_visible()
    for phone in GRID_PHONES[:2]:  # the first batch of callbacks
        expect(
            sim.locator(f"#sim-calls li[data-number='{phone}'] .dir", has_text="外呼")
        ).to_have_count(1)
    shot(sim, "42-incident-callbacks")
