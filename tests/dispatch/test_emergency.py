"""Emergencies on the memory PBX (both databases): the emergency key rings every free
operator and the first answer wins; with nobody free the on-call list is rung within the
answer time; nobody there either: the caller hears that help is called and may ask for
120 while the contacts are rung in order, the first "1" wins; silent high-risk callers
and repeat callers count; after hours; and the supervisor's alert. No sleeps: the manual
clock moves the deadlines, the simulated phones answer and press."""

from __future__ import annotations

from datetime import time
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from dispatch.models import EmergencyEscalation, OperatorStatus
from providers.base import OriginateFailure
from registry.models import EmergencyContact, Resident
from tests.conftest import Harness, eventually

ONCALL = ["+8613500000001", "+8613500000002"]


def resident_phone(rid: int) -> str:
    """The demo landline of resident `rid`."""
    return f"+862354{rid:06d}"


async def press(h: Harness, ref: str, digit: str) -> None:
    """Press a key once the phone's IVR asks for one."""

    async def asking() -> bool:
        call = h.pbx.calls.get(ref)
        return bool(call and call.waiting_digits)

    await eventually(asking)
    await h.pbx.press(ref, digit)


async def emergency_call(h: Harness, rid: int = 1) -> tuple[str, dict[str, Any]]:
    """Resident `rid` rings and presses the emergency key; (ref, the call on the API)."""
    ref = await h.pbx.dial_in(resident_phone(rid))
    await press(h, ref, "1")

    async def queued() -> Any:
        calls = [c for c in await h.call("GET", "/calls") if c["ref"] == ref]
        return calls[0] if calls and calls[0]["state"] == "queued" else None

    return ref, await eventually(queued)


async def _queued(h: Harness, ref: str) -> Any:
    calls = [c for c in await h.call("GET", "/calls") if c["ref"] == ref]
    return calls[0] if calls and calls[0]["state"] == "queued" else None


async def escalation(h: Harness, call_id: int) -> EmergencyEscalation:
    async with h.services.store.read() as session:
        row = await session.get(EmergencyEscalation, call_id)
        assert row is not None
        return row


async def timeline(h: Harness, call_id: int) -> list[dict[str, Any]]:
    return list((await h.call("GET", f"/calls/{call_id}"))["timeline"])


async def ringing_to(h: Harness, number: str) -> str:
    """The ref of the outbound call ringing `number` (waits for it)."""

    async def check() -> Any:
        return next(
            (
                c.ref
                for c in h.pbx.calls.values()
                if c.direction == "out" and c.number == number and c.state == "ringing"
            ),
            None,
        )

    return str(await eventually(check))


def calls_to(h: Harness, number: str) -> list[str]:
    return [c.ref for c in h.pbx.calls.values() if c.direction == "out" and c.number == number]


async def take(h: Harness, ref: str) -> None:
    """A responder picks up, hears who calls, and presses 1."""
    await h.pbx.answer(ref)
    await press(h, ref, "1")


async def joined(h: Harness, caller: str, responder: str) -> None:
    async def check() -> bool:
        call = h.pbx.calls[caller]
        return call.state == "bridged" and call.peer == responder

    await eventually(check)


async def add_oncall(h: Harness, *numbers: str) -> None:
    for number in numbers:
        await h.services.dispatch.oncall.add(phone=number, label="duty")


async def contacts_of(h: Harness, rid: int) -> list[str]:
    async with h.services.store.read() as session:
        rows = await session.execute(
            select(col(EmergencyContact.phone))
            .where(col(EmergencyContact.resident_id) == rid)
            .order_by(col(EmergencyContact.position))
        )
        return list(rows.scalars())


async def resident_with_contacts(h: Harness, at_least: int) -> int:
    async with h.services.store.read() as session:
        for rid in (await session.execute(select(col(Resident.id)))).scalars():
            assert rid is not None
            if len(await contacts_of(h, rid)) >= at_least:
                return rid
    raise AssertionError("no demo resident with enough contacts")


