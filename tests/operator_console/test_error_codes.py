"""Errors carry machine codes the browser words from the i18n catalog: pydantic's `type`
and `ctx` for a field, the domain's code for a registry rule, `error_id` for the answer;
every code the code base can send has words in zh-CN and in English."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from operator_console.i18n import LANGS, texts
from tests.conftest import Harness

ROOT = Path(__file__).resolve().parents[2]


def resident(**fields: Any) -> dict[str, Any]:
    """A new resident's body."""
    return {
        "name": "柏新华",
        "grid_code": "BG01",
        "phones": [{"number": "023-5444 8877"}],
        **fields,
    }


async def test_given_a_field_pydantic_refuses_then_its_detail_carries_type_and_ctx(
    harness: Harness,
) -> None:
    body = await harness.call(
        "POST", "/residents", json=resident(birth_year=1800, name="x" * 80), expect=422
    )
    assert body["error_id"] == "invalid_input"
    by_field = {d["field"]: d for d in body["details"]}
    assert by_field["birth_year"]["type"] == "greater_than_equal"
    assert by_field["birth_year"]["ctx"] == {"ge": 1900}
    assert by_field["name"]["type"] == "string_too_long"
    assert by_field["name"]["ctx"] == {"max_length": 64}


async def test_given_a_registry_rule_broken_then_the_detail_carries_the_domains_code(
    harness: Harness,
) -> None:
    bad = await harness.call(
        "POST", "/residents", json=resident(phones=[{"number": "5444"}]), expect=422
    )
    assert [d["type"] for d in bad["details"]] == ["bad_phone"]
    grid = await harness.call("POST", "/residents", json=resident(grid_code="NOPE"), expect=422)
    assert grid["details"][0] | {"message": ""} == {
        "field": "grid_code",
        "message": "",
        "type": "unknown_grid",
        "ctx": {},
    }
    phones = await harness.call("GET", "/sim/phones", as_user="demo")
    taken = await harness.call(
        "POST", "/residents", json=resident(phones=[{"number": phones[0]["number"]}]), expect=409
    )
    assert taken["error_id"] == "conflict"
    detail = taken["details"][0]
    assert detail["type"] == "phone_taken"
    assert detail["ctx"] == {"id": detail["resident_id"]}
    query = await harness.call("GET", "/events?since=x", expect=422)
    assert query["details"][0]["type"] == "not_whole_number"


async def test_given_a_use_case_refuses_a_write_then_its_code_reaches_the_client(
    harness: Harness,
) -> None:
    # the rules live in registry.usecases; their codes must survive registry_errors()
    login = await harness.call(
        "POST",
        "/users",
        as_user="demo",
        json={"username": "shop99", "role": "merchant", "merchant_id": 99999, "password": "x" * 12},
        expect=422,
    )
    assert [(d["field"], d["type"]) for d in login["details"]] == [
        ("merchant_id", "unknown_merchant")
    ]
    grid = await harness.call(
        "POST", "/grids", as_user="demo", json={"code": "BG77", "name": "七七组"}, expect=201
    )
    again = await harness.call(
        "POST", "/grids", as_user="demo", json={"code": "BG77", "name": "七七组"}, expect=409
    )
    assert [(d["field"], d["type"]) for d in again["details"]] == [("code", "duplicate")]
    await harness.call(
        "PATCH", "/grids/BG77", as_user="demo", json={"name": "新名", "version": grid["version"]}
    )
    stale = await harness.call(
        "PATCH",
        "/grids/BG77",
        as_user="demo",
        json={"name": "又改", "version": grid["version"]},
        expect=409,
    )
    detail = stale["details"][0]
    assert (detail["field"], detail["type"]) == ("version", "stale_version")
    assert detail["current"] != grid["version"]


def sent_codes() -> set[str]:
    """Every machine code the code base sends: error ids, and the domain's field codes."""
    codes: set[str] = set()
    patterns = [
        r'error_response\(\s*\d+,\s*"([a-z_]+)"',
        r'_retry_later\(\d+, "([a-z_]+)"',
        r'error_id = "([a-z_]+)"',
        r',\s*code="([a-z_]+)"',
        r'\bcode = "([a-z_]+)"',
        r'Rule\(\s*"([a-z_]+)"',
    ]
    for folder in ("operator_console", "registry", "dispatch"):
        for path in (ROOT / folder).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            source = path.read_text(encoding="utf-8")
            for pattern in patterns:
                codes.update(re.findall(pattern, source))
    return codes


def test_every_code_sent_has_words_in_both_languages() -> None:
    codes = sent_codes()
    assert {"invalid_input", "not_found", "phone_taken", "bad_phone", "stale_version"} <= codes
    for lang in LANGS:
        missing = sorted(c for c in codes if f"e_{c}" not in texts(lang))
        assert not missing, (lang, missing)
