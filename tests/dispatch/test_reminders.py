"""Medication and appointment reminder calls with the manual clock and the memory PBX
(SQLite and PostgreSQL): a daily reminder rings at its time and reads its text, 1
confirms; 2 puts the resident in the operators' (routine) queue; unanswered, it is tried
once more, then missed; an appointment gets a call the day before and an hour before;
a restart places no call twice and forgets none."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from dispatch.models import Call
from eventlog.clock import LOCAL_TZ, ManualClock
from eventlog.models import Event
from tests.conftest import MORNING, Harness, eventually
from tests.dispatch.test_restart import RecordingPBX, api
from tests.dispatch.test_wellbeing import answer_and_press, phone_of, rings
from tests.dispatch.test_wellbeing_restart import life, resident_phone

RESIDENT = 1
TEXT = "王阿姨，该吃降压药了，饭后一片。"
#: the harness's morning is 10:00; the reminder rings half an hour later
DAILY: dict[str, Any] = {"kind": "medication", "text": TEXT, "at": "10:30",
                         "days": [1, 2, 3, 4, 5, 6, 7]}  # fmt: skip
DUE_S = 30 * 60


async def pending(h: Harness) -> dict[str, Any]:
    """The timers set, once the app's units of work and their after-commit parts are done."""
    await h.services.store.quiet()
    return dict(h.timers.pending)


async def add(h: Harness, body: dict[str, Any], resident: int = RESIDENT) -> dict[str, Any]:
    result: dict[str, Any] = await h.call(
        "POST", f"/residents/{resident}/reminders", json=body, expect=201
    )
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
        return [str(n) for n in names if n.startswith("reminder.")]


def reminder_calls(pbx: Any) -> list[dict[str, Any]]:
    return [c for c in pbx.snapshot() if c["ref"].startswith("rm-")]


async def has(h: Harness, name: str, count: int = 1) -> bool:
    return (await timeline(h)).count(name) >= count


async def test_given_a_daily_reminder_when_its_time_comes_then_the_text_is_read_and_1_confirms(
    harness: Harness,
) -> None:
    h = harness
    rem = await add(h, DAILY)
    key = f"reminder:{rem['id']}"
    assert key in (await pending(h))
    assert key in await h.timers.advance(DUE_S)
    call = await rings(h, set())
    assert call["number"] == await phone_of(h) and call["ref"].startswith("rm-")
    await answer_and_press(h, call["ref"], "1")
    await eventually(lambda: has(h, "reminder.confirmed"))
    heard = " ".join(h.pbx.calls[call["ref"]].transcript)
    assert TEXT in heard and "再听一遍请按 9" in heard
    assert await timeline(h) == [
        "reminder.added", "reminder.due", "reminder.calling", "reminder.confirmed",
    ]  # fmt: skip
    # tomorrow's is next; nothing more rings today
    await h.timers.advance(601)
    assert len(reminder_calls(h.pbx)) == 1
    assert ((await pending(h))[key] - h.clock.now()).total_seconds() > 23 * 3600
    body = (await h.call("GET", f"/residents/{RESIDENT}/reminders"))[0]
    assert (body["due_at"], body["attempts"]) == (None, 0)


async def test_given_a_reminder_call_when_2_is_pressed_then_the_resident_waits_for_an_operator(
    harness: Harness,
) -> None:
    h = harness
    await add(h, DAILY)
    await h.timers.advance(DUE_S)
    call = await rings(h, set())
    await answer_and_press(h, call["ref"], "2")
    await eventually(lambda: has(h, "reminder.help"))

    async def queued() -> Call | None:
        async with h.services.store.read() as session:
            row = (
                await session.execute(select(Call).where(Call.ref == call["ref"]))  # type: ignore[arg-type]
            ).scalar_one()
        return row if row.state == "queued" else None

    row = await eventually(queued)
    assert row.emergency is False  # a routine call, not an emergency
    assert "reminder.confirmed" not in await timeline(h)


async def test_given_nobody_answers_when_the_retry_rings_out_too_then_it_is_missed(
    harness: Harness,
) -> None:
    h = harness
    rem = await add(h, DAILY)
    key = f"reminder:{rem['id']}"
    await h.timers.advance(DUE_S)
    seen: set[str] = set()
    first = await rings(h, seen)
    await h.pbx.party_hangup(first["ref"])
    await eventually(lambda: has(h, "reminder.retry"))
    assert key in await h.timers.advance(301)
    second = await rings(h, seen)
    await h.pbx.party_hangup(second["ref"])
    await eventually(lambda: has(h, "reminder.missed"))
    await h.timers.advance(601)
    assert len(reminder_calls(h.pbx)) == 2  # one retry only
    assert (await timeline(h)).count("reminder.unanswered") == 2


