"""The admin forms in a real browser at 1366x768: an admin adds a grid, a merchant with a
contract, a resident with two emergency contacts (after a bad phone is refused next to its
field), edits the resident and sees the change on the operator desk, and adds an operator
who then logs in. Each form is saved as a screenshot."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Pages, login, shot
from tests.e2e.test_console import simulator, staff_api

pytestmark = pytest.mark.e2e


def open_section(page: Page, section: str) -> None:
    """An admin section, ready."""
    page.goto(f"/admin/{section}")
    page.wait_for_selector("body[data-ready='1']")


def field(page: Page, name: str) -> str:
    """The selector of a form field's wrapper."""
    return f"#admin-form-box [data-field='{name}']"


def save(page: Page) -> None:
    """Submit the open form and wait until it is saved."""
    page.evaluate("document.getElementById('admin-status').replaceChildren()")
    page.locator("#admin-form-box #form-save").first.click()
    expect(page.locator("#admin-status .tag.ok")).to_be_visible()


def test_given_an_admin_when_using_every_form_then_records_reach_the_desk_and_logins_work(
    pages: Pages,
) -> None:
    admin = pages.open()
    login(admin, "demo")

    # a grid
    open_section(admin, "grids")
    admin.click("#admin-new")
    admin.fill(f"{field(admin, 'code')} input", "BG09")
    # oversized input is refused next to the field and kept; markup stays text
    too_long = "<script>alert(1)</script>" + "长" * 60
    admin.fill(f"{field(admin, 'name')} input", too_long)
    admin.locator("#admin-form-box #form-save").click()
    expect(admin.locator(f"{field(admin, 'name')} .field-error")).to_contain_text("太长")
    expect(admin.locator(f"{field(admin, 'name')} input")).to_have_value(too_long)
    admin.fill(f"{field(admin, 'name')} input", "<b>第九网格</b>")
    save(admin)
    expect(admin.locator("#admin-body tr[data-id='BG09']")).to_contain_text("<b>第九网格</b>")
    assert admin.locator("#admin-body b").count() == 0
    admin.fill(f"{field(admin, 'name')} input", "第九网格")
    admin.fill(f"{field(admin, 'community')} input", "白公路社区")
    shot(admin, "20-admin-form-grid")
    save(admin)
    expect(admin.locator("#admin-body tr[data-id='BG09']")).to_contain_text("第九网格")

    # a merchant serving it, with a contract
    open_section(admin, "merchants")
    admin.click("#admin-new")
    admin.fill(f"{field(admin, 'name')} input", "九组便民药房")
    admin.fill(f"{field(admin, 'kind')} input", "pharmacy")
    admin.select_option(f"{field(admin, 'grid_code')} select", "BG09")
    admin.fill(f"{field(admin, 'address')} input", "白公路 9 号")
    admin.fill(f"{field(admin, 'phones')} textarea", "023-5444 6100")
    admin.check(f"{field(admin, 'service_grids')} input[value='BG09']")
    admin.check(f"{field(admin, 'services')} input[value='medicine']")
    admin.fill(f"{field(admin, 'services')} input[aria-label*='价格']", "送药上门免费")
    admin.fill("#hours-6", "09:00-12:00")
    admin.fill(f"{field(admin, 'holidays')} textarea", "2026-10-01 休息")
    admin.fill(f"{field(admin, 'contract_start')} input", "2026-01-01")
    admin.fill(f"{field(admin, 'contract_end')} input", "2027-12-31")
    admin.fill(f"{field(admin, 'contract_signed_by')} input", "王主任")
    shot(admin, "21-admin-form-merchant")
    save(admin)
    row = admin.locator("#admin-body tr", has_text="九组便民药房")
    expect(row).to_contain_text("有效")

    # its contract on the contracts page: history shows the signing
    open_section(admin, "contracts")
    admin.locator("#admin-body tr", has_text="九组便民药房").locator("button.edit").click()
    expect(admin.locator("#contract-form .history")).to_contain_text("王主任")
    admin.fill(f"{field(admin, 'note')} input", "续签")
    shot(admin, "22-admin-form-contract")
    save(admin)

    # a resident with two emergency contacts; a bad phone is refused next to its field
    open_section(admin, "residents")
    admin.click("#admin-new")
    admin.fill(f"{field(admin, 'name')} input", "柏新华")
    admin.select_option(f"{field(admin, 'sex')} select", "女")
    admin.fill(f"{field(admin, 'birth_year')} input", "1941")
    admin.fill(f"{field(admin, 'phones')} input[data-col='number']", "5444")
    admin.check(f"{field(admin, 'groups')} input[value='空巢']")
    admin.select_option(f"{field(admin, 'grid_code')} select", "BG09")
    admin.fill(f"{field(admin, 'address')} input", "白公路 9 号 3 栋")
    admin.fill(f"{field(admin, 'notes')} textarea", "说话慢一点")
    admin.fill(f"{field(admin, 'medicines')} input", "硝苯地平")
    contacts = admin.locator(field(admin, "contacts"))
    for name, relation, phone in (
        ("柏大女儿", "女儿", "138 0000 1111"),
        ("邻居刘", "邻居", "13800002222"),
    ):
        contacts.locator("button.add-row").click()
        last = contacts.locator(".editor-row").last
        last.locator("input[data-col='name']").fill(name)
        last.locator("input[data-col='relation']").fill(relation)
        last.locator("input[data-col='phones']").fill(phone)
    admin.locator("#admin-form-box #form-save").click()
    phone_error = admin.locator(f"{field(admin, 'phones')} .field-error")
    expect(phone_error).to_contain_text("电话号码不对")
    expect(admin.locator(field(admin, "phones"))).to_have_class("field wide rows-editor has-error")
    # nothing typed was lost
    expect(admin.locator(f"{field(admin, 'name')} input")).to_have_value("柏新华")
    assert contacts.locator(".editor-row").count() == 2
    shot(admin, "23-admin-form-resident-bad-phone")
    admin.fill(f"{field(admin, 'phones')} input[data-col='number']", "023-5444 8888")
    save(admin)
    expect(admin.locator("#admin-body")).to_contain_text("柏新华")
    shot(admin, "24-admin-form-resident")

    # edit the resident: the operator desk sees the new address and note
    admin.fill(f"{field(admin, 'address')} input", "白公路 99 号 2 栋")
    admin.fill(f"{field(admin, 'notes')} textarea", "耳背，说话慢一点")
    admin.select_option(f"{field(admin, 'status')} select", "registered")
    save(admin)
    desk = pages.open()
    login(desk, "operator")
    found = staff_api(desk, "GET", "/residents?q=柏新华")
    assert [r["address"] for r in found["body"]] == ["白公路 99 号 2 栋"]
    sim = simulator(pages)
    sim.fill("#dial-number", "023-5444 8888")
    sim.click("#dial")
    expect(desk.locator("#card .name")).to_have_text("柏新华")
    expect(desk.locator("#card")).to_contain_text("白公路 99 号 2 栋")
    expect(desk.locator("#card")).to_contain_text("耳背，说话慢一点")
    expect(desk.locator("#card")).to_contain_text("柏大女儿")
    shot(desk, "25-desk-sees-admin-edit")

    # the contact cascade on its own page: the neighbour moves first
    open_section(admin, "contacts")
    admin.fill("#admin-q", "柏新华")
    admin.click("#admin-search button")
    admin.locator("#admin-body tr", has_text="柏新华").locator("button.edit").click()
    rows = admin.locator("#contacts-form .editor-row")
    expect(rows).to_have_count(2)
    rows.nth(1).locator("button.up").click()
    expect(rows.nth(0).locator("input[data-col='name']")).to_have_value("邻居刘")
    # the daughter hears of accepts and arrivals too, by a call, even at night
    daughter = rows.nth(1)
    expect(daughter.locator("select[data-col='notify_events'] option:checked")).to_have_count(3)
    daughter.locator("select[data-col='notify_events']").select_option(
        ["accepted", "arrived", "late", "no_show", "emergency"]
    )
    daughter.locator("select[data-col='notify_by']").select_option("call")
    daughter.locator("input[data-col='notify_quiet']").uncheck()
    shot(admin, "26-admin-form-contacts")
    save(admin)
    expect(
        admin.locator("#contacts-form .editor-row").first.locator("input[data-col='name']")
    ).to_have_value("邻居刘")
    card = staff_api(desk, "GET", f"/residents/{found['body'][0]['id']}?reason=check")["body"]
    assert [(c["notify_events"], c["notify_by"], c["notify_quiet"]) for c in card["contacts"]] == [
        (["late", "no_show", "emergency"], "text", True),
        (["accepted", "arrived", "late", "no_show", "emergency"], "call", False),
    ]

    # an operator login, who then logs in
    open_section(admin, "users")
    admin.click("#admin-new")
    admin.fill(f"{field(admin, 'username')} input", "op9")
    admin.fill(f"{field(admin, 'display_name')} input", "话务员小九")
    admin.select_option(f"{field(admin, 'role')} select", "operator")
    expect(admin.locator(field(admin, "merchant_id"))).to_be_hidden()
    admin.fill(f"{field(admin, 'password')} input", "op9-secret-pass")
    shot(admin, "27-admin-form-user")
    save(admin)
    expect(admin.locator("#admin-body")).to_contain_text("话务员小九")
    newcomer = pages.open()
    newcomer.goto("/login")
    newcomer.fill("#username", "op9")
    newcomer.fill("#password", "op9-secret-pass")
    newcomer.click("#login-button")
    newcomer.wait_for_url("**/")
    newcomer.wait_for_selector("body[data-ready='1']")
    expect(newcomer.locator("#who")).to_have_text("话务员小九")

    # the catalog form, and the access log filtered by user
    open_section(admin, "catalog")
    admin.locator("#admin-body tr", has_text="送药").locator("button.edit").click()
    expect(admin.locator(f"{field(admin, 'code')} input")).to_be_disabled()
    shot(admin, "28-admin-form-catalog")
    open_section(admin, "access-log")
    admin.fill("#al-user", "operator")
    admin.click("#al-filter button[type=submit]")
    expect(admin.locator("#admin-body")).to_have_attribute(
        "data-query", "limit=50&username=operator"
    )
    users = admin.locator("#admin-body table.data tr td:nth-child(2)").all_inner_texts()
    assert users and set(users) == {"operator"}, users
    shot(admin, "29-admin-access-log")
    assert pages.errors == []
