"""Nothing an unsigned webhook sends reaches a log line: a CallSid with a line break once
forged a CRITICAL record of its own ("admin password reset") before the signature check."""

from __future__ import annotations

import logging

import pytest

from tests.providers.twilio.twilio_fakes import ACCOUNT, Rig

FORGED = "CA1\n2026-12-01 10:00:00,000 CRITICAL operator_console.admin_api admin password reset"


@pytest.mark.parametrize("route", ["voice", "gather", "status", "participant", "dial", "hold"])
async def test_given_an_unsigned_webhook_with_a_forged_line_then_refused_and_nothing_of_it_logged(
    rig: Rig, caplog: pytest.LogCaptureFixture, route: str
) -> None:
    caplog.set_level(logging.DEBUG)
    params = {"CallSid": FORGED, "AccountSid": ACCOUNT, "From": FORGED, "CallStatus": FORGED}

    status, _ = await rig.twilio.post(route, params, signature="Zm9yZ2Vk")

    assert status == 403
    assert "password reset" not in caplog.text and "CA1" not in caplog.text
    assert [r.getMessage() for r in caplog.records if "refused" in r.getMessage()] == [
        f"twilio webhook {route} refused: bad signature"
    ]


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
)
async def test_given_an_unreadable_form_then_400_not_500(
    rig: Rig, caplog: pytest.LogCaptureFixture, content_type: str
) -> None:
    caplog.set_level(logging.DEBUG)
    resp = await rig.twilio.client.post(
        "/twilio/voice",
        data=b"--x\r\nCallSid=CA1&\xff\xfe=" + FORGED.encode(),
        headers={"Content-Type": content_type},
    )

    assert resp.status == 400
    assert "password reset" not in caplog.text
