"""Operators call out, in a real browser on the simulator: the emergency panel of an
emergency call (risk notes, medicines, key holder, key safe; one-click calls to 120 and
the contacts while the caller stays; each step ticked with who and when), a
click-to-call of the resident on the card with its outcome, and the call back list
(waiting time, answering one dials it, an unanswered try leaves it waiting)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Pages, login, shot
from tests.e2e.test_console import RESIDENT_1_PHONE, press, sim_call, simulator, staff_api

pytestmark = pytest.mark.e2e


def my_callout(desk: Page) -> dict[str, Any]:
    """The operator's current click-to-call, as the API shows it to them."""
    me = staff_api(desk, "GET", "/operator/state")["body"]
    call: dict[str, Any] = staff_api(desk, "GET", f"/callouts/{me['call_id']}")["body"]
    return call


def test_given_an_emergency_when_answered_then_the_panel_calls_out_and_ticks_steps(
    pages: Pages,
) -> None:
    sim = simulator(pages)
    card = staff_api(sim, "GET", "/residents/1?reason=edit")["body"]
    patched = staff_api(
        sim,
        "PATCH",
        "/residents/1",
        {"risk_notes": "独居，夜间易跌倒", "key_holder": "邻居张大爷 3单元101",
         "key_safe": "门框左侧钥匙盒", "version": str(card["revision"])},
    )  # fmt: skip
    assert patched["status"] == 200, patched
    desk = pages.open()
    login(desk, "operator")
    desk.wait_for_selector("body[data-callouts='1']")

    # the resident presses the emergency key; the operator answers with F2
    sim.fill("#dial-number", RESIDENT_1_PHONE)
    sim.click("#dial")
    press(sim_call(sim, number=RESIDENT_1_PHONE, direction="in"), "1")
    expect(desk.locator("#queue li.emergency .answer")).to_be_visible()
    desk.keyboard.press("F2")
    expect(desk.locator("#call-now")).to_have_attribute("data-state", "connected")

    # the panel: what to know first, then the checklist in order
    panel = desk.locator("#emergency-panel")
    expect(panel).to_be_visible()
    expect(panel.locator("[data-field='co_risk_notes']")).to_have_text("独居，夜间易跌倒")
    expect(panel.locator("[data-field='co_key_holder']")).to_have_text("邻居张大爷 3单元101")
    expect(panel.locator("[data-field='co_key_safe']")).to_have_text("门框左侧钥匙盒")
    expect(panel.locator("[data-field='medicines']")).not_to_be_empty()
    steps = panel.locator("#em-steps li")
    expect(steps.first).to_have_attribute("data-step", "120")
    expect(steps.first).to_contain_text("拨打 120")
    expect(steps.last).to_have_attribute("data-step", "grid_worker")
    expect(panel.locator("#em-steps li[data-step^='contact:']").first).to_contain_text("联系人 1")

    # one click calls 120: the desk rings first (the simulator's desk answers), then 120
    steps.first.locator("button.call").click()
    ambulance = sim_call(sim, number="120", direction="out", state="ringing")
    ambulance.locator(".answer").click()
    expect(steps.first.locator(".callout")).to_have_text("通话中")
    # the caller is still the operator's call
    expect(desk.locator("#call-now")).to_have_attribute("data-state", "connected")

    # ticked with who and when; it stays ticked on the timeline
    steps.first.locator("input.tick").check()
    expect(steps.first.locator(".done-by")).to_contain_text("operator")
    expect(steps.first).to_have_class("done")
    shot(desk, "30-desk-emergency-panel")
    call_id = desk.locator("#call-now b").inner_text().rsplit("#", 1)[1]
    timeline = staff_api(desk, "GET", f"/calls/{call_id}")["body"]["timeline"]
    names = [e["name"] for e in timeline]
    assert "call.callout_placed" in names and "emergency.step" in names

    # the ambulance line ends; the caller hangs up; the operator wraps up
    sim_call(sim, number="120", direction="out", state="bridged").locator(".hang").click()
    sim_call(sim, number=RESIDENT_1_PHONE, direction="in").locator(".hang").click()
    expect(desk.locator("#wrapup")).to_be_enabled()
    desk.keyboard.press("F8")
    expect(desk.locator("#op-state")).to_have_text("空闲")

    # click-to-call the resident on the card: the outcome box, then wrap-up
    expect(desk.locator("#call-resident")).to_be_visible()
    desk.click("#call-resident")
    box = desk.locator("#callout-box")
    expect(box).to_be_visible()
    callout = my_callout(desk)
    assert RESIDENT_1_PHONE not in str(callout)  # masked for the desk
    phone = sim.locator(f"#sim-calls li[data-ref='{callout['ref']}'][data-state='ringing']")
    phone.locator(".answer").click()
    expect(box).to_have_attribute("data-state", "connected")
    sim.locator(f"#sim-calls li[data-ref='{callout['ref']}'] .hang").click()
    expect(box).to_have_attribute("data-state", "wrap_up")
    desk.select_option("#callout-outcome", "reached")
    desk.click("#callout-finish")
    expect(box).to_be_hidden()
    expect(desk.locator("#op-state")).to_have_text("空闲")
    assert pages.errors == []


