"""The admin API through a running app, on SQLite and PostgreSQL: grids, logins and roles,
residents with their contact cascade, merchants, contracts, the catalog and the access log.
Each write must be refused without login (401), for a lesser role (403), with bad input
(422 naming the field), on a conflict (409) and without the CSRF token on a cookie
session; each accepted write leaves an event in the log."""

from __future__ import annotations

from typing import Any

from tests.conftest import DEMO_PASSWORD, Harness


def fields(body: dict[str, Any]) -> list[str]:
    """The fields an error response names."""
    return [d["field"] for d in body.get("details") or []]


async def events_named(h: Harness, prefix: str) -> list[dict[str, Any]]:
    """Events whose name starts with `prefix`."""
    return [e for e in await h.services.store.events_since(0) if e["name"].startswith(prefix)]


async def test_given_grids_when_admin_adds_and_renames_one_then_roles_conflicts_and_events_hold(
    harness: Harness,
) -> None:
    h = harness
    resp = await h.client.get("/api/v1/grids")
    assert resp.status == 401
    grid = {"code": "BG09", "name": "第九网格", "community": "白公路社区"}
    await h.call("POST", "/grids", as_user="operator", json=grid, expect=403)
    await h.call("POST", "/grids", as_user="supervisor", json=grid, expect=403)
    created = await h.call("POST", "/grids", as_user="demo", json=grid, expect=201)
    assert created["code"] == "BG09" and created["version"]
    dup = await h.call("POST", "/grids", as_user="demo", json=grid, expect=409)
    assert fields(dup) == ["code"]
    bad = await h.call("POST", "/grids", as_user="demo", json=grid | {"code": "a b"}, expect=422)
    assert fields(bad) == ["code"]
    empty = await h.call("POST", "/grids", as_user="demo", json=grid | {"name": ""}, expect=422)
    assert fields(empty) == ["name"]

    renamed = await h.call(
        "PATCH", "/grids/BG09", as_user="demo", json={"name": "九组", "version": created["version"]}
    )
    assert renamed["name"] == "九组" and renamed["version"] != created["version"]
    stale = await h.call(
        "PATCH",
        "/grids/BG09",
        as_user="demo",
        json={"name": "又改", "version": created["version"]},
        expect=409,
    )
    assert fields(stale) == ["version"]
    # without a version the last write wins
    await h.call("PATCH", "/grids/BG09", as_user="demo", json={"community": "白公路"})
    listed = {g["code"]: g for g in await h.call("GET", "/grids", as_user="operator")}
    assert (listed["BG09"]["name"], listed["BG09"]["community"]) == ("九组", "白公路")
    await h.call("PATCH", "/grids/NOPE", as_user="demo", json={"name": "x"}, expect=404)
    assert [e["name"] for e in await events_named(h, "grid.")] == [
        "grid.created",
        "grid.updated",
        "grid.updated",
    ]
    assert all(e["actor"] == "demo" for e in await events_named(h, "grid."))


async def test_given_a_cookie_session_without_csrf_when_an_admin_writes_then_403(
    harness: Harness,
) -> None:
    client = harness.client
    resp = await client.post("/api/v1/login", json={"username": "demo", "password": DEMO_PASSWORD})
    csrf = (await resp.json())["csrf"]
    grid = {"code": "BG10", "name": "十组"}
    for method, path, body in (
        ("POST", "/api/v1/grids", grid),
        ("POST", "/api/v1/users", {"username": "x1", "role": "operator", "password": "p" * 10}),
        ("PATCH", "/api/v1/users/2", {"display_name": "x"}),
        ("POST", "/api/v1/users/2/password", {"password": "p" * 10}),
        ("POST", "/api/v1/catalog", {"code": "x", "name_zh": "x", "name_en": "x"}),
    ):
        refused = await client.request(method, path, json=body)
        assert refused.status == 403, (path, await refused.text())
    accepted = await client.post("/api/v1/grids", json=grid, headers={"X-CSRF-Token": csrf})
    assert accepted.status == 201


