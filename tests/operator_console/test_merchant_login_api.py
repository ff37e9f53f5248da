"""Merchant login over the API on SQLite and PostgreSQL: the code read out by a phone call
on the memory PBX, the text with a one-time link, the rate limits, the same answer for
unknown phones, wrong codes that spend a code, expiry on the manual clock."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from dispatch.config import DispatchConfig
from dispatch.timers import ManualTimers
from eventlog.clock import ManualClock
from operator_console.app import create_app
from operator_console.merchant_api import login_key
from operator_console.merchant_login import MerchantLogin
from providers.memory import MemoryPBX
from tests.conftest import MORNING, Harness, eventually, make_settings

MERCHANT_1_PHONE = "+8613900000001"
UNKNOWN_PHONE = "+8613812345678"
_HEARD = {"零": "0", "幺": "1", "一": "1", "二": "2", "三": "3", "四": "4"}
_HEARD |= {"五": "5", "六": "6", "七": "7", "八": "8", "九": "9"}


@pytest.fixture
async def harness(tmp_path: Path, seeded_db_url: str) -> AsyncIterator[Harness]:
    """The usual test app, behind a (trusted) proxy: each test names its client's address."""
    clock = ManualClock(MORNING)
    timers = ManualTimers(clock)
    pbx = MemoryPBX(time_scale=1.0)
    app = create_app(
        make_settings(tmp_path, seeded_db_url, trust_proxy=True),
        telephony=pbx,
        clock=clock,
        timers=timers,
        dispatch_config=DispatchConfig(match_seed=7, survey_delay_s=60, offer_timeout_s=90),
    )
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield Harness(client, pbx, clock, timers, {})
    finally:
        await client.close()


async def until(predicate: Callable[[], object]) -> Any:
    """Poll a plain condition until it holds."""

    async def check() -> object:
        return predicate()

    return await eventually(check)


def login_of(h: Harness) -> MerchantLogin:
    """The app's login use case."""
    return h.client.app[login_key]  # type: ignore[index]


def heard_code(text: str) -> str:
    """The code as the phone call reads it: 二，零，四，九，幺，三 -> 204913."""
    found = re.search(r"验证码是：([^。]+)。", text) or re.search(r"login code is ([^.]+)\.", text)
    assert found is not None, text
    digits = re.findall(r"[0-9零幺一二三四五六七八九]", found[1])
    return "".join(_HEARD.get(ch, ch) for ch in digits)


async def ask(
    h: Harness,
    phone: str = MERCHANT_1_PHONE,
    *,
    channel: str = "voice",
    lang: str = "zh-CN",
    client: str = "198.51.100.7",
) -> aiohttp.ClientResponse:
    """Ask for a code as a browser without a session, from `client`."""
    h.client.session.cookie_jar.clear()
    return await h.client.post(
        "/api/v1/merchant-login/request",
        json={"phone": phone, "channel": channel, "lang": lang},
        headers={"X-Forwarded-For": f"10.0.0.1, {client}"},
    )


def login_calls(h: Harness) -> list[Any]:
    """The simulated calls that are login calls, oldest first."""
    return [c for c in h.pbx.calls.values() if c.ref.startswith("login-")]


async def code_by_call(h: Harness, phone: str = MERCHANT_1_PHONE, **kw: Any) -> str:
    """Ask for a code, answer the login call on the simulated handset, listen."""
    before = {c.ref for c in login_calls(h)}
    resp = await ask(h, phone, **kw)
    assert resp.status == 200, await resp.text()
    await login_of(h).drain()
    (call,) = [c for c in login_calls(h) if c.ref not in before]
    assert call.number == phone and call.state == "ringing"
    await h.pbx.answer(call.ref)

    said = await until(
        lambda: next((t for t in call.transcript if "验证码是" in t or "login code is" in t), None)
    )
    return heard_code(said)


async def verify(h: Harness, code: str, phone: str = MERCHANT_1_PHONE) -> aiohttp.ClientResponse:
    """Try a code as a browser without a session."""
    h.client.session.cookie_jar.clear()
    return await h.client.post("/api/v1/merchant-login/verify", json={"phone": phone, "code": code})


