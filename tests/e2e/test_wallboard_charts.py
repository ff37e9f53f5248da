"""The wallboard's period figures as charts and the merchant scorecard, in a real browser,
on a known history written into the server's database (tests/history.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import create_engine, insert

from dispatch.models import Offer, Ticket
from eventlog.clock import LOCAL_TZ
from eventlog.models import Event
from registry.catalog import default_catalog
from tests import history as hist
from tests.e2e.conftest import Pages, Server, login, shot
from tests.e2e.test_console import staff_api

pytestmark = pytest.mark.e2e

WALL = {"width": 1920, "height": 1080}


def seed(server: Server) -> None:
    """Write the known history into the running server's SQLite database."""
    rows = hist.history(datetime.now(UTC))
    engine = create_engine(f"sqlite:///{Path(server.data_dir) / 'yijing.db'}")
    try:
        with engine.begin() as conn:
            conn.execute(insert(Ticket), rows.tickets)
            conn.execute(insert(Offer), rows.offers)
            conn.execute(insert(Event), rows.events)
    finally:
        engine.dispose()


def bars(page: Page, chart: str, series: str = "") -> list[dict[str, Any]]:
    """The bars of a chart: key, series and value of each, in drawing order."""
    selector = f"#{chart} svg rect.chart-bar" + (f".{series}" if series else "")
    result: list[dict[str, Any]] = page.eval_on_selector_all(
        selector,
        "rs => rs.map(r => ({key: r.dataset.key, series: r.dataset.series,"
        " value: Number(r.dataset.value)}))",
    )
    return result


def wait_for_period(page: Page, query: str) -> None:
    """Wait until the figures of a period are drawn."""
    expect(page.locator("#figures")).to_have_attribute("data-period", query)
    expect(page.locator("#figures")).to_have_attribute("data-available", "yes")


def local_day(days_ago: int) -> str:
    """A local date, YYYY-MM-DD, some days before today."""
    return (datetime.now(LOCAL_TZ).date() - timedelta(days=days_ago)).isoformat()


def test_given_a_known_history_when_the_wallboard_opens_then_the_charts_show_it_by_period(
    pages: Pages, server: Server
) -> None:
    seed(server)
    board = pages.open()
    login(board, "supervisor")
    board.goto("/wallboard")
    board.wait_for_selector("body[data-ready='1']")
    wait_for_period(board, "days=7")

    # the week: totals, two bars per day (received, closed), the satisfied rate as a line
    expect(board.locator(".kpi[data-key='received'] dd")).to_have_text("7")
    expect(board.locator(".kpi[data-key='closed'] dd")).to_have_text("6")
    expect(board.locator(".kpi[data-key='satisfied'] dd")).to_have_text("75.0%")
    expect(board.locator("#chart-day figcaption")).to_have_text("每日受理与办结")
    expect(board.locator("#chart-day svg > title")).to_have_text("每日受理与办结")
    days = [local_day(n) for n in range(6, -1, -1)]
    received = bars(board, "chart-day", "received")
    closed = bars(board, "chart-day", "closed")
    assert [b["key"] for b in received] == days
    assert [(r["value"], c["value"]) for r, c in zip(received, closed, strict=True)] == (
        hist.WEEK_BY_DAY
    )
    assert len(bars(board, "chart-day")) == 14
    # days with rated visits only: today 1 of 1 satisfied, yesterday 2 of 3
    points = board.eval_on_selector_all(
        "#chart-day svg circle.point[data-key]",
        "cs => cs.map(c => [c.dataset.key, c.dataset.value])",
    )
    assert points == [[local_day(1), "66.7"], [local_day(0), "100"]]
    expect(board.locator("#chart-day svg path.rate-line")).to_have_count(1)
    expect(board.locator("#chart-day svg text.axis-label")).to_have_count(3)
    expect(board.locator("#chart-day svg rect.chart-bar >> nth=0 >> title")).to_have_text(
        f"{days[0]} · 受理: 0"
    )
    # the same numbers in a hidden table for screen readers
    expect(board.locator("#chart-day table.visually-hidden tbody tr")).to_have_count(7)
    expect(board.locator("#chart-day table.visually-hidden")).to_be_attached()

    by_category = (
        {b["key"]: b["value"] for b in bars(board, "chart-category", "received")},
        {b["key"]: b["value"] for b in bars(board, "chart-category", "closed")},
    )
    assert {k: (by_category[0][k], by_category[1][k]) for k in by_category[0]} == (
        hist.WEEK_BY_CATEGORY
    )
    names = {c.code: c.name_zh for c in default_catalog()}
    expect(board.locator("#chart-category svg .axis.x text").first).to_have_text(names["groceries"])
    assert len(bars(board, "chart-grid")) == 2 * len(hist.WEEK_BY_GRID)
    grid_received = {b["key"]: b["value"] for b in bars(board, "chart-grid", "received")}
    assert grid_received == {k: v[0] for k, v in hist.WEEK_BY_GRID.items()}
    expect(board.locator("#chart-grid svg .axis.x text").first).to_have_text("第一网格")
    # nothing runs off the side of a 1366x768 laptop; the day chart takes a row of its own
    assert board.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    day_box = board.locator("#chart-day svg").bounding_box()
    category_box = board.locator("#chart-category svg").bounding_box()
    assert day_box is not None and category_box is not None
    assert day_box["width"] > 1200 and category_box["y"] > day_box["y"] + day_box["height"]
    shot(board, "10-wallboard-charts")

    # thirty days take in the older ticket; today only today's
    board.click("#period [data-days='30']")
    wait_for_period(board, "days=30")
    assert len(bars(board, "chart-day")) == 60
    assert len(bars(board, "chart-category", "received")) == 5
    expect(board.locator(".kpi[data-key='received'] dd")).to_have_text("8")
    board.click("#period [data-days='1']")
    wait_for_period(board, "days=1")
    assert [b["value"] for b in bars(board, "chart-day")] == [2, 1]
    assert sorted(b["key"] for b in bars(board, "chart-category", "received")) == [
        "groceries",
        "medicine",
    ]
    # two chosen dates, both included
    board.click("#period [data-custom]")
    board.fill("#period-from", local_day(3))
    board.fill("#period-to", local_day(1))
    board.click("#period-apply")
    wait_for_period(board, f"from={local_day(3)}&to={local_day(1)}")
    assert [b["value"] for b in bars(board, "chart-day", "received")] == [2, 0, 3]
    expect(board.locator("#period-range")).to_have_text(f"{local_day(3)} 至 {local_day(1)}")

    # a new ticket redraws the charts live
    board.click("#period [data-days='7']")
    wait_for_period(board, "days=7")
    loads = int(board.locator("#figures").get_attribute("data-loads") or "0")
    made = staff_api(board, "POST", "/tickets", {"category": "water", "description": "e2e"})
    assert made["status"] == 201, made
    expect(board.locator(".kpi[data-key='received'] dd")).to_have_text("8")
    assert int(board.locator("#figures").get_attribute("data-loads") or "0") > loads
    assert bars(board, "chart-day", "received")[-1]["value"] == 3

    # a wall screen, in English: the charts take the width, the words follow the language
    wall = pages.open(WALL)
    login(wall, "supervisor")
    wall.goto("/wallboard?lang=en&days=30")
    wall.wait_for_selector("body[data-ready='1']")
    wait_for_period(wall, "days=30")
    expect(wall.locator("#chart-day figcaption")).to_have_text("Received and closed per day")
    # grid names are the community's own; the new ticket has no resident, so no grid
    ticks = wall.locator("#chart-grid svg .axis.x .tick text")
    expect(ticks.first).to_have_text("第一网格")
    expect(ticks.last).to_have_text("none")
    expect(wall.locator("#chart-category svg .axis.x .tick title").first).to_have_text(
        "Doctor home visit"
    )
    # the three charts side by side, the one by day twice as wide, all above the fold
    boxes = [
        wall.locator(f"#{c} svg").bounding_box()
        for c in ("chart-day", "chart-category", "chart-grid")
    ]
    assert all(b is not None for b in boxes)
    day, category, grid = (b for b in boxes if b is not None)
    assert day["y"] == category["y"] == grid["y"]
    assert day["width"] > 1.8 * category["width"] > 700
    assert day["y"] + day["height"] <= WALL["height"]
    assert wall.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(wall, "10b-wallboard-charts-wall-en")
    assert pages.errors == []