async def test_given_an_admin_when_managing_logins_then_new_users_log_in_and_old_sessions_end(
    harness: Harness,
) -> None:
    h = harness
    new = {
        "username": "op2",
        "display_name": "话务员小王",
        "role": "operator",
        "password": "s3cret-pass",
    }
    await h.call("POST", "/users", as_user="supervisor", json=new, expect=403)
    await h.call("GET", "/users", as_user="operator", expect=403)
    created = await h.call("POST", "/users", as_user="demo", json=new, expect=201)
    assert created["role"] == "operator" and created["active"] is True
    assert "password" not in created and "password_hash" not in created
    async with h.services.store.read() as session:
        from registry.models import User

        stored = await session.get(User, created["id"])
        assert stored is not None and stored.password_hash.startswith("$argon2")
    token = await h.login("op2", "s3cret-pass")
    assert (await h.call("GET", "/me", as_user="op2"))["user"]["username"] == "op2"

    dup = await h.call("POST", "/users", as_user="demo", json=new, expect=409)
    assert fields(dup) == ["username"]
    for bad, field in (
        (new | {"username": "op3", "role": "merchant"}, "merchant_id"),
        (new | {"username": "op3", "merchant_id": 1}, "merchant_id"),
        (new | {"username": "op3", "role": "merchant", "merchant_id": 99999}, "merchant_id"),
        (new | {"username": "op3", "password": "short"}, "password"),
        (new | {"username": "op 3"}, "username"),
        (new | {"username": "op3", "role": "boss"}, "role"),
        (new | {"username": "op3", "display_name": "长" * 65}, "display_name"),
    ):
        body = await h.call("POST", "/users", as_user="demo", json=bad, expect=422)
        assert fields(body) == [field], (bad, body)
    shop = await h.call(
        "POST",
        "/users",
        as_user="demo",
        json={"username": "shop2", "role": "merchant", "merchant_id": 2, "password": "shop-pass-1"},
        expect=201,
    )
    assert shop["merchant_id"] == 2
    listed = await h.call("GET", "/users", as_user="supervisor")
    assert {"demo", "op2", "shop2"} <= {u["username"] for u in listed}

    # promote, then a stale edit is refused
    promoted = await h.call(
        "PATCH",
        f"/users/{created['id']}",
        as_user="demo",
        json={"role": "supervisor", "version": created["version"]},
    )
    assert promoted["role"] == "supervisor" and promoted["changed"] == ["role"]
    stale = await h.call(
        "PATCH",
        f"/users/{created['id']}",
        as_user="demo",
        json={"display_name": "x", "version": created["version"]},
        expect=409,
    )
    assert fields(stale) == ["version"]
    # a role change ends the old session: it was granted for the old role
    resp = await h.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401

    # reset the password: the new one works, the old one does not
    await h.login("op2", "s3cret-pass")
    await h.call(
        "POST", f"/users/{created['id']}/password", as_user="demo", json={"password": "new-pass-99"}
    )
    resp = await h.client.post("/api/v1/login", json={"username": "op2", "password": "s3cret-pass"})
    assert resp.status == 401
    await h.login("op2", "new-pass-99")

    # disable: no more logins; an admin cannot disable or demote themselves
    await h.call("PATCH", f"/users/{created['id']}", as_user="demo", json={"active": False})
    resp = await h.client.post("/api/v1/login", json={"username": "op2", "password": "new-pass-99"})
    assert resp.status == 401
    me = (await h.call("GET", "/me", as_user="demo"))["user"]
    own = await h.call(
        "PATCH", f"/users/{me['id']}", as_user="demo", json={"active": False}, expect=422
    )
    assert fields(own) == ["active"]
    own = await h.call(
        "PATCH", f"/users/{me['id']}", as_user="demo", json={"role": "operator"}, expect=422
    )
    assert fields(own) == ["role"]
    await h.call("PATCH", "/users/99999", as_user="demo", json={"active": False}, expect=404)
    names = [e["name"] for e in await events_named(h, "user.")]
    assert names == [
        "user.created",
        "user.created",
        "user.updated",
        "user.password_reset",
        "user.updated",
    ]


