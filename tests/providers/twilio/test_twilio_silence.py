"""Silent calls on the Twilio adapter (signed webhooks on loopback), with the dispatch
services on both databases: a hotline caller's Gathers hear speech as well as keys
(`input="dtmf speech"`, the Chinese recogniser); a high-risk resident who says something
but presses nothing goes to the operators as a routine call, one who neither speaks nor
presses is a silent emergency. What the caller said is never kept."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlmodel import col

from dispatch.models import Call
from eventlog.models import Event
from tests.conftest import eventually
from tests.dispatch.usecases import UseCases
from tests.providers.twilio.test_twilio_emergency import next_doc, on_twilio
from tests.providers.twilio.twilio_fakes import Doc, TwilioSide

HIGH_RISK = ["+862354000005", "+862354000010"]  # demo residents 5 and 10 (孤寡)
WORDS = "喂，喂，我是王阿姨"


async def through_the_menu(twilio: TwilioSide, sid: str, caller: str, *, speak: bool) -> None:
    """A caller rings and never presses a key: they speak into the first Gather (or say
    nothing), then let every Gather run out until the flow hands them on."""
    doc = await next_doc(
        twilio, await twilio.voice(sid, From=caller, To="12349"), sid, until="Gather"
    )
    gather = doc.gather()
    assert gather is not None
    assert (gather.get("input"), gather.get("language")) == ("dtmf speech", "cmn-Hans-CN")
    first = True
    while doc.gather() is not None:
        doc = await twilio.gather(doc, sid, None, speech=WORDS if speak and first else None)
        first = False
    assert isinstance(doc, Doc) and doc.redirect() is not None  # the hold loop: waiting


async def queued(uc: UseCases, sid: str) -> Call:
    async def check() -> Call | None:
        async with uc.store.read() as session:
            found = await session.execute(select(Call).where(col(Call.ref) == sid))
            call = found.scalars().first()
        return call if call is not None and call.state == "queued" else None

    found: Call = await eventually(check)
    return found


async def events_of(uc: UseCases, call_id: Any) -> list[Event]:
    async with uc.store.read() as session:
        rows = await session.execute(
            select(Event).where(col(Event.subject) == "call", col(Event.subject_id) == str(call_id))
        )
        return list(rows.scalars())


async def test_given_a_high_risk_caller_who_speaks_but_presses_nothing_on_twilio_then_routine(
    seeded_db_url: str,
) -> None:
    async with on_twilio(seeded_db_url) as (uc, twilio, _api):
        await through_the_menu(twilio, "CA-SPEAKS", HIGH_RISK[0], speak=True)
        call = await queued(uc, "CA-SPEAKS")
        assert (call.emergency, call.emergency_reason) == (False, None)
        events = await events_of(uc, call.id)
        assert [e.name for e in events].count("call.speech") == 1
        # the words themselves are in no event
        assert not any("王阿姨" in str(e.data) for e in events)


async def test_given_a_high_risk_caller_who_says_and_presses_nothing_on_twilio_then_emergency(
    seeded_db_url: str,
) -> None:
    async with on_twilio(seeded_db_url) as (uc, twilio, _api):
        await through_the_menu(twilio, "CA-SILENT", HIGH_RISK[1], speak=False)
        call = await queued(uc, "CA-SILENT")
        assert (call.emergency, call.emergency_reason) == (True, "silent")
        flagged = [e for e in await events_of(uc, call.id) if e.name == "emergency.flagged"]
        assert [e.data["by_speech"] for e in flagged] == [True]
