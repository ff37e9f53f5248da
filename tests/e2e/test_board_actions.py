"""Acting on tickets from the board, in a real browser: each row has the ticket page's
buttons (dispatch again, note, reassign, call the resident, cancel) making the same API
calls, greyed out where the ticket's state does not allow them (as on its page); a form
opened under a row keeps what was typed while the board refreshes."""

from __future__ import annotations

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import Pages, login, shot
from tests.e2e.test_console import staff_api

pytestmark = pytest.mark.e2e


def row(desk: Page, ticket_id: int) -> Locator:
    """A ticket's row on the board (not the form under it)."""
    return desk.locator(f"#tickets tr[data-ticket-id='{ticket_id}']:not(.board-form)")


def names(desk: Page, ticket_id: int) -> list[str]:
    """The ticket's timeline, by the API."""
    detail = staff_api(desk, "GET", f"/tickets/{ticket_id}")["body"]
    return [e["name"] for e in detail["timeline"]]


def test_given_the_board_when_the_operator_acts_on_a_row_then_note_reassign_call_dispatch_cancel(
    pages: Pages,
) -> None:
    desk = pages.open()
    login(desk, "operator")
    need = {"category": "medicine", "resident_id": 1, "description": "降压药"}
    ticket = staff_api(desk, "POST", "/tickets", need)["body"]
    tid = ticket["id"]
    mine = row(desk, tid)
    expect(mine).to_have_attribute("data-state", "new")
    buttons = mine.locator("td.row-actions button")
    expect(buttons).to_have_text(["重新派单", "备注", "转派", "呼叫老人", "取消工单"])
    expect(desk.locator("#board-panel thead th").last).to_have_text("操作")

    # a note: typed in the form under the row; a board refresh meanwhile keeps the text
    mine.locator(".b-note").click()
    form = desk.locator(f"#tickets tr.board-form[data-ticket-id='{tid}']")
    form.locator("textarea").fill("女儿下午在家，可以开门")
    other = staff_api(desk, "POST", "/tickets", {**need, "description": "买米"})["body"]
    expect(row(desk, other["id"])).to_be_visible()
    expect(form.locator("textarea")).to_have_value("女儿下午在家，可以开门")
    form.locator("button[type='submit']").click()
    expect(desk.locator("#board-msg")).to_have_text("已添加备注")
    expect(form).to_have_count(0)
    assert "ticket.note" in names(desk, tid)

    # handed to the supervisor
    mine.locator(".b-assign").click()
    form.locator("select").select_option(label="班长老张 · 未登录")
    form.locator("button[type='submit']").click()
    expect(desk.locator("#board-msg")).to_have_text("已转给 班长老张")
    assert "ticket.assigned" in names(desk, tid)

    # the resident rung: one button per phone; the operator's desk rings first
    mine.locator(".b-call").click()
    expect(form.locator(".call-phone").first).to_contain_text("呼叫老人")
    shot(desk, "62-board-row-call")
    form.locator(".call-phone").first.click()
    expect(desk.locator("#board-msg")).to_contain_text("正在呼叫")

    # dispatched again from the row: the cascade starts, the button goes grey
    mine.locator(".b-redispatch").click()
    expect(desk.locator("#board-msg")).to_have_text("已重新派单")
    expect(mine).not_to_have_attribute("data-state", "new")
    expect(mine.locator(".b-redispatch")).to_be_disabled()
    expect(mine.locator(".b-cancel")).to_be_enabled()
    expect(mine.locator(".b-assign")).to_be_enabled()
    assert "ticket.matching" in names(desk, tid)

    # cancelled with a reason: an empty one is refused by the form; then it leaves the
    # open board
    mine.locator(".b-cancel").click()
    form.locator("button[type='submit']").click()
    assert staff_api(desk, "GET", f"/tickets/{tid}")["body"]["state"] != "cancelled"
    form.locator("input").fill("老人自己去药店买了")
    form.locator("button[type='submit']").click()
    expect(desk.locator("#board-msg")).to_have_text("工单已取消")
    expect(mine).to_have_count(0)
    detail = staff_api(desk, "GET", f"/tickets/{tid}")["body"]
    assert detail["state"] == "cancelled"
    cancelled = next(e for e in detail["timeline"] if e["name"] == "ticket.cancelled")
    assert "老人自己去药店买了" in str(cancelled["data"])
    assert pages.errors == []
