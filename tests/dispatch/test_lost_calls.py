"""The reconciler's lost-call check at start, on every backend: calls the database still
has open that the backend does not know any more end as `lost`; calls it knows stay; a
backend that cannot tell (link down) leaves every call as it is. The memory PBX, the
Asterisk adapter on the fake AMI (its correlator after the CoreShowChannels resync) and
the Twilio adapter on the loopback REST API (the calls it placed). SQLite and PostgreSQL.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlmodel import col

from dispatch.machines import call as cm
from dispatch.models import Call
from operator_console.app import live_calls_of
from providers.asterisk.config import AsteriskConfig
from providers.asterisk.telephony import AsteriskTelephony, LinkDown
from providers.memory import MemoryPBX
from providers.twilio import TwilioConfig, TwilioTelephony
from tests.conftest import MORNING, eventually
from tests.dispatch.usecases import UseCases, use_cases
from tests.providers.asterisk.fake_ami import FakeAMI
from tests.providers.twilio.twilio_fakes import ACCOUNT, PLATFORM, PUBLIC, TOKEN, FakeTwilioApi


async def open_calls(uc: UseCases, *calls: tuple[str, str]) -> None:
    """Calls as a process that stopped left them: (ref, direction), all answered."""
    async with uc.store.read() as session:
        for ref, direction in calls:
            inbound = direction == "in"
            session.add(
                Call(
                    ref=ref,
                    direction=direction,
                    purpose="hotline" if inbound else "arrival",
                    number="+8613900000001",
                    state=cm.CallState.QUEUED if inbound else cm.CallState.RINGING,
                    started_at=MORNING,
                    queued_at=MORNING if inbound else None,
                    dialed_at=None if inbound else MORNING,
                )
            )


async def states(uc: UseCases) -> dict[str, tuple[str, str | None]]:
    """Every call's (state, cause) by ref."""
    async with uc.store.read() as session:
        rows = (await session.execute(select(Call).order_by(col(Call.id)))).scalars().all()
        return {c.ref: (c.state.value, c.cause) for c in rows}


def asterisk_config(ami: FakeAMI) -> AsteriskConfig:
    return AsteriskConfig(
        host="127.0.0.1",
        port=ami.port,
        username="yijing",
        secret="s3cret",
        agi_host="127.0.0.1",
        agi_port=0,
        action_timeout_s=0.5,
        connect_timeout_s=0.5,
        backoff_initial_s=0.02,
        backoff_max_s=0.1,
        startup_wait_s=2.0,
    )


def twilio_config(api: FakeTwilioApi) -> TwilioConfig:
    return TwilioConfig(
        account_sid=ACCOUNT,
        auth_token=TOKEN,
        public_url=PUBLIC,
        from_number=PLATFORM,
        api_base_url=api.url,
        handoff_wait_s=0.0,
    )


#: a caller Asterisk still has in the hotline queue (as CoreShowChannels lists it)
LIVE_CHANNEL = {
    "Channel": "PJSIP/trunk-02",
    "Uniqueid": "100.2",
    "Linkedid": "100.2",
    "Context": "yijing-hotline",
    "Extension": "12349",
    "ChannelState": "6",
    "CallerIDNum": "13800000002",
}


async def test_given_every_backend_when_composed_then_it_answers_for_its_live_calls() -> None:
    pbx = MemoryPBX()
    assert live_calls_of(pbx) is pbx
    ami = AsteriskTelephony(AsteriskConfig())
    assert live_calls_of(ami) is ami
    twilio = TwilioTelephony(
        TwilioConfig(account_sid=ACCOUNT, auth_token=TOKEN, public_url=PUBLIC, from_number=PLATFORM)
    )
    assert live_calls_of(twilio) is twilio


