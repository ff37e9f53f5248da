"""API errors are worded by the browser from their machine codes, in the page's language:
a field the server refuses (pydantic's `greater_than_equal`) and a domain rule (one phone,
one resident: `phone_taken`) show the catalog's words next to the field, in zh-CN and in
English, never the server's English message."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from operator_console.i18n import texts
from tests.e2e.conftest import Pages, login, shot
from tests.e2e.test_admin_forms import field, open_section
from tests.e2e.test_console import staff_api

pytestmark = pytest.mark.e2e


def fill_new_resident(page: Page, *, birth_year: str, phone: str) -> None:
    """The new-resident form with a name, a grid and the given year and phone."""
    page.fill(f"{field(page, 'name')} input", "柏新华")
    page.fill(f"{field(page, 'birth_year')} input", birth_year)
    page.fill(f"{field(page, 'phones')} input[data-col='number']", phone)


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_given_a_refused_field_and_a_taken_phone_then_the_page_words_them_in_its_language(
    pages: Pages, lang: str
) -> None:
    words = texts(lang)
    admin = pages.open()
    login(admin, "demo")
    taken = staff_api(admin, "GET", "/sim/phones")["body"][0]["number"]
    owner = staff_api(admin, "GET", f"/residents?q={taken[-8:]}")["body"][0]["id"]
    admin.goto(f"/admin/residents?lang={lang}")
    admin.wait_for_selector("body[data-ready='1']")
    open_section(admin, "residents")
    admin.click("#admin-new")

    # pydantic refuses the year: `greater_than_equal` with ctx ge=1900
    fill_new_resident(admin, birth_year="1800", phone="023-5444 8877")
    admin.locator("#admin-form-box #form-save").click()
    year_error = admin.locator(f"{field(admin, 'birth_year')} .field-error")
    expect(year_error).to_have_text(words["e_greater_than_equal"].format(ge=1900))
    assert "greater than or equal" not in year_error.inner_text()
    shot(admin, f"40-error-words-field-{lang}")

    # the registry refuses the phone: `phone_taken`, naming the resident who has it
    fill_new_resident(admin, birth_year="1941", phone=taken)
    admin.locator("#admin-form-box #form-save").click()
    phone_error = admin.locator(f"{field(admin, 'phones')} .field-error")
    expect(phone_error).to_have_text(words["e_phone_taken"].format(id=owner))
    assert "already belongs" not in phone_error.inner_text()
    expect(admin.locator(f"{field(admin, 'birth_year')} .field-error")).to_have_text("")
    shot(admin, f"41-error-words-domain-{lang}")
    assert pages.errors == []