async def test_given_an_appointment_when_days_pass_then_it_rings_a_day_and_an_hour_before(
    harness: Harness,
) -> None:
    h = harness
    tomorrow = (h.clock.now().astimezone(LOCAL_TZ) + timedelta(days=1)).date()
    body = {"kind": "appointment", "text": "明天上午十点半，社区医院复查。", "at": "10:30",
            "on_date": tomorrow.isoformat()}  # fmt: skip
    rem = await add(h, body)
    key = f"reminder:{rem['id']}"
    # the day before, at the appointment's time
    assert ((await pending(h))[key] - h.clock.now()).total_seconds() == DUE_S
    await h.timers.advance(DUE_S)
    seen: set[str] = set()
    first = await rings(h, seen)
    await answer_and_press(h, first["ref"], "1")
    await eventually(lambda: has(h, "reminder.confirmed"))
    # an hour before: tomorrow 09:30
    at = (await pending(h))[key].astimezone(LOCAL_TZ)
    assert (at.date(), at.hour, at.minute) == (tomorrow, 9, 30)
    await h.timers.advance((at - h.clock.now()).total_seconds())
    second = await rings(h, seen)
    await answer_and_press(h, second["ref"], "1")
    await eventually(lambda: has(h, "reminder.confirmed", 2))
    await h.timers.advance(601)
    assert len(reminder_calls(h.pbx)) == 2
    assert key not in (await pending(h))  # nothing left to remind


async def test_given_an_early_appointment_when_added_then_the_hour_before_waits_for_morning(
    harness: Harness,
) -> None:
    h = harness
    tomorrow = (h.clock.now().astimezone(LOCAL_TZ) + timedelta(days=1)).date()
    body = {"kind": "appointment", "text": "九点抽血。", "at": "09:00",
            "on_date": tomorrow.isoformat()}  # fmt: skip
    rem = await add(h, body)
    # today's 09:00 is past: the next call is tomorrow at the quiet hours' end (08:30),
    # not at 08:00
    at = (await pending(h))[f"reminder:{rem['id']}"].astimezone(LOCAL_TZ)
    assert (at.date(), at.hour, at.minute) == (tomorrow, 8, 30)


async def test_given_a_restart_while_a_reminder_rings_then_no_call_is_placed_twice(
    tmp_path: Path, seeded_db_url: str
) -> None:
    dialled: list[str] = []
    pbx = RecordingPBX(dialled)
    async with life(tmp_path, seeded_db_url, pbx, MORNING) as (one, timers):
        phone = await resident_phone(one)
        await api(one, "POST", "/residents/1/reminders", json=DAILY)
        await timers.advance(DUE_S)

        async def first_rings() -> bool:
            return any(c["state"] == "ringing" for c in reminder_calls(pbx))

        await eventually(first_rings)
        stopped_at = timers.clock.now()
    assert Counter(dialled)[phone] == 1

    pbx_two = RecordingPBX(dialled)
    async with life(tmp_path, seeded_db_url, pbx_two, stopped_at) as (two, timers_two):
        # the start-up check finds the ringing try gone with the old process: a try spent
        async def retry_waits() -> bool:
            rows = await api(two, "GET", "/residents/1/reminders")
            return bool(rows[0]["attempts"] == 1 and rows[0]["due_at"])

        await eventually(retry_waits)
        await timers_two.advance(0)
        assert Counter(dialled)[phone] == 1  # nothing placed again at start
        await timers_two.advance(301)

        async def second() -> str | None:
            live = [c["ref"] for c in reminder_calls(pbx_two) if c["state"] == "ringing"]
            return live[-1] if live else None

        ref = await eventually(second)
        await pbx_two.answer(ref)

        async def asking() -> bool:
            call = pbx_two.calls.get(ref)
            return bool(call and call.waiting_digits)

        await eventually(asking)
        await pbx_two.press(ref, "1")

        async def confirmed() -> bool:
            rows = await api(two, "GET", "/residents/1/reminders")
            return bool(rows[0]["due_at"] is None and rows[0]["done_through"])

        await eventually(confirmed)
    assert Counter(dialled)[phone] == 2


async def test_given_the_process_down_when_a_reminder_falls_due_then_it_rings_once_back(
    tmp_path: Path, seeded_db_url: str
) -> None:
    dialled: list[str] = []
    async with life(tmp_path, seeded_db_url, RecordingPBX(dialled), MORNING) as (one, _):
        phone = await resident_phone(one)
        rem = await api(one, "POST", "/residents/1/reminders", json=DAILY)
    later = ManualClock(MORNING)
    later.advance(DUE_S + 60)
    pbx = RecordingPBX(dialled)
    async with life(tmp_path, seeded_db_url, pbx, later.now()) as (_, timers):
        assert f"reminder:{rem['id']}" in await timers.keys()  # the reconciler wants it back
        await timers.advance(0)

        async def rang() -> bool:
            return bool(reminder_calls(pbx))

        await eventually(rang)
        await timers.advance(0)  # firing again changes nothing
    assert Counter(dialled)[phone] == 1


async def test_given_a_retry_waiting_when_the_reminder_is_switched_off_then_nothing_rings(
    harness: Harness,
) -> None:
    h = harness
    rem = await add(h, DAILY)
    await h.timers.advance(DUE_S)
    first = await rings(h, set())
    await h.pbx.party_hangup(first["ref"])
    await eventually(lambda: has(h, "reminder.retry"))
    await h.call("PATCH", f"/reminders/{rem['id']}", json={"enabled": False})
    await h.timers.advance(301)
    await h.settle()
    assert len(reminder_calls(h.pbx)) == 1
    assert f"reminder:{rem['id']}" not in (await pending(h))