async def use_link(h: Harness, token: str) -> aiohttp.ClientResponse:
    """Log in with a link's token as a browser without a session."""
    h.client.session.cookie_jar.clear()
    return await h.client.post("/api/v1/merchant-login/link", json={"token": token})


def other(code: str) -> str:
    """A wrong code."""
    return "000000" if code != "000000" else "111111"


async def test_given_a_registered_phone_when_the_call_is_answered_then_its_code_logs_in(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    ours = ("dispatch", "operator_console", "providers", "ivr", "registry")
    for name in ours:  # every line our code logs (a library's own debug output is not ours)
        caplog.set_level(logging.DEBUG, logger=name)
    resp = await ask(h)
    assert await resp.json() == {"sent": True, "channel": "voice", "expires_in_s": 600}
    await login_of(h).drain()
    (call,) = login_calls(h)
    await h.pbx.answer(call.ref)
    await until(lambda: len(call.transcript) >= 2)
    intro, code_line = call.transcript[:2]
    assert "商家接单页面" in intro
    code = heard_code(code_line)
    assert re.fullmatch(r"[0-9]{6}", code)
    assert "，" in code_line and "十分钟内有效" in code_line and "星号" in code_line
    # * hears it again
    await h.pbx.press(call.ref, "*")
    assert heard_code(call.transcript[-1]) == code

    assert (await verify(h, other(code))).status == 401
    resp = await verify(h, code)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["user"]["role"] == "merchant" and body["user"]["merchant_id"] == 1
    assert "HttpOnly" in resp.headers["Set-Cookie"]
    assert (await verify(h, code)).status == 401  # a code works once
    h.tokens["m1"] = body["token"]
    orders = await h.call("GET", "/merchant/orders", as_user="m1")
    assert orders == {"merchant": orders["merchant"], "offers": [], "orders": []}
    await h.call("GET", "/calls", as_user="m1", expect=403)

    # the audit trail and the logs know a code went out, by a call; never the code or phone
    events = await h.call("GET", "/events?since=0")
    names = [e["name"] for e in events]
    assert "merchant.login_code_sent" in names and "merchant.logged_in" in names
    assert "call.answered" in names
    sent = next(e for e in events if e["name"] == "merchant.login_code_sent")
    assert sent["data"]["channel"] == "voice" and sent["subject_id"] == "1"
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(ours))
    assert "login code" in logged and "call login-" in logged
    for text in (str(events), logged):
        assert code not in text
        assert MERCHANT_1_PHONE[-8:] not in text


async def test_given_one_request_then_one_call_placed_once_under_its_code_ref(
    harness: Harness,
) -> None:
    h = harness
    await code_by_call(h)
    (call,) = login_calls(h)
    calls = await h.call("GET", "/events?since=0")
    code_id = next(e for e in calls if e["name"] == "merchant.login_code_sent")["data"]["code_id"]
    assert call.ref == f"login-{code_id}"
    # a retry of the same delivery (a restart, a resent command) never rings twice
    await h.services.dispatch.outbound.place_call(call.ref, MERCHANT_1_PHONE)
    assert len(login_calls(h)) == 1 and call.ref in h.pbx.placed


async def test_given_an_unknown_phone_then_the_answer_is_the_same_and_nothing_is_sent(
    harness: Harness,
) -> None:
    h = harness
    known = await ask(h, MERCHANT_1_PHONE, client="198.51.100.1")
    unknown = await ask(h, UNKNOWN_PHONE, client="198.51.100.2")
    garbage = await ask(h, "not a phone", client="198.51.100.3")
    texted = await ask(h, UNKNOWN_PHONE, channel="sms", client="198.51.100.4")
    bodies = [await r.json() for r in (known, unknown, garbage)]
    assert [r.status for r in (known, unknown, garbage, texted)] == [200] * 4
    assert bodies[0] == bodies[1] == bodies[2]
    assert await texted.json() == {"sent": True, "channel": "sms", "expires_in_s": 600}
    await login_of(h).drain()
    assert [c.number for c in login_calls(h)] == [MERCHANT_1_PHONE]
    assert not h.pbx.texts
    # and the limit is the same for a phone nobody registered (a third request, then 429)
    assert (await ask(h, UNKNOWN_PHONE, client="198.51.100.5")).status == 200
    assert (await ask(h, UNKNOWN_PHONE, client="198.51.100.6")).status == 429


