"""The pages an operator may land on by mistake, in a real browser: a supervisor's page says
"not allowed" in the page's language, a ticket that does not exist says "not found", and
every page has its icon (served with the static files, within the CSP)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Pages, login, shot

pytestmark = pytest.mark.e2e


def test_given_an_operator_when_opening_the_wallboard_then_a_page_says_it_is_not_allowed(
    pages: Pages,
) -> None:
    page = pages.open()
    login(page, "operator")
    response = page.goto("/wallboard")
    assert response is not None and response.status == 403
    assert "text/html" in response.headers["content-type"]
    expect(page.locator("#page-error h2")).to_have_text("没有权限")
    expect(page.locator("#page-error")).to_contain_text("班长")
    expect(page.locator("#page-error a[href='/']")).to_have_text("回到工作台")
    assert "error_id" not in page.content()
    shot(page, "44-wallboard-not-allowed")
    page.click("#lang-switch")
    expect(page.locator("#page-error h2")).to_have_text("Not allowed")
    expect(page.locator("#page-error")).to_contain_text("supervisor")
    assert pages.errors == []


def test_given_a_ticket_that_does_not_exist_when_opened_then_a_page_says_not_found(
    pages: Pages,
) -> None:
    page = pages.open()
    login(page, "operator")
    response = page.goto("/tickets/9999")
    assert response is not None and response.status == 404
    expect(page.locator("#page-error h2")).to_have_text("找不到")
    expect(page.locator("#page-error")).to_contain_text("#9999")
    page.goto("/tickets/9999?lang=en")
    expect(page.locator("#page-error")).to_contain_text("There is no ticket #9999")
    shot(page, "45-ticket-not-found")
    assert pages.errors == []


def test_given_any_page_when_it_loads_then_its_icon_is_served_from_static(pages: Pages) -> None:
    page = pages.open()
    page.goto("/login")
    href = page.locator("link[rel='icon']").get_attribute("href")
    assert href is not None and href.startswith("/static/")
    icon = page.request.get(href)
    assert icon.ok and icon.headers["content-type"].startswith("image/")
    # browsers that ask for /favicon.ico on their own find it too
    legacy = page.request.get("/favicon.ico")
    assert legacy.ok and legacy.headers["content-type"].startswith("image/")
    assert pages.errors == []
