"""Away by keypad (issue 15): a resident with daily care calls presses 7 on the hotline to
say they are away for some days (no care call then), or back home. On the memory PBX and
the manual clock, SQLite and PostgreSQL; the period rules are pure and tested alone."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import select

from dispatch.models import Call
from dispatch.wellbeing_away import periods_away, periods_back
from tests.conftest import Harness, eventually
from tests.dispatch.test_wellbeing import (
    DUE_S,
    phone_of,
    round_in,
    set_plan,
    timeline,
    wellbeing_calls,
)
from tests.operator_console.test_whole_path import waiting_for_keys

DAY = 24 * 3600


async def keys(h: Harness, ref: str, *digits: str) -> None:
    for digit in digits:
        await waiting_for_keys(h, ref)
        await h.pbx.press(ref, digit)


async def plan_away(h: Harness) -> list[dict[str, str]]:
    result: list[dict[str, str]] = (await h.call("GET", "/residents/1/wellbeing"))["away"]
    return result


async def ended(h: Harness, ref: str) -> Call:
    async def check() -> Call | None:
        async with h.services.store.read() as session:
            call = (await session.execute(select(Call).where(Call.ref == ref))).scalar_one()  # type: ignore[arg-type]
        return call if call.ended_at is not None else None

    result: Call = await eventually(check)
    return result


async def keyed(h: Harness, name: str) -> None:
    async def check() -> bool:
        return name in await timeline(h)

    await eventually(check)


def heard(h: Harness, ref: str) -> str:
    return " ".join(h.pbx.calls[ref].transcript)


async def test_given_a_care_plan_when_the_resident_keys_away_3_days_then_no_call_till_day_4(
    harness: Harness,
) -> None:
    h = harness
    await set_plan(h)
    ref = await h.pbx.dial_in(await phone_of(h))
    await keys(h, ref, "7", "3", "1")
    await keyed(h, "wellbeing.away_by_keypad")
    call = await ended(h, ref)
    assert call.cause == "self_served"
    text = heard(h, ref)
    assert "请按 7" in text and "您要出门三天" in text
    assert "已经为您记下了" in text
    [period] = await plan_away(h)
    assert period["reason"] == "keypad"
    start = date.fromisoformat(period["from"])
    assert date.fromisoformat(period["until"]) - start == timedelta(days=2)
    # today (counted) and the next two days: away, no call
    await h.timers.advance(DUE_S)
    await round_in(h, "away")
    for _ in range(2):
        await h.timers.advance(DAY)
        await round_in(h, "away")
    assert (await timeline(h)).count("wellbeing.away") == 3
    await h.settle()
    assert wellbeing_calls(h) == []
    # the fourth day: the care call again
    await h.timers.advance(DAY)
    await round_in(h, "calling")

    async def placed() -> bool:  # the outbound engine places it once the round is calling
        return len(wellbeing_calls(h)) == 1

    await eventually(placed)


async def test_given_the_resident_away_when_they_key_back_then_the_period_ends_yesterday(
    harness: Harness,
) -> None:
    h = harness
    today = h.clock.now().date()
    start, until = today - timedelta(days=2), today + timedelta(days=5)
    await set_plan(h, away=[p(start, until)])
    ref = await h.pbx.dial_in(await phone_of(h))
    await keys(h, ref, "7", "1")
    await keyed(h, "wellbeing.back_by_keypad")
    assert "恢复每天的关爱电话" in heard(h, ref)
    assert (await ended(h, ref)).cause == "self_served"
    [period] = await plan_away(h)
    yesterday = today - timedelta(days=1)
    assert (period["from"], period["until"]) == (start.isoformat(), yesterday.isoformat())
    # tomorrow is a care day again: the call is placed
    await h.timers.advance(DUE_S)
    await round_in(h, "checked_in")  # today's hotline call counts
    await h.timers.advance(DAY)
    await round_in(h, "calling")


async def test_given_no_care_plan_then_the_menu_has_no_key_7(harness: Harness) -> None:
    h = harness
    ref = await h.pbx.dial_in(await phone_of(h))
    await keys(h, ref, "7")
    await waiting_for_keys(h, ref)
    text = heard(h, ref)
    assert "关爱电话" not in text  # the plain menu, and 7 is a wrong key there
    assert "wellbeing.away_by_keypad" not in await timeline(h)


async def test_given_a_plan_switched_off_then_key_7_is_not_offered(harness: Harness) -> None:
    h = harness
    await set_plan(h, enabled=False)
    ref = await h.pbx.dial_in(await phone_of(h))
    await waiting_for_keys(h, ref)
    assert "关爱电话" not in heard(h, ref)


# -- the period rules ---------------------------------------------------------------------

TODAY = date(2026, 12, 4)


def p(start: date, until: date, reason: str = "住院") -> dict[str, Any]:
    return {"from": start.isoformat(), "until": until.isoformat(), "reason": reason}


def test_away_counts_today_and_drops_periods_that_ended() -> None:
    old = p(TODAY - timedelta(days=9), TODAY - timedelta(days=1))
    later = p(TODAY + timedelta(days=10), TODAY + timedelta(days=12))
    got = periods_away([old, later], TODAY, 1)
    assert got == [later, {**p(TODAY, TODAY), "reason": "keypad"}]


def test_away_keeps_at_most_twenty_periods() -> None:
    future = [p(TODAY + timedelta(days=30 + i), TODAY + timedelta(days=30 + i)) for i in range(25)]
    got = periods_away(future, TODAY, 9)
    assert len(got) == 20 and got[-1]["until"] == (TODAY + timedelta(days=8)).isoformat()


def test_back_ends_the_running_period_and_keeps_the_others() -> None:
    running = p(TODAY - timedelta(days=3), TODAY + timedelta(days=3))
    begun_today = p(TODAY, TODAY + timedelta(days=1), "keypad")
    later = p(TODAY + timedelta(days=10), TODAY + timedelta(days=11))
    got = periods_back([running, begun_today, later], TODAY)
    assert got == [{**running, "until": (TODAY - timedelta(days=1)).isoformat()}, later]
