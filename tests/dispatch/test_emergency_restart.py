"""A restart mid-escalation (both databases): the new process continues it from its row,
schedules its deadline again, and never rings the same step twice."""

from __future__ import annotations

from sqlalchemy import select

from dispatch.models import EmergencyEscalation
from providers.base import OriginateFailure
from providers.memory import MemoryPBX
from tests.conftest import eventually
from tests.dispatch.usecases import use_cases

ONCALL = ["+8613500000001", "+8613500000002"]


async def test_given_an_escalation_on_call_when_restarted_then_it_goes_on_without_ringing_twice(
    seeded_db_url: str,
) -> None:
    async with MemoryPBX(time_scale=1.0, ring_timeout_s=300) as pbx:

        def out_to(number: str) -> list[str]:
            out = [c for c in pbx.calls.values() if c.direction == "out"]
            return [c.ref for c in out if c.number == number]

        async with use_cases(seeded_db_url, pbx, pump=True) as first:
            for number in ONCALL:
                await first.dispatch.oncall.add(phone=number)
            ref = await pbx.dial_in("+862354000001")

            async def asking() -> bool:
                return bool(pbx.calls[ref].waiting_digits)

            await eventually(asking)
            await pbx.press(ref, "1")  # nobody on duty: on-call phone 1 rings at once
            await eventually(lambda: _true(out_to(ONCALL[0])))
        # the process stops while on-call phone 1 rings; the PBX (and the caller) go on
        async with use_cases(seeded_db_url, pbx, pump=True) as second:
            second.clock.set(first.clock.now())
            await second.dispatch.reconciler.start()
            keys = await second.timers.keys()
            async with second.store.read() as session:
                (row,) = (await session.execute(select(EmergencyEscalation))).scalars()
            assert (row.stage, row.step) == ("oncall", 0)
            assert f"emergency:{row.call_id}" in keys  # the on-call time runs on
            assert f"queue:{row.call_id}" in keys  # the caller's holding prompt loops on
            assert len(out_to(ONCALL[0])) == 1  # not rung again
            await pbx.reject(out_to(ONCALL[0])[0], OriginateFailure.NO_ANSWER)
            await eventually(lambda: _true(out_to(ONCALL[1])))
            fired = await second.timers.advance(60)
            assert f"emergency:{row.call_id}" in fired
            async with second.store.read() as session:
                after = await session.get(EmergencyEscalation, row.call_id, populate_existing=True)
            assert after is not None and after.stage == "contacts"
            assert [len(out_to(n)) for n in ONCALL] == [1, 1]


async def _true(value: object) -> bool:
    return bool(value)
