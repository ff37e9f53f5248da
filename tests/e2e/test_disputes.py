"""A merchant disputes a rating from their phone page, and a supervisor overturns it on
the merchant's scorecard page, in a real browser (issue 16)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests import history as hist
from tests.e2e.conftest import PHONE, Pages, Server, login, shot
from tests.e2e.test_wallboard_charts import seed

pytestmark = pytest.mark.e2e


def test_given_a_rating_when_the_merchant_disputes_it_then_the_supervisor_overturns_it(
    pages: Pages, server: Server
) -> None:
    seed(server)
    phone = pages.open(PHONE)
    login(phone, "merchant1", "/merchant")
    rated = phone.locator("#ratings article[data-ticket-id='3'][data-kind='rating']")
    expect(rated).to_contain_text("基本满意")
    expect(phone.locator("#ratings")).not_to_contain_text("resident")
    rated.locator("button.dispute").click()
    rated.locator("textarea[name=reason]").fill("老人当天不在家，是邻居代收")
    rated.locator("button.send-dispute").click()
    expect(rated).to_have_attribute("data-dispute", "open")
    expect(rated).to_contain_text("申诉处理中")
    shot(phone, "16-merchant-dispute")

    board = pages.open()
    login(board, "supervisor")
    board.goto(f"/wallboard/merchants/{hist.MERCHANT}?days=7")
    board.wait_for_selector("body[data-ready='1']")
    item = board.locator("#sc-disputes li[data-dispute-id]")
    expect(item).to_contain_text("老人当天不在家")
    item.locator("input").fill("已电话核实")
    item.locator("button.overturn").click()
    expect(board.locator("#sc-disputes")).to_contain_text("暂无待处理的申诉")
    expect(board.locator("#sc-orders tr[data-ticket-id='3']")).to_contain_text("申诉成立")
    expect(board.locator("#sc-disputed")).to_contain_text("撤销 1")
    shot(board, "16-scorecard-disputes")

    phone.reload()
    phone.wait_for_selector("body[data-ready='1']")
    expect(rated).to_have_attribute("data-dispute", "overturned")
    expect(rated).to_contain_text("已电话核实")
    assert pages.errors == []