async def test_given_a_resident_form_when_saved_then_phones_contacts_versions_and_history_hold(
    harness: Harness,
) -> None:
    h = harness
    resident = {
        "name": "柏新华",
        "sex": "女",
        "birth_year": 1941,
        "grid_code": "BG02",
        "address": "白公路 88 号",
        "groups": ["独居", "空巢"],
        "phones": [{"number": "023-5444 8888", "kind": "landline"}],
        "contacts": [
            {"name": "柏大女儿", "relation": "女儿", "phones": ["138 0000 1111"]},
            {"name": "邻居刘", "relation": "邻居", "kind": "neighbour", "phones": ["13800002222"]},
        ],
        "notes": "说话慢一点",
    }
    bad = await h.call("POST", "/residents", json=resident, expect=422)
    assert fields(bad) == ["groups"]
    resident["groups"] = ["空巢"]
    bad = await h.call(
        "POST", "/residents", json=resident | {"phones": [{"number": "12"}]}, expect=422
    )
    assert fields(bad) == ["phones.0.number"]
    bad = await h.call("POST", "/residents", json=resident | {"name": "名" * 65}, expect=422)
    assert fields(bad) == ["name"]
    bad = await h.call("POST", "/residents", json=resident | {"grid_code": "NOPE"}, expect=422)
    assert fields(bad) == ["grid_code"]
    # a phone another registered resident calls from: 409 (one phone, one resident)
    taken = await h.call(
        "POST",
        "/residents",
        json=resident | {"phones": [{"number": "+862354000001", "kind": "landline"}]},
        expect=409,
    )
    assert fields(taken) == ["phones"] and taken["details"][0]["resident_id"] == 1
    created = await h.call("POST", "/residents", json=resident, expect=201)
    rid = created["id"]
    assert created["phones"] == [{"number": "+862354448888", "kind": "landline"}]
    assert [c["name"] for c in created["contacts"]] == ["柏大女儿", "邻居刘"]
    assert created["contacts"][0]["phones"] == ["+8613800001111"]
    # a couple's landline stays on one of them: asking to share it is refused
    spouse = resident | {"name": "柏老伴", "contacts": []}
    shared = await h.call(
        "POST", "/residents", json=spouse | {"allow_shared_phones": True}, expect=422
    )
    assert fields(shared) == ["allow_shared_phones"]
    again = await h.call("POST", "/residents", json=spouse, expect=409)
    assert again["details"][0]["resident_id"] == rid

    # edit: reorder the cascade, change the notes; the old version is then stale
    edited = await h.call(
        "PATCH",
        f"/residents/{rid}",
        json={
            "contacts": [resident["contacts"][1], resident["contacts"][0]],
            "notes": "耳背，说话慢一点",
            "version": created["version"],
        },
    )
    assert edited["changed"] == ["contacts", "notes"]
    assert [c["name"] for c in edited["contacts"]] == ["邻居刘", "柏大女儿"]
    stale = await h.call(
        "PATCH",
        f"/residents/{rid}",
        json={"notes": "x", "version": created["version"]},
        expect=409,
    )
    assert fields(stale) == ["version"]
    gone = await h.call(
        "PATCH",
        f"/residents/{rid}",
        json={"status": "deceased", "status_reason": "2026-02 病故", "version": edited["version"]},
    )
    assert [(s["to"], s["reason"]) for s in gone["status_history"]] == [
        ("registered", ""),
        ("deceased", "2026-02 病故"),
    ]
    # nothing is deleted: the resident is still found, with the status
    hits = await h.call("GET", "/residents?q=柏新华")
    assert [(r["id"], r["status"]) for r in hits if r["id"] == rid] == [(rid, "deceased")]
    # the line of a resident who died may go to a new household: it leaves the old record
    newcomer = await h.call("POST", "/residents", json=spouse, expect=201)
    assert newcomer["phones"] == created["phones"]
    assert (await h.call("GET", f"/residents/{rid}"))["phones"] == []

    events = await events_named(h, "resident.")
    assert [e["name"] for e in events] == [
        "resident.created",
        "resident.updated",
        "resident.updated",
        "resident.status_changed",
        "resident.created",
        "resident.updated",
    ]
    assert events[-1]["subject_id"] == str(rid)
    assert events[-1]["data"] == {
        "changed": ["phones"],
        "reason": "phone_taken",
        "taken_by": newcomer["id"],
    }
    # the event log is the console's live feed: ids and field names, no personal data
    flat = repr([e["data"] for e in events])
    for personal in ("柏", "白公路", "+86", "说话"):
        assert personal not in flat
    reads = await h.call("GET", f"/access-log?resident_id={rid}", as_user="demo")
    assert {r["reason"] for r in reads} >= {"edit", "search"}


