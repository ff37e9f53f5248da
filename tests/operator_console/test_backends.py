"""The composition root picks the telephony backend from settings alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from operator_console.app import create_app
from operator_console.settings import Settings
from providers.asterisk.telephony import AsteriskTelephony
from tests.conftest import eventually, make_settings
from tests.providers.asterisk.fake_ami import FakeAMI
from tests.providers.twilio.twilio_fakes import ACCOUNT, TOKEN, FakeTwilioApi


async def health(client: TestClient[Any, Any]) -> tuple[int, dict[str, Any]]:
    """Status and body of /healthz."""
    resp = await client.get("/healthz")
    return resp.status, await resp.json()


@pytest.mark.parametrize("seeded_db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("secret", "up"), [("s3cret", True), ("wrong", False)])
async def test_given_asterisk_settings_when_the_app_starts_then_healthz_shows_the_ami_link(
    tmp_path: Path, seeded_db_url: str, secret: str, up: bool
) -> None:
    ami = await FakeAMI(secret="s3cret").start()
    settings = make_settings(
        tmp_path,
        seeded_db_url,
        telephony="asterisk",
        asterisk_port=ami.port,
        asterisk_secret=secret,
        asterisk_agi_port=0,
    )
    client = TestClient(TestServer(create_app(settings), host="127.0.0.1"))
    await client.start_server()
    try:
        from operator_console.app import services_key

        assert isinstance(client.app[services_key].telephony, AsteriskTelephony)  # type: ignore[index]

        async def settled() -> Any:
            status, body = await health(client)
            return (status, body) if body["checks"]["telephony"]["up"] is up else None

        status, body = await eventually(settled)
        assert status == (200 if up else 503)
        assert body["checks"]["telephony"]["backend"] == "asterisk"
        if not up:
            assert "authentication failed" in body["checks"]["telephony"]["detail"]
    finally:
        await client.close()
        await ami.close()


def test_given_twilio_without_credentials_when_configuring_then_a_clear_error() -> None:
    with pytest.raises(ValueError, match="YIJING_TWILIO_ACCOUNT_SID"):
        Settings(telephony="twilio")


@pytest.mark.parametrize("seeded_db_url", ["sqlite"], indirect=True)
async def test_given_twilio_settings_when_the_app_starts_then_signed_webhooks_are_mounted(
    tmp_path: Path, seeded_db_url: str
) -> None:
    async with FakeTwilioApi() as api:  # the REST peer on loopback: no real network
        settings = make_settings(
            tmp_path,
            seeded_db_url,
            telephony="twilio",
            twilio_account_sid=ACCOUNT,
            twilio_auth_token=TOKEN,
            twilio_from_number="+862312349000",
            twilio_api_base_url=api.url,
        )
        client = TestClient(TestServer(create_app(settings), host="127.0.0.1"))
        await client.start_server()
        try:
            resp = await client.post("/twilio/voice", data={"CallSid": "CA1", "From": "+1"})
            assert resp.status == 403  # unsigned: refused before any handler runs
            status, body = await health(client)
            assert (status, body["checks"]["telephony"]["backend"]) == (200, "twilio")
            assert api.requests, "the adapter talked to the loopback REST server"
        finally:
            await client.close()


@pytest.mark.parametrize("seeded_db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("texts", [True, False])
async def test_given_twilio_when_a_merchant_asks_for_a_text_then_messages_or_a_call_go_out(
    tmp_path: Path, seeded_db_url: str, texts: bool
) -> None:
    import re

    from operator_console.merchant_api import login_key

    async with FakeTwilioApi() as api:
        settings = make_settings(
            tmp_path,
            seeded_db_url,
            telephony="twilio",
            public_url="https://care.example.org",
            twilio_account_sid=ACCOUNT,
            twilio_auth_token=TOKEN,
            twilio_from_number="+862312349000",
            twilio_api_base_url=api.url,
            twilio_sms=texts,
        )
        client = TestClient(TestServer(create_app(settings), host="127.0.0.1"))
        await client.start_server()
        try:
            phone = "+8613900000001"  # merchant 1 of the demo community
            resp = await client.post(
                "/api/v1/merchant-login/request", json={"phone": phone, "channel": "sms"}
            )
            assert resp.status == 200
            assert (await resp.json())["channel"] == ("sms" if texts else "voice")
            await client.app[login_key].drain()  # type: ignore[index]
            if not texts:  # no texts from this number: the code is read out by a call
                assert api.messages_sent() == []
                (created,) = api.calls_created()
                assert created.form["To"] == phone
                assert created.form["Url"].endswith("/twilio/voice?ref=login-1")
                return
            (sent,) = api.messages_sent()
            assert (sent.form["To"], sent.form["From"]) == (phone, "+862312349000")
            body = sent.form["Body"]
            code = re.search(r"验证码：(\d{6})", body)
            link = re.search(r"https://care\.example\.org/merchant/login#token=([\w-]+)", body)
            assert code is not None and link is not None, body
            assert api.calls_created() == []  # a text, not a call
            verify = await client.post(
                "/api/v1/merchant-login/verify", json={"phone": phone, "code": code[1]}
            )
            assert verify.status == 200
            client.session.cookie_jar.clear()
            # code and link are one credential: the link is spent with the code
            used = await client.post("/api/v1/merchant-login/link", json={"token": link[1]})
            assert used.status == 401
        finally:
            await client.close()
