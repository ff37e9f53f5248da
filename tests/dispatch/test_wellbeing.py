"""A day of wellbeing calls with the manual clock and the memory PBX (SQLite and
PostgreSQL): checked in by pressing 1; away (no call); called in first (no call); 2 puts
the resident first in the queue as an emergency; no answer N times, then a contact takes
it and reports all well; nobody takes it: an operator task and an emergency alert."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from dispatch.figures import Ev, report
from dispatch.machines.call import CallState
from dispatch.models import Call, EmergencyEscalation
from eventlog.clock import LOCAL_TZ
from eventlog.models import Event
from registry.models import EmergencyContact, ResidentPhone
from tests.conftest import Harness, eventually
from tests.operator_console.test_whole_path import ringing_out, waiting_for_keys

RESIDENT = 1
#: the window: 10:00 (the harness's morning) to 10:30; the call is due at its end
PLAN: dict[str, Any] = {"window_start": "10:00", "window_end": "10:30"}
DUE_S = 30 * 60


async def set_plan(h: Harness, resident: int = RESIDENT, **extra: Any) -> dict[str, Any]:
    body = {**PLAN, **extra}
    result: dict[str, Any] = await h.call("PUT", f"/residents/{resident}/wellbeing", json=body)
    return result


async def today(h: Harness, resident: int = RESIDENT) -> dict[str, Any] | None:
    rounds = (await h.call("GET", f"/residents/{resident}/wellbeing"))["rounds"]
    return rounds[0] if rounds else None


async def round_in(h: Harness, *states: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        rnd = await today(h)
        return rnd if rnd is not None and rnd["state"] in states else None

    result: dict[str, Any] = await eventually(check)
    return result


async def timeline(h: Harness, resident: int = RESIDENT) -> list[str]:
    async with h.services.store.read() as session:
        names = (
            await session.execute(
                select(Event.name)  # type: ignore[call-overload]
                .where(Event.subject == "resident", Event.subject_id == str(resident))
                .order_by(Event.seq)
            )
        ).scalars()
        return [str(n) for n in names if n.startswith(("wellbeing.", "alert."))]


async def phone_of(h: Harness, resident: int = RESIDENT) -> str:
    async with h.services.store.read() as session:
        number = (
            await session.execute(
                select(ResidentPhone.number).where(ResidentPhone.resident_id == resident)  # type: ignore[arg-type]
            )
        ).scalar()
    assert number is not None
    return str(number)


async def contacts_of(h: Harness, resident: int = RESIDENT) -> list[str]:
    async with h.services.store.read() as session:
        rows = (
            await session.execute(
                select(EmergencyContact.phone)  # type: ignore[call-overload]
                .where(EmergencyContact.resident_id == resident)
                .order_by(EmergencyContact.position, EmergencyContact.id)
            )
        ).scalars()
        return [str(p) for p in rows]


def wellbeing_calls(h: Harness) -> list[dict[str, Any]]:
    return [c for c in h.pbx.snapshot() if c["ref"].startswith("wb-")]


async def rings(h: Harness, seen: set[str]) -> dict[str, Any]:
    call: dict[str, Any] = dict(await ringing_out(h, exclude=seen))
    seen.add(call["ref"])
    return call


async def answer_and_press(h: Harness, ref: str, digit: str) -> None:
    await h.pbx.answer(ref)
    await waiting_for_keys(h, ref)
    await h.pbx.press(ref, digit)


async def no_answer_until_missed(h: Harness, seen: set[str], tries: int) -> list[str]:
    """Every try rings out unanswered; the numbers dialled."""
    numbers = []
    for attempt in range(tries):
        if attempt:
            assert "wellbeing:1" in await h.timers.advance(301)
        call = await rings(h, seen)
        numbers.append(call["number"])
        await h.pbx.party_hangup(call["ref"])
        await eventually(lambda n=attempt + 1: _unanswered(h, n))
    return numbers


async def _unanswered(h: Harness, n: int) -> bool:
    return (await timeline(h)).count("wellbeing.unanswered") >= n


async def test_given_a_plan_when_the_window_ends_then_1_checks_the_resident_in(
    harness: Harness,
) -> None:
    h = harness
    await set_plan(h)
    assert "wellbeing:1" in h.timers.pending
    assert "wellbeing:1" in await h.timers.advance(DUE_S)
    call = await rings(h, set())
    assert call["number"] == await phone_of(h) and call["ref"].startswith("wb-")
    await answer_and_press(h, call["ref"], "1")
    rnd = await round_in(h, "checked_in")
    assert (rnd["outcome"], rnd["attempts"]) == ("key", 1)
    assert await timeline(h) == [
        "wellbeing.plan_set",
        "wellbeing.due",
        "wellbeing.calling",
        "wellbeing.checked_in",
    ]
    # once the call's look-after has passed, tomorrow's round is next and nothing more rings
    await h.timers.advance(601)
    assert len(wellbeing_calls(h)) == 1
    assert (h.timers.pending["wellbeing:1"] - h.clock.now()).total_seconds() > 23 * 3600


async def test_given_an_away_period_when_due_then_no_call_is_placed(harness: Harness) -> None:
    h = harness
    day = h.clock.now().date().isoformat()
    await set_plan(h, away=[{"from": day, "until": day, "reason": "住院"}])
    await h.timers.advance(DUE_S)
    rnd = await round_in(h, "away")
    assert rnd["attempts"] == 0
    await h.settle()
    assert wellbeing_calls(h) == []
    assert "wellbeing.away" in await timeline(h)


async def test_given_a_hotline_call_in_the_window_when_due_then_no_call_is_placed(
    harness: Harness,
) -> None:
    h = harness
    await set_plan(h)
    await h.timers.advance(5 * 60)
    ref = await h.pbx.dial_in(await phone_of(h))
    await waiting_for_keys(h, ref)
    await h.pbx.party_hangup(ref)
    await h.settle()
    await h.timers.advance(DUE_S - 5 * 60)
    rnd = await round_in(h, "checked_in")
    assert rnd["outcome"] == "hotline"
    await h.settle()
    assert wellbeing_calls(h) == []


async def test_given_a_hotline_call_between_two_tries_then_no_further_try_is_placed(
    harness: Harness,
) -> None:
    h = harness
    await set_plan(h)
    await h.timers.advance(DUE_S)
    seen: set[str] = set()
    await no_answer_until_missed(h, seen, 1)
    ref = await h.pbx.dial_in(await phone_of(h))  # the resident rings back
    await waiting_for_keys(h, ref)
    await h.pbx.party_hangup(ref)
    await h.settle()
    await h.timers.advance(301)
    rnd = await round_in(h, "checked_in")
    assert (rnd["outcome"], rnd["attempts"]) == ("hotline", 1)
    await h.settle()
    assert [c["ref"] for c in wellbeing_calls(h)] == list(seen)


async def test_given_the_end_of_a_try_never_reported_then_the_round_moves_on_anyway(
    harness: Harness,
) -> None:
    h = harness
    await set_plan(h)
    await h.timers.advance(DUE_S)
    first = await rings(h, set())
    # the call ends without its report reaching the service (a dropped event)
    async with h.services.store.tx() as tx:
        row = (
            (await tx.session.execute(select(Call).where(Call.ref == first["ref"])))  # type: ignore[arg-type]
            .scalars()
            .one()
        )
        row.state = CallState.ENDED
    assert "wellbeing:1" in await h.timers.advance(601)  # the round is looked at
    await eventually(lambda: _unanswered(h, 1))
    await h.timers.advance(301)
    second = await rings(h, {first["ref"]})
    assert second["ref"] != first["ref"]


async def test_given_tries_running_into_the_quiet_hours_then_the_round_goes_on_next_morning(
    harness: Harness,
) -> None:
    h = harness
    h.clock.set(datetime(2026, 11, 21, 20, 0, tzinfo=LOCAL_TZ))
    await set_plan(h, window_start="20:00", window_end="20:50")
    await h.timers.advance(50 * 60)
    seen: set[str] = set()
    await no_answer_until_missed(h, seen, 2)  # 20:50 and 20:55
    await h.timers.advance(301)  # 21:00: the quiet hours
    await h.settle()
    assert len(wellbeing_calls(h)) == 2
    wait = h.timers.pending["wellbeing:1"]
    assert wait == datetime(2026, 11, 22, 8, 30, tzinfo=LOCAL_TZ)
    await h.timers.advance((wait - h.clock.now()).total_seconds())
    third = await rings(h, seen)
    assert third["number"] == await phone_of(h)
    await h.pbx.party_hangup(third["ref"])
    rnd = await round_in(h, "alerting")  # the third try was the last: the care circle
    assert (rnd["day"], rnd["attempts"]) == ("2026-11-21", 3)


async def test_given_2_on_the_call_then_the_resident_waits_first_in_the_queue_as_an_emergency(
    harness: Harness,
) -> None:
    h = harness
    await set_plan(h)
    await h.timers.advance(DUE_S)
    call = await rings(h, set())
    await answer_and_press(h, call["ref"], "2")
    rnd = await round_in(h, "operator")
    assert rnd["outcome"] == "asked"

    async def queued() -> Call | None:
        async with h.services.store.read() as session:
            row = (
                (await session.execute(select(Call).where(Call.ref == call["ref"])))  # type: ignore[arg-type]
                .scalars()
                .first()
            )
            return row if row is not None and row.state == "queued" else None

    row = await eventually(queued)
    assert row.emergency and row.emergency_reason == "wellbeing"
    async with h.services.store.read() as session:
        assert await session.get(EmergencyEscalation, row.id) is not None
    waiting = await h.services.dispatch.queue.queue()
    assert waiting and waiting[0].ref == call["ref"]
    # nobody has taken it when the resident hangs up: a call back for the operators
    await h.pbx.party_hangup(call["ref"])

    async def called_back() -> dict[str, Any] | None:
        rnd = await today(h)
        return rnd if rnd and rnd["ticket_id"] else None

    rnd = await eventually(called_back)
    ticket = await h.call("GET", f"/tickets/{rnd['ticket_id']}")
    assert (ticket["category_code"], ticket["call_id"]) == ("callback", row.id)
    assert "wellbeing.hung_up_waiting" in await timeline(h)


async def test_given_no_answer_when_a_contact_takes_it_then_their_report_closes_it(
    harness: Harness,
) -> None:
    h = harness
    await set_plan(h)
    await h.timers.advance(DUE_S)
    seen: set[str] = set()
    tries = h.services.dispatch.config.wellbeing_tries
    numbers = await no_answer_until_missed(h, seen, tries)
    assert numbers == [await phone_of(h)] * tries
    contacts = await contacts_of(h)
    assert contacts
    call = await rings(h, seen)
    assert call["number"] == contacts[0]
    h.clock.advance(90)  # the contact picks up a minute and a half after the last try
    await answer_and_press(h, call["ref"], "1")
    rnd = await round_in(h, "taken")
    assert rnd["taken_by"] is not None and rnd["missed_at"] is not None
    report_s = h.services.dispatch.config.wellbeing_report_s
    assert "wellbeing:1" in await h.timers.advance(report_s + 1)
    report = await rings(h, seen)
    assert report["number"] == contacts[0]
    await answer_and_press(h, report["ref"], "1")
    rnd = await round_in(h, "closed")
    assert rnd["outcome"] == "well" and rnd["ticket_id"] is None
    names = await timeline(h)
    assert names.count("wellbeing.calling") == tries
    assert names.count("wellbeing.retry") == tries - 1
    for step in ("wellbeing.missed", "wellbeing.contact_called", "wellbeing.taken",
                 "wellbeing.report_called", "wellbeing.reported", "wellbeing.closed"):  # fmt: skip
        assert step in names
    assert "alert.emergency" not in names
    # the day's figures: one round due, missed, taken by a contact of its kind
    figures = (await h.call("GET", "/figures?days=1", as_user="supervisor"))["wellbeing"]
    total = figures["total"]
    assert (total["due"], total["missed"], total["taken"], total["escalated"]) == (1, 1, 1, 0)
    assert sum(total["taken_by"].values()) == 1
    assert total["missed_to_human_median_s"] == 90
    assert [d["due"] for d in figures["days"]] == [1]


def test_given_a_day_of_rounds_when_reporting_then_the_wellbeing_figures_count_them() -> None:
    start = datetime(2026, 11, 21, tzinfo=LOCAL_TZ)
    at = start + timedelta(hours=10, minutes=30)

    def ev(name: str, rnd: int, minutes: float = 0, **data: Any) -> Ev:
        return Ev(name, str(rnd), at + timedelta(minutes=minutes), {"round_id": rnd, **data})

    day = {"day": "2026-11-21"}
    events = [
        *(ev("wellbeing.due", r, **day) for r in (1, 2, 3, 4, 5, 6)),
        ev("wellbeing.checked_in", 1, via="key"),
        ev("wellbeing.checked_in", 2, via="hotline"),
        ev("wellbeing.away", 3, reason="住院"),
        ev("wellbeing.help", 4, reason="asked"),
        ev("wellbeing.missed", 5, 10),
        ev("wellbeing.taken", 5, 16, kind="neighbour"),
        ev("wellbeing.missed", 6, 10),
        ev("wellbeing.escalated", 6, 20),
        # a round of the day after is not in this day's figures
        ev("wellbeing.due", 7, 24 * 60, day="2026-11-22"),
    ]
    rep = report(events, start=start, end=start + timedelta(days=1)).wellbeing
    t = rep.total
    assert (t.due, t.checked_in, t.checked_in_by_hotline, t.away, t.asked_help) == (6, 2, 1, 1, 1)
    assert (t.missed, t.taken, t.escalated, t.taken_by) == (2, 1, 1, {"neighbour": 1})
    assert t.missed_to_human_median_s == 6 * 60
    assert [d.key for d in rep.days] == ["2026-11-21"]


async def test_given_nobody_takes_it_then_an_operator_task_and_an_emergency_alert(
    harness: Harness,
) -> None:
    h = harness
    await set_plan(h)
    await h.timers.advance(DUE_S)
    seen: set[str] = set()
    await no_answer_until_missed(h, seen, h.services.dispatch.config.wellbeing_tries)
    contacts = await contacts_of(h)
    rung = []
    for _ in contacts:
        call = await rings(h, seen)
        rung.append(call["number"])
        await h.pbx.reject(call["ref"])  # busy
        await h.settle()
    assert rung == contacts

    async def escalated() -> dict[str, Any] | None:
        rnd = await today(h)
        return rnd if rnd and rnd["ticket_id"] else None

    rnd = await eventually(escalated)
    assert (rnd["state"], rnd["outcome"]) == ("closed", "unreached")
    ticket = await h.call("GET", f"/tickets/{rnd['ticket_id']}")
    assert ticket["category_code"] == "callback" and ticket["resident_id"] == RESIDENT
    names = await timeline(h)
    assert names.count("wellbeing.contact_declined") == len(contacts)
    assert {"wellbeing.escalated", "alert.emergency"} <= set(names)
