"""The merchant login use case on SQLite and PostgreSQL: what is stored (hashes only),
races on the rate limit and on spending a code, and the login call's record."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from dispatch.models import Call
from operator_console.merchant_login import (
    Channel,
    LoginRefused,
    MerchantLogin,
    RateLimited,
)
from operator_console.models import MerchantLoginCode, MerchantLoginRequest
from tests.conftest import Harness
from tests.operator_console.test_merchant_login_api import (
    MERCHANT_1_PHONE,
    heard_code,
    login_calls,
    login_of,
    until,
)


async def code_heard(h: Harness, login: MerchantLogin, ref: str) -> str:
    """Answer the login call `ref` on the simulated handset and listen for the code."""
    await h.pbx.answer(ref)
    call = h.pbx.calls[ref]
    return heard_code(await until(lambda: next((t for t in call.transcript if "验证码是" in t), 0)))


async def test_given_a_request_then_only_keyed_hashes_are_stored_and_one_call_is_recorded(
    harness: Harness,
) -> None:
    h = harness
    login = login_of(h)
    sent = await login.request(phone="139 0000 0001", client="192.0.2.1")
    assert (sent.channel, sent.expires_in_s) == (Channel.VOICE, 600)
    await login.drain()
    (sim,) = login_calls(h)
    code = await code_heard(h, login, sim.ref)
    async with h.services.store.read() as session:
        (row,) = (await session.execute(select(MerchantLoginCode))).scalars().all()
        (asked,) = (await session.execute(select(MerchantLoginRequest))).scalars().all()
        (call,) = (
            (await session.execute(select(Call).where(Call.purpose == "login_code")))
            .scalars()
            .all()
        )
    assert sim.ref == call.ref == f"login-{row.id}"
    assert (call.direction, call.number) == ("out", MERCHANT_1_PHONE)
    assert row.merchant_id == 1 and row.channel == "voice" and not row.used
    assert (row.expires_at - row.created_at).total_seconds() == 600
    stored = " ".join(str(v) for v in (*row.model_dump().values(), *asked.model_dump().values()))
    assert code not in stored
    assert "13900000001" not in stored and "192.0.2.1" not in stored
    for digest in (row.code_hash, row.phone_hash, row.link_hash, asked.client_hash):
        assert digest is not None and len(digest) == 64
    assert asked.phone_hash == row.phone_hash  # the limit counts the same phone, typed any way


async def test_given_concurrent_requests_for_one_phone_then_exactly_the_limit_gets_through(
    harness: Harness,
) -> None:
    login = login_of(harness)
    results = await asyncio.gather(
        *(login.request(phone=MERCHANT_1_PHONE, client=f"192.0.2.{i}") for i in range(6)),
        return_exceptions=True,
    )
    assert sum(1 for r in results if isinstance(r, RateLimited)) == 3
    assert sum(1 for r in results if not isinstance(r, BaseException)) == 3
    await login.drain()
    assert len(login_calls(harness)) == 3


async def test_given_the_right_code_twice_at_once_then_one_login(harness: Harness) -> None:
    h = harness
    login = login_of(h)
    await login.request(phone=MERCHANT_1_PHONE, client="192.0.2.1")
    await login.drain()
    (sim,) = login_calls(h)
    code = await code_heard(h, login, sim.ref)
    results = await asyncio.gather(
        login.verify_code(phone=MERCHANT_1_PHONE, code=code),
        login.verify_code(phone="+86 139-0000-0001", code=code),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["LoginRefused", "int"]
    assert 1 in results


async def test_given_a_code_for_another_phone_then_it_is_refused(harness: Harness) -> None:
    h = harness
    login = login_of(h)
    await login.request(phone=MERCHANT_1_PHONE, client="192.0.2.1")
    await login.drain()
    (sim,) = login_calls(h)
    code = await code_heard(h, login, sim.ref)
    with pytest.raises(LoginRefused):
        await login.verify_code(phone="+8613900000002", code=code)
    with pytest.raises(LoginRefused):
        await login.verify_code(phone="no phone", code=code)
    assert await login.verify_code(phone=MERCHANT_1_PHONE, code=code) == 1


async def test_given_no_text_capability_then_a_text_request_becomes_a_call(
    harness: Harness,
) -> None:
    login = login_of(harness)
    login.messaging = None  # as on Asterisk
    assert not login.can_text
    sent = await login.request(phone=MERCHANT_1_PHONE, client="192.0.2.1", channel=Channel.SMS)
    assert sent.channel == Channel.VOICE
    await login.drain()
    assert len(login_calls(harness)) == 1 and not harness.pbx.texts