async def statuses(h: Harness) -> dict[int, OperatorStatus]:
    async with h.services.store.read() as session:
        return {s.user_id: s for s in (await session.execute(select(OperatorStatus))).scalars()}


async def emergency_figures(h: Harness) -> dict[str, Any]:
    report = await h.call("GET", "/figures?days=1", as_user="supervisor")
    return dict(report["emergencies"])


async def log_in(h: Harness, *users: str) -> None:
    for user in users:
        await h.call("POST", "/operator/state", as_user=user, json={"action": "login"})


async def test_given_two_free_operators_when_the_emergency_key_then_both_ring_first_answer_wins(
    harness: Harness,
) -> None:
    h = harness
    await add_oncall(h, ONCALL[0])
    await log_in(h, "operator", "supervisor")
    _ref, call = await emergency_call(h)
    assert (call["emergency"], call["emergency_reason"]) == (True, "key")

    async def both_reserved() -> Any:
        rows = await statuses(h)
        reserved = [s for s in rows.values() if s.state == "reserved" and s.call_id == call["id"]]
        return reserved if len(reserved) == 2 else None

    await eventually(both_reserved)
    names = [e["name"] for e in await timeline(h, call["id"])]
    assert names.count("call.offered_to") == 2
    assert "alert.emergency" in names and "emergency.ringing_all" in names

    answered = await h.call("POST", f"/calls/{call['id']}/answer", as_user="supervisor")
    assert answered["state"] == "connected"
    await h.call("POST", f"/calls/{call['id']}/answer", as_user="operator", expect=409)
    rows = await statuses(h)
    assert sorted(s.state.value for s in rows.values()) == ["available", "on_call"]
    row = await escalation(h, call["id"])
    assert row.stage == "taken" and row.taken_by is not None
    assert row.taken_by.startswith("operator:")
    shown = await h.call("GET", f"/calls/{call['id']}/emergency")
    assert (shown["stage"], shown["reason"], shown["taken_by"]) == ("taken", "key", row.taken_by)
    routine = await h.pbx.dial_in(resident_phone(2))
    await press(h, routine, "0")
    queued = await eventually(lambda: _queued(h, routine))
    await h.call("GET", f"/calls/{queued['id']}/emergency", expect=404)
    # taken in time: the answer deadline no longer overflows to the on-call list
    await h.timers.advance(20)
    await h.settle()
    assert calls_to(h, ONCALL[0]) == []
    figures = await emergency_figures(h)
    assert (figures["emergencies"], figures["answered_15s_rate"], figures["overflows"]) == (
        1,
        100.0,
        0,
    )


async def test_given_no_free_operator_when_the_emergency_key_then_oncall_rung_in_answer_time(
    harness: Harness,
) -> None:
    h = harness
    await add_oncall(h, *ONCALL)
    await log_in(h, "operator")
    await h.call("POST", "/operator/state", json={"action": "pause", "reason": "lunch"})
    ref, call = await emergency_call(h)
    await h.settle()
    assert calls_to(h, ONCALL[0]) == []  # the desk has its 15 s first

    fired = await h.timers.advance(15)
    assert f"emergency:{call['id']}" in fired
    # meanwhile the caller heard the emergency holding prompt, never their place in a queue
    assert f"queue:{call['id']}" in fired
    heard_by_caller = " ".join(h.pbx.calls[ref].transcript)
    assert "我们正在为您找人" in heard_by_caller and "前面还有" not in heard_by_caller
    duty = await ringing_to(h, ONCALL[0])
    h.clock.advance(5)  # the duty phone rings a few seconds
    await take(h, duty)
    await joined(h, ref, duty)
    heard = " ".join(h.pbx.calls[duty].transcript)
    async with h.services.store.read() as session:
        resident = await session.get(Resident, 1)
        assert resident is not None
    assert "紧急呼叫" in heard and resident.address in heard and "紧急求助键" in heard

    row = await escalation(h, call["id"])
    assert (row.stage, row.taken_by) == ("taken", f"oncall:{row.plan['oncall'][0]}")
    assert (await h.call("GET", f"/calls/{call['id']}"))["state"] == "connected"
    names = [e["name"] for e in await timeline(h, call["id"])]
    assert names.index("emergency.overflow") < names.index("emergency.taken")
    assert calls_to(h, ONCALL[1]) == []
    figures = await emergency_figures(h)
    assert figures["emergencies"] == figures["taken"] == figures["overflows"] == 1
    assert figures["answered_15s"] == 0 and figures["time_to_human_median_s"] == 20
    assert figures["time_to_human_p90_s"] == 20
    board = await h.call("GET", "/wallboard", as_user="supervisor")
    assert board["emergencies"]["emergencies"] == 1
    # the caller hangs up after the call: ended, nobody left wrapping up
    await h.pbx.party_hangup(ref)

    async def ended() -> Any:
        return (await h.call("GET", f"/calls/{call['id']}"))["state"] == "ended"

    await eventually(ended)


