"""The memory PBX's text messages: the simulated handsets' inbox the simulator shows."""

from __future__ import annotations

import pytest

from ivr.flows import LOGIN_CODE
from providers.base import CallAnswered, FlowFinished, Messaging, MessagingError, PromptPlayed
from providers.memory import MemoryPBX, SimText

PHONE = "+8613900000001"


async def test_given_a_text_when_sent_twice_with_one_ref_then_the_handset_gets_it_once() -> None:
    async with MemoryPBX() as pbx:
        assert isinstance(pbx, Messaging)
        await pbx.send_text(ref="login-1-sms", number=PHONE, text="验证码 204913")
        await pbx.send_text(ref="login-1-sms", number=PHONE, text="验证码 204913")
        await pbx.send_text(ref="login-2-sms", number=PHONE, text="验证码 771100")
        assert list(pbx.texts) == [
            SimText("login-2-sms", PHONE, "验证码 771100"),
            SimText("login-1-sms", PHONE, "验证码 204913"),
        ]


async def test_given_a_landline_when_texted_then_the_send_fails_and_nothing_arrives() -> None:
    async with MemoryPBX() as pbx:
        pbx.landlines.add("+862354000001")
        with pytest.raises(MessagingError):
            await pbx.send_text(ref="login-3-sms", number="+862354000001", text="x")
        assert not pbx.texts


async def test_given_a_login_call_when_answered_then_the_handset_hears_the_digits() -> None:
    async with MemoryPBX(time_scale=0.001) as pbx:
        await pbx.originate(ref="login-4", number=PHONE)
        await pbx.answer("login-4")
        context = {"code": "204913", "minutes": 10}
        await pbx.run_flow("login-4", LOGIN_CODE, context=context, lang="zh-CN")
        await pbx.press("login-4", "*")
        events = []
        async for event in pbx.events():
            events.append(event)
            if isinstance(event, FlowFinished):
                break
        assert CallAnswered("login-4") in events
        said = [e for e in events if isinstance(e, PromptPlayed)]
        assert [e.prompt for e in said] == [
            "login_code.intro",
            "login_code.code",
            "login_code.code",
            "login_code.goodbye",
        ]
        assert said[1].text.count("二，零，四，九，幺，三") == 2
        call = pbx.calls["login-4"]
        assert call.state == "ended"
        assert "[*]" in call.transcript
