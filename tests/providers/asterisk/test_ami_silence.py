"""Silent calls on the Asterisk adapter (the fake AMI server replaying a real capture, and a
fake FastAGI channel playing Asterisk's side of the menu), with the dispatch services on
both databases.

`talk_detect.raw` was captured from the real Asterisk 20 of the PBX tier: a high-risk demo
resident (+862354000005) rang the hotline, whose dialplan sets ``TALK_DETECT(set)``, and
SIPp played a second of voice-band tone twice, pressing no key. Asterisk raised
``ChannelTalkingStart`` (the channel snapshot headers only; SIPp sends no RTP between the
two, so no ``ChannelTalkingStop`` followed). Replayed as captured, the caller spoke: the
menu running out sends them to the operators as a routine call. Replayed without that one
message, the same call is a silent emergency."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from dispatch.models import Call
from eventlog.models import Event
from providers.asterisk.config import AsteriskConfig
from providers.asterisk.decode import decode_bytes
from providers.asterisk.telephony import AsteriskTelephony
from tests.conftest import eventually
from tests.dispatch.usecases import UseCases, use_cases
from tests.providers.asterisk.conftest import FIXTURES
from tests.providers.asterisk.fake_ami import FakeAgiChannel, FakeAMI, channel_event

CAPTURE = (FIXTURES / "talk_detect.raw").read_bytes()
UID = "1796410514.0"  # the caller's channel in the capture
REF = f"ast-{UID}"
CHANNEL = "SIP/127.0.0.1-00000000"


def before_hangup(data: bytes) -> bytes:
    """The capture up to the caller hanging up (the menu is still running then)."""
    return data[: data.index(b"Event: HangupRequest")]


def without_talking(data: bytes) -> bytes:
    """The capture with its ChannelTalkingStart message cut out."""
    start = data.index(b"Event: ChannelTalkingStart")
    end = data.index(b"\r\n\r\n", start) + 4
    return data[:start] + data[end:]


def no_key(command: str) -> str:
    """Asterisk's side of a menu nobody keys in: every prompt plays out, no digit comes."""
    return "200 result=0 endpos=8000" if command.startswith("STREAM") else "200 result=0"


async def names(uc: UseCases, call_id: int) -> list[str]:
    async with uc.store.read() as session:
        rows = await session.execute(
            select(col(Event.name)).where(
                col(Event.subject) == "call", col(Event.subject_id) == str(call_id)
            )
        )
        return list(rows.scalars())


async def the_call(uc: UseCases) -> Call | None:
    async with uc.store.read() as session:
        found = await session.execute(select(Call).where(col(Call.ref) == REF))
        return found.scalars().first()


async def menu_runs_out(uc: UseCases, tel: AsteriskTelephony, ami: FakeAMI, data: bytes) -> Call:
    """The captured call reaches the hotline, its menu runs out with no key; the call as
    dispatch has it once it waits for an operator."""
    agi = FakeAgiChannel(tel.agi_port, ref=REF, channel=CHANNEL, uniqueid=UID)
    await agi.connect()
    await eventually(lambda: _true(REF in tel._agi.sessions))  # type: ignore[union-attr]
    await ami.send(data)

    async def in_menu() -> Call | None:
        call = await the_call(uc)
        return call if call is not None and call.state == "ivr" else None

    call = await eventually(in_menu)
    assert call.id is not None
    if b"ChannelTalkingStart" in data:
        # the caller's speech is on the timeline before the menu can run out
        await eventually(lambda: _has(uc, call.id, "call.speech"))
    try:
        await asyncio.wait_for(agi.serve(no_key, limit=400), 30)
    finally:
        await agi.close()

    async def queued() -> Call | None:
        found = await the_call(uc)
        return found if found is not None and found.state == "queued" else None

    return await eventually(queued)


async def _true(value: object) -> bool:
    return bool(value)


async def _has(uc: UseCases, call_id: Any, name: str) -> bool:
    return name in await names(uc, call_id)


def test_given_the_capture_then_the_caller_spoke_on_the_hotline_call() -> None:
    events = [e["event"] for e in decode_bytes(CAPTURE)]
    assert events == ["CallOffered", "CallAnswered", "CallerSpoke", "CallEnded"]


def test_given_talking_on_an_operators_leg_then_nothing_about_the_caller() -> None:
    leg = channel_event(
        "ChannelTalkingStart", "SIP/7-00000001", "901.2", Linkedid=UID, Context="yijing-operators"
    )
    events = [e["event"] for e in decode_bytes(before_hangup(CAPTURE) + leg)]
    assert events.count("CallerSpoke") == 1  # the caller's, from the capture


async def test_given_a_high_risk_caller_who_speaks_but_presses_nothing_then_routine(
    seeded_db_url: str, ami: FakeAMI, config: AsteriskConfig
) -> None:
    async with (
        AsteriskTelephony(config) as tel,
        use_cases(seeded_db_url, tel, speech=tel, pump=True) as uc,
    ):
        call = await menu_runs_out(uc, tel, ami, before_hangup(CAPTURE))
        assert (call.emergency, call.emergency_reason) == (False, None)
        assert call.id is not None
        seen = await names(uc, call.id)
        assert seen.count("call.speech") == 1 and "emergency.flagged" not in seen


async def test_given_a_high_risk_caller_who_neither_speaks_nor_presses_then_a_silent_emergency(
    seeded_db_url: str, ami: FakeAMI, config: AsteriskConfig
) -> None:
    async with (
        AsteriskTelephony(config) as tel,
        use_cases(seeded_db_url, tel, speech=tel, pump=True) as uc,
    ):
        call = await menu_runs_out(uc, tel, ami, without_talking(before_hangup(CAPTURE)))
        assert (call.emergency, call.emergency_reason) == (True, "silent")
        async with uc.store.read() as session:
            flagged = (
                await session.execute(
                    select(Event).where(
                        col(Event.name) == "emergency.flagged",
                        col(Event.subject_id) == str(call.id),
                    )
                )
            ).scalar_one()
        # the dialplan's TALK_DETECT was listening: silent by keys and by speech
        assert flagged.data["by_speech"] is True