async def test_given_nobody_answers_when_an_emergency_then_contacts_in_order_first_1_wins(
    harness: Harness,
) -> None:
    h = harness
    rid = await resident_with_contacts(h, 2)
    contacts = await contacts_of(h, rid)
    await add_oncall(h, *ONCALL)
    # nobody logged in: straight to the on-call list, no 15 s wait
    ref, call = await emergency_call(h, rid)
    first = await ringing_to(h, ONCALL[0])
    await h.pbx.reject(first, OriginateFailure.NO_ANSWER)
    second = await ringing_to(h, ONCALL[1])
    await h.pbx.answer(second)
    await h.pbx.party_hangup(second)  # picked up, pressed nothing, hung up
    # the on-call list is spent before its 60 s: the contacts at once, and the caller
    # hears (on their next holding prompt) that help is being called, and the key for 120
    contact_1 = await ringing_to(h, contacts[0])
    await h.timers.advance(10)

    async def told() -> bool:
        return any("呼叫帮助" in line for line in h.pbx.calls[ref].transcript)

    await eventually(told)
    await h.pbx.reject(contact_1, OriginateFailure.BUSY)
    contact_2 = await ringing_to(h, contacts[1])
    await take(h, contact_2)
    await joined(h, ref, contact_2)

    row = await escalation(h, call["id"])
    assert row.taken_by == f"contact:{row.plan['contacts'][1]}"
    events = [e for e in await timeline(h, call["id"]) if e["name"].startswith("emergency.")]
    called = [
        (e["data"]["stage"], e["data"]["step"])
        for e in events
        if e["name"] == "emergency.responder_called"
    ]
    assert called == [("oncall", 0), ("oncall", 1), ("contacts", 0), ("contacts", 1)]
    assert [e["name"] for e in events][-1] == "emergency.taken"
    # each step rang once
    assert [len(calls_to(h, n)) for n in [*ONCALL, *contacts[:2]]] == [1, 1, 1, 1]


async def test_given_help_being_called_when_the_caller_presses_1_then_connected_to_120(
    harness: Harness,
) -> None:
    h = harness
    ref, call = await emergency_call(h)  # no on-call list, nobody on duty
    # no on-call phones: contacts at once; the caller hears the help prompt
    await h.timers.advance(10)
    await press(h, ref, "1")
    ambulance = await ringing_to(h, "120")
    await h.pbx.answer(ambulance)
    await joined(h, ref, ambulance)
    row = await escalation(h, call["id"])
    assert row.taken_by == "120"
    names = [e["name"] for e in await timeline(h, call["id"])]
    assert {"emergency.dial_120", "emergency.connected_120"} <= set(names)
    assert (await emergency_figures(h))["connected_120"] == 1


