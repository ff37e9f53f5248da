"""A notice to a grid, in a real browser on the simulator: the supervisor writes it with a
question and sends it; the resident's phone rings, they press 1; the progress bar, the
counts and the answers follow live; the recipients' CSV is one click away."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Pages, login, shot
from tests.e2e.test_console import press, sim_call, simulator, staff_api

pytestmark = pytest.mark.e2e

RESIDENT = 299  # moved into a grid of its own, so the notice rings one phone only


def test_given_a_notice_with_a_question_when_the_resident_presses_1_then_progress_shows_it(
    pages: Pages,
) -> None:
    sim = simulator(pages)
    made = staff_api(sim, "POST", "/grids", {"code": "N1", "name": "通知试点网格"})
    assert made["status"] == 201, made
    card = staff_api(sim, "GET", f"/residents/{RESIDENT}?reason=edit")["body"]
    moved = staff_api(
        sim,
        "PATCH",
        f"/residents/{RESIDENT}",
        {"grid_code": "N1", "version": str(card["revision"])},
    )
    assert moved["status"] == 200, moved
    # the notice rings a mobile first, else the first phone
    mobiles = [p["number"] for p in card["phones"] if p["kind"] == "mobile"]
    number = (mobiles or [card["phones"][0]["number"]])[0]

    desk = pages.open()
    login(desk, "supervisor", landing="/")
    desk.goto("/notices")
    desk.wait_for_selector("body[data-ready='1']")
    desk.fill("#n-title", "健康讲座")
    desk.fill("#n-text", "本周六上午九点，社区活动室有健康讲座。")
    desk.fill("#n-question", "您参加吗？")
    desk.check("#n-grids input[value='N1']")
    desk.click("#n-send")
    notice = desk.locator("#notices li.notice").first
    expect(notice).to_contain_text("健康讲座")
    expect(notice.locator(".counts")).to_contain_text("共 1 人")

    phone = sim_call(sim, number=number, direction="out", state="ringing")
    phone.locator(".answer").click()
    press(sim_call(sim, number=number, direction="out"), "1")
    expect(notice.locator(".answers")).to_contain_text("是 1")
    expect(notice.locator(".share")).to_have_text("100%")
    expect(notice).to_have_attribute("data-state", "done")
    expect(notice.locator("a")).to_have_attribute(
        "href", f"/api/v1/campaigns/{notice.get_attribute('data-id')}/recipients.csv"
    )
    shot(desk, "41-notices")
    assert pages.errors == []
