"""The Twilio adapter's call state in `twilio_call`: a second adapter on the same database
(the process that takes over after kill -9 of the first) carries the calls on where the
first left them, never places a ref the first placed, and resyncs from Twilio what it
missed. Two adapters on one migrated database, the REST fake on loopback, webhooks signed
as Twilio signs them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from dispatch.timers import ManualTimers
from eventlog.clock import ManualClock
from eventlog.commands import CommandQueue, serve
from eventlog.db import make_engine
from ivr.flows import MERCHANT_OFFER
from ivr.library import FlowLibrary
from providers.base import CallAnswered, CallEnded, CallRinging, DigitPressed, FlowFinished
from providers.relay import Executor
from providers.twilio import TwilioConfig, TwilioTelephony, handover, webhook_app
from providers.twilio.state import CallTable
from providers.twilio.webhooks import Webhooks
from tests.providers.twilio.test_twilio_ivr import OFFER
from tests.providers.twilio.twilio_fakes import (
    PUBLIC,
    FakeTwilioApi,
    Recorder,
    Rig,
    TwilioSide,
)


@contextlib.asynccontextmanager
async def process(url: str, api: FakeTwilioApi, config: TwilioConfig) -> AsyncIterator[Rig]:
    """One process's adapter, keeping its calls in the database, with its webhooks."""
    engine = make_engine(url)
    adapter = TwilioTelephony(config)
    adapter.keep_state(CallTable(engine), FlowLibrary(None).get)
    root = web.Application()
    root.add_subapp("/twilio", webhook_app(adapter))
    client: TestClient[Any, Any] = TestClient(TestServer(root, host="127.0.0.1"))
    try:
        await adapter.__aenter__()
        recorder = Recorder(adapter)
        await client.start_server()
        try:
            yield Rig(adapter, recorder, TwilioSide(client), api)
        finally:
            await client.close()
            await adapter.__aexit__(None, None, None)
            await recorder.close()
    finally:
        await engine.dispose()


@pytest.mark.parametrize("migrated_db_url", ["sqlite", "postgresql"], indirect=True)
async def test_given_an_offer_mid_menu_when_another_adapter_takes_over_then_it_carries_on(
    migrated_db_url: str, api: FakeTwilioApi, config: TwilioConfig
) -> None:
    ref = "offer-31"
    async with process(migrated_db_url, api, config) as first:
        await first.adapter.originate(ref=ref, number="+8613900000031")
        [sid] = api.sids_created
        await first.twilio.status(sid, "ringing", ref=ref)
        assert await first.events.take() == [CallRinging(ref)]
        # the merchant answers; dispatch starts the offer; its first turn is served
        await first.twilio.status(sid, "in-progress", ref=ref)
        # as dispatch passes it: the deadline is a datetime
        context = OFFER | {"deadline": datetime(2026, 12, 4, 7, 30, tzinfo=UTC)}
        await first.adapter.run_flow(ref, MERCHANT_OFFER, context=context)
        doc = await first.twilio.voice(sid, ref=ref)
        assert doc.gather_action() is not None
    # the first process is gone (its memory with it); Twilio's call goes on
    api.statuses[sid] = "in-progress"
    async with process(migrated_db_url, api, config) as second:
        assert await second.adapter.live_calls() == {ref}
        assert len(api.calls_fetched()) == 1  # resynced from Twilio
        # the dispatch of the new owner places the ref again: it is not placed twice
        await second.adapter.originate(ref=ref, number="+8613900000031")
        assert len(api.calls_created()) == 1
        # the merchant presses 1 in the turn the first process served
        after = await second.twilio.gather(doc, sid, "1")
        assert after.verbs()  # the next turn, rendered by the new owner
        events = await second.events.take()
        assert DigitPressed(ref, "1") in events
        [done] = [e for e in events if isinstance(e, FlowFinished)]
        assert done.outcome == "accepted"
        assert CallAnswered(ref) not in events  # answered once, on the first process
        await second.twilio.status(sid, "completed", ref=ref)
        assert CallEnded in {type(e) for e in await second.events.take()}
    # an ended call keeps only its ref and progress: no flow variables, no turns
    async with process(migrated_db_url, api, config) as third:
        assert await third.adapter.live_calls() == set()
        await third.adapter.originate(ref=ref, number="+8613900000031")
        assert len(api.calls_created()) == 1
        engine = make_engine(migrated_db_url)
        try:
            [row] = await CallTable(engine).load()
        finally:
            await engine.dispose()
        assert "context" not in row and "answers" not in row


