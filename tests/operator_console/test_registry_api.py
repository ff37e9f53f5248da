"""The registry API through a running app: contracts and matching, the access log, what
merchants may not see, uploads and downloads, editing, the catalog, moved-out callers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import Harness, eventually

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "registry"


async def _medicine_ticket(h: Harness) -> dict[str, Any]:
    return await h.call(
        "POST", "/tickets", json={"category": "medicine", "resident_id": 1}, expect=201
    )


async def test_given_a_suspended_or_expired_contract_when_ranking_then_the_merchant_drops_out(
    harness: Harness,
) -> None:
    h = harness
    ticket = await _medicine_ticket(h)
    ranked = await h.call("GET", f"/tickets/{ticket['id']}/candidates")
    eligible = [c["merchant_id"] for c in ranked if c["eligible"]]
    assert len(eligible) >= 2
    first, second = eligible[0], eligible[1]
    await h.call(
        "POST",
        f"/merchants/{first}/contract",
        as_user="demo",
        json={"status": "suspended", "start": "2026-01-01", "end": "2027-12-31", "note": "投诉"},
    )
    # expired: still "active" on paper, but the end date has passed
    await h.call(
        "POST",
        f"/merchants/{second}/contract",
        as_user="demo",
        json={"status": "active", "start": "2020-01-01", "end": "2021-12-31"},
    )
    ranked = {
        c["merchant_id"]: c for c in await h.call("GET", f"/tickets/{ticket['id']}/candidates")
    }
    for mid in (first, second):
        assert not ranked[mid]["eligible"]
        assert {"code": "contract_invalid"} in ranked[mid]["why"]
    detail = await h.call("GET", f"/merchants/{first}")
    assert [c["status"] for c in detail["contract_history"]] == ["suspended"]
    assert detail["contract_history"][0]["by"] == "demo"
    await h.call(
        "POST",
        f"/merchants/{first}/contract",
        as_user="operator",
        json={"status": "active"},
        expect=403,
    )


async def test_given_reads_of_a_resident_when_an_admin_reads_the_access_log_then_each_is_there(
    harness: Harness,
) -> None:
    h = harness
    await h.call("GET", "/residents/7?reason=call")
    await h.call("GET", "/residents/7?reason=ticket")
    hits = await h.call("GET", "/residents?q=7")
    assert hits
    log = await h.call("GET", "/access-log?resident_id=7", as_user="demo")
    assert [(r["username"], r["reason"]) for r in log[:2]] == [
        ("operator", "ticket"),
        ("operator", "call"),
    ]
    searched = await h.call("GET", f"/access-log?resident_id={hits[0]['id']}", as_user="demo")
    assert any(r["reason"] == "search" for r in searched)
    await h.call("GET", "/access-log", as_user="operator", expect=403)


async def test_given_a_merchant_login_when_it_asks_for_residents_then_it_is_refused(
    harness: Harness,
) -> None:
    h = harness
    await h.call("GET", "/residents/1", as_user="merchant1", expect=403)
    await h.call("GET", "/residents?q=wxy", as_user="merchant1", expect=403)
    await h.call("GET", "/access-log", as_user="merchant1", expect=403)
    await h.call("GET", "/registry/export/residents", as_user="merchant1", expect=403)
    await _medicine_ticket(h)
    for ticket in await h.call("GET", "/tickets?state=all", as_user="merchant1"):
        assert not {"id_number", "health_notes", "phones", "phone", "number"} & set(ticket)


async def _upload(h: Harness, path: str, name: str, *, dry_run: bool, expect: int) -> Any:
    form = aiohttp.FormData()
    form.add_field("file", (FIXTURES / name).read_bytes(), filename=name)
    form.add_field("dry_run", "true" if dry_run else "false")
    return await h.call("POST", path, as_user="demo", data=form, expect=expect)


async def test_given_uploads_when_dry_run_then_real_then_again_then_counts_are_right(
    harness: Harness,
) -> None:
    h = harness
    path = "/registry/import/residents"
    dry = await _upload(h, path, "residents_good.csv", dry_run=True, expect=200)
    assert (dry["dry_run"], dry["created"], dry["committed"]) == (True, 2, False)
    assert await h.call("GET", "/residents?q=gcl") == []
    real = await _upload(h, path, "residents_good.csv", dry_run=False, expect=200)
    assert (real["created"], real["committed"]) == (2, True)
    found = await h.call("GET", "/residents?q=gcl")
    assert [r["name"] for r in found] == ["龚翠兰"]
    again = await _upload(h, path, "residents_good.csv", dry_run=False, expect=200)
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 2)
    bad = await _upload(h, path, "residents_bad.csv", dry_run=False, expect=422)
    assert bad["error_id"] == "import_rejected"
    assert {e["line"] for e in bad["details"]["errors"]} == {2, 3, 4, 6, 7, 8, 9}
    merchants = await _upload(
        h, "/registry/import/merchants", "merchants_good.csv", dry_run=False, expect=200
    )
    assert merchants["created"] == 2
    form = aiohttp.FormData()
    form.add_field("file", b"x", filename="x.csv")
    await h.call("POST", path, as_user="operator", data=form, expect=403)


async def test_given_an_admin_when_downloading_exports_then_files_come_back(
    harness: Harness,
) -> None:
    h = harness
    await h.login("demo")
    headers = {"Authorization": f"Bearer {h.tokens['demo']}"}
    resp = await h.client.get("/api/v1/registry/export/residents?format=csv", headers=headers)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/csv")
    text = (await resp.read()).decode("utf-8-sig")
    assert text.startswith("姓名,")
    resp = await h.client.get("/api/v1/registry/export/merchants?format=xlsx", headers=headers)
    assert resp.status == 200
    assert (await resp.read())[:2] == b"PK"


async def test_given_a_resident_who_moved_out_when_they_call_then_the_call_is_flagged(
    harness: Harness,
) -> None:
    h = harness
    created = await h.call(
        "POST",
        "/residents",
        json={
            "name": "龚迁出",
            "grid_code": "BG03",
            "id_number": "500233194001011234",
            "phones": [{"number": "023-5444 7777", "kind": "landline"}],
            "contacts": [{"name": "龚儿", "relation": "儿子", "phones": ["13700009999"]}],
        },
        expect=201,
    )
    assert created["phones"] == [{"number": "+862354447777", "kind": "landline"}]
    assert created["id_number"] == "500***********1234"
    changed = await h.call(
        "PATCH",
        f"/residents/{created['id']}",
        json={"status": "moved_out", "status_reason": "随子女迁往重庆主城"},
    )
    assert changed["changed"] == ["status"]
    assert [(s["from"], s["to"]) for s in changed["status_history"]] == [
        ("", "registered"),
        ("registered", "moved_out"),
    ]
    await h.call("PATCH", f"/residents/{created['id']}", json={"grid_code": "NOPE"}, expect=422)
    await h.call(
        "POST",
        "/residents",
        json={"name": "重号", "grid_code": "BG03", "id_number": "500233194001011234"},
        expect=409,
    )
    await h.pbx.dial_in("+86 23 5444 7777")

    async def offered() -> Any:
        events = await h.services.store.events_since(0)
        return next((e for e in events if e["name"] == "call.offered"), None)

    event = await eventually(offered)
    assert event["data"]["resident_id"] == created["id"]
    assert event["data"]["resident_status"] == "moved_out"


async def test_given_an_admin_when_editing_the_catalog_then_operators_see_it(
    harness: Harness,
) -> None:
    h = harness
    body = {
        "code": "haircut",
        "name_zh": "上门理发",
        "name_en": "Home haircut",
        "urgency": "routine",
        "deadline_minutes": 1440,
        "merchant_kinds": ["barber"],
        "text_zh": "上门理发服务",
    }
    await h.call("PUT", "/catalog/haircut", as_user="demo", json=body, expect=201)
    await h.call("PUT", "/catalog/haircut", as_user="demo", json=body | {"sort_order": 20})
    keys = {c["code"]: c["keypad"] for c in await h.call("GET", "/catalog")}
    # the keys come from the hotline flow, not from the catalog: a new category has none
    assert keys["haircut"] is None and keys["medicine"] == "2" and keys["water"] == "5 1"
    await h.call("PUT", "/catalog/haircut", as_user="demo", json=body | {"keypad": "2"}, expect=422)
    await h.call("PUT", "/catalog/haircut", as_user="operator", json=body, expect=403)