async def test_given_merchants_when_admin_creates_and_edits_then_contracts_and_matching_follow(
    harness: Harness,
) -> None:
    h = harness
    merchant = {
        "name": "新开药店",
        "kind": "pharmacy",
        "external_code": "M-NEW-1",
        "grid_code": "BG01",
        "service_grids": ["BG01", "BG02"],
        "phones": ["023 5444 6000"],
        "hours": {str(d): [["08:00", "20:00"]] for d in range(7)},
        "holidays": {"2026-10-01": []},
        "services": [{"category": "medicine", "price_note": "送药免费"}],
        "contract_status": "active",
        "contract_start": "2026-01-01",
        "contract_end": "2026-12-31",
    }
    await h.call("POST", "/merchants", as_user="operator", json=merchant, expect=403)
    for bad, field in (
        (merchant | {"grid_code": "NOPE"}, "grid_code"),
        (merchant | {"service_grids": ["NOPE"]}, "service_grids"),
        (merchant | {"services": [{"category": "nope"}]}, "services"),
        (merchant | {"phones": ["abc"]}, "phones"),
        (merchant | {"hours": {"0": [["20:00", "08:00"]]}}, "hours"),
        (merchant | {"kind": "Pharmacy!"}, "kind"),
    ):
        body = await h.call("POST", "/merchants", as_user="demo", json=bad, expect=422)
        assert fields(body) == [field], (bad, body)
    created = await h.call("POST", "/merchants", as_user="demo", json=merchant, expect=201)
    mid = created["id"]
    assert created["phones"] == ["+862354446000"]
    dup = await h.call("POST", "/merchants", as_user="demo", json=merchant, expect=409)
    assert fields(dup) == ["external_code"]

    detail = await h.call("GET", f"/merchants/{mid}")
    assert detail["version"] == created["version"]
    changed = await h.call(
        "PATCH",
        f"/merchants/{mid}",
        as_user="demo",
        json={"capacity": 5, "version": detail["version"]},
    )
    assert changed["changed"] == ["capacity"]
    stale = await h.call(
        "PATCH",
        f"/merchants/{mid}",
        as_user="demo",
        json={"capacity": 6, "version": detail["version"]},
        expect=409,
    )
    assert fields(stale) == ["version"]

    # a suspended contract shows in the overview and takes the merchant out of matching
    everywhere = [g["code"] for g in await h.call("GET", "/grids")]
    await h.call("PATCH", f"/merchants/{mid}", as_user="demo", json={"service_grids": everywhere})
    ticket = await h.call(
        "POST", "/tickets", json={"category": "medicine", "resident_id": 2}, expect=201
    )
    ranked = {
        c["merchant_id"]: c for c in await h.call("GET", f"/tickets/{ticket['id']}/candidates")
    }
    assert mid in ranked
    await h.call(
        "POST",
        f"/merchants/{mid}/contract",
        as_user="demo",
        json={"status": "suspended", "start": "2026-01-01", "end": "2026-12-31", "note": "整改"},
    )
    bad = await h.call(
        "POST",
        f"/merchants/{mid}/contract",
        as_user="demo",
        json={"status": "active", "start": "2026-12-31", "end": "2026-01-01"},
        expect=422,
    )
    assert bad["error_id"] == "invalid_input"
    contracts = {
        c["merchant_id"]: c for c in await h.call("GET", "/contracts", as_user="supervisor")
    }
    assert contracts[mid]["contract_status"] == "suspended"
    await h.call("GET", "/contracts", as_user="operator", expect=403)
    ranked = {
        c["merchant_id"]: c for c in await h.call("GET", f"/tickets/{ticket['id']}/candidates")
    }
    assert mid not in ranked or not ranked[mid]["eligible"]
    assert [e["name"] for e in await events_named(h, "merchant.")] == [
        "merchant.created",
        "merchant.updated",
        "merchant.updated",
        "merchant.contract_changed",
    ]


async def test_given_the_catalog_when_admin_adds_and_edits_then_codes_and_versions_are_checked(
    harness: Harness,
) -> None:
    h = harness
    cat = {
        "code": "haircut",
        "name_zh": "上门理发",
        "name_en": "Home haircut",
        "deadline_minutes": 1440,
    }
    created = await h.call("POST", "/catalog", as_user="demo", json=cat, expect=201)
    dup = await h.call("POST", "/catalog", as_user="demo", json=cat, expect=409)
    assert fields(dup) == ["code"]
    bad = await h.call(
        "POST",
        "/catalog",
        as_user="demo",
        json=cat | {"code": "x", "deadline_minutes": 0},
        expect=422,
    )
    assert fields(bad) == ["deadline_minutes"]
    got = await h.call("GET", "/catalog/haircut")
    assert got["version"] == created["version"]
    saved = await h.call(
        "PUT",
        "/catalog/haircut",
        as_user="demo",
        json=cat | {"sort_order": 3, "version": got["version"]},
    )
    assert saved["sort_order"] == 3
    stale = await h.call(
        "PUT",
        "/catalog/haircut",
        as_user="demo",
        json=cat | {"name_en": "Haircut", "version": got["version"]},
        expect=409,
    )
    assert fields(stale) == ["version"]
    digit = await h.call(
        "PUT", "/catalog/haircut", as_user="demo", json=cat | {"keypad": "2"}, expect=422
    )
    assert fields(digit) == ["keypad"]  # read-only: the hotline flow decides the keys
    await h.call("POST", "/catalog", as_user="supervisor", json=cat, expect=403)
    await h.call("GET", "/catalog/nope", expect=404)
    assert [e["name"] for e in await events_named(h, "category.")] == [
        "category.saved",
        "category.saved",
    ]


