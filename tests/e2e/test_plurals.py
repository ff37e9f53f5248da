"""Counted words from the catalogs in a real browser: English takes the singular for one
("1 offer", "1 visit") and the plural otherwise; Chinese has one form. The merchant
scorecard on the known history (tests/history.py) shows both counts."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests import history as hist
from tests.e2e.conftest import Pages, Server, login
from tests.e2e.test_wallboard_charts import seed

pytestmark = pytest.mark.e2e


def test_given_one_and_several_offers_when_the_scorecard_is_in_english_then_counts_agree(
    pages: Pages, server: Server
) -> None:
    seed(server)
    board = pages.open()
    login(board, "supervisor")
    board.goto(f"/wallboard/merchants/{hist.MERCHANT}?days=7&lang=en")
    board.wait_for_selector("body[data-ready='1']")
    expect(board.locator("#sc-offers")).to_have_text("5 offers, 4 accepted")
    visits = board.locator("#sc-visits")
    expect(visits).to_have_text(re.compile(r"^\d+ visits?$"))
    n = int(visits.inner_text().split()[0])
    assert visits.inner_text() == (f"{n} visit" if n == 1 else f"{n} visits")

    board.click("#period [data-days='1']")
    expect(board.locator("#scorecard")).to_have_attribute("data-loads", "2")
    expect(board.locator("#sc-offers")).to_have_text("1 offer, 1 accepted")

    # the same page in Chinese: one form for every count
    board.goto(f"/wallboard/merchants/{hist.MERCHANT}?days=1&lang=zh-CN")
    board.wait_for_selector("body[data-ready='1']")
    expect(board.locator("#sc-offers")).to_have_text("派单 1 次，接单 1 次")
    expect(board.locator("#sc-visits")).to_have_text(re.compile(r"^\d+ 次上门$"))
    assert pages.errors == []
