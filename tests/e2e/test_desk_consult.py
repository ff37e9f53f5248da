"""A consult (warm) transfer in a real browser: operator A answers and asks supervisor B
first (先咨询); B's desk shows the caller's card and A's note; once B answers, A completes
(转接完成) and B has the caller while A wraps up."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Pages, login, shot
from tests.e2e.test_console import RESIDENT_1_PHONE, press, sim_call

pytestmark = pytest.mark.e2e


def test_given_a_call_when_consulted_and_completed_then_the_colleague_has_it(
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

    sim.fill("#dial-number", RESIDENT_1_PHONE)
    sim.click("#dial")
    press(sim_call(sim, number=RESIDENT_1_PHONE, direction="in"), "0")
    expect(desk_a.locator("#queue li[data-state='queued'] .answer")).to_be_visible()
    desk_a.keyboard.press("F2")
    expect(desk_a.locator("#call-now")).to_have_attribute("data-state", "connected")
    call_id = desk_a.locator("#call-now b").inner_text().rsplit("#", 1)[1]
    desk_b.click("#op-login")
    expect(desk_b.locator("#op-state")).to_have_text("空闲")
    b_id = desk_b.evaluate("fetch('/api/v1/me').then((r) => r.json()).then((m) => m.user.id)")

    # A picks B, writes a note and consults: the caller holds, B's desk gets the caller
    desk_a.locator("#transfer-to").focus()
    expect(desk_a.locator(f"#transfer-to option[value='user:{b_id}']")).to_have_count(1)
    desk_a.select_option("#transfer-to", f"user:{b_id}")
    desk_a.fill("#transfer-note", "想先给女儿打电话")
    expect(desk_a.locator("#consult")).to_have_text("先咨询")
    desk_a.click("#consult")
    expect(desk_a.locator("#call-now")).to_have_attribute("data-state", "consulting")
    expect(desk_a.locator("#consult-complete")).to_be_enabled()
    expect(desk_a.locator("#consult-cancel")).to_be_enabled()
    expect(desk_a.locator("#consult")).to_be_hidden()
    sim_call(sim, number=RESIDENT_1_PHONE, direction="in", state="held")
    expect(desk_b.locator("#call-now")).to_contain_text(f"#{call_id}")
    expect(desk_b.locator("#call-now")).to_contain_text("同事请您先咨询")
    expect(desk_b.locator("#transfer-context")).to_contain_text("想先给女儿打电话")
    expect(desk_b.locator("#card .name")).not_to_be_empty()
    expect(desk_b.locator("#hold")).to_be_disabled()
    shot(desk_b, "23-consulted-desk")

    # 转接完成: B has the caller, A wraps up
    desk_a.click("#consult-complete")
    expect(desk_a.locator("#call-now")).to_contain_text("已转接")
    expect(desk_a.locator("#op-state")).to_have_text("整理中")
    expect(desk_b.locator("#call-now")).to_contain_text("转接来电")
    expect(desk_b.locator("#hold")).to_be_enabled()
    expect(
        sim.locator(f"#sim-calls li[data-number='{RESIDENT_1_PHONE}'][data-state='bridged'] .state")
    ).to_contain_text(f"operator:{b_id}")
    desk_a.keyboard.press("F8")
    expect(desk_a.locator("#op-state")).to_have_text("空闲")
    assert pages.errors == []