async def test_given_calls_from_before_a_restart_when_the_memory_pbx_starts_then_lost_ones_end(
    seeded_db_url: str,
) -> None:
    async with (
        MemoryPBX(time_scale=1.0) as pbx,
        use_cases(seeded_db_url, pbx, live_calls=pbx) as uc,
    ):
        ref = await pbx.dial_in("+8613800000001")
        await open_calls(uc, (ref, "in"), ("sim-old-1", "in"))

        report = await uc.dispatch.reconciler.reconcile(startup=True)

        assert report["lost_calls"] == 1
        after = await states(uc)
        assert after[ref] == ("queued", None)
        assert after["sim-old-1"] == ("abandoned", "lost")


async def test_given_calls_from_before_a_restart_when_asterisk_resynced_then_lost_ones_end(
    seeded_db_url: str,
) -> None:
    ami = await FakeAMI().start()
    ami.channels = [LIVE_CHANNEL]
    try:
        async with (
            AsteriskTelephony(asterisk_config(ami)) as tel,
            use_cases(seeded_db_url, tel, live_calls=tel) as uc,
        ):
            assert tel.health().up
            assert await tel.live_calls() == {"ast-100.2"}
            await open_calls(uc, ("ast-100.2", "in"), ("ast-100.9", "in"), ("offer-gone", "out"))

            report = await uc.dispatch.reconciler.reconcile(startup=True)

            assert report["lost_calls"] == 2
            assert await states(uc) == {
                "ast-100.2": ("queued", None),
                "ast-100.9": ("abandoned", "lost"),
                "offer-gone": ("ended", "lost"),
            }
    finally:
        await ami.close()


async def test_given_the_ami_link_down_at_start_then_no_call_is_taken_for_lost(
    seeded_db_url: str,
) -> None:
    ami = await FakeAMI().start()
    ami.channels = [LIVE_CHANNEL]
    try:
        async with (
            AsteriskTelephony(asterisk_config(ami)) as tel,
            use_cases(seeded_db_url, tel, live_calls=tel) as uc,
        ):
            await ami.go_away()  # Asterisk is restarting: it cannot say what is live

            async def down() -> bool:
                return not tel.health().up

            await eventually(down)
            with pytest.raises(LinkDown):
                await tel.live_calls()
            await open_calls(uc, ("ast-100.2", "in"), ("ast-100.9", "in"))

            report = await uc.dispatch.reconciler.reconcile(startup=True)

            assert report["lost_calls"] == 0
            assert set((await states(uc)).values()) == {("queued", None)}
    finally:
        await ami.close()


async def test_given_calls_from_before_a_restart_when_twilio_starts_then_unknown_ones_end(
    seeded_db_url: str,
) -> None:
    async with FakeTwilioApi() as api:
        tel = TwilioTelephony(twilio_config(api))
        async with tel, use_cases(seeded_db_url, tel, live_calls=tel) as uc:
            # placed by this process: the adapter follows it through its webhooks
            await tel.originate(ref="arrival-1-known", number="+8613900000001")
            assert api.sids_created
            assert await tel.live_calls() == {"arrival-1-known"}
            await open_calls(
                uc, ("arrival-1-known", "out"), ("arrival-2-before", "out"), ("CAold", "in")
            )

            report = await uc.dispatch.reconciler.reconcile(startup=True)

            assert report["lost_calls"] == 2
            assert await states(uc) == {
                "arrival-1-known": ("ringing", None),
                "arrival-2-before": ("ended", "lost"),
                "CAold": ("abandoned", "lost"),
            }


class LateLine:
    """A backend whose first answer predates a call it placed right after (the line came
    back at start and a waiting call went out while the reconciler was checking)."""

    def __init__(self, later: set[str]) -> None:
        self.answers = [set(), later]

    async def live_calls(self) -> set[str]:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


async def test_given_a_call_placed_while_checking_then_it_is_not_taken_for_lost(
    seeded_db_url: str,
) -> None:
    async with MemoryPBX(time_scale=1.0) as pbx, use_cases(seeded_db_url, pbx) as uc:
        uc.dispatch.reconciler.live_calls = LateLine({"arrival-9-resumed"})
        await open_calls(uc, ("arrival-9-resumed", "out"))

        report = await uc.dispatch.reconciler.reconcile(startup=True)

        assert report["lost_calls"] == 0
        assert await states(uc) == {"arrival-9-resumed": ("ringing", None)}
