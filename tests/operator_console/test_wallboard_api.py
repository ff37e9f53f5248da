"""The wallboard's APIs: figures by day, category and grid for a period, the merchant
scorecard over a period, merchant search, and the scorecard page; roles and bad input."""

from __future__ import annotations

from datetime import timedelta

import pytest

from eventlog.clock import LOCAL_TZ
from providers.memory.pbx import Script
from tests import history as hist
from tests.conftest import MORNING, Harness
from tests.operator_console.test_whole_path import ticket_state

TODAY = MORNING.astimezone(LOCAL_TZ).date()


async def seeded(h: Harness) -> Harness:
    """The harness with the known history written in."""
    async with h.services.store.read() as session:
        await hist.insert_history(session, hist.history(MORNING))
    return h


async def test_given_the_history_when_a_supervisor_asks_by_day_then_every_day_of_the_week(
    harness: Harness,
) -> None:
    h = await seeded(harness)
    body = await h.call("GET", "/figures?days=7&by=day", as_user="supervisor")
    assert body["by"] == "day"
    assert body["first_day"] == (TODAY - timedelta(days=6)).isoformat()
    assert body["last_day"] == TODAY.isoformat()
    assert [g["key"] for g in body["groups"]] == [
        (TODAY - timedelta(days=n)).isoformat() for n in range(6, -1, -1)
    ]
    assert [(g["received"], g["closed"]) for g in body["groups"]] == hist.WEEK_BY_DAY
    assert body["total"]["received"] == hist.WEEK["received"]
    assert sum(g["received"] for g in body["groups"]) == body["total"]["received"]
    # the same week as dates gives the same figures
    dates = await h.call(
        "GET",
        f"/figures?from={body['first_day']}&to={body['last_day']}&by=day",
        as_user="supervisor",
    )
    assert dates["groups"] == body["groups"] and dates["total"] == body["total"]


async def test_given_the_history_when_grouped_by_category_and_grid_then_named_groups(
    harness: Harness,
) -> None:
    h = await seeded(harness)
    cats = await h.call("GET", "/figures?days=7&by=category", as_user="supervisor")
    assert {g["key"]: (g["received"], g["closed"]) for g in cats["groups"]} == (
        hist.WEEK_BY_CATEGORY
    )
    medicine = next(g for g in cats["groups"] if g["key"] == "medicine")
    assert (medicine["label_zh"], medicine["label_en"]) == ("送药", "Medicine delivery")
    grids = await h.call("GET", "/figures?days=30&by=grid", as_user="supervisor")
    assert {g["key"]: g["label_zh"] for g in grids["groups"]} == {
        "BG01": "第一网格",
        "BG02": "第二网格",
        "BG03": "第三网格",
        "BG04": "第四网格",
        "BG05": "第五网格",
    }
    assert sum(g["received"] for g in grids["groups"]) == grids["total"]["received"] == 8
    today = await h.call("GET", "/figures?days=1&by=day", as_user="supervisor")
    assert [(g["received"], g["closed"]) for g in today["groups"]] == [(2, 1)]


async def test_given_the_figures_when_not_a_supervisor_then_401_or_403(harness: Harness) -> None:
    resp = await harness.client.get("/api/v1/figures?days=7&by=day")
    assert resp.status == 401
    body = await harness.call("GET", "/figures?days=7&by=day", as_user="operator", expect=403)
    assert body["error_id"] == "forbidden"
    await harness.call("GET", "/figures?days=7", as_user="merchant1", expect=403)
    await harness.call("GET", "/figures?days=7", as_user="demo")


@pytest.mark.parametrize(
    "query",
    [
        "by=week",
        "days=0",
        "days=367",
        "days=seven",
        "days=-1",
        "days=7&from=2026-01-01",
        "from=2026-02-30&to=2026-03-01",
        "from=2026-03-02&to=2026-03-01",
        "to=yesterday",
    ],
)
async def test_given_bad_period_or_grouping_when_asking_figures_then_422(
    harness: Harness, query: str
) -> None:
    body = await harness.call("GET", f"/figures?{query}", as_user="supervisor", expect=422)
    assert body["error_id"] == "invalid_input" and body["message"]


async def test_given_the_history_when_opening_a_merchants_scorecard_then_its_week(
    harness: Harness,
) -> None:
    h = await seeded(harness)
    want = hist.MERCHANT_WEEK
    card = await h.call("GET", f"/merchants/{hist.MERCHANT}/record?days=7", as_user="supervisor")
    assert card["name"] == hist.MERCHANT_NAME and card["grid_name"] == "第一网格"
    assert (card["offers"], card["accepted"], card["acceptance_rate"]) == (
        want["offers"],
        want["accepted"],
        want["acceptance_rate"],
    )
    assert card["no_shows"] == want["no_shows"]
    assert card["time_to_arrive"] == {
        "visits": 3,
        "median_s": want["median_s"],
        "p90_s": want["p90_s"],
    }
    assert card["ratings"] == want["ratings"]
    assert card["satisfied_rate"] == 100.0
    assert [o["ticket_id"] for o in card["recent_orders"]] == want["recent"]
    no_show = next(o for o in card["recent_orders"] if o["state"] == "no_show")
    assert no_show["ticket_id"] == 6 and no_show["arrived_at"] is None
    assert card["no_show_tickets"][0]["ticket_id"] == 6
    assert card["first_day"] == (TODAY - timedelta(days=6)).isoformat()
    # today only: ticket 1
    today = await h.call("GET", f"/merchants/{hist.MERCHANT}/record?days=1", as_user="supervisor")
    assert (today["offers"], today["no_shows"], today["ratings"]["satisfied"]) == (1, 0, 1)
    assert [o["ticket_id"] for o in today["recent_orders"]] == [1]
    # without a period: the ranking's window (90 days) holds the whole history
    window = await h.call("GET", f"/merchants/{hist.MERCHANT}/record", as_user="operator")
    assert window["offers"] == want["offers"] and window["to"] is None


