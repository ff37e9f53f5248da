"""Hold and transfer at the desk in a real browser: operator A answers, holds (the caller
hears the hold prompt in the simulator), resumes, and hands the caller to the supervisor
desk, where supervisor B, in a second browser context, gets the caller's card."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Pages, login, shot
from tests.e2e.test_console import RESIDENT_1_PHONE, press, sim_call

pytestmark = pytest.mark.e2e


def test_given_a_call_when_held_resumed_and_transferred_then_the_supervisor_has_it(
    pages: Pages,
) -> None:
    desk_a = pages.open()
    login(desk_a, "operator")
    desk_b = pages.open()
    login(desk_b, "supervisor")
    sim = pages.open()
    login(sim, "demo")
    sim.goto("/simulator")
    sim.wait_for_selector("body[data-ready='1']")

    # the resident rings and asks for an operator; A answers with F2
    sim.fill("#dial-number", RESIDENT_1_PHONE)
    sim.click("#dial")
    press(sim_call(sim, number=RESIDENT_1_PHONE, direction="in"), "0")
    expect(desk_a.locator("#queue li[data-state='queued'] .answer")).to_be_visible()
    desk_a.keyboard.press("F2")
    expect(desk_a.locator("#call-now")).to_have_attribute("data-state", "connected")
    expect(desk_a.locator("#hold")).to_be_enabled()
    call_id = desk_a.locator("#call-now b").inner_text().rsplit("#", 1)[1]

    # B comes on duty at the supervisor desk
    desk_b.click("#op-login")
    expect(desk_b.locator("#op-state")).to_have_text("空闲")

    # F6 holds: the desk counts the hold time, the caller hears the hold prompt
    desk_a.keyboard.press("F6")
    expect(desk_a.locator("#call-now")).to_have_attribute("data-state", "on_hold")
    expect(desk_a.locator("#call-now .tag")).to_have_text("保持中")
    expect(desk_a.locator("#hold-time")).to_contain_text("已保持 0:0")
    expect(desk_a.locator("#hold")).to_contain_text("恢复通话")
    held = sim_call(sim, number=RESIDENT_1_PHONE, direction="in", state="held")
    expect(held.locator(".transcript")).to_contain_text("请您稍等，话务员马上回来")
    shot(desk_a, "20-desk-on-hold")
    shot(sim, "21-simulator-caller-on-hold")

    # resume, then hand the caller to the supervisor desk
    desk_a.click("#hold")
    expect(desk_a.locator("#call-now")).to_have_attribute("data-state", "connected")
    expect(desk_a.locator("#hold-time")).to_be_hidden()
    sim_call(sim, number=RESIDENT_1_PHONE, direction="in", state="bridged")
    desk_a.locator("#transfer-to").focus()
    expect(desk_a.locator("#transfer-to option[value='supervisor']")).to_have_count(1)
    desk_a.select_option("#transfer-to", "supervisor")
    desk_a.keyboard.press("F7")
    expect(desk_a.locator("#call-now")).to_contain_text("已转接")
    expect(desk_a.locator("#wrapup")).to_be_enabled()
    expect(desk_a.locator("#hold")).to_be_disabled()
    expect(desk_a.locator("#op-state")).to_have_text("整理中")

    # B's desk takes the caller up: the card, the call, the controls
    expect(desk_b.locator("#call-now")).to_contain_text(f"#{call_id}")
    expect(desk_b.locator("#call-now")).to_contain_text("转接来电")
    expect(desk_b.locator("#card .name")).not_to_be_empty()
    expect(desk_b.locator("#op-state")).to_have_text("通话中")
    expect(desk_b.locator("#hangup")).to_be_enabled()
    expect(desk_b.locator("#hold")).to_be_enabled()
    b_id = desk_b.evaluate("fetch('/api/v1/me').then((r) => r.json()).then((m) => m.user.id)")
    bridged = sim.locator(
        f"#sim-calls li[data-number='{RESIDENT_1_PHONE}'][data-state='bridged'] .state"
    )
    expect(bridged).to_contain_text(f"operator:{b_id}")
    expect(bridged).to_contain_text("通话中")  # the simulator's states in words, not codes
    shot(desk_b, "22-supervisor-desk-transferred-call")

    # A wraps up with F8 and is free again; B hangs up and wraps up as with any call
    desk_a.keyboard.press("F8")
    expect(desk_a.locator("#op-state")).to_have_text("空闲")
    desk_b.click("#hangup")
    expect(desk_b.locator("#wrapup")).to_be_enabled()
    desk_b.keyboard.press("F8")
    expect(desk_b.locator("#wrapup")).to_be_disabled()
    assert pages.errors == []
