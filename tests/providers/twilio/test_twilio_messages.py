"""Text messages go out through the real twilio client's Messages API to the loopback fake."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest

from providers.asterisk.config import AsteriskConfig
from providers.asterisk.telephony import AsteriskTelephony
from providers.base import Messaging, MessagingError
from tests.providers.twilio.twilio_fakes import ACCOUNT, PLATFORM, TOKEN, Rig

BODY = "【医敬】商家登录验证码：204913 https://care.example.org/merchant/login#token=abc"


async def test_given_a_text_then_messages_create_carries_to_from_and_body(rig: Rig) -> None:
    assert isinstance(rig.adapter, Messaging)
    await rig.adapter.send_text(ref="login-1-sms", number="+8613900000001", text=BODY)

    (sent,) = rig.api.messages_sent()
    assert sent.method == "POST"
    assert sent.path == f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert sent.form["To"] == "+8613900000001"
    assert sent.form["From"] == PLATFORM
    assert sent.form["Body"] == BODY
    basic = base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
    assert sent.authorization == f"Basic {basic}"
    assert rig.adapter.health().up


async def test_given_the_same_ref_twice_then_one_text(rig: Rig) -> None:
    await rig.adapter.send_text(ref="login-1-sms", number="+8613900000001", text=BODY)
    await rig.adapter.send_text(ref="login-1-sms", number="+8613900000001", text=BODY)
    assert len(rig.api.messages_sent()) == 1


async def test_given_an_sms_number_then_texts_come_from_it(
    make_rig: Callable[..., Any],
) -> None:
    rig: Rig = await make_rig(sms_from="+862312349999")
    await rig.adapter.send_text(ref="login-2-sms", number="+8613900000001", text=BODY)
    assert rig.api.messages_sent()[0].form["From"] == "+862312349999"


async def test_given_twilio_refuses_then_a_messaging_error_without_the_number(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.api.message_error = (400, "error_invalid_to.json")
    with pytest.raises(MessagingError, match="HTTP 400, code 21211") as raised:
        await rig.adapter.send_text(ref="login-3-sms", number="+8613900000001", text=BODY)
    assert "13900000001" not in str(raised.value)
    assert "13900000001" not in caplog.text and "204913" not in caplog.text
    # an HTTP answer means the link works: the backend stays up
    assert rig.adapter.health().up


def test_asterisk_has_no_text_messages() -> None:
    backend = AsteriskTelephony(AsteriskConfig(secret="s"))
    assert not isinstance(backend, Messaging)
