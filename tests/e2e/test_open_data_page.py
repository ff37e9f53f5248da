"""The open-data page, in a real browser and without a login: the month-by-grid table in
Chinese (English on the switch), withheld cells shown as "—", links to the files."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Pages, login, shot
from tests.e2e.test_console import staff_api

pytestmark = pytest.mark.e2e

BG01 = [6, 12, 18, 24, 30]  # the demo's residents of 第一网格


def test_given_tickets_in_a_grid_when_anyone_opens_open_data_then_the_table_shows_them(
    pages: Pages,
) -> None:
    staff = pages.open()
    login(staff, "operator")
    made = []
    for rid in BG01:
        ticket = staff_api(staff, "POST", "/tickets", {"category": "groceries", "resident_id": rid})
        assert ticket["status"] == 201, ticket
        made.append(ticket["body"]["id"])
    public = pages.open()  # its own context: no login
    public.goto("/open-data")
    row = public.locator("#open-data-table tr[data-grid='BG01']").first
    expect(row).to_be_visible()
    assert int(row.locator("td[data-field='received']").inner_text()) >= 5
    expect(row.locator("td[data-field='satisfied_rate']")).to_have_text("—")
    expect(public.locator("#open-data-table thead")).to_contain_text("受理")
    expect(public.locator("#open-data-csv")).to_have_attribute("href", "/api/v1/open-data.csv")
    shot(public, "40-open-data")
    public.click("#lang-switch")
    expect(public.locator("#open-data-table thead")).to_contain_text("Received")
    assert pages.errors == []
    # no open order is left behind: a later test's caller would hear its status first
    for tid in made:
        cancelled = staff_api(staff, "POST", f"/tickets/{tid}/cancel", {"reason": "test over"})
        assert cancelled["status"] == 200, cancelled
