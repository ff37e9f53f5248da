"""What an operator under pressure needs, in a real browser: a call offered to the desk
rings (tone, title, desktop notification, seconds left) until it is taken; the caller's
wait, the talk time and the menu path tick on the desk, the time in state on the
wallboard; at 1366x768 the call box, candidates and dispatch buttons fit the screen; an
emergency is marked by more than colour."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Pages, login, shot
from tests.e2e.test_console import RESIDENT_1_PHONE, press, sim_call, simulator, staff_api
from tests.e2e.test_desk_context import make_ticket, ring, take

pytestmark = pytest.mark.e2e


def available(desk: Page) -> None:
    """The operator signs on: offered calls ring at this desk."""
    desk.click("#op-login")
    expect(desk.locator("#op-state")).to_have_attribute("data-state", "available")


def seconds_left(desk: Page) -> int:
    """The countdown of the call ringing at the desk."""
    left = desk.locator("#ring-left").get_attribute("data-left")
    assert left is not None
    return int(left)


def test_given_a_call_offered_to_the_desk_when_it_rings_then_it_counts_down_until_answered(
    pages: Pages,
) -> None:
    desk = pages.open()
    desk.context.grant_permissions(["notifications"], origin=pages.server.url)
    login(desk, "operator")
    title = desk.title()
    available(desk)
    sim = simulator(pages)
    ring(sim, RESIDENT_1_PHONE)

    box = desk.locator("#ring-box")
    expect(box).to_be_visible()
    call_id = box.get_attribute("data-call-id")
    assert call_id
    expect(desk.locator("#op-state")).to_have_attribute("data-state", "reserved")
    expect(desk.locator("#ring-what")).to_contain_text(f"#{call_id}")
    expect(desk.locator(f"#queue li.offered[data-call-id='{call_id}']")).to_be_visible()
    first = seconds_left(desk)
    assert 10 <= first <= 20, first
    expect(desk.locator("#ring-left")).not_to_have_attribute("data-left", str(first))
    assert seconds_left(desk) < first
    expect(desk.locator("#ring-left")).to_contain_text("秒")
    # the title flashes "(来电 n) …", the tone and the desktop notification started
    expect(desk).to_have_title(re.compile(r"^\(来电 \d+\) "))
    expect(desk.locator("body")).to_have_attribute("data-ring-tones", re.compile(r"[1-9]"))
    expect(desk.locator("body")).to_have_attribute("data-ring-notified", call_id)
    shot(desk, "50-desk-ringing")

    # F2 takes the ringing call: all of it stops
    desk.keyboard.press("F2")
    expect(desk.locator("#call-now")).to_have_attribute("data-call-id", call_id)
    expect(desk.locator("#call-now")).to_have_attribute("data-state", "connected")
    expect(box).to_be_hidden()
    expect(desk.locator("body")).not_to_have_attribute("data-ringing", re.compile(".*"))
    expect(desk).to_have_title(title)
    expect(desk.locator("#queue li.offered")).to_have_count(0)
    tones = desk.locator("body").get_attribute("data-ring-tones")
    desk.wait_for_timeout(3500)
    assert desk.locator("body").get_attribute("data-ring-tones") == tones
    assert pages.errors == []


def test_given_a_call_ringing_at_the_desk_when_someone_else_takes_it_then_the_ringing_stops(
    pages: Pages,
) -> None:
    desk = pages.open()
    login(desk, "operator")
    title = desk.title()
    available(desk)
    sim = simulator(pages)
    ring(sim, RESIDENT_1_PHONE)
    box = desk.locator("#ring-box")
    expect(box).to_be_visible()
    call_id = box.get_attribute("data-call-id")
    supervisor = pages.open()
    login(supervisor, "supervisor")
    taken = staff_api(supervisor, "POST", f"/calls/{call_id}/answer")
    assert taken["status"] == 200, taken
    expect(box).to_be_hidden()
    expect(desk.locator("#op-state")).to_have_attribute("data-state", "available")
    expect(desk).to_have_title(title)
    expect(desk.locator("body")).not_to_have_attribute("data-ringing", re.compile(".*"))
    assert pages.errors == []


def test_given_a_desk_without_notifications_when_the_operator_asks_then_it_asks_once(
    pages: Pages,
) -> None:
    desk = pages.open()
    login(desk, "operator")
    ask = desk.locator("#notify-enable")
    expect(ask).to_be_visible()
    ask.click()  # headless chromium answers the prompt itself; the button goes either way
    expect(ask).to_be_hidden()
    desk.reload()
    desk.wait_for_selector("body[data-ready='1']")
    expect(ask).to_be_hidden()
    assert pages.errors == []


def texts(page: Page, selector: str) -> list[str]:
    """The texts of every element the selector finds."""
    found: list[str] = page.locator(selector).all_inner_texts()
    return found


def test_given_a_waiting_caller_when_answered_then_wait_talk_time_and_menu_path_show(
    pages: Pages,
) -> None:
    desk = pages.open()
    login(desk, "operator")
    sim = simulator(pages)
    ring(sim, RESIDENT_1_PHONE)  # the caller presses 0 for an operator
    row = desk.locator("#queue li[data-state='queued']").first
    expect(row.locator(".menu")).to_have_text("菜单: 0 人工")
    wait = row.locator(".wait")
    expect(wait).to_have_text(re.compile(r"^已等 0:0\d$"))
    before = wait.inner_text()
    expect(wait).not_to_have_text(before)  # it ticks
    take(desk)
    talk = desk.locator("#talk-time")
    expect(talk).to_be_visible()
    expect(talk).to_have_text(re.compile(r"^通话 0:0\d$"))
    before = talk.inner_text()
    expect(talk).not_to_have_text(before)
    expect(desk.locator("#call-menu")).to_have_text("菜单: 0 人工")
    assert pages.errors == []


def layout(desk: Page) -> dict[str, Any]:
    """Where the key controls sit, and whether the document scrolls."""
    result: dict[str, Any] = desk.evaluate(
        """() => {
            const seen = (sel) => {
                const node = document.querySelector(sel);
                const r = node.getBoundingClientRect();
                const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
                return {top: r.top, bottom: r.bottom, hit: Boolean(hit && node.contains(hit))};
            };
            return {
                scroll: document.scrollingElement.scrollHeight, height: innerHeight,
                dispatch: seen('#dispatch'), selected: seen('#dispatch-selected'),
                candidate: seen('#candidates li.candidate'), callbox: seen('#call-now'),
                hangup: seen('#hangup'), wrapup: seen('#wrapup'), caller: seen('#queue li .menu'),
            };
        }"""
    )
    return result


def test_given_1366x768_when_a_ticket_has_candidates_then_the_desk_fits_without_scrolling(
    pages: Pages,
) -> None:
    desk = pages.open({"width": 1366, "height": 768})
    login(desk, "operator")
    sim = simulator(pages)
    ring(sim, RESIDENT_1_PHONE)
    take(desk)
    make_ticket(desk, "medicine", "硝苯地平一盒")
    expect(desk.locator("#candidates li.candidate").first).to_be_visible()
    shot(desk, "51-desk-1366x768")
    found = layout(desk)
    assert found["scroll"] <= found["height"], found
    for key in ("dispatch", "selected", "candidate", "callbox", "hangup", "wrapup", "caller"):
        spot = found[key]
        assert spot["top"] >= 0 and spot["bottom"] <= found["height"] and spot["hit"], (key, found)
    assert pages.errors == []


def test_given_an_emergency_when_it_waits_then_its_rows_are_marked_in_words(
    pages: Pages,
) -> None:
    desk = pages.open()
    login(desk, "operator")
    available(desk)
    sim = simulator(pages)
    sim.fill("#dial-number", RESIDENT_1_PHONE)
    sim.click("#dial")
    press(sim_call(sim, number=RESIDENT_1_PHONE, direction="in"), "1")
    row = desk.locator("#queue li.emergency").first
    expect(row.locator(".em-mark")).to_have_text("⚠ 紧急")
    expect(desk.locator("#ring-box #ring-mark")).to_be_visible()
    expect(row.locator(".menu")).to_have_text("菜单: 1 紧急")
    expect(row.locator(".menu")).to_be_in_viewport()
    # a border, not only a background colour
    assert row.evaluate("(li) => getComputedStyle(li).borderLeftWidth") != "0px"
    shot(desk, "52-desk-emergency-marked")
    desk.keyboard.press("F2")
    expect(desk.locator("#call-now")).to_have_attribute("data-state", "connected")
    expect(desk.locator("#call-now .em-mark")).to_have_text("⚠ 紧急")
    assert pages.errors == []


def test_given_the_wallboard_when_an_operator_signs_on_then_their_time_in_state_ticks(
    pages: Pages,
) -> None:
    desk = pages.open()
    login(desk, "operator")
    available(desk)
    board = pages.open()
    login(board, "supervisor")
    board.goto("/wallboard")
    board.wait_for_selector("body[data-ready='1']")
    since = board.locator("#w-operators li[data-state='available'] .in-state").first
    expect(since).to_have_text(re.compile(r"^本状态已 \d+:\d\d$"))
    before = since.inner_text()
    expect(since).not_to_have_text(before)
    assert pages.errors == []