def test_given_a_merchant_when_a_supervisor_searches_by_pinyin_then_the_scorecard_opens(
    pages: Pages, server: Server
) -> None:
    seed(server)
    board = pages.open()
    login(board, "supervisor")
    board.goto("/wallboard")
    board.wait_for_selector("body[data-ready='1']")
    board.fill("#sc-search", "khdyf")
    first = board.locator("#sc-results li a").first
    expect(first).to_have_text(hist.MERCHANT_NAME)
    first.click()
    board.wait_for_url(f"**/wallboard/merchants/{hist.MERCHANT}?days=7")
    board.wait_for_selector("body[data-ready='1']")

    want = hist.MERCHANT_WEEK
    expect(board.locator("#sc-title")).to_have_text(f"商家评分卡 · {hist.MERCHANT_NAME}")
    expect(board.locator("#sc-acceptance")).to_have_text("80.0%")
    expect(board.locator("#sc-offers")).to_have_text("派单 5 次，接单 4 次")
    expect(board.locator("#sc-arrive-median")).to_have_text("30:00")
    expect(board.locator("#sc-arrive-p90")).to_have_text("38:00")
    expect(board.locator("#sc-no-shows")).to_have_text("1")
    rows = board.locator("#sc-orders tbody tr")
    expect(rows).to_have_count(len(want["recent"]))
    ids = rows.evaluate_all("rs => rs.map(r => Number(r.dataset.ticketId))")
    assert ids == want["recent"]
    expect(rows.nth(3)).to_contain_text("爽约")
    ratings = bars(board, "chart-ratings")
    assert [(b["key"], b["value"]) for b in ratings] == list(want["ratings"].items())
    expect(board.locator("#chart-ratings figcaption")).to_contain_text("评价分布")
    shot(board, "11-merchant-scorecard")

    # another period, then another merchant by typing and Enter
    board.click("#period [data-days='1']")
    expect(board.locator("#scorecard")).to_have_attribute("data-loads", "2")
    expect(board.locator("#sc-offers")).to_have_text("派单 1 次，接单 1 次")
    board.fill("#sc-search", "国网")
    expect(board.locator("#sc-results li a").first).to_have_text("国网忠县供电所")
    board.press("#sc-search", "Enter")
    board.wait_for_url("**/wallboard/merchants/*?days=1")
    board.wait_for_selector("body[data-ready='1']")
    expect(board.locator("#sc-title")).to_have_text("商家评分卡 · 国网忠县供电所")
    expect(board.locator("#sc-orders tbody")).to_contain_text("本期间暂无订单")
    assert pages.errors == []