@pytest.mark.parametrize("migrated_db_url", ["postgresql"], indirect=True)
async def test_given_a_call_that_ended_while_nobody_owned_it_then_resync_reports_its_end(
    migrated_db_url: str, api: FakeTwilioApi, config: TwilioConfig
) -> None:
    ref = "survey-5"
    async with process(migrated_db_url, api, config) as first:
        await first.adapter.originate(ref=ref, number="+8613900000005")
        [sid] = api.sids_created
        await first.twilio.status(sid, "ringing", ref=ref)
    api.statuses[sid] = "no-answer"  # its callback went to a process that was gone
    async with process(migrated_db_url, api, config) as second:
        await second.events.settle()
        assert await second.adapter.live_calls() == set()
        names = [type(e).__name__ for e in await second.events.calls()]
        assert names == ["OriginateFailed"]


@contextlib.asynccontextmanager
async def standby_webhooks(
    url: str, config: TwilioConfig, *, owner: Webhooks | None, timeout_s: float = 10
) -> AsyncIterator[TwilioSide]:
    """A standby's webhook app (its adapter never opened) handing its requests to `owner`
    through the command table; no owner serving with `owner=None`."""
    engines = make_engine(url), make_engine(url)
    standby = Webhooks(TwilioTelephony(config))
    handover.forward(
        standby, CommandQueue(engines[0], me="standby"), lambda: False, timeout_s=timeout_s
    )
    server = None
    if owner is not None:
        executor = Executor(
            owner.adapter,
            ManualTimers(ManualClock(datetime(2026, 12, 4, 9, tzinfo=UTC))),
            FlowLibrary(None).get,
            handlers={handover.TARGET: handover.handler(owner)},
        )
        queue = CommandQueue(engines[1], me="owner")
        server = asyncio.create_task(serve(queue, executor, poll_s=0.01))
    root = web.Application()
    root.add_subapp("/twilio", webhook_app(standby.adapter, hooks=standby))
    client: TestClient[Any, Any] = TestClient(TestServer(root, host="127.0.0.1"))
    await client.start_server()
    try:
        yield TwilioSide(client)
    finally:
        await client.close()
        if server is not None:
            server.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server
        for engine in engines:
            await engine.dispose()


@pytest.mark.parametrize("migrated_db_url", ["postgresql"], indirect=True)
async def test_given_a_standby_when_twilio_posts_to_it_then_the_owner_answers(
    migrated_db_url: str, api: FakeTwilioApi, config: TwilioConfig
) -> None:
    ref = "offer-41"
    async with process(migrated_db_url, api, config) as owner:
        hooks = Webhooks(owner.adapter)
        async with standby_webhooks(migrated_db_url, config, owner=hooks) as twilio:
            await owner.adapter.originate(ref=ref, number="+8613900000041")
            [sid] = api.sids_created
            assert await twilio.status(sid, "ringing", ref=ref) == 204
            assert await owner.events.take() == [CallRinging(ref)]
            # answered before dispatch's command: the owner does not wait, Twilio asks again
            doc = await twilio.voice(sid, ref=ref)
            assert doc.gather() is None and doc.redirect() == f"{PUBLIC}/voice?ref={ref}"
            assert await owner.events.take() == [CallAnswered(ref)]
            await owner.adapter.run_flow(ref, MERCHANT_OFFER, context=OFFER)
            doc = await twilio.follow(doc, sid)
            assert doc.gather_action() == f"{PUBLIC}/gather?ref={ref}&turn=1"
            await twilio.gather(doc, sid, "1")
            [done] = [e for e in await owner.events.take() if isinstance(e, FlowFinished)]
            assert done.outcome == "accepted"
            # a forged request stops at the standby
            code, _ = await twilio.post("status", {"CallSid": sid}, signature="forged")
            assert code == 403
        assert len(api.calls_created()) == 1


@pytest.mark.parametrize("migrated_db_url", ["postgresql"], indirect=True)
async def test_given_no_owner_when_twilio_posts_to_a_standby_then_ask_again_or_503(
    migrated_db_url: str, api: FakeTwilioApi, config: TwilioConfig
) -> None:
    async with standby_webhooks(migrated_db_url, config, owner=None, timeout_s=0.2) as twilio:
        doc = await twilio.voice("CA1", ref="offer-1")
        assert doc.verbs() == ["Pause", "Redirect"]
        assert doc.redirect() == f"{PUBLIC}/voice?ref=offer-1"
        assert await twilio.status("CA1", "completed", ref="offer-1") == 503
    assert api.requests == []  # a standby never talks to Twilio's API