async def test_given_three_requests_for_a_phone_then_the_fourth_waits_out_the_window(
    harness: Harness,
) -> None:
    h = harness
    for i in range(3):
        assert (await ask(h, client=f"192.0.2.{i}")).status == 200
        h.clock.advance(60)
    refused = await ask(h, client="192.0.2.9")
    assert refused.status == 429
    body = await refused.json()
    assert body["error_id"] == "rate_limited"
    # the first request leaves the 15-minute window 12 minutes from now
    assert body["details"]["retry_after_s"] == 15 * 60 - 3 * 60
    assert refused.headers["Retry-After"] == str(body["details"]["retry_after_s"])
    await login_of(h).drain()
    assert len(login_calls(h)) == 3  # the refused request called nobody
    h.clock.advance(body["details"]["retry_after_s"])
    assert (await ask(h, client="192.0.2.10")).status == 200


async def test_given_many_phones_from_one_client_then_it_is_limited_and_others_are_not(
    harness: Harness,
) -> None:
    h = harness
    for i in range(10):
        assert (await ask(h, f"+86138000000{i:02d}", client="203.0.113.5")).status == 200
    assert (await ask(h, "+8613800000099", client="203.0.113.5")).status == 429
    assert (await ask(h, "+8613800000099", client="203.0.113.6")).status == 200


async def test_given_five_wrong_codes_then_the_code_is_spent(harness: Harness) -> None:
    h = harness
    code = await code_by_call(h)
    for _ in range(5):
        assert (await verify(h, other(code))).status == 401
    assert (await verify(h, code)).status == 401
    events = await h.call("GET", "/events?since=0")
    wrong = [e for e in events if e["name"] == "merchant.login_code_wrong"]
    assert len(wrong) == 5 and wrong[-1]["data"]["spent"] and not wrong[0]["data"]["spent"]


async def test_given_two_codes_for_a_phone_then_the_first_call_s_code_still_works(
    harness: Harness,
) -> None:
    h = harness
    first = await code_by_call(h)
    second = await code_by_call(h)
    assert (await verify(h, first)).status == 200
    assert (await verify(h, second)).status == 200  # each is its own request


async def test_given_two_live_codes_then_wrong_ones_count_against_both(harness: Harness) -> None:
    h = harness
    codes = [await code_by_call(h), await code_by_call(h)]
    wrong = next(c for c in ("000000", "111111", "222222") if c not in codes)
    for _ in range(5):
        assert (await verify(h, wrong)).status == 401
    for code in codes:
        assert (await verify(h, code)).status == 401


async def test_given_the_manual_clock_past_the_lifetime_then_code_and_link_are_refused(
    harness: Harness,
) -> None:
    h = harness
    code = await code_by_call(h)
    assert (await ask(h, channel="sms")).status == 200
    await login_of(h).drain()
    token = link_token(h.pbx.texts[0].text)
    h.clock.advance(600)
    assert (await verify(h, code)).status == 401
    assert (await use_link(h, token)).status == 401


async def test_given_a_code_answered_after_it_expired_then_the_call_says_nothing_and_ends(
    harness: Harness,
) -> None:
    h = harness
    assert (await ask(h)).status == 200
    await login_of(h).drain()
    (call,) = login_calls(h)
    h.clock.advance(601)
    await h.pbx.answer(call.ref)
    await until(lambda: call.state == "ended")
    assert call.transcript == []


def link_token(text: str) -> str:
    """The token of the login link in a text."""
    found = re.search(r"(https?://\S+/merchant/login#token=)([A-Za-z0-9_-]+)", text)
    assert found is not None, text
    return found[2]


