"""Fixtures: a loopback Twilio REST API, the adapter pointed at it, and its webhooks served
on 127.0.0.1 with Twilio's side played by a signer (plain pytest-asyncio, no pytest-aiohttp)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from providers.twilio import TwilioConfig, TwilioTelephony, webhook_app
from tests.providers.twilio.twilio_fakes import (
    ACCOUNT,
    PLATFORM,
    PUBLIC,
    TOKEN,
    FakeTwilioApi,
    Recorder,
    Rig,
    TwilioSide,
)


@pytest.fixture
async def api() -> AsyncIterator[FakeTwilioApi]:
    """The REST API on loopback."""
    async with FakeTwilioApi() as fake:
        yield fake


@pytest.fixture
def config(api: FakeTwilioApi) -> TwilioConfig:
    """Config for tests: no handoff wait unless a test asks for one."""
    return TwilioConfig(
        account_sid=ACCOUNT,
        auth_token=TOKEN,
        public_url=PUBLIC,
        from_number=PLATFORM,
        operator_endpoint="client:{peer}",
        api_base_url=api.url,
        handoff_wait_s=0.0,
    )


@pytest.fixture
async def make_rig(api: FakeTwilioApi, config: TwilioConfig) -> AsyncIterator[Callable[..., Any]]:
    """Build a rig, optionally with config overrides; everything is closed afterwards."""
    closers: list[Any] = []

    async def build(**overrides: Any) -> Rig:
        adapter = TwilioTelephony(dataclasses.replace(config, **overrides))
        await adapter.__aenter__()
        recorder = Recorder(adapter)
        root = web.Application()
        root.add_subapp("/twilio", webhook_app(adapter))
        client: TestClient[Any, Any] = TestClient(TestServer(root, host="127.0.0.1"))
        await client.start_server()
        closers.append((adapter, recorder, client))
        return Rig(adapter, recorder, TwilioSide(client), api)

    yield build
    for adapter, recorder, client in reversed(closers):
        await client.close()
        await adapter.__aexit__(None, None, None)
        await recorder.close()


@pytest.fixture
async def rig(make_rig: Callable[..., Any]) -> Rig:
    """A rig with the default test config."""
    built: Rig = await make_rig()
    return built
