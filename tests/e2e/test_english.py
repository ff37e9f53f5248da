"""An English pass over every console page at 1366x768 (the merchant's at 375 px): nothing
scrolls sideways, no key button or label is clipped, no i18n key shows in place of a word,
and no Chinese shows except what comes from the data (names, addresses, grids)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, Response, expect

from operator_console.i18n import texts
from operator_console.pages import ADMIN_SECTIONS
from tests.e2e.conftest import DESK, PHONE, Pages, Server, login, shot
from tests.e2e.test_console import RESIDENT_1_PHONE, press, sim_call, simulator, staff_api

pytestmark = pytest.mark.e2e

EN = texts("en")
#: keys that could show in place of a word (a key equal to its own English word cannot)
KEYS = sorted(k for k, v in EN.items() if k != v)
#: the language switch names the other language in that language; 医敬 is the service's name
ALWAYS_ALLOWED = [EN["language"], "医敬"]

AUDIT = """([keys, allowed]) => {
  const problems = [];
  const se = document.scrollingElement;
  if (se.scrollWidth > window.innerWidth) {
    problems.push(`page scrolls sideways: ${se.scrollWidth} > ${window.innerWidth}`);
  }
  const visible = (el) => {
    if (el.closest('[hidden], script, style, template')) return false;
    const r = el.getBoundingClientRect();
    const s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none';
  };
  const name = (el) => {
    const id = el.id ? `#${el.id}` : '';
    const cls = el.classList.length ? `.${[...el.classList].join('.')}` : '';
    return `${el.tagName.toLowerCase()}${id}${cls} "${(el.innerText || '').trim().slice(0, 30)}"`;
  };
  const keySet = new Set(keys);
  const cjk = /[\\u3400-\\u9fff\\uf900-\\ufaff\\u3000-\\u303f\\uff00-\\uffef]+/g;
  const check = (text, where) => {
    const t = text.trim();
    if (!t) return;
    if (keySet.has(t)) problems.push(`i18n key shown: ${t} in ${where}`);
    for (const run of t.match(cjk) || []) {
      // Chinese punctuation is allowed inside Chinese data, not between English words
      const punct = /^[\\u3000-\\u303f\\uff00-\\uffef]+$/.test(run);
      const between = /[\\w\\s][\\u3000-\\u303f\\uff00-\\uffef]+[+\\w]/.test(t);
      if (punct && (!between || allowed.includes(t))) continue;
      if (!allowed.some((a) => a.includes(run))) {
        problems.push(`Chinese "${run}" in ${where}: "${t.slice(0, 50)}"`);
      }
    }
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const el = walker.currentNode.parentElement;
    if (el && el.tagName !== 'OPTION' && visible(el)) check(walker.currentNode.nodeValue, name(el));
  }
  for (const sel of document.querySelectorAll('select')) {
    if (!visible(sel)) continue;
    for (const opt of sel.options) check(opt.text, `${name(sel)} option`);
  }
  for (const el of document.querySelectorAll('[placeholder], [title], [aria-label]')) {
    if (!visible(el)) continue;
    for (const attr of ['placeholder', 'title', 'aria-label']) {
      if (el.hasAttribute(attr)) check(el.getAttribute(attr), `${name(el)} @${attr}`);
    }
  }
  for (const el of document.querySelectorAll('input[type=submit], input[type=button]')) {
    if (visible(el)) check(el.value, name(el));
  }
  const keyed = 'button, label, th, nav a, .tabs a, .nav a, select, h1, h2, h3, .tag';
  for (const el of document.querySelectorAll(keyed)) {
    if (!visible(el)) continue;
    if (el.scrollWidth > el.clientWidth + 1) {
      problems.push(`clipped ${name(el)}: ${el.scrollWidth} > ${el.clientWidth}`);
    }
    const r = el.getBoundingClientRect();
    if (r.right > window.innerWidth + 1) problems.push(`off screen ${name(el)}: ${r.right}`);
  }
  // a control wider than the card it sits in is cut off by the card's edge
  for (const el of document.querySelectorAll(`${keyed}, input, textarea`)) {
    const box = el.closest('.card');
    if (!box || !visible(el)) continue;
    const right = el.getBoundingClientRect().right;
    const edge = box.getBoundingClientRect().right;
    if (right > edge + 1) problems.push(`sticks out of its card ${name(el)}: ${right} > ${edge}`);
  }
  return [...new Set(problems)];
}"""


class DataWords:
    """Every string the API sent a page: names, addresses and grids come from there."""

    #: API fields that are the console's own words or coded values, not names: these must
    #: not excuse Chinese
    NOT_DATA = frozenset(
        {"message", "error_id", "reasons", "why", "label", "hint", "sex", "groups"}
    )

    def __init__(self) -> None:
        self.words: set[str] = set(ALWAYS_ALLOWED)

    def watch(self, page: Page) -> Page:
        """Collect the strings of every JSON answer the page gets from the API."""
        page.on("response", self._collect)
        page.on(
            "websocket",
            lambda ws: ws.on("framereceived", lambda frame: self._frame(frame)),
        )
        return page

    def _frame(self, frame: Any) -> None:
        import json

        try:
            self._walk(json.loads(frame if isinstance(frame, str) else frame["payload"]))
        except (ValueError, TypeError, KeyError):
            return

    def _collect(self, response: Response) -> None:
        if "/api/v1/" not in response.url or "json" not in response.headers.get("content-type", ""):
            return
        try:
            self._walk(response.json())
        except Exception:  # a body already gone (navigation) teaches nothing
            return

    def _walk(self, value: Any, key: str = "") -> None:
        if isinstance(value, str):
            if key not in self.NOT_DATA:
                self.words.add(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                self._walk(v, k)
        elif isinstance(value, list):
            for v in value:
                self._walk(v, key)


def audit(page: Page, data: DataWords, name: str) -> list[str]:
    """Save the screenshot, then list what is wrong with the page in English."""
    page.wait_for_timeout(300)  # let late fills land before judging the page
    shot(page, f"en-{name}")
    problems: list[str] = page.evaluate(AUDIT, [KEYS, sorted(data.words)])
    return [f"{name}: {p}" for p in problems]


def test_given_english_when_staff_pages_open_at_1366_then_each_fits_and_reads_english(
    pages: Pages, server: Server
) -> None:
    data = DataWords()
    problems: list[str] = []
    page = data.watch(pages.open())
    page.goto("/login?lang=en")
    page.wait_for_selector("#login-button")
    problems += audit(page, data, "login")

    login(page, "operator")
    expect(page.locator("#queue-h")).to_have_text(EN["queue"])
    problems += audit(page, data, "desk")

    # a resident rings: the card pops on the desk
    sim = simulator(pages)
    sim.fill("#dial-number", RESIDENT_1_PHONE)
    sim.click("#dial")
    inbound = sim_call(sim, number=RESIDENT_1_PHONE, direction="in")
    expect(page.locator("#card .name")).not_to_be_empty()
    problems += audit(page, data, "desk-ringing")
    press(inbound, "0")
    expect(page.locator("#queue li[data-state='queued'] .answer")).to_be_visible()
    page.keyboard.press("F2")
    expect(page.locator("#hangup")).to_be_enabled()
    page.click("#categories button[data-code='medicine']")
    page.fill("#description", "two boxes")
    page.click("#create-ticket")
    expect(page.locator("#candidates li.candidate").first).to_be_visible()
    problems += audit(page, data, "desk-candidates")
    ticket_id = page.locator("#current-ticket a").inner_text().lstrip("#")

    ticket = data.watch(pages.open())
    login(ticket, "operator")
    ticket.goto(f"/tickets/{ticket_id}?lang=en")
    ticket.wait_for_selector("body[data-ready='1']")
    expect(ticket.locator("#timeline li").first).to_be_visible()
    # the category by its name, not its code; the timeline in words, not event names
    expect(ticket.locator("#ticket-fields")).to_contain_text("Medicine delivery")
    expect(ticket.locator("#timeline li b").first).to_have_text("Ticket created")
    problems += audit(ticket, data, "ticket")
    ticket.goto("/tickets/new?lang=en")
    ticket.wait_for_selector("body[data-ready='1']")
    expect(ticket.locator("#wk-h")).to_have_text(EN["wk_title"])
    problems += audit(ticket, data, "walk-in")

    board = data.watch(pages.open())
    login(board, "supervisor")
    board.goto("/wallboard?lang=en")
    board.wait_for_selector("body[data-ready='1']")
    expect(board.locator("#figures")).to_have_attribute("data-available", "yes")
    problems += audit(board, data, "wallboard")
    # the live tiles fit above the fold at 1366x768, a long merchant search list included;
    # only the period charts may scroll
    board.fill("#sc-search", "药房")
    expect(board.locator("#sc-results li").nth(3)).to_be_visible()
    shot(board, "en-wallboard-search")
    bottoms = board.evaluate(
        """() => [...document.querySelectorAll('#wall > .tile:not(.wall-full)')]
            .map((t) => t.getBoundingClientRect().bottom)"""
    )
    # 13 tiles: today's emergencies (issue 14) joined the 12 of before
    assert len(bottoms) == 13 and max(bottoms) <= DESK["height"], bottoms
    assert not problems, "\n".join(problems)
    assert pages.errors == []


def test_given_english_when_each_admin_section_opens_at_1366_then_it_fits_and_reads_english(
    pages: Pages, server: Server
) -> None:
    data = DataWords()
    problems: list[str] = []
    admin = data.watch(pages.open())
    admin.goto("/login?lang=en")
    login(admin, "demo")
    for section, _key in ADMIN_SECTIONS:
        admin.goto(f"/admin/{section}?lang=en")
        admin.wait_for_selector("body[data-ready='1']")
        if section in ("residents", "contacts"):
            admin.fill("#admin-q", "1")
            admin.click("#admin-search button")
            expect(admin.locator("#admin-body table.data tr").nth(1)).to_be_visible()
        elif section != "import":
            expect(admin.locator("#admin")).to_have_attribute("data-available", "yes")
        problems += audit(admin, data, f"admin-{section}")
        if section == "merchants":
            # kinds in words, not codes
            expect(admin.locator("#admin-body table.data")).to_contain_text(EN["kind_pharmacy"])
        if section in ("residents", "contacts"):
            # a resident has a 姓名 (a person's name), not a 名称
            assert admin.locator("#admin-body th").nth(1).inner_text() == EN["col_person_name"]
    assert not problems, "\n".join(problems)
    admin.goto("/admin/residents?lang=zh-CN")
    admin.wait_for_selector("body[data-ready='1']")
    admin.fill("#admin-q", "1")
    admin.click("#admin-search button")
    expect(admin.locator("#admin-body th").nth(1)).to_have_text("姓名")
    assert pages.errors == []


def test_given_english_when_a_merchant_works_on_a_375px_phone_then_it_fits_and_reads_english(
    pages: Pages, server: Server
) -> None:
    data = DataWords()
    problems: list[str] = []
    desk = data.watch(pages.open())
    login(desk, "operator")
    need = {"category": "medicine", "resident_id": 1, "description": "blood pressure pills"}
    ticket = staff_api(desk, "POST", "/tickets", need)["body"]
    ranked = staff_api(desk, "GET", f"/tickets/{ticket['id']}/candidates")["body"]
    merchant_id = next(c["merchant_id"] for c in ranked if c["eligible"])
    merchant_phone = f"+86139{merchant_id:08d}"
    phone = data.watch(pages.open(PHONE))
    phone.goto("/merchant?lang=en")
    phone.wait_for_selector("body[data-ready='1']")
    problems += audit(phone, data, "merchant-login")
    phone.fill("#m-phone", merchant_phone)
    phone.click("#send-text")
    expect(phone.locator("#code-verify")).to_be_visible()
    problems += audit(phone, data, "merchant-code")

    sim = simulator(pages)
    link = sim.locator("#outbox li a").first.get_attribute("href")
    assert link is not None
    phone.goto(link)
    phone.wait_for_selector("body[data-ready='1']")
    phone.click("#use-link")
    phone.wait_for_selector("#orders-view")
    staff_api(desk, "POST", f"/tickets/{ticket['id']}/dispatch", {"merchant_ids": [merchant_id]})
    offer = phone.locator(f"#offers .order[data-ticket-id='{ticket['id']}']")
    expect(offer).to_be_visible()
    problems += audit(phone, data, "merchant-offer")
    offer.locator("button.accept").click()
    order = phone.locator(f"#orders .order[data-ticket-id='{ticket['id']}']")
    expect(order).to_have_attribute("data-state", "accepted")
    problems += audit(phone, data, "merchant-accepted")
    assert not problems, "\n".join(problems)
    assert pages.errors == []
