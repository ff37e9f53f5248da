"""An emergency on the Twilio adapter (signed webhooks on loopback, the REST API faked on
loopback), with the dispatch services on both databases: the emergency key with nobody on
duty rings the on-call list through Calls.create, one phone after another; the one who
answers hears who calls and from where, presses 1, and is joined with the caller in a
conference."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from dispatch.config import DispatchConfig
from dispatch.models import EmergencyEscalation
from providers.twilio import TwilioConfig, TwilioTelephony
from providers.twilio.webhooks import webhook_app
from registry.models import Resident
from tests.conftest import eventually
from tests.dispatch.usecases import UseCases, use_cases
from tests.providers.twilio.twilio_fakes import (
    ACCOUNT,
    PLATFORM,
    PUBLIC,
    TOKEN,
    Doc,
    FakeTwilioApi,
    TwilioSide,
)

ONCALL = ["+8613500000001", "+8613500000002"]
RESIDENT = "+862354000001"  # resident 1 of the demo community


@contextlib.asynccontextmanager
async def on_twilio(db_url: str) -> AsyncIterator[tuple[UseCases, TwilioSide, FakeTwilioApi]]:
    """The dispatch services on the Twilio adapter, its webhooks served on loopback."""
    async with FakeTwilioApi() as api:
        config = TwilioConfig(
            account_sid=ACCOUNT,
            auth_token=TOKEN,
            public_url=PUBLIC,
            from_number=PLATFORM,
            api_base_url=api.url,
            handoff_wait_s=0.0,
        )
        adapter = TwilioTelephony(dataclasses.replace(config))
        async with adapter:
            root = web.Application()
            root.add_subapp("/twilio", webhook_app(adapter))
            client: TestClient[Any, Any] = TestClient(TestServer(root, host="127.0.0.1"))
            await client.start_server()
            try:
                async with use_cases(
                    db_url, adapter, pump=True, config=DispatchConfig(match_seed=7), speech=adapter
                ) as uc:
                    yield uc, TwilioSide(client), api
            finally:
                await client.close()


async def next_doc(twilio: TwilioSide, doc: Doc, sid: str, *, until: str) -> Doc:
    """Follow the call's hold loop until its TwiML has the verb `until`."""
    current = [doc]

    async def check() -> Doc | None:
        if until in current[0].verbs() or (current[0].gather() is not None and until == "Gather"):
            return current[0]
        current[0] = await twilio.follow(current[0], sid)
        return None

    found: Doc = await eventually(check)
    return found


def created_to(api: FakeTwilioApi, number: str) -> list[Any]:
    return [r for r in api.calls_created() if r.form["To"] == number]


async def test_given_nobody_on_duty_when_the_emergency_key_on_twilio_then_oncall_rung_and_joined(
    seeded_db_url: str,
) -> None:
    async with on_twilio(seeded_db_url) as (uc, twilio, api):
        for number in ONCALL:
            await uc.dispatch.oncall.add(phone=number)
        hold = await twilio.voice("CA-CALLER", From=RESIDENT, To="12349")
        menu = await next_doc(twilio, hold, "CA-CALLER", until="Gather")
        waiting = await twilio.gather(menu, "CA-CALLER", "1")  # 有紧急情况请按 1

        await eventually(lambda: _true(created_to(api, ONCALL[0])))
        (first,) = created_to(api, ONCALL[0])
        first_ref = first.form["Url"].rsplit("ref=", 1)[1]
        first_sid = api.sids_created[api.calls_created().index(first)]
        assert first_ref.endswith("-oncall-0")
        assert await twilio.status(first_sid, "no-answer", ref=first_ref) < 300

        await eventually(lambda: _true(created_to(api, ONCALL[1])))
        (second,) = created_to(api, ONCALL[1])
        ref = second.form["Url"].rsplit("ref=", 1)[1]
        sid = api.sids_created[api.calls_created().index(second)]
        assert ref.endswith("-oncall-1")
        answered = await twilio.voice(sid, ref=ref, To=ONCALL[1])
        prompt = await next_doc(twilio, answered, sid, until="Gather")
        async with uc.store.read() as session:
            resident = await session.get(Resident, 1)
            assert resident is not None
        said = " ".join(prompt.said())
        assert "紧急呼叫" in said and resident.address in said
        await twilio.gather(prompt, sid, "1")

        async def taken() -> EmergencyEscalation | None:
            async with uc.store.read() as session:
                rows = await session.execute(
                    EmergencyEscalation.__table__.select()  # type: ignore[attr-defined]
                )
                row = rows.first()
                return row if row is not None and row.stage == "taken" else None

        row = await eventually(taken)
        assert row.taken_by.startswith("oncall:")
        joined = await next_doc(twilio, waiting, "CA-CALLER", until="Dial")
        assert ref in joined.xml  # the caller's conference is named by both calls
        assert len(created_to(api, ONCALL[0])) == len(created_to(api, ONCALL[1])) == 1


async def _true(value: object) -> bool:
    return bool(value)
