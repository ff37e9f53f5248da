"""The one outbound engine on the memory PBX with the manual clock (SQLite and
PostgreSQL): never more outbound calls at once than the backend's channels, and lines
kept free for the hotline; calls per second as the clock says; wellbeing before reminders
before notices; one resident not rung for two campaigns within ten minutes (but a
wellbeing call is never held by a notice); an answering machine is no check-in."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlmodel import col

from dispatch.config import DispatchConfig
from dispatch.models import Call, OutboundJob
from dispatch.outbound_engine import Pacing, pacing_for
from providers.base import OriginateFailure, TelephonyUnavailable
from providers.memory.pbx import Script
from registry.models import Grid, Resident, User
from tests.conftest import Harness, eventually, started_harness
from tests.dispatch.test_campaigns import NOTICE, PILOT, pilot_grid, progress, ringing
from tests.dispatch.test_restart import RecordingPBX
from tests.dispatch.test_wellbeing import phone_of, round_in, set_plan, timeline
from tests.dispatch.usecases import use_cases
from tests.operator_console.test_whole_path import press_when_asked

BASE = DispatchConfig(match_seed=7, survey_delay_s=60, offer_timeout_s=90, parallel_offers_urgent=1)


@pytest.fixture
def app_with(tmp_path: Path, seeded_db_url: str) -> Callable[..., Any]:
    """The app with outbound pacing of the test's own."""

    def start(**pacing: Any) -> Any:
        return started_harness(tmp_path, seeded_db_url, config=replace(BASE, **pacing))

    return start


def live_out(h: Harness) -> int:
    return sum(1 for c in h.pbx.calls.values() if c.direction == "out" and c.state != "ended")


def most_at_once(h: Harness) -> list[int]:
    """The most outbound calls live in the PBX whenever a new one rings (kept up to date)."""
    peak = [0]

    def follow(event: dict[str, Any]) -> None:
        if event["name"] == "call.ringing":
            peak[0] = max(peak[0], live_out(h))

    h.services.store.bus.listen(follow, subjects=("call",))
    return peak


def outbound_refs(h: Harness) -> list[str]:
    return [c["ref"] for c in h.pbx.snapshot() if c["direction"] == "out"]


async def hear_and_press(h: Harness, ref: str, digit: str = "1") -> None:
    await h.pbx.answer(ref)
    await press_when_asked(h, ref, digit)


async def test_given_two_channels_when_a_notice_goes_out_then_never_more_than_two_at_once(
    app_with: Callable[..., Any],
) -> None:
    async with app_with(outbound_channels=2, outbound_cps=50) as h:
        await pilot_grid(h)
        peak = most_at_once(h)
        made = await h.call("POST", "/campaigns", as_user="supervisor", json=NOTICE, expect=201)
        seen: set[str] = set()
        calls = await ringing(h, seen, 2)
        heard = 0
        while heard < len(PILOT):
            call = calls.pop(0)
            await hear_and_press(h, call["ref"])
            heard += 1
            assert live_out(h) <= 2
            if len(seen) < len(PILOT):
                calls += await ringing(h, seen, 1)  # the freed channel's next call
        await progress(h, made["id"], state="done", reached=5)
        assert peak[0] == 2 and len(seen) == 5


async def test_given_a_caller_on_the_hotline_then_the_reserved_lines_stay_free_for_inbound(
    app_with: Callable[..., Any],
) -> None:
    # a trunk of three lines, one always kept for the hotline: a caller on the line leaves
    # one line for outbound calls
    async with app_with(outbound_channels=3, inbound_reserved_lines=1, trunk_lines=3) as h:
        await pilot_grid(h)
        caller = await h.pbx.dial_in("+862354000001")  # resident 1: not in the grid
        await eventually(lambda: _answered(h, caller))
        await h.call("POST", "/campaigns", as_user="supervisor", json=NOTICE, expect=201)
        seen: set[str] = set()
        await ringing(h, seen, 1)
        await h.pbx.party_hangup(caller)  # the caller's line is free again: one more
        await ringing(h, seen, 1)
        assert live_out(h) == 2


