"""Bad input is a 422 naming the field, never a 500, on SQLite and PostgreSQL: control
characters (PostgreSQL refuses NUL) in bodies, queries, paths and imported files; JSON
nested too deeply, NaN, numbers of thousands of digits; integers past 2**63; dates at the
ends of the calendar. And nothing the request sent (a name, a health note, a statement's
parameters) reaches a log line on the way."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp import FormData
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from registry import repository as repo
from tests.conftest import Harness

NAME = "王秀英\x00"
NOTE = "高血压\x00，每天两次"
RESIDENT: dict[str, Any] = {"name": "王秀英", "grid_code": "BG01", "health_notes": "高血压"}


def fields(body: dict[str, Any]) -> set[str]:
    """The fields an error names."""
    return {str(d.get("field")) for d in body.get("details") or []}


async def test_given_nul_bytes_in_bodies_then_422_naming_the_field_and_nothing_logged(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    caplog.set_level(logging.DEBUG)
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", "/residents", {**RESIDENT, "name": NAME}, "name"),
        ("POST", "/residents", {**RESIDENT, "health_notes": NOTE}, "health_notes"),
        ("PATCH", "/residents/1", {"health_notes": NOTE}, "health_notes"),
        ("POST", "/tickets", {"category": "medicine", "description": NOTE}, "description"),
        ("POST", "/tickets", {"category": "medi\x00cine"}, "category"),
        ("POST", "/tickets", {"category": "medicine", "description": "\ud800"}, "description"),
        ("POST", "/grids", {"code": "G99", "name": "网格\x00"}, "name"),
    ]
    for method, path, payload, field in cases:
        body = await h.call(method, path, as_user="demo", json=payload, expect=422)
        assert body["error_id"] == "invalid_input", (path, body)
        assert field in fields(body), (path, body)

    assert "王秀英" not in caplog.text and "高血压" not in caplog.text


async def test_given_a_nul_byte_in_an_imported_file_then_the_row_is_refused(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    caplog.set_level(logging.DEBUG)
    for kind, csv in (
        ("residents", "姓名,地址,网格,健康备注\n王秀英,白宫路1号,BG01,高血压\x00\n"),
        ("merchants", "名称,类型,地址,网格\n康华\x00药房,pharmacy,白宫路2号,BG01\n"),
    ):
        form = FormData()
        form.add_field("file", csv.encode(), filename=f"{kind}.csv", content_type="text/csv")
        body = await h.call(
            "POST", f"/registry/import/{kind}?dry_run=true", as_user="demo", data=form, expect=422
        )
        assert body["error_id"] == "import_rejected", body
        assert [e["code"] for e in body["details"]["errors"]] == ["control_character"], body
    assert "王秀英" not in caplog.text and "高血压" not in caplog.text


async def test_given_control_characters_in_a_query_or_path_then_422_naming_it(
    harness: Harness,
) -> None:
    h = harness
    for path, field in (
        ("/residents?q=%00", "q"),
        ("/residents/1?ref=x%00y", "ref"),
        ("/residents/1?reason=%0a", "reason"),
        ("/catalog/medi%00cine", "code"),
        ("/board?category=%00", "category"),
        ("/merchants?q=%1b", "q"),
    ):
        body = await h.call("GET", path, as_user="demo", expect=422)
        assert field in fields(body), (path, body)


async def test_given_deeply_nested_json_then_422_even_anonymously(harness: Harness) -> None:
    h = harness
    deep = "[" * 100_000 + "]" * 100_000
    for path in (
        "/api/v1/login",
        "/api/v1/merchant-login/request",
        "/api/v1/merchant-login/verify",
    ):
        resp = await h.client.post(
            path, data=deep.encode(), headers={"Content-Type": "application/json"}
        )
        assert resp.status == 422, (path, await resp.text())
        assert (await resp.json())["details"][0]["field"] == "body"
    nested: Any = 1
    for _ in range(40):
        nested = {"a": nested}
    body = await h.call("POST", "/tickets", json={"category": "medicine", "x": nested}, expect=422)
    assert "body" in fields(body)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"category": "medicine", "resident_id": NaN}',
        b'{"category": "medicine", "resident_id": Infinity}',
        b'{"category": "medicine", "resident_id": ' + b"9" * 5000 + b"}",
        b'{"category": "medicine", "description": "\\ud800"}',
        b"\xff\xfe{}",
    ],
)
async def test_given_json_that_python_reads_oddly_then_422(harness: Harness, raw: bytes) -> None:
    body = await harness.call(
        "POST", "/tickets", data=raw, headers={"Content-Type": "application/json"}, expect=422
    )
    assert body["error_id"] == "invalid_input"


async def test_given_integers_past_64_bits_then_422_naming_the_field(harness: Harness) -> None:
    h = harness
    big = 2**63
    for payload, field in (
        ({"category": "medicine", "resident_id": big}, "resident_id"),
        ({"category": "medicine", "call_id": big}, "call_id"),
    ):
        body = await h.call("POST", "/tickets", json=payload, expect=422)
        assert field in fields(body), body
    for method, path, field in (
        ("GET", f"/events?since={big}", "since"),
        ("GET", "/events?since=%C2%B2", "since"),  # "²": str.isdigit says yes, int() says no
        ("GET", f"/calls/{big}", "call_id"),
        ("GET", "/calls/%D9%A3", "call_id"),  # an Arabic-Indic three
        ("POST", f"/calls/{big}/hangup", "call_id"),
        ("GET", f"/residents/{big}", "resident_id"),
        ("GET", f"/board?resident_id={big}", "resident_id"),
        ("GET", "/board?resident_id=%C2%B2", "resident_id"),
        ("GET", f"/access-log?before={big}", "before"),
        ("GET", "/access-log?limit=%C2%B2", "limit"),
    ):
        body = await h.call(method, path, as_user="demo", expect=422)
        assert field in fields(body), (path, body)
    for payload in ({"merchant_ids": [big]}, {"merchant_ids": [1, -1]}):
        body = await h.call("POST", "/tickets/1/dispatch", json=payload, expect=422)
        assert "merchant_ids.0" in fields(body) or "merchant_ids.1" in fields(body), body
    body = await h.call(
        "POST", "/users", as_user="demo", expect=422,
        json={"username": "m9", "role": "merchant", "merchant_id": big, "password": "x" * 8},
    )  # fmt: skip
    assert "merchant_id" in fields(body)


async def test_given_a_websocket_since_past_64_bits_then_422(harness: Harness) -> None:
    h = harness
    token = await h.login("operator")
    for since in (str(2**63), "%C2%B2"):
        resp = await h.client.get(
            f"/api/v1/ws?since={since}", headers={"Authorization": f"Bearer {token}"}
        )
        assert resp.status == 422, await resp.text()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=0001-01-01", "from"),
        ("from=2026-01-01&to=9999-12-31", "to"),
        ("from=2026-13-01", "from"),
        ("days=%C2%B2", "days"),
        ("days=400", "days"),
        ("from=2026-03-01&to=2026-02-01", "to"),
        ("by=year", "by"),
    ],
)
async def test_given_figures_for_impossible_periods_then_422_naming_the_field(
    harness: Harness, query: str, field: str
) -> None:
    body = await harness.call("GET", f"/figures?{query}", as_user="supervisor", expect=422)
    assert field in fields(body), body
    record = await harness.call("GET", f"/merchants/1/record?{query}", expect=None)
    if field != "by":
        assert field in fields(record), record


async def test_given_an_access_log_from_year_one_then_422(harness: Harness) -> None:
    body = await harness.call("GET", "/access-log?from=0001-01-01", as_user="demo", expect=422)
    assert "from" in fields(body)


async def test_given_a_database_error_then_its_parameters_are_in_no_message(
    harness: Harness,
) -> None:
    async with harness.services.store.read() as session:
        with pytest.raises(DBAPIError) as failed:
            await session.execute(
                text("SELECT * FROM no_such_table WHERE name = :name"), {"name": "王秀英"}
            )
    assert "王秀英" not in str(failed.value)


async def test_given_an_unexpected_error_then_500_with_an_incident_and_nothing_it_carried_logged(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    caplog.set_level(logging.DEBUG)

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise IntegrityError(
            "INSERT INTO resident (name, health_notes) VALUES ($1, $2)",
            ("王秀英", "高血压"),
            Exception("DETAIL: Failing row contains (王秀英, 高血压)"),
        )

    monkeypatch.setattr(repo, "save_resident", broken)
    body = await h.call("POST", "/residents", json=RESIDENT, expect=500)

    assert body["error_id"] == "internal_error" and body["details"]["incident"]
    assert body["details"]["incident"] in caplog.text and "IntegrityError" in caplog.text
    assert "王秀英" not in caplog.text and "高血压" not in caplog.text
    assert "王秀英" not in str(body)


async def test_given_a_broken_multipart_upload_then_422_naming_the_file(harness: Harness) -> None:
    for content_type in ("multipart/form-data", "multipart/form-data; boundary=abc"):
        body = await harness.call(
            "POST",
            "/registry/import/residents",
            as_user="demo",
            data=b"--abc\r\ngarbage",
            headers={"Content-Type": content_type},
            expect=422,
        )
        assert "file" in fields(body), body
