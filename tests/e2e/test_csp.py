"""The Content-Security-Policy in a real browser: every page loads with no violation and
still works (its script ready, the live stream connected, the text size kept), and the
policy is really enforced (an inline script injected into a page does not run)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import PHONE, Pages, Server, login
from tests.e2e.test_console import staff_api

pytestmark = pytest.mark.e2e

#: collects violations in the page before any of its scripts run (an init script is the
#: browser's own, not subject to the page's policy)
WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}`));
"""


def watched(pages: Pages, **kw: Any) -> tuple[Page, list[str]]:
    """A page whose CSP violations (events and console errors) are collected."""
    page = pages.open(**kw)
    console: list[str] = []
    page.on(
        "console",
        lambda msg: (
            console.append(msg.text)
            if msg.type == "error" and "Content Security Policy" in msg.text
            else None
        ),
    )
    page.add_init_script(WATCH)
    return page, console


def violations(page: Page, console: list[str]) -> list[str]:
    return [*page.evaluate("window.__csp || []"), *console]


def visit(page: Page, console: list[str], path: str, ready: str = "body[data-ready='1']") -> None:
    response = page.goto(path)
    assert response is not None and response.ok, path
    policy = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy, path
    page.wait_for_selector(ready)
    page.wait_for_timeout(300)  # let late requests (the stream, charts) run
    assert violations(page, console) == [], path


def test_given_each_page_then_it_loads_with_no_csp_violation_and_works(
    pages: Pages, server: Server
) -> None:
    desk, desk_console = watched(pages)
    login(desk, "operator")
    expect(desk.locator("body[data-live='on']")).to_be_attached()  # the WebSocket connected
    assert violations(desk, desk_console) == []
    ticket = staff_api(desk, "POST", "/tickets", {"category": "medicine", "resident_id": 1})
    assert ticket["status"] == 201, ticket
    visit(desk, desk_console, f"/tickets/{ticket['body']['id']}")
    visit(desk, desk_console, "/tickets/new")
    # the text size (set before the first paint by /static/size.js) is kept
    desk.click(".sizes button[data-size='l']")
    visit(desk, desk_console, "/")
    assert desk.evaluate("document.documentElement.dataset.size") == "l"

    board, board_console = watched(pages)
    login(board, "supervisor")
    visit(board, board_console, "/wallboard")
    visit(board, board_console, "/wallboard/merchants/1")

    admin, admin_console = watched(pages)
    login(admin, "demo")
    for section in ("residents", "merchants", "users", "access-log", "login-failures"):
        visit(admin, admin_console, f"/admin/{section}")
    visit(admin, admin_console, "/simulator")
    visit(admin, admin_console, "/?lang=en")

    merchant, merchant_console = watched(pages, viewport=PHONE)
    visit(merchant, merchant_console, "/merchant")
    visit(merchant, merchant_console, "/login", ready="#login-form")


def test_given_an_inline_script_injected_into_a_page_then_it_does_not_run(
    pages: Pages, server: Server
) -> None:
    page, console = watched(pages)
    page.goto("/login")
    page.wait_for_selector("#login-form")

    page.evaluate(
        """() => { const s = document.createElement('script');
                   s.textContent = 'window.__ran = true'; document.body.append(s); }"""
    )
    page.wait_for_timeout(200)

    assert page.evaluate("window.__ran === true") is False
    assert any("script-src" in v for v in violations(page, console))