async def _answered(h: Harness, ref: str) -> bool:
    return any(c["ref"] == ref and c["flow"] for c in h.pbx.snapshot())


async def test_given_two_calls_a_second_then_the_manual_clock_paces_them(
    app_with: Callable[..., Any],
) -> None:
    async with app_with(outbound_cps=2) as h:
        await pilot_grid(h)
        await h.call("POST", "/campaigns", as_user="supervisor", json=NOTICE, expect=201)
        seen: set[str] = set()
        await ringing(h, seen, 2)  # the first second's two
        await h.timers.advance(0.4)
        assert len(outbound_refs(h)) == 2  # no token yet
        await h.timers.advance(0.6)
        await ringing(h, seen, 2)
        await h.timers.advance(1)
        await ringing(h, seen, 1)
        assert len(outbound_refs(h)) == 5


async def test_given_one_channel_then_wellbeing_goes_before_a_reminder_before_a_notice(
    app_with: Callable[..., Any],
) -> None:
    async with app_with(outbound_channels=1) as h:
        await pilot_grid(h)
        await h.call("POST", "/campaigns", as_user="supervisor", json=NOTICE, expect=201)
        seen: set[str] = set()
        [notice] = await ringing(h, seen, 1)  # the channel: the notice's first call
        # at 10:30 a reminder (resident 2) and a wellbeing call (resident 1) fall due
        await h.call("POST", "/residents/2/reminders", expect=201, json={
            "kind": "medication", "text": "该吃药了", "at": "10:30", "days": [1, 2, 3, 4, 5, 6, 7],
        })  # fmt: skip
        await set_plan(h)
        await h.timers.advance(30 * 60)
        await h.pbx.reject(notice["ref"], OriginateFailure.NO_ANSWER)  # the channel is free
        [first] = await ringing(h, seen, 1)
        assert first["ref"].startswith("wb-"), first  # queued last, placed first
        await h.pbx.reject(first["ref"], OriginateFailure.BUSY)
        [second] = await ringing(h, seen, 1)
        assert second["ref"].startswith("rm-"), second
        await h.pbx.reject(second["ref"], OriginateFailure.BUSY)
        [third] = await ringing(h, seen, 1)
        assert third["ref"].startswith("campaign-"), third


async def test_given_two_notices_then_a_resident_is_not_rung_twice_in_ten_minutes(
    harness: Harness,
) -> None:
    h = harness
    await pilot_grid(h)
    one = await h.call("POST", "/campaigns", as_user="supervisor", json=NOTICE, expect=201)
    seen: set[str] = set()
    for call in await ringing(h, seen, 5):
        await hear_and_press(h, call["ref"])
    await progress(h, one["id"], state="done")
    two = await h.call("POST", "/campaigns", as_user="supervisor", json=NOTICE, expect=201)
    await h.timers.advance(300)
    assert not [r for r in outbound_refs(h) if r not in seen]
    await progress(h, two["id"], called=0, pending=5)
    await h.timers.advance(300)  # ten minutes after the first notice: the second's turn
    second = await ringing(h, seen, 5)
    assert all(c["ref"].startswith(f"campaign-{two['id']}-") for c in second)
    assert all(c["ref"].count(".") == 0 for c in second)  # no try was spent waiting


async def test_given_a_notice_minutes_ago_then_a_wellbeing_call_is_not_held(
    harness: Harness,
) -> None:
    h = harness
    await pilot_grid(h)
    resident = PILOT[0]
    await h.call("POST", "/campaigns", as_user="supervisor", json=NOTICE, expect=201)
    seen: set[str] = set()
    for call in await ringing(h, seen, 5):
        await hear_and_press(h, call["ref"])
    await set_plan(h, resident, window_start="10:00", window_end="10:05")
    await h.timers.advance(5 * 60)  # five minutes after the notice: a wellbeing call goes
    [wb] = await ringing(h, seen, 1)
    assert wb["ref"].startswith("wb-") and wb["number"] == await phone_of(h, resident)


