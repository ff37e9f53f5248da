"""The open-data file a community may publish: per month and grid, public, with no cell
under 5 people and no rate over fewer than 5; never a name or a number."""

from __future__ import annotations

import csv
import io
from typing import Any

from dispatch.open_data import FIELDS
from tests.conftest import Harness, eventually

BG01 = [6, 12, 18, 24, 30]  # the demo's residents of 第一网格
BG02 = [7, 13]


async def public_json(h: Harness, query: str = "") -> Any:
    resp = await h.client.get("/api/v1/open-data" + query)  # no login: it is public
    assert resp.status == 200, await resp.text()
    return await resp.json()


def cell(data: Any, grid: str) -> dict[str, Any]:
    [row] = [r for r in data["rows"] if r["grid"] == grid]
    return dict(row)


async def ticket_for(h: Harness, resident_id: int) -> None:
    await h.call(
        "POST", "/tickets", json={"category": "groceries", "resident_id": resident_id}, expect=201
    )


async def test_given_tickets_of_few_residents_then_withheld_until_five_people(
    harness: Harness,
) -> None:
    h = harness
    for rid in [*BG01[:4], BG01[0], *BG02]:  # 4 people (one twice) in BG01, 2 in BG02
        await ticket_for(h, rid)
    data = await public_json(h)
    assert data["min_people"] == 5
    assert [f["name"] for f in data["fields"]] == list(FIELDS)
    assert all(f["zh"] and f["en"] for f in data["fields"])
    first = cell(data, "BG01")
    assert first["tickets_withheld"] is True and first["received"] is None
    assert cell(data, "BG02")["tickets_withheld"] is True

    await ticket_for(h, BG01[4])  # the fifth person
    first = cell(await public_json(h), "BG01")
    assert first["tickets_withheld"] is False
    assert (first["received"], first["closed"], first["rated"]) == (6, 0, 0)
    assert first["closure_rate"] == 0.0
    assert first["satisfied_rate"] is None  # no rate over fewer than 5 ratings
    assert first["grid_name"] == "第一网格"


async def test_given_hotline_calls_then_calls_per_grid_with_the_same_rule(
    harness: Harness,
) -> None:
    h = harness
    refs = [await h.pbx.dial_in(f"+8623540000{rid:02d}") for rid in [*BG01, BG02[0]]]

    async def offered() -> Any:
        data = await public_json(h)
        rows = {r["grid"]: r for r in data["rows"]}
        seen = rows.get("BG01", {}).get("calls_offered") == 5 and "BG02" in rows
        return data if seen else None

    data = await eventually(offered)
    assert cell(data, "BG01")["calls_withheld"] is False
    assert cell(data, "BG02")["calls_withheld"] is True
    assert cell(data, "BG02")["calls_offered"] is None
    for ref in refs:
        await h.pbx.party_hangup(ref)


async def test_given_the_file_then_nothing_personal_and_the_csv_matches(
    harness: Harness,
) -> None:
    h = harness
    for rid in BG01:
        await ticket_for(h, rid)
    data = await public_json(h)
    text = str(data)
    for rid in BG01:
        card = await h.call("GET", f"/residents/{rid}?reason=edit", as_user="demo")
        assert card["name"] not in text
        assert all(p["number"] not in text for p in card["phones"])
    resp = await h.client.get("/api/v1/open-data.csv")
    assert resp.status == 200 and resp.content_type == "text/csv"
    lines = list(csv.reader(io.StringIO(await resp.text())))
    assert lines[0] == list(FIELDS)
    [bg01] = [line for line in lines[1:] if line[1] == "BG01"]
    assert bg01[FIELDS_INDEX["received"]] == "5"
    assert bg01[FIELDS_INDEX["satisfied_rate"]] == ""  # withheld: empty


FIELDS_INDEX = {name: i for i, name in enumerate(FIELDS)}


async def test_given_a_bad_period_then_422_naming_it(harness: Harness) -> None:
    for bad in ("0", "25", "x", "-1", "1.5"):
        resp = await harness.client.get(f"/api/v1/open-data?months={bad}")
        assert resp.status == 422, bad
        assert "months" in str(await resp.json())
    assert (await harness.client.get("/api/v1/open-data?months=24")).status == 200


def test_given_the_readme_then_it_documents_every_field() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for name, (zh, en) in FIELDS.items():
        assert f"| `{name}` | {zh} | {en} |" in readme, name