def test_given_a_caller_who_hung_up_waiting_then_the_call_back_list_dials_them(
    pages: Pages,
) -> None:
    sim = simulator(pages)
    desk = pages.open()
    login(desk, "operator")
    desk.wait_for_selector("body[data-callouts='1']")

    # a resident asks for an operator and gives up waiting: a call back task, listed
    sim.fill("#dial-number", RESIDENT_1_PHONE)
    sim.click("#dial")
    caller = sim_call(sim, number=RESIDENT_1_PHONE, direction="in")
    press(caller, "0")
    expect(desk.locator("#queue li[data-state='queued']")).to_be_visible()
    caller.locator(".hang").click()
    task = desk.locator("#callbacks li").first
    expect(task).to_be_visible()
    expect(task.locator(".waiting")).to_contain_text("已等待")
    expect(task.locator(".attempts")).to_have_text("已拨 0 次")
    shot(desk, "31-desk-callback-list")

    # answering it dials the caller back; they are busy: the task waits on, tried once
    task.locator("button.dial").click()
    expect(desk.locator("#callout-box")).to_be_visible()
    callout = my_callout(desk)
    ringing = sim.locator(f"#sim-calls li[data-ref='{callout['ref']}'][data-state='ringing']")
    ringing.locator(".busy").click()
    expect(desk.locator("#callout-box")).to_be_hidden()
    expect(desk.locator("#callbacks li").first.locator(".attempts")).to_have_text("已拨 1 次")
    expect(desk.locator("#op-state")).to_have_text("空闲")

    # the second try is answered: "reached" closes the task
    desk.locator("#callbacks li").first.locator("button.dial").click()
    expect(desk.locator("#callout-box")).to_be_visible()
    callout = my_callout(desk)
    sim.locator(f"#sim-calls li[data-ref='{callout['ref']}'][data-state='ringing'] .answer").click()
    expect(desk.locator("#callout-box")).to_have_attribute("data-state", "connected")
    desk.click("#callout-hangup")
    expect(desk.locator("#callout-box")).to_have_attribute("data-state", "wrap_up")
    desk.select_option("#callout-outcome", "reached")
    desk.click("#callout-finish")
    expect(desk.locator("#callbacks li")).to_have_count(0)
    expect(desk.locator("#callbacks-empty")).to_be_visible()
    assert pages.errors == []


def test_given_a_caller_at_the_desk_when_a_contact_is_clicked_then_it_rings_as_a_second_line(
    pages: Pages,
) -> None:
    sim = simulator(pages)
    card = staff_api(sim, "GET", "/residents/1?reason=edit")["body"]
    first = card["contacts"][0]
    desk = pages.open()
    login(desk, "operator")
    desk.wait_for_selector("body[data-callouts='1']")
    sim.fill("#dial-number", RESIDENT_1_PHONE)
    sim.click("#dial")
    press(sim_call(sim, number=RESIDENT_1_PHONE, direction="in"), "0")
    answer = desk.locator("#queue li[data-state='queued'] .answer").first
    expect(answer).to_be_enabled()
    answer.click()
    expect(desk.locator("#call-now")).to_have_attribute("data-state", "connected", timeout=15_000)

    # every contact on the card has its 📞, in the cascade's order
    rings = desk.locator("#card .contact button.call-contact")
    expect(rings).to_have_count(len(card["contacts"]))
    expect(desk.locator("#card .contact").first).to_contain_text(first["name"])
    rings.first.click()
    expect(desk.locator("#callout-box")).to_be_visible()
    number = desk.locator("#callout-now b").inner_text().rsplit("#", 1)[1]
    callout = staff_api(desk, "GET", f"/callouts/{number}")["body"]
    [placed] = [e["data"] for e in callout["timeline"] if e["name"] == "call.callout"]
    assert (placed["target"], placed["target_id"]) == ("contact", first["id"])
    assert first["phone"] not in str(callout)  # the number stays behind the id
    # the contact's phone rings; the caller stays the operator's call
    sim_call(sim, number=first["phone"], direction="out", state="ringing")
    expect(desk.locator("#call-now")).to_have_attribute("data-state", "connected")
    assert pages.errors == []