async def test_given_an_answering_machine_then_the_wellbeing_try_is_not_a_check_in(
    harness: Harness,
) -> None:
    h = harness
    await set_plan(h)
    await h.timers.advance(30 * 60)
    [call] = await ringing(h, set(), 1)
    await h.pbx.answer(call["ref"], machine=True)
    rnd = await round_in(h, "calling")

    async def retried() -> bool:
        return "wellbeing.retry" in await timeline(h)

    await eventually(retried)
    assert rnd["attempts"] == 1 and "wellbeing.checked_in" not in await timeline(h)
    async with h.services.store.read() as session:
        query = select(Call.answered_by).where(Call.ref == call["ref"])  # type: ignore[call-overload]
        by = (await session.execute(query)).scalar()
    assert by == "machine"
    await eventually(lambda: _ended(h, call["ref"]))  # hung up on the machine
    # the next try: a person this time, who checks in
    h.pbx.script(call["number"], Script(action="answer", digits="1"))
    await h.timers.advance(301)
    rnd = await round_in(h, "checked_in")
    assert rnd["attempts"] == 2 and len([r for r in outbound_refs(h) if r.startswith("wb-")]) == 2


async def _ended(h: Harness, ref: str) -> bool:
    return h.pbx.calls[ref].state == "ended"


class DroppedPBX(RecordingPBX):
    """The simulator whose link to us drops the moment a call is handed to it (it says
    it is up until then, as an AMI link does until an action finds it gone)."""

    async def originate(self, *, ref: str, number: str, **kw: Any) -> None:
        raise TelephonyUnavailable(f"originate {ref}: the link dropped")


async def test_given_a_restart_with_calls_handed_over_and_queued_then_each_is_dialled_once(
    seeded_db_url: str,
) -> None:
    """The process dies with two notice calls handed to a backend that could not take them
    (the line was down: undialed) and three still in the queue: the next process dials
    the two with their refs once the line is up, then the queue's three, each once."""
    dialled: list[str] = []
    config = replace(BASE, outbound_channels=2)
    async with DroppedPBX(dialled) as pbx, use_cases(seeded_db_url, pbx, config=config) as one:
        async with one.store.tx() as tx:
            tx.session.add(Grid(code="T1", name="试点网格", community="白公路"))
            await tx.session.flush()
            await tx.session.execute(
                update(Resident).where(col(Resident.id).in_(PILOT)).values(grid_code="T1")
            )
        async with one.store.read() as session:
            query = select(User).where(User.username == "supervisor")  # type: ignore[arg-type]
            user = (await session.execute(query)).scalar_one()
        made = await one.dispatch.campaigns.create(
            user=user, title="讲座", text=NOTICE["text"], grid_codes=["T1"]
        )
        async with one.store.read() as session:
            jobs = select(OutboundJob.state)  # type: ignore[call-overload]
            states = (await session.execute(jobs)).scalars().all()
        assert sorted(states) == ["placed", "placed", "queued", "queued", "queued"]
    assert dialled == []
    wide = replace(config, outbound_channels=30)
    async with (
        RecordingPBX(dialled) as pbx,
        use_cases(seeded_db_url, pbx, config=wide, pump=True) as two,
    ):

        async def all_five() -> bool:
            return len(dialled) >= 5

        async def all_called() -> bool:
            return (await two.dispatch.campaigns.progress(made.id))["called"] == 5

        await eventually(all_five)
        await eventually(all_called)
        await two.timers.advance(3600)
    assert len(dialled) == 5 and set(Counter(dialled).values()) == {1}, dialled


def test_given_a_backend_then_its_own_pace_unless_the_settings_say_otherwise() -> None:
    twilio = pacing_for("twilio")
    assert (twilio["outbound_cps"], twilio["outbound_channels"]) == (1.0, 10)
    asterisk = pacing_for("asterisk", channels=8, inbound_reserved=3)
    assert (asterisk["outbound_cps"], asterisk["outbound_channels"]) == (5.0, 8)
    pace = Pacing.of(replace(BASE, **asterisk))
    assert (pace.inbound_reserved, pace.trunk) == (3, 11)  # unset trunk: channels + reserved
    assert Pacing.of(replace(BASE, **pacing_for("memory", trunk_lines=40))).trunk == 40
