"""Prompt catalogs: complete in both languages, picked by preference, dynamic parts in words."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from ivr.flows import BUILTIN
from ivr.prompts import CATALOGS, check_catalogs, fields, pick_lang, render, render_field

RESIDENT = {"name": "王秀英", "sex": "女", "birth_year": 1943, "today": date(2025, 5, 1)}


def test_every_catalog_holds_every_prompt_with_the_same_fields() -> None:
    assert check_catalogs() == []


def test_check_catalogs_finds_gaps_and_unknown_forms() -> None:
    problems = check_catalogs({"zh-CN": {"a": "{x:time}", "b": "{y:loud}"}, "en": {"a": "{z}"}})
    assert "en: prompt 'b' is missing" in problems
    assert any("a: fields differ" in p for p in problems)
    assert any("unknown form 'loud'" in p for p in problems)


def test_every_prompt_a_flow_uses_is_in_every_catalog() -> None:
    for flow in BUILTIN.values():
        for step in flow.steps.values():
            prompt = getattr(step, "prompt", None)
            if prompt:
                for lang, book in CATALOGS.items():
                    assert prompt in book, (flow.name, prompt, lang)


@pytest.mark.parametrize(
    ("preference", "lang"),
    [
        (None, "zh-CN"),
        ("", "zh-CN"),
        ("zh", "zh-CN"),
        ("zh_CN", "zh-CN"),
        ("cmn", "zh-CN"),
        ("en", "en"),
        ("en-GB", "en"),
        ("EN_us", "en"),
        ("fr", "zh-CN"),
    ],
)
def test_a_residents_preference_picks_the_catalog(preference: str | None, lang: str) -> None:
    assert pick_lang(preference) == lang


def test_the_english_preference_speaks_english() -> None:
    assert render("survey.thanks", "en-GB") == CATALOGS["en"]["survey.thanks"]
    assert render("survey.thanks", "zh") == CATALOGS["zh-CN"]["survey.thanks"]


def test_a_registered_resident_is_greeted_by_a_respectful_form_of_address() -> None:
    assert render("hotline.greeting_known", "zh-CN", RESIDENT).startswith("王奶奶您好")
    younger = {**RESIDENT, "birth_year": 1962}
    assert render("hotline.greeting_known", "zh-CN", younger).startswith("王阿姨您好")
    man = {"name": "李建国", "sex": "男", "age": 75}
    assert render("hotline.greeting_known", "zh-CN", man).startswith("李爷爷您好")
    assert render("hotline.greeting_known", "en", man).startswith("Hello Mr Li,")


def test_status_says_who_accepted_and_by_when_in_words() -> None:
    order = {"category": "送药", "merchant": "和平药房", "deadline": "10:00"}
    text = render("status.accepted", "zh-CN", order)
    assert text == "您的送药订单已由和平药房接单，预计上午十点前到。"
    english = render("status.accepted", "en", {**order, "category": "medicine"})
    assert "medicine order" in english and "和平药房" in english and "10 AM" in english


def test_the_offer_speaks_deadline_as_a_time_and_the_code_word_digit_by_digit() -> None:
    params = {
        "category": "送药",
        "description": "降压药一盒",
        "address": "白公路 12 号 3 单元",
        "deadline": datetime(2025, 5, 1, 15, 30),
        "code_word": "4827",
    }
    assert "请在下午三点半前到达" in render("offer.intro", "zh-CN", params)
    assert "请在明天下午三点半前到达" in render(
        "offer.intro", "zh-CN", {**params, "today": "2025-04-30"}
    )
    assert "暗号：四八二七" in render("offer.accepted", "zh-CN", params)
    assert "before 3:30 PM" in render("offer.intro", "en", params)
    # text values pass through unchanged
    assert "请在傍晚前到达" in render("offer.intro", "zh-CN", {**params, "deadline": "傍晚"})
    assert "请在下午两点前到达" in render("offer.intro", "zh-CN", {**params, "deadline": "14:00"})


def test_merchant_prompts_never_carry_the_residents_phone() -> None:
    merchant_flows = [f for name, f in BUILTIN.items() if name.startswith("merchant_")]
    context = {"phone": "13800234567", "resident_phone": "13800234567", "caller": "13800234567"}
    for flow in merchant_flows:
        for step in flow.steps.values():
            prompt = getattr(step, "prompt", None)
            if not prompt:
                continue
            for lang, book in CATALOGS.items():
                names = {name for name, _ in fields(book[prompt])}
                assert not {n for n in names if "phone" in n or n == "caller"}, (prompt, lang)
                text = render(prompt, lang, context)
                assert "13800234567" not in text and "幺三八" not in text


def test_missing_values_read_as_empty_and_render_field_speaks_one_value() -> None:
    assert render("status.accepted", "zh-CN") == "您的订单已由接单，预计前到。"
    assert render_field("phone", "phone", "zh-CN", {"phone": "12349"}) == "幺二三四，九"
    assert render_field("n", "count", "zh-CN", {"n": 2}) == "两"
    assert render_field("n", "num", "en", {"n": 2}) == "2"