async def test_given_a_high_risk_resident_who_says_nothing_then_an_emergency_others_routine(
    harness: Harness,
) -> None:
    h = harness
    h.pbx.time_scale = 0.005  # the menu's waits for a key pass quickly
    async with h.services.store.read() as session:
        rows = (await session.execute(select(Resident))).scalars().all()
    risky = next(r for r in rows if "孤寡" in r.groups)
    calm = next(r for r in rows if r.groups == ["空巢"])
    reasons = {}
    for resident in (risky, calm):
        assert resident.id is not None
        ref = await h.pbx.dial_in(resident_phone(resident.id))

        async def queued(ref: str = ref) -> Any:
            calls = [c for c in await h.call("GET", "/calls") if c["ref"] == ref]
            return calls[0] if calls and calls[0]["state"] == "queued" else None

        reasons[resident.id] = (await eventually(queued))["emergency_reason"]
    assert reasons == {risky.id: "silent", calm.id: None}


async def test_given_an_unanswered_call_when_the_same_number_rings_again_then_an_emergency(
    harness: Harness,
) -> None:
    h = harness
    first = await h.pbx.dial_in(resident_phone(1))
    await press(h, first, "0")

    async def state(ref: str, want: str) -> Any:
        calls = [c for c in await h.call("GET", "/calls") if c["ref"] == ref]
        return calls[0] if calls and calls[0]["state"] == want else None

    routine = await eventually(lambda: state(first, "queued"))
    assert routine["emergency"] is False
    await h.pbx.party_hangup(first)
    h.clock.advance(120)  # rings again two minutes later
    again = await h.pbx.dial_in(resident_phone(1))
    await press(h, again, "0")
    call = await eventually(lambda: state(again, "queued"))
    assert (call["emergency"], call["emergency_reason"]) == (True, "repeat")


async def test_given_after_hours_and_nobody_on_duty_when_a_routine_call_then_told_and_callback(
    harness: Harness,
) -> None:
    h = harness
    h.services.dispatch.config.desk_open = time(8, 0)
    h.services.dispatch.config.desk_close = time(20, 0)
    h.clock.advance(12 * 3600)  # 22:00 in Shanghai: the desk (08:00-20:00) is closed
    ref = await h.pbx.dial_in(resident_phone(1))
    await press(h, ref, "0")

    async def callback() -> Any:
        tickets = await h.call("GET", "/tickets?state=open")
        return [t for t in tickets if t["category_code"] == "callback"]

    (ticket,) = await eventually(callback)
    detail = await h.call("GET", f"/calls/{ticket['call_id']}")
    assert detail["state"] == "ended" and detail["emergency"] is False
    assert ticket["created_at"] == detail["started_at"]  # first in line in the morning
    assert "call.after_hours" in [e["name"] for e in detail["timeline"]]

    async def told() -> bool:
        return any("服务台" in line for line in h.pbx.calls[ref].transcript)

    await eventually(told)
    assert any("明天早上八点" in line for line in h.pbx.calls[ref].transcript), h.pbx.calls[
        ref
    ].transcript
    # an emergency at the same hour is not sent away: the on-call list is rung at once
    await add_oncall(h, ONCALL[0])
    urgent = await h.pbx.dial_in(resident_phone(2))
    await press(h, urgent, "1")
    await ringing_to(h, ONCALL[0])


async def test_given_an_emergency_ticket_when_dispatched_then_parallel_offers_with_short_timeouts(
    harness: Harness,
) -> None:
    h = harness
    ticket = await h.call(
        "POST", "/tickets", json={"category": "emergency", "resident_id": 1}, expect=201
    )
    deadline = ticket["deadline_at"]
    assert deadline is not None
    await h.call("POST", f"/tickets/{ticket['id']}/dispatch", json={})
    offers = list(await h.services.dispatch.offers.offers(ticket["id"]))
    width = h.services.dispatch.config.parallel_offers_emergency
    assert 1 < len(offers) <= width  # the clinics are rung at once, not one by one
    assert {(o.expires_at - o.placed_at).total_seconds() for o in offers} == {45.0}