async def test_given_a_text_then_it_holds_the_code_and_a_one_time_link(harness: Harness) -> None:
    h = harness
    resp = await ask(h, channel="sms")
    assert await resp.json() == {"sent": True, "channel": "sms", "expires_in_s": 600}
    await login_of(h).drain()
    (text,) = h.pbx.texts
    assert text.number == MERCHANT_1_PHONE and text.ref.endswith("-sms")
    assert not login_calls(h)  # a text, not a call
    found = re.search(r"验证码：(\d{6})，10分钟内有效", text.text)
    assert found is not None, text.text
    url = re.search(r"https?://\S+", text.text)
    assert url is not None
    parts = urlsplit(url[0])
    assert f"{parts.scheme}://{parts.netloc}" == "http://127.0.0.1:8080"  # YIJING_PUBLIC_URL
    assert parts.path == "/merchant/login"
    token = link_token(text.text)
    # the simulator shows the text, the number masked
    shown = await h.call("GET", "/sim/messages", as_user="demo")
    assert shown == [{"ref": text.ref, "to": "+86139****0001", "text": text.text}]
    # the link's page keeps the token out of other sites' Referer and out of caches
    page = await h.client.get("/merchant/login")  # the token is a fragment: never sent
    assert page.status == 200
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "use-link" in await page.text()

    # two clicks at once: one logs in, the other is refused
    first, second = await asyncio.gather(use_link(h, token), use_link(h, token))
    assert sorted([first.status, second.status]) == [200, 401]
    winner = first if first.status == 200 else second
    assert (await winner.json())["user"]["merchant_id"] == 1
    # the link and the code are one credential: the code is spent too
    assert (await verify(h, found[1])).status == 401
    events = await h.call("GET", "/events?since=0")
    used = [e for e in events if e["name"] == "merchant.login_link_used"]
    assert len(used) == 1 and token not in str(events)


async def test_given_a_phone_that_cannot_get_texts_then_the_code_comes_by_call(
    harness: Harness,
) -> None:
    h = harness
    h.pbx.landlines.add(MERCHANT_1_PHONE)
    code = await code_by_call(h, channel="sms")
    assert (await verify(h, code)).status == 200
    events = await h.call("GET", "/events?since=0")
    sent = [e["data"] for e in events if e["name"] == "merchant.login_code_sent"]
    assert [d["channel"] for d in sent] == ["sms", "voice"] and sent[1]["rerouted"] is True


async def test_given_a_bad_link_token_then_401(harness: Harness) -> None:
    h = harness
    assert (await use_link(h, "x" * 32)).status == 401
    resp = await h.client.post("/api/v1/merchant-login/link", json={"token": "<script>"})
    assert resp.status == 422


async def test_given_english_then_the_call_reads_the_code_in_english(harness: Harness) -> None:
    h = harness
    code = await code_by_call(h, lang="en")
    (call,) = login_calls(h)
    assert "valid for 10 minutes" in call.transcript[1]
    assert (await verify(h, code)).status == 200


async def test_given_the_line_down_when_a_code_is_asked_then_the_call_waits_and_rings_when_back(
    harness: Harness,
) -> None:
    h = harness
    h.pbx.set_link(False)
    resp = await ask(h)
    assert (await resp.json())["sent"] is True
    await login_of(h).drain()
    assert login_calls(h) == []
    events = await h.call("GET", "/events?since=0")
    assert "call.deferred" in [e["name"] for e in events]
    assert "call.failed" not in [e["name"] for e in events]

    h.pbx.set_link(True)
    (call,) = await until(lambda: login_calls(h))
    await h.pbx.answer(call.ref)
    said = await until(lambda: next((t for t in call.transcript if "验证码是" in t), None))
    assert (await verify(h, heard_code(said))).status == 200


async def test_given_the_line_down_until_the_code_expired_then_the_merchant_is_not_rung(
    harness: Harness,
) -> None:
    h = harness
    h.pbx.set_link(False)
    await ask(h)
    await login_of(h).drain()
    h.clock.advance(601)  # the code's ten minutes pass while the line is down

    h.pbx.set_link(True)

    async def ended() -> Any:
        events = await h.call("GET", "/events?since=0")
        return [e for e in events if e["name"] == "call.ended"]

    [end] = await eventually(ended)
    assert end["data"]["cause"] == "not_dialed"
    assert login_calls(h) == []