async def test_given_reads_when_filtering_the_access_log_then_user_resident_date_and_pages_work(
    harness: Harness,
) -> None:
    h = harness
    for rid in (3, 4, 5):
        await h.call("GET", f"/residents/{rid}?reason=console")
    await h.call("GET", "/residents/3?reason=call", as_user="supervisor")
    by_user = await h.call("GET", "/access-log?username=supervisor", as_user="demo")
    assert [(r["resident_id"], r["reason"]) for r in by_user] == [(3, "call")]
    by_resident = await h.call("GET", "/access-log?resident_id=3", as_user="demo")
    assert [r["username"] for r in by_resident] == ["supervisor", "operator"]

    first = await h.call("GET", "/access-log?username=operator&limit=2", as_user="demo")
    assert [r["resident_id"] for r in first] == [5, 4]
    second = await h.call(
        "GET", f"/access-log?username=operator&limit=2&before={first[-1]['id']}", as_user="demo"
    )
    assert [r["resident_id"] for r in second] == [3]

    today = first[0]["at"][:10]  # the rows are written at the wall clock's time
    from datetime import date, timedelta

    day = date.fromisoformat(today)
    around = f"from={day - timedelta(days=1)}&to={day + timedelta(days=1)}"
    assert len(await h.call("GET", f"/access-log?{around}", as_user="demo")) >= 4
    later = f"from={day + timedelta(days=2)}"
    assert await h.call("GET", f"/access-log?{later}", as_user="demo") == []
    earlier = f"to={day - timedelta(days=2)}"
    assert await h.call("GET", f"/access-log?{earlier}", as_user="demo") == []
    bad = await h.call("GET", "/access-log?from=yesterday", as_user="demo", expect=422)
    assert fields(bad) == ["from"]
    bad = await h.call("GET", "/access-log?limit=-1", as_user="demo", expect=422)
    assert fields(bad) == ["limit"]
    await h.call("GET", "/access-log", as_user="supervisor", expect=403)


async def test_given_an_oversized_body_when_posting_then_it_is_refused_and_nothing_is_saved(
    harness: Harness,
) -> None:
    h = harness
    huge = {"name": "大", "grid_code": "BG01", "notes": "x" * (3 * 1024 * 1024)}
    import io
    import json

    resp = await h.client.post(
        "/api/v1/residents",
        data=io.BytesIO(json.dumps(huge).encode()),
        headers={
            "Authorization": f"Bearer {await h.login('demo')}",
            "Content-Type": "application/json",
        },
    )
    assert resp.status == 413
    long_notes = await h.call("POST", "/residents", json=huge | {"notes": "x" * 1001}, expect=422)
    assert fields(long_notes) == ["notes"]
    assert await events_named(h, "resident.") == []


async def test_given_a_resident_found_by_search_when_an_admin_renames_its_grid_then_search_shows_the_new_name(  # noqa: E501
    harness: Harness,
) -> None:
    h = harness
    (hit, *_) = await h.call("GET", "/residents?q=7")
    assert hit["grid_name"]
    await h.call("PATCH", f"/grids/{hit['grid_code']}", as_user="demo", json={"name": "新名网格"})
    again = {r["id"]: r for r in await h.call("GET", "/residents?q=7")}
    assert again[hit["id"]]["grid_name"] == "新名网格"


async def test_given_a_grid_worker_when_saved_then_admins_see_the_number_operators_masked(
    harness: Harness,
) -> None:
    h = harness
    code = (await h.call("GET", "/residents/1?reason=edit", as_user="demo"))["grid_code"]
    listed = {g["code"]: g for g in await h.call("GET", "/grids", as_user="demo")}
    version = listed[code]["version"]
    saved = await h.call(
        "PATCH",
        f"/grids/{code}",
        as_user="demo",
        json={"worker_name": "网格员小李", "worker_phone": "139 0000 9999", "version": version},
    )
    assert (saved["worker_name"], saved["worker_phone"]) == ("网格员小李", "+8613900009999")
    bad = await h.call(
        "PATCH", f"/grids/{code}", as_user="demo", json={"worker_phone": "12"}, expect=422
    )
    assert fields(bad) == ["worker_phone"]
    seen = {g["code"]: g for g in await h.call("GET", "/grids", as_user="operator")}
    assert seen[code]["worker_name"] == "网格员小李"
    assert "13900009999" not in seen[code]["worker_phone"]
    # an operator rings the grid worker by the resident's id, never by the number
    call = await h.call("POST", "/callouts", json={"target": "grid_worker", "id": 1}, expect=201)
    assert "13900009999" not in str(call)
