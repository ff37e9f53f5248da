"""Acting on tickets anywhere, in a real browser: from a ticket's page an operator adds a
note, hands the ticket to the supervisor, rings the resident, dispatches again and cancels
with a reason; a walk-in ticket is made from its form without a call; and a transfer's
note, with the caller's card and ticket, reaches the receiving desk."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Pages, login, shot
from tests.e2e.test_console import RESIDENT_1_PHONE, press, sim_call, simulator, staff_api

pytestmark = pytest.mark.e2e


def test_given_a_family_member_at_the_door_when_the_walk_in_form_is_used_then_a_ticket_is_made(
    pages: Pages,
) -> None:
    desk = pages.open()
    login(desk, "operator")
    resident = staff_api(desk, "GET", "/residents/1?reason=test")["body"]
    desk.click("#walk-in-link")
    desk.wait_for_url("**/tickets/new")
    desk.wait_for_selector("body[data-ready='1']")
    # nobody picked yet: the form says so in words
    desk.select_option("#wk-category", "medicine")
    desk.click("#wk-create")
    expect(desk.locator("#wk-msg")).to_have_text("请先选择老人")
    desk.fill("#wk-q", resident["name"])
    desk.click("#wk-search-form button[type='submit']")
    desk.locator(f"#wk-results li[data-resident-id='{resident['id']}'] .pick").click()
    expect(desk.locator("#wk-picked")).to_contain_text(resident["name"])
    desk.select_option("#wk-source", "family_visit")
    desk.fill("#wk-description", "女儿来说降压药吃完了")
    shot(desk, "60-walk-in-form")
    desk.click("#wk-create")
    desk.wait_for_url(re.compile(r".*/tickets/[0-9]+$"))
    desk.wait_for_selector("body[data-ready='1']")
    expect(desk.locator("#ticket")).to_have_attribute("data-state", "new")
    expect(desk.locator("#ticket-fields")).to_contain_text("【家属上门】 女儿来说降压药吃完了")
    ticket_id = desk.locator("#ticket").get_attribute("data-ticket-id")
    made = staff_api(desk, "GET", f"/tickets/{ticket_id}")["body"]
    assert (made["resident_id"], made["call_id"], made["category_code"]) == (1, None, "medicine")
    assert pages.errors == []


def test_given_a_ticket_page_when_the_operator_acts_then_note_reassign_call_dispatch_cancel(
    pages: Pages,
) -> None:
    desk = pages.open()
    login(desk, "operator")
    need = {"category": "medicine", "resident_id": 1, "description": "降压药"}
    ticket = staff_api(desk, "POST", "/tickets", need)["body"]
    desk.goto(f"/tickets/{ticket['id']}")
    desk.wait_for_selector("body[data-ready='1']")
    expect(desk.locator("#ticket")).to_have_attribute("data-state", "new")

    # a note goes on the timeline
    desk.fill("#tk-note", "女儿下午在家，可以开门")
    desk.click("#tk-add-note")
    expect(desk.locator("#tk-msg")).to_have_text("已添加备注")
    expect(desk.locator("#timeline li[data-name='ticket.note']")).to_contain_text(
        "女儿下午在家，可以开门"
    )

    # handed to the supervisor: the page says who looks after it now
    desk.select_option("#tk-assign-to", label="班长老张 · 未登录")
    desk.click("#tk-assign")
    expect(desk.locator("#tk-msg")).to_have_text("已转给 班长老张")
    expect(desk.locator("#ticket-fields")).to_contain_text("班长老张")
    expect(desk.locator("#timeline li[data-name='ticket.assigned']")).to_contain_text("班长老张")

    # one button per phone of the resident; a click rings the operator's desk first
    expect(desk.locator("#tk-phones .call-phone").first).to_contain_text("呼叫老人")
    desk.locator("#tk-phones .call-phone").first.click()
    expect(desk.locator("#tk-msg")).to_contain_text("正在呼叫")

    # dispatched again: the cascade starts, the button goes grey
    desk.click("#tk-redispatch")
    expect(desk.locator("#ticket")).not_to_have_attribute("data-state", "new")
    expect(desk.locator("#tk-redispatch")).to_be_disabled()
    expect(desk.locator("#timeline li[data-name='ticket.matching']")).to_have_count(1)

    # cancelled with a reason: an empty one is refused by the form, then it goes through
    desk.click("#tk-cancel")
    expect(desk.locator("#ticket")).not_to_have_attribute("data-state", "cancelled")
    desk.fill("#tk-cancel-reason", "老人自己去药店买了")
    desk.click("#tk-cancel")
    expect(desk.locator("#ticket")).to_have_attribute("data-state", "cancelled")
    expect(desk.locator("#timeline li[data-name='ticket.cancelled']")).to_contain_text(
        "老人自己去药店买了"
    )
    expect(desk.locator("#tk-cancel")).to_be_disabled()
    expect(desk.locator("#tk-assign")).to_be_disabled()
    shot(desk, "61-ticket-page-actions")

    # a refusal is worded in Chinese (a second dispatch of a cancelled ticket, by API)
    again = staff_api(desk, "POST", f"/tickets/{ticket['id']}/assign", {"user_id": 1})
    assert again["status"] == 409 and again["body"]["error_id"] == "ticket_closed"
    assert pages.errors == []


def test_given_a_transfer_with_a_note_when_the_supervisor_takes_it_then_their_desk_shows_it(
    pages: Pages,
) -> None:
    desk_a = pages.open()
    login(desk_a, "operator")
    desk_b = pages.open()
    login(desk_b, "supervisor")
    sim = simulator(pages)
    sim.fill("#dial-number", RESIDENT_1_PHONE)
    sim.click("#dial")
    press(sim_call(sim, number=RESIDENT_1_PHONE, direction="in"), "0")
    expect(desk_a.locator("#queue li[data-state='queued'] .answer")).to_be_visible()
    desk_a.keyboard.press("F2")
    expect(desk_a.locator("#call-now")).to_have_attribute("data-state", "connected")
    name = desk_a.locator("#card .name").inner_text()
    desk_a.click("#categories button[data-code='medicine']")
    desk_a.fill("#description", "降压药")
    desk_a.click("#create-ticket")
    expect(desk_a.locator("#current-ticket")).to_have_attribute("data-state", "new")
    ticket_id = desk_a.locator("#current-ticket a").inner_text().lstrip("#")

    desk_b.click("#op-login")
    expect(desk_b.locator("#op-state")).to_have_text("空闲")
    desk_a.locator("#transfer-to").focus()
    expect(desk_a.locator("#transfer-to option[value='supervisor']")).to_have_count(1)
    desk_a.select_option("#transfer-to", "supervisor")
    desk_a.fill("#transfer-note", "老人要求先联系女儿")
    desk_a.keyboard.press("F7")
    expect(desk_a.locator("#call-now")).to_contain_text("已转接")
    expect(desk_a.locator("#transfer-note")).to_have_value("")

    # the receiving desk: the caller's card, the call's ticket and the sender's note
    expect(desk_b.locator("#call-now")).to_contain_text("转接来电")
    expect(desk_b.locator("#transfer-context")).to_contain_text("老人要求先联系女儿")
    expect(desk_b.locator("#transfer-context")).to_contain_text("话务员小李 转来")
    expect(desk_b.locator("#card .name")).to_have_text(name)
    expect(desk_b.locator("#current-ticket a")).to_have_text(f"#{ticket_id}")
    expect(desk_b.locator("#description")).to_have_value("降压药")
    shot(desk_b, "62-transfer-with-note")
    # ... and after a reload, from the call's timeline
    desk_b.reload()
    desk_b.wait_for_selector("body[data-ready='1']")
    expect(desk_b.locator("#transfer-context")).to_contain_text("老人要求先联系女儿")
    assert pages.errors == []