async def test_given_a_scorecard_when_asked_badly_or_by_another_merchant_then_refused(
    harness: Harness,
) -> None:
    h = await seeded(harness)
    resp = await h.client.get("/api/v1/merchants/1/record?days=7")
    assert resp.status == 401
    await h.call("GET", "/merchants/1/record?days=0", as_user="supervisor", expect=422)
    await h.call("GET", "/merchants/1/record?from=2026-13-01", as_user="supervisor", expect=422)
    await h.call("GET", "/merchants/x/record", as_user="supervisor", expect=422)
    await h.call("GET", "/merchants/99999/record?days=7", as_user="supervisor", expect=404)
    own = await h.call("GET", "/merchants/1/record?days=7", as_user="merchant1")
    assert own["merchant_id"] == 1
    await h.call("GET", "/merchants/2/record?days=7", as_user="merchant1", expect=404)


@pytest.mark.parametrize(
    ("query", "first"),
    [
        ("khdyf", "康华大药房(1号店)"),
        ("kanghua", "康华大药房(1号店)"),
        ("康华", "康华大药房(1号店)"),
        ("国网", "国网忠县供电所"),
        ("gwzxgds", "国网忠县供电所"),
        ("razs", "仁爱诊所(1号店)"),
    ],
)
async def test_given_a_name_or_pinyin_when_searching_merchants_then_the_match_comes_first(
    harness: Harness, query: str, first: str
) -> None:
    found = await harness.call("GET", f"/merchants?q={query}", as_user="supervisor")
    assert found and found[0]["name"] == first
    if not query.isascii():
        assert all(query in m["name"] for m in found)


async def test_given_a_search_when_nothing_matches_then_empty_and_without_q_all(
    harness: Harness,
) -> None:
    assert await harness.call("GET", "/merchants?q=zzzzqqq", as_user="supervisor") == []
    every = await harness.call("GET", "/merchants", as_user="supervisor")
    assert len(every) == 40
    await harness.call("GET", "/merchants?q=khdyf", as_user="merchant1", expect=403)


async def test_given_the_scorecard_page_when_opened_by_role_then_only_supervisors_see_it(
    harness: Harness,
) -> None:
    h = harness
    page = await h.client.get(
        "/wallboard/merchants/1", headers={"Authorization": f"Bearer {await h.login('demo')}"}
    )
    assert page.status == 200
    html = await page.text()
    assert 'data-merchant-id="1"' in html and "/static/scorecard.js" in html
    assert "近7天" in html
    operator = await h.client.get(
        "/wallboard/merchants/1",
        headers={"Authorization": f"Bearer {await h.login('operator')}"},
        allow_redirects=False,
    )
    assert operator.status == 403
    missing = await h.client.get(
        "/wallboard/merchants/abc",
        headers={"Authorization": f"Bearer {await h.login('supervisor')}"},
    )
    assert missing.status == 404


async def test_given_the_openapi_document_then_it_describes_the_breakdowns(
    harness: Harness,
) -> None:
    doc = await (await harness.client.get("/api/v1/openapi.json")).json()
    figures = doc["paths"]["/api/v1/figures"]["get"]
    assert "day|category|grid" in figures["summary"] and "supervisor" in figures["description"]
    assert "422" in figures["responses"]
    assert {p["name"] for p in figures["parameters"] if p["in"] == "query"} == {
        "from",
        "to",
        "days",
        "by",
    }
    record = doc["paths"]["/api/v1/merchants/{merchant_id}/record"]["get"]
    assert "time to arrive" in record["summary"]
    assert "?q=" in doc["paths"]["/api/v1/merchants"]["get"]["summary"]


async def test_given_an_unassigned_ticket_when_the_wallboard_lists_it_then_by_category_name(
    harness: Harness,
) -> None:
    h = harness
    for mid in range(1, 60):  # every pharmacy busy: nobody can take it
        h.pbx.script(f"+86139{mid:08d}", Script(action="busy"))
    ticket = await h.call(
        "POST", "/tickets", json={"category": "medicine", "resident_id": 1}, expect=201
    )
    await h.call("POST", f"/tickets/{ticket['id']}/dispatch", json={})
    await ticket_state(h, ticket["id"], "unassigned")
    board = await h.call("GET", "/wallboard", as_user="supervisor")
    [needing] = [t for t in board["needing_human"] if t["id"] == ticket["id"]]
    assert needing["category"] == "medicine"
    assert (needing["category_zh"], needing["category_en"]) == ("送药", "Medicine delivery")
