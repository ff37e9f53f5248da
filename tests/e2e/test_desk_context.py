"""The desk under the pressure of a shift, in a real browser: quick register of an unknown
caller, a reload keeps the call's ticket, one ticket per call, the next caller starts on a
clean desk, no false transfer toast, logging out signs the desk off, and the pages an
operator may land on (a supervisor's page, a missing ticket, the favicon)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Pages, login, shot
from tests.e2e.test_console import RESIDENT_1_PHONE, press, sim_call, simulator, staff_api

pytestmark = pytest.mark.e2e

UNKNOWN = "+8613912345678"
RESIDENT_2_PHONE = "+862354000002"


def ring(sim: Page, number: str, *, menu: bool = True) -> None:
    """A caller rings the hotline from the simulator and asks for an operator."""
    sim.fill("#dial-number", number)
    sim.click("#dial")
    if menu:
        press(sim_call(sim, number=number, direction="in"), "0")


def take(desk: Page) -> str:
    """Answer the first waiting caller with F2; the call's id."""
    expect(desk.locator("#queue li[data-state='queued'] .answer").first).to_be_visible()
    desk.keyboard.press("F2")
    expect(desk.locator("#call-now")).to_have_attribute("data-state", "connected")
    call_id = desk.locator("#call-now").get_attribute("data-call-id")
    assert call_id
    return call_id


def make_ticket(desk: Page, category: str, text: str) -> str:
    """Record the caller's need; the new ticket's id."""
    desk.click(f"#categories button[data-code='{category}']")
    desk.fill("#description", text)
    desk.click("#create-ticket")
    expect(desk.locator("#current-ticket")).to_have_attribute("data-state", "new")
    return desk.locator("#current-ticket a").inner_text().lstrip("#")


def test_given_an_unknown_caller_when_registered_quickly_then_the_card_and_the_call_are_theirs(
    pages: Pages,
) -> None:
    desk = pages.open()
    login(desk, "operator")
    sim = simulator(pages)
    ring(sim, UNKNOWN, menu=False)  # an unknown number goes straight to the queue
    call_id = take(desk)
    expect(desk.locator("#unknown")).to_be_visible()
    desk.click("#unknown summary")
    desk.fill("#reg-name", "柏新华")
    desk.fill("#reg-address", "白公路 99 号")
    desk.select_option("#reg-grid", "BG01")
    desk.click("#register-form button[type=submit]")
    expect(desk.locator("#card .name")).to_have_text("柏新华")
    expect(desk.locator("#unknown")).to_be_hidden()
    expect(desk.locator("#register-msg")).to_be_empty()
    expect(desk.locator("#call-now")).to_contain_text("柏新华")
    shot(desk, "40-desk-quick-register")
    call: Any = staff_api(desk, "GET", f"/calls/{call_id}")["body"]
    assert call["registered"] is True
    resident = staff_api(desk, "GET", f"/residents/{call['resident_id']}")["body"]
    assert [p["number"] for p in resident["phones"]] == [UNKNOWN]
    assert resident["grid_code"] == "BG01"
    assert pages.errors == []


def ordered(pages: Pages) -> tuple[Page, Page, str, str]:
    """Resident 1 rings, the operator answers and records groceries: (desk, simulator,
    call id, ticket id)."""
    desk = pages.open()
    login(desk, "operator")
    sim = simulator(pages)
    ring(sim, RESIDENT_1_PHONE)
    call_id = take(desk)
    return desk, sim, call_id, make_ticket(desk, "groceries", "大米一袋")


def need_panel(desk: Page) -> dict[str, Any]:
    """What the need panel shows: the ticket, the picked category, the need text."""
    result: dict[str, Any] = desk.evaluate(
        """() => ({
            ticket: document.querySelector('#current-ticket a')?.textContent || '',
            state: document.querySelector('#current-ticket').dataset.state || '',
            picked: [...document.querySelectorAll('#categories button.selected')]
                .map((b) => b.dataset.code),
            text: document.querySelector('#description').value,
            candidates: document.querySelectorAll('#candidates li').length,
        })"""
    )
    return result


def test_given_a_ticket_made_when_the_page_reloads_or_switches_language_then_the_desk_keeps_it(
    pages: Pages,
) -> None:
    desk = pages.open()
    login(desk, "operator")
    sim = simulator(pages)
    ring(sim, RESIDENT_1_PHONE)
    take(desk)
    ticket_id = make_ticket(desk, "medicine", "硝苯地平一盒")
    for _ in ("reload", "language"):
        if _ == "reload":
            desk.reload()
        else:
            desk.click("#lang-switch")
        desk.wait_for_selector("body[data-ready='1']")
        expect(desk.locator("#current-ticket a")).to_have_text(f"#{ticket_id}")
        expect(desk.locator("#candidates li.candidate").first).to_be_visible()
        panel = need_panel(desk)
        assert panel["state"] == "new" and panel["picked"] == ["medicine"], panel
        assert panel["text"] == "硝苯地平一盒", panel
        expect(desk.locator("#dispatch")).to_be_enabled()
        expect(desk.locator("#create-ticket")).to_be_disabled()
        expect(desk.locator("#hangup")).to_be_enabled()
    shot(desk, "41-desk-reloaded-keeps-ticket")
    # and the ticket goes out from the reloaded desk
    desk.click("#dispatch")
    expect(desk.locator("#offers li").first).to_be_visible()
    assert pages.errors == []


