"""Booked visits with the memory PBX, the manual clock and timers (SQLite and PostgreSQL):
matching takes merchants open in the booked window, not now; the offer call reads the slot
and 1 takes it; the resident is reminded the day before and an hour before (1 confirms, 2
goes to the operators' queue with the ticket), its merchant the day before (2 cancels); a
merchant who cancels (page, API or reminder) re-opens the cascade
with the merchants open in the window; a restart between the accept and the reminder
neither loses the reminder nor rings it twice.

The harness's morning is Saturday 2026-11-21 10:00 in Shanghai; the demo clinics open
08:00-18:00, one emergency station 24 hours; the pharmacies 08:00-22:00, merchant 1 (the
one `merchant1` logs in for) 24 hours.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from dispatch.matching import open_during
from dispatch.models import Call, Reminder
from eventlog.clock import LOCAL_TZ
from registry.models import Merchant
from tests.conftest import MORNING, Harness, eventually
from tests.dispatch.test_restart import RecordingPBX, api
from tests.dispatch.test_wellbeing_restart import life, resident_phone
from tests.operator_console.test_whole_path import ringing_out, ticket_state, waiting_for_keys

THURSDAY = date(2026, 11, 26)
MONDAY_EVENING = {"date": "2026-11-23", "from": "19:00", "until": "20:30"}
THURSDAY_MORNING = {"date": THURSDAY.isoformat(), "from": "10:00", "until": "11:30"}
#: the 24-hour emergency clinic of the demo community
NIGHT_CLINIC = 37


async def pending(h: Harness) -> dict[str, Any]:
    """The timers set, once the app's units of work and their after-commit parts are done
    (a confirmed call's timer is moved after its commit)."""
    await h.services.store.quiet()
    return dict(h.timers.pending)


async def new_ticket(h: Harness, category: str = "doctor") -> int:
    body = {"category": category, "resident_id": 1, "description": "复查血压"}
    return int((await h.call("POST", "/tickets", json=body, expect=201))["id"])


async def book(h: Harness, tid: int, window: dict[str, str], expect: int = 200) -> Any:
    return await h.call("PUT", f"/tickets/{tid}/booking", json=window, expect=expect)


def names(detail: dict[str, Any]) -> list[str]:
    return [e["name"] for e in detail["timeline"]]


async def timeline(h: Harness, tid: int) -> list[str]:
    return names(await h.call("GET", f"/tickets/{tid}"))


async def has(h: Harness, tid: int, name: str, count: int = 1) -> bool:
    return (await timeline(h, tid)).count(name) >= count


async def reminder_rings(h: Harness, seen: set[str], number: str) -> dict[str, Any]:
    """The next reminder call ringing `number` (other calls, "who is coming", aside)."""

    async def check() -> dict[str, Any] | None:
        for c in h.pbx.snapshot():
            if (
                c["ref"].startswith("rm-")
                and c["state"] == "ringing"
                and c["ref"] not in seen
                and c["number"] == number
            ):
                return dict(c)
        return None

    call: dict[str, Any] = await eventually(check)
    seen.add(call["ref"])
    return call


async def answer_and_press(h: Harness, ref: str, digit: str) -> None:
    await h.pbx.answer(ref)
    await waiting_for_keys(h, ref)
    await h.pbx.press(ref, digit)


async def visit_reminder(h: Harness) -> dict[str, Any]:
    rows = await h.call("GET", "/residents/1/reminders")
    [row] = [r for r in rows if r["kind"] == "visit"]
    return dict(row)


async def merchant_reminder(h: Harness) -> Reminder:
    async with h.services.store.read() as session:
        found = await session.execute(
            select(Reminder).where(col(Reminder.merchant_id).is_not(None))
        )
        return found.scalars().one()


async def merchant_phone(h: Harness, merchant_id: int) -> str:
    async with h.services.store.read() as session:
        merchant = await session.get(Merchant, merchant_id)
        assert merchant is not None
        return merchant.phones[0]


async def accept_first_offer(h: Harness, tid: int) -> dict[str, Any]:
    """Dispatch; the first merchant hears the slot and presses 1."""
    await h.call("POST", f"/tickets/{tid}/dispatch", json={})
    call = await ringing_out(h)
    await answer_and_press(h, call["ref"], "1")
    detail = await ticket_state(h, tid, "accepted")
    return {"call": call, "detail": detail}


async def until(h: Harness, key: str) -> None:
    """Move the clock to exactly when `key` is due, and fire it."""
    at = (await pending(h))[key]
    assert key in await h.timers.advance((at - h.clock.now()).total_seconds())


# -- matching -------------------------------------------------------------------------------


def test_given_opening_hours_when_a_window_overlaps_them_then_the_merchant_is_open_in_it() -> None:
    m = Merchant(name="诊所", kind="clinic", hours={str(d): [["08:00", "18:00"]] for d in range(7)})

    def at(hh: int, mm: int = 0) -> datetime:
        return datetime.combine(THURSDAY, time(hh, mm), tzinfo=LOCAL_TZ)

    assert open_during(m, at(9), at(11))
    assert open_during(m, at(17), at(19))  # open for part of the window: it can come then
    assert not open_during(m, at(18), at(20))
    assert not open_during(m, at(6), at(8))
    m.holidays = {THURSDAY.isoformat(): []}  # closed that day
    assert not open_during(m, at(9), at(11))


async def test_given_a_booked_evening_when_ranking_then_merchants_open_then_not_now_are_eligible(
    harness: Harness,
) -> None:
    h = harness
    tid = await new_ticket(h)
    now = [c for c in await h.call("GET", f"/tickets/{tid}/candidates") if c["eligible"]]
    assert len(now) > 1  # Saturday 10:00: every clinic is open now
    detail = await book(h, tid, MONDAY_EVENING)
    assert detail["booking"] == MONDAY_EVENING
    # the deadline is the window's end
    assert detail["deadline_local"] == "11-23 20:30"
    ranked = await h.call("GET", f"/tickets/{tid}/candidates")
    eligible = [c["merchant_id"] for c in ranked if c["eligible"]]
    assert eligible == [NIGHT_CLINIC]  # the only one open on Monday evening
    closed = [c for c in ranked if not c["eligible"]]
    assert closed and all(any(w["code"] == "closed_booked" for w in c["why"]) for c in closed)
    assert "booking.booked" in await timeline(h, tid)


async def test_given_a_bad_window_when_booking_then_it_is_refused(harness: Harness) -> None:
    h = harness
    tid = await new_ticket(h)
    await book(h, tid, {**THURSDAY_MORNING, "until": "09:00"}, expect=422)
    await book(h, tid, {"date": "2026-11-20", "from": "09:00", "until": "10:00"}, expect=422)
    await h.call("PUT", f"/tickets/{tid}/booking", json=THURSDAY_MORNING, as_user="merchant1",
                 expect=403)  # fmt: skip


async def test_given_a_new_ticket_with_a_window_when_recorded_then_it_is_booked_at_once(
    harness: Harness,
) -> None:
    h = harness
    body = {"category": "doctor", "resident_id": 1, "booking": MONDAY_EVENING}
    ticket = await h.call("POST", "/tickets", json=body, expect=201)
    assert ticket["booking"] == MONDAY_EVENING
    # before any offer, the window may be cleared again
    cleared = await h.call("DELETE", f"/tickets/{ticket['id']}/booking")
    assert cleared["booking"] is None
    assert "booking.cleared" in await timeline(h, ticket["id"])


# -- the offer call, the reminders ----------------------------------------------------------


async def test_given_a_booked_visit_when_offered_then_the_slot_is_read_and_1_takes_it_then_reminded(
    harness: Harness,
) -> None:
    h = harness
    tid = await new_ticket(h)
    await book(h, tid, THURSDAY_MORNING)
    got = await accept_first_offer(h, tid)
    heard = " ".join(h.pbx.calls[got["call"]["ref"]].transcript)
    assert "周四" in heard and "上午十点到上午十一点半" in heard
    assert "能在这个时间上门请按 1" in heard
    assert "booking.confirmed" in names(got["detail"])
    seen: set[str] = set()
    # the merchant first: the day before, two hours ahead (08:00 is quiet: 08:30)
    mine = await merchant_reminder(h)
    mkey = f"reminder:{mine.id}"
    at = (await pending(h))[mkey].astimezone(LOCAL_TZ)
    assert (at.date().isoformat(), at.hour, at.minute) == ("2026-11-25", 8, 30)
    await until(h, mkey)
    number = await merchant_phone(h, got["detail"]["merchant_id"])
    call = await reminder_rings(h, seen, number)
    await answer_and_press(h, call["ref"], "1")
    await eventually(lambda: has(h, tid, "booking.merchant_reminder_confirmed"))
    heard = " ".join(h.pbx.calls[call["ref"]].transcript)
    assert "周四" in heard and "地址" in heard and "去不了请按 2" in heard
    assert mkey not in (await pending(h))  # once, the day before
    rem = await visit_reminder(h)
    key = f"reminder:{rem['id']}"
    # the day before, at the slot's start: Wednesday 10:00
    at = (await pending(h))[key].astimezone(LOCAL_TZ)
    assert (at.date().isoformat(), at.hour, at.minute) == ("2026-11-25", 10, 0)
    phone = await resident_phone(h.client)
    await until(h, key)
    first = await reminder_rings(h, seen, phone)
    await answer_and_press(h, first["ref"], "1")
    await eventually(lambda: has(h, tid, "booking.reminder_confirmed"))
    heard = " ".join(h.pbx.calls[first["ref"]].transcript)
    assert "明天" in heard and "上午十点到上午十一点半" in heard

    # an hour before: Thursday 09:00 (set once the confirmed call's work is done)
    async def next_one() -> bool:
        at = (await pending(h)).get(key)
        return at is not None and at.astimezone(LOCAL_TZ).date() == THURSDAY

    await eventually(next_one)
    at = (await pending(h))[key].astimezone(LOCAL_TZ)
    assert (at.date(), at.hour, at.minute) == (THURSDAY, 9, 0)
    await until(h, key)
    second = await reminder_rings(h, seen, phone)
    await answer_and_press(h, second["ref"], "1")
    await eventually(lambda: has(h, tid, "booking.reminder_confirmed", 2))
    assert key not in (await pending(h))  # nothing left to remind
    assert (await h.call("GET", f"/tickets/{tid}"))["state"] == "accepted"


async def test_given_a_reminder_when_the_resident_presses_2_then_an_operator_gets_the_ticket(
    harness: Harness,
) -> None:
    h = harness
    tid = await new_ticket(h)
    await book(h, tid, THURSDAY_MORNING)
    await accept_first_offer(h, tid)
    rem = await visit_reminder(h)
    await until(h, f"reminder:{rem['id']}")
    call = await reminder_rings(h, set(), await resident_phone(h.client))
    await answer_and_press(h, call["ref"], "2")
    await eventually(lambda: has(h, tid, "booking.reminder_help"))

    async def queued() -> Call | None:
        async with h.services.store.read() as session:
            row = (
                await session.execute(select(Call).where(Call.ref == call["ref"]))  # type: ignore[arg-type]
            ).scalar_one()
        return row if row.state == "queued" else None

    row = await eventually(queued)
    assert row.ticket_id == tid and row.emergency is False
    assert "booking.reminder_confirmed" not in await timeline(h, tid)


# -- a merchant cancels -----------------------------------------------------------------------


async def test_given_an_accepted_booked_visit_when_the_merchant_cancels_then_the_cascade_reopens(
    harness: Harness,
) -> None:
    h = harness
    tid = await new_ticket(h, "medicine")
    await book(h, tid, THURSDAY_MORNING)
    await h.call("POST", f"/tickets/{tid}/dispatch", json={"merchant_ids": [1]})
    first = await ringing_out(h)
    await answer_and_press(h, first["ref"], "1")
    await ticket_state(h, tid, "accepted")
    rem = await visit_reminder(h)
    assert f"reminder:{rem['id']}" in (await pending(h))
    # its own merchant cancels (another merchant may not: see the end)
    out = await h.call("POST", f"/tickets/{tid}/booking/cancel", json={"reason": "车坏了"},
                       as_user="merchant1")  # fmt: skip
    assert out["state"] == "offering"
    second = await ringing_out(h, exclude={first["ref"]})
    detail = await h.call("GET", f"/tickets/{tid}")
    assert detail["merchant_id"] is None
    assert [o["state"] for o in detail["offers"]][:1] == ["cancelled"]
    new = detail["offers"][-1]
    assert new["merchant_id"] != 1 and new["state"] in ("placed", "ringing")
    ranked = await h.call("GET", f"/tickets/{tid}/candidates")
    assert new["merchant_id"] in [c["merchant_id"] for c in ranked if c["eligible"]]
    timeline_ = names(detail)
    after = timeline_[timeline_.index("booking.merchant_cancelled") :]
    assert "offer.placed" in after and "ticket.matching" in after
    # the reminders stop until someone takes the slot again
    assert f"reminder:{rem['id']}" not in (await pending(h))
    await answer_and_press(h, second["ref"], "1")
    await ticket_state(h, tid, "accepted")
    assert f"reminder:{rem['id']}" in (await pending(h))
    # the visit is another merchant's now: merchant 1 may not cancel it
    await h.call("POST", f"/tickets/{tid}/booking/cancel", json={}, as_user="merchant1",
                 expect=404)  # fmt: skip


async def test_given_the_day_before_when_the_merchant_presses_2_then_the_cascade_reopens(
    harness: Harness,
) -> None:
    h = harness
    tid = await new_ticket(h)
    await book(h, tid, THURSDAY_MORNING)
    got = await accept_first_offer(h, tid)
    first_merchant = got["detail"]["merchant_id"]
    mine = await merchant_reminder(h)
    await until(h, f"reminder:{mine.id}")
    call = await reminder_rings(h, set(), await merchant_phone(h, first_merchant))
    await answer_and_press(h, call["ref"], "2")
    detail = await ticket_state(h, tid, "offering")
    assert "booking.merchant_reminder_cancelled" in names(detail)
    assert detail["merchant_id"] is None
    states = {o["merchant_id"]: o["state"] for o in detail["offers"]}
    assert states[first_merchant] == "cancelled"

    async def reoffered() -> list[dict[str, Any]]:
        offers = (await h.call("GET", f"/tickets/{tid}"))["offers"]
        return [o for o in offers if o["merchant_id"] != first_merchant and o["state"] in
                ("placed", "ringing")]  # fmt: skip

    [new] = await eventually(reoffered)
    ranked = await h.call("GET", f"/tickets/{tid}/candidates")
    assert new["merchant_id"] in [c["merchant_id"] for c in ranked if c["eligible"]]
    # the resident is not reminded of a visit nobody holds now
    rem = await visit_reminder(h)
    assert f"reminder:{rem['id']}" not in (await pending(h))


async def test_given_an_accepted_visit_when_the_operator_moves_it_then_the_new_window_is_offered(
    harness: Harness,
) -> None:
    h = harness
    tid = await new_ticket(h)
    await book(h, tid, THURSDAY_MORNING)
    got = await accept_first_offer(h, tid)
    moved = await book(h, tid, MONDAY_EVENING)  # the resident asked for another time
    assert moved["state"] == "offering" and moved["booking"] == MONDAY_EVENING
    detail = await h.call("GET", f"/tickets/{tid}")
    assert "booking.moved" in names(detail) and "booking.released" in names(detail)
    states = {o["merchant_id"]: o["state"] for o in detail["offers"]}
    assert states[got["detail"]["merchant_id"]] == "cancelled"
    # Monday evening: only the night clinic is open; it is offered the new slot
    assert detail["offers"][-1]["merchant_id"] == NIGHT_CLINIC
    # while it is offered, the window stays as it is
    await book(h, tid, THURSDAY_MORNING, expect=409)


async def test_given_the_only_open_merchant_cancels_then_unassigned_and_operators_alerted(
    harness: Harness,
) -> None:
    h = harness
    tid = await new_ticket(h)
    await book(h, tid, MONDAY_EVENING)
    got = await accept_first_offer(h, tid)
    assert got["detail"]["merchant_id"] == NIGHT_CLINIC
    await h.call("POST", f"/tickets/{tid}/booking/cancel", json={})  # an operator, for them
    detail = await ticket_state(h, tid, "unassigned")
    assert "alert.unassigned" in names(detail)


# -- restarts ----------------------------------------------------------------------------------


async def test_given_a_restart_after_the_accept_when_the_day_before_comes_then_one_reminder_rings(
    tmp_path: Path, seeded_db_url: str
) -> None:
    dialled: list[str] = []
    pbx = RecordingPBX(dialled)
    async with life(tmp_path, seeded_db_url, pbx, MORNING) as (one, timers):
        phone = await resident_phone(one)
        ticket = await api(one, "POST", "/tickets", json={"category": "doctor", "resident_id": 1})
        tid = ticket["id"]
        await api(one, "PUT", f"/tickets/{tid}/booking", json=THURSDAY_MORNING)
        await api(one, "POST", f"/tickets/{tid}/dispatch", json={})

        async def offer_waits() -> str | None:
            live = [c for c in pbx.snapshot() if c["ref"].startswith("offer-")]
            return live[0]["ref"] if live and live[0]["state"] == "ringing" else None

        ref = await eventually(offer_waits)
        await pbx.answer(ref)
        await eventually(lambda: _asking(pbx, ref))
        await pbx.press(ref, "1")

        async def accepted() -> bool:
            return bool((await api(one, "GET", f"/tickets/{tid}"))["state"] == "accepted")

        await eventually(accepted)
        stopped_at = timers.clock.now()
    assert Counter(dialled)[phone] <= 1  # at most the "who is coming" call

    pbx_two = RecordingPBX(dialled)
    async with life(tmp_path, seeded_db_url, pbx_two, stopped_at) as (two, timers_two):
        rows = await api(two, "GET", "/residents/1/reminders")
        [rem] = [r for r in rows if r["kind"] == "visit"]
        key = f"reminder:{rem['id']}"

        async def wanted() -> bool:
            return key in await timers_two.keys()

        await eventually(wanted)  # the start-up check keeps (or repairs) its timer
        at = timers_two.pending[key]
        assert at.astimezone(LOCAL_TZ).date().isoformat() == "2026-11-25"
        before = Counter(dialled)[phone]
        await timers_two.advance((at - timers_two.clock.now()).total_seconds())

        async def rang() -> str | None:
            live = [c["ref"] for c in pbx_two.snapshot()
                    if c["ref"].startswith("rm-") and c["number"] == phone]  # fmt: skip
            return live[0] if live else None

        ref = await eventually(rang)
        await timers_two.advance(0)  # firing again changes nothing
        assert Counter(dialled)[phone] == before + 1
        await pbx_two.answer(ref)
        await eventually(lambda: _asking(pbx_two, ref))
        await pbx_two.press(ref, "1")

        async def confirmed() -> bool:
            events = names(await api(two, "GET", f"/tickets/{tid}"))
            return "booking.reminder_confirmed" in events

        await eventually(confirmed)


async def _asking(pbx: RecordingPBX, ref: str) -> bool:
    call = pbx.calls.get(ref)
    return bool(call and call.waiting_digits)
