"""A booked visit in a real browser: at the desk, a caller's need is recorded with a date and
上午 (the ticket carries the window); from a ticket's page the operator picks a date and
晚上, books it; the page shows the window and the timeline says so; the ranking then
explains who is closed in the window; back to "as soon as possible" before any offer."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from playwright.sync_api import expect

from eventlog.clock import LOCAL_TZ
from tests.e2e.conftest import Pages, login, shot
from tests.e2e.test_console import RESIDENT_1_PHONE, simulator, staff_api
from tests.e2e.test_desk_context import ring, take

pytestmark = pytest.mark.e2e


def test_given_a_ticket_page_when_a_window_is_booked_then_it_shows_and_can_be_cleared(
    pages: Pages,
) -> None:
    desk = pages.open()
    login(desk, "operator")
    need = {"category": "doctor", "resident_id": 1, "description": "复查血压"}
    ticket = staff_api(desk, "POST", "/tickets", need)["body"]
    desk.goto(f"/tickets/{ticket['id']}")
    desk.wait_for_selector("body[data-ready='1']")
    expect(desk.locator("#ticket-fields")).to_contain_text("尽快")
    day = (datetime.now(LOCAL_TZ) + timedelta(days=2)).date().isoformat()
    desk.fill("#tk-book-date", day)
    desk.select_option("#tk-book-part", "18:00-21:00")
    expect(desk.locator("#tk-book-from")).to_have_value("18:00")
    expect(desk.locator("#tk-book-until")).to_have_value("21:00")
    desk.click("#tk-book")
    expect(desk.locator("#tk-msg")).to_have_text("已预约")
    expect(desk.locator("#ticket-fields")).to_contain_text(f"{day} 18:00–21:00")
    expect(desk.locator("#timeline li[data-name='booking.booked']")).to_contain_text("预约上门")
    shot(desk, "70-booked-visit")
    booked = staff_api(desk, "GET", f"/tickets/{ticket['id']}")["body"]
    assert booked["booking"] == {"date": day, "from": "18:00", "until": "21:00"}
    # the clinics close at 18:00: the ranking says why they are out
    ranked = staff_api(desk, "GET", f"/tickets/{ticket['id']}/candidates")["body"]
    assert any(w["code"] == "closed_booked" for c in ranked for w in c["why"])
    desk.click("#tk-book-clear")
    expect(desk.locator("#tk-msg")).to_have_text("已改为尽快上门")
    expect(desk.locator("#ticket-fields")).to_contain_text("尽快")
    assert pages.errors == []


def test_given_a_caller_at_the_desk_when_the_need_is_booked_for_a_morning_then_the_ticket_has_it(
    pages: Pages,
) -> None:
    desk = pages.open()
    login(desk, "operator")
    sim = simulator(pages)
    ring(sim, RESIDENT_1_PHONE)
    take(desk)
    day = (datetime.now(LOCAL_TZ) + timedelta(days=3)).date().isoformat()
    desk.click("#categories button[data-code='doctor']")
    desk.fill("#description", "周四上午请医生来量血压")
    desk.fill("#booked-date", day)
    desk.select_option("#booked-part", "08:00-12:00")
    desk.click("#create-ticket")
    expect(desk.locator("#current-ticket")).to_have_attribute("data-state", "new")
    expect(desk.locator("#current-ticket")).to_contain_text(f"预约时间 {day} 08:00–12:00")
    ticket_id = desk.locator("#current-ticket a").inner_text().lstrip("#")
    made = staff_api(desk, "GET", f"/tickets/{ticket_id}")["body"]
    assert made["booking"] == {"date": day, "from": "08:00", "until": "12:00"}
    assert pages.errors == []