def test_given_a_ticket_made_for_a_call_when_made_again_then_it_is_refused_and_stays_one(
    pages: Pages,
) -> None:
    desk, _, call_id, ticket_id = ordered(pages)
    expect(desk.locator("#create-ticket")).to_be_disabled()
    # picking another category does not open a second ticket for the call
    desk.click("#categories button[data-code='meal']")
    expect(desk.locator("#create-ticket")).to_be_disabled()
    # a second tab of the same operator shows the same ticket, and cannot make another
    other = pages.open()
    login(other, "operator")
    expect(other.locator("#current-ticket a")).to_have_text(f"#{ticket_id}")
    expect(other.locator("#create-ticket")).to_be_disabled()
    # the server is the guard: a second ticket for the call is refused, with its number
    again = staff_api(desk, "POST", "/tickets", {"category": "groceries", "call_id": int(call_id)})
    assert again["status"] == 409 and again["body"]["error_id"] == "ticket_exists"
    assert again["body"]["details"] == {"ticket_id": int(ticket_id)}
    board = staff_api(desk, "GET", "/board?scope=all")["body"]
    assert [t["id"] for t in board if t["call_id"] == int(call_id)] == [int(ticket_id)]
    assert pages.errors == []


def test_given_a_wrapped_up_call_when_the_next_caller_rings_then_the_desk_is_clean(
    pages: Pages,
) -> None:
    desk, sim, _, _ = ordered(pages)
    first_name = desk.locator("#card .name").inner_text()
    desk.click("#hangup")
    expect(desk.locator("#wrapup")).to_be_enabled()
    desk.keyboard.press("F8")
    expect(desk.locator("#op-state")).to_have_text("空闲")
    panel = need_panel(desk)
    assert panel == {"ticket": "", "state": "", "picked": [], "text": "", "candidates": 0}

    # the next caller's card pops on a clean need panel, before and after the answer
    ring(sim, RESIDENT_2_PHONE)
    expect(desk.locator("#card-status")).to_be_visible()
    expect(desk.locator("#card .name")).not_to_have_text(first_name)
    assert need_panel(desk)["ticket"] == ""
    take(desk)
    panel = need_panel(desk)
    assert panel == {"ticket": "", "state": "", "picked": [], "text": "", "candidates": 0}
    expect(desk.locator("#create-ticket")).to_be_disabled()
    shot(desk, "42-desk-next-caller-clean")
    assert pages.errors == []


def test_given_a_direct_answer_when_the_desk_and_a_second_tab_show_it_then_no_transfer_is_said(
    pages: Pages,
) -> None:
    desk = pages.open()
    login(desk, "operator")
    other = pages.open()
    login(other, "operator")
    sim = simulator(pages)
    ring(sim, RESIDENT_1_PHONE)
    call_id = take(desk)
    expect(other.locator("#call-now")).to_have_attribute("data-call-id", call_id)
    expect(other.locator("#call-now")).to_have_attribute("data-state", "connected")
    desk.reload()
    desk.wait_for_selector("body[data-ready='1']")
    expect(desk.locator("#call-now")).to_have_attribute("data-call-id", call_id)
    for page in (desk, other):
        expect(page.locator("#call-now")).not_to_contain_text("转接来电")
        assert "转接来电" not in (page.locator("#toast").all_inner_texts() or [""])[0]
    assert pages.errors == []


def test_given_an_operator_on_duty_when_logging_out_then_the_desk_signs_off_and_warns_mid_call(
    pages: Pages,
) -> None:
    desk = pages.open()
    login(desk, "operator")
    desk.click("#op-login")
    expect(desk.locator("#op-state")).to_have_text("空闲")
    me = staff_api(desk, "GET", "/me")["body"]["user"]["id"]
    board = pages.open()
    login(board, "supervisor")

    def operator_state() -> str:
        now = staff_api(board, "GET", "/wallboard")["body"]
        return str(next(o["state"] for o in now["operators"] if o["user_id"] == me))

    assert operator_state() == "available"
    desk.click("#logout")
    desk.wait_for_url("**/login")
    assert operator_state() == "logged_out"

    # on a call: warned, and still at the desk with the caller
    login(desk, "operator")
    sim = simulator(pages)
    ring(sim, RESIDENT_1_PHONE)
    take(desk)
    desk.click("#logout")
    expect(desk.locator("#toast")).to_contain_text("正在通话中")
    assert desk.url.endswith("/")
    expect(desk.locator("#hangup")).to_be_enabled()
    assert operator_state() == "on_call"
    shot(desk, "43-desk-logout-mid-call")
    assert pages.errors == []
