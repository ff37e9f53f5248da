"""An emergency on the Asterisk adapter (the fake AMI server on loopback speaking the wire
protocol), with the dispatch services on both databases: a caller from the hotline context
flagged an emergency with nobody free at the desk; within the answer time the first on-call
phone is originated (its one ref as a channel variable), and a failed originate moves on to
the next phone, each rung once."""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import col

from providers.asterisk.config import AsteriskConfig
from providers.asterisk.telephony import AsteriskTelephony
from registry.models import User
from tests.conftest import eventually
from tests.dispatch.usecases import use_cases
from tests.providers.asterisk.fake_ami import FakeAMI, channel_event, frame

ONCALL = ["13500000001", "13500000002"]
CALLER, CALLER_UID = "PJSIP/trunk-00000031", "900.1"
REF = "ast-900.1"


def originates_to(ami: FakeAMI, number: str) -> list[dict[str, list[str]]]:
    return [a for a in ami.named("Originate") if number in a["Channel"][0]]


async def _true(value: object) -> bool:
    return bool(value)


async def test_given_no_free_operator_when_an_emergency_on_asterisk_then_oncall_originated_in_time(
    seeded_db_url: str, ami: FakeAMI, config: AsteriskConfig
) -> None:
    async with (
        AsteriskTelephony(config) as tel,
        use_cases(seeded_db_url, tel, pump=True) as uc,
    ):
        for number in ONCALL:
            await uc.dispatch.oncall.add(phone=number)
        # an operator is logged in but paused: on duty, nobody free
        async with uc.store.read() as session:
            found = await session.execute(select(User).where(col(User.username) == "operator"))
            user = found.scalar_one()
        await uc.dispatch.desk.set_operator_state(user, "login")
        await uc.dispatch.desk.set_operator_state(user, "pause", "lunch")
        await ami.send(
            channel_event("Newchannel", CALLER, CALLER_UID, CallerIDNum="02354000001",
                          Context="yijing-hotline", Exten="12349")
        )  # fmt: skip

        async def offered() -> bool:
            async with uc.store.tx() as tx:
                return await uc.dispatch.core.call_by_ref(tx, REF) is not None

        await eventually(offered)
        assert await uc.dispatch.emergency.start(REF, "key")  # the hotline's key 1
        await uc.timers.advance(14)
        assert originates_to(ami, ONCALL[0]) == []  # the desk has its 15 s first
        fired = await uc.timers.advance(1)
        assert any(k.startswith("emergency:") for k in fired)
        await eventually(lambda: _true(originates_to(ami, ONCALL[0])))
        (first,) = originates_to(ami, ONCALL[0])
        ref = next(v for v in first["Variable"] if v.startswith("YIJING_REF="))
        assert ref.endswith("-oncall-0")
        assert first["Timeout"] == ["15000"]  # an emergency rings short
        await ami.send(
            frame(Event="OriginateResponse", ActionID=first["ActionID"][0], Response="Failure",
                  Channel=f"PJSIP/{ONCALL[0]}@trunk", Reason="3", Uniqueid="<unknown>")
        )  # fmt: skip
        await eventually(lambda: _true(originates_to(ami, ONCALL[1])))
        assert len(originates_to(ami, ONCALL[0])) == len(originates_to(ami, ONCALL[1])) == 1
