"""Price and consent at the desk, in a real browser: each candidate row shows the
merchant's price note, and a self-paid meal order cannot be dispatched until the operator
records that the resident agrees to the price (老人已同意费用)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Pages, login, shot
from tests.e2e.test_console import RESIDENT_1_PHONE, simulator, staff_api
from tests.e2e.test_desk_context import make_ticket, ring, take

pytestmark = pytest.mark.e2e


def test_given_a_self_paid_meal_when_ordered_at_the_desk_then_consent_comes_before_dispatch(
    pages: Pages,
) -> None:
    desk = pages.open()
    login(desk, "operator")
    sim = simulator(pages)
    ring(sim, RESIDENT_1_PHONE)
    take(desk)
    ticket_id = make_ticket(desk, "meal", "午饭一份")
    # the price note of each merchant, in its row
    expect(desk.locator("#candidates li .tag.price").first).to_contain_text("自费")
    # the consent first: 派单 waits for it
    expect(desk.locator("#consent-row")).to_be_visible()
    expect(desk.locator("#dispatch")).to_be_disabled()
    expect(desk.locator("#consent-state")).to_contain_text("先问老人")
    shot(desk, "70-desk-consent")
    desk.click("#consent")
    expect(desk.locator("#consent-state")).to_contain_text("老人本人")
    expect(desk.locator("#consent")).to_be_disabled()
    expect(desk.locator("#dispatch")).to_be_enabled()
    ticket = staff_api(desk, "GET", f"/tickets/{ticket_id}")["body"]
    assert ticket["consent_by"] == "老人本人"
    assert "ticket.consented" in [e["name"] for e in ticket["timeline"]]
    desk.click("#dispatch")
    expect(desk.locator("#current-ticket")).not_to_have_attribute("data-state", "new")
    assert pages.errors == []
