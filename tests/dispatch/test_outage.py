"""A phone outage does not burn the cascade: offers wait for the line (their clocks held,
nothing counted against a merchant never reached), ticket deadlines go on, callers live
when the line dropped get one callback task each, and the cascade resumes where it was.
Through the API with the memory PBX's simulated outage, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from dispatch.models import Call, Offer, Ticket
from operator_console.app import services_key
from providers.memory import MemoryPBX
from tests.conftest import Harness, eventually
from tests.dispatch.test_cascade import new_ticket
from tests.dispatch.test_restart import RecordingPBX, api, app_on, next_morning
from tests.operator_console.test_whole_path import (
    RESIDENT_PHONE,
    press_when_asked,
    queued_call,
    ringing_out,
    ticket_state,
    waiting_for_keys,
)


def names(detail: dict[str, Any]) -> list[str]:
    return [e["name"] for e in detail["timeline"]]


async def events_named(h: Harness, name: str) -> list[dict[str, Any]]:
    return [e for e in await h.call("GET", "/events?since=0") if e["name"] == name]


async def offer_rows(h: Harness, ticket_id: int) -> list[Offer]:
    return list(await h.services.dispatch.offers.offers(ticket_id))


async def call_row(h: Harness, ref: str) -> Call:
    async with h.services.store.read() as session:
        call = (await session.execute(select(Call).where(col(Call.ref) == ref))).scalar_one()
        return call


async def callback_tickets(h: Harness) -> list[Ticket]:
    async with h.services.store.read() as session:
        rows = await session.execute(
            select(Ticket).where(col(Ticket.category_code) == "callback").order_by(col(Ticket.id))
        )
        return list(rows.scalars())


async def test_given_the_line_down_when_a_keypad_order_comes_then_it_waits_and_resumes(
    harness: Harness,
) -> None:
    h = harness
    ref = await h.pbx.dial_in(RESIDENT_PHONE)
    await press_when_asked(h, ref, "2")  # medicine
    await press_when_asked(h, ref, "1")  # confirm; the menu ends, the order is being made
    h.pbx.set_link(False)  # the line drops before the first merchant is called

    async def waiting() -> Any:
        tickets = await h.call("GET", "/tickets?state=open")
        if tickets and "offer.waiting" in names(
            await h.call("GET", f"/tickets/{tickets[0]['id']}")
        ):
            return tickets[0]
        return None

    tid = (await eventually(waiting))["id"]
    await h.settle()
    detail = await h.call("GET", f"/tickets/{tid}")
    # one offer, live and waiting: not twelve pharmacies failed, not unassigned
    assert detail["state"] == "offering"
    assert [o["state"] for o in detail["offers"]] == ["placed"]
    assert "offer.failed" not in names(detail) and "ticket.unassigned" not in names(detail)
    [offer] = await offer_rows(h, tid)
    assert h.pbx.placed == set()
    assert (await call_row(h, offer.call_ref)).dialed_at is None
    record = await h.call("GET", f"/merchants/{offer.merchant_id}/record")
    assert (record["offers"], record["accepted"]) == (0, 0)

    # the offer's timeout passes: a call that never rang does not expire
    assert f"offer:{offer.id}" in await h.timers.advance(91)
    assert [o["state"] for o in (await h.call("GET", f"/tickets/{tid}"))["offers"]] == ["placed"]
    # the ticket's deadline keeps running: a long outage reaches an operator
    await h.timers.advance(60 * 60)
    detail = await h.call("GET", f"/tickets/{tid}")
    assert detail["escalation_level"] == 1 and "alert.escalated" in names(detail)
    assert [o["state"] for o in detail["offers"]] == ["placed"]

    # the line is back: the same call, same ref, rings now, with a full timeout from now
    h.pbx.set_link(True)
    rung = await ringing_out(h)
    assert rung["ref"] == offer.call_ref and h.pbx.placed == {offer.call_ref}
    await h.settle()
    assert f"offer:{offer.id}" not in await h.timers.advance(89)
    await h.pbx.answer(rung["ref"])
    await waiting_for_keys(h, rung["ref"])
    await h.pbx.press(rung["ref"], "1")
    detail = await ticket_state(h, tid, "accepted")
    assert [o["state"] for o in detail["offers"]] == ["accepted"]
    assert {"offer.waiting", "offer.resumed"} <= set(names(detail))
    record = await h.call("GET", f"/merchants/{offer.merchant_id}/record")
    assert (record["offers"], record["accepted"]) == (1, 1)
    [down] = await events_named(h, "telephony.down")
    up = (await events_named(h, "telephony.up"))[-1]
    assert up["data"]["waiting_calls"] == 1 and up["data"]["down_s"] >= 3600
    assert up["seq"] > down["seq"]


async def test_given_callers_live_when_the_line_drops_then_each_gets_one_callback_task(
    harness: Harness,
) -> None:
    h = harness
    await h.call("POST", "/operator/state", json={"action": "login"})
    talking = await h.pbx.dial_in(RESIDENT_PHONE)
    await press_when_asked(h, talking, "0")  # an operator, please
    queued = await queued_call(h)
    await h.call("POST", f"/calls/{queued['id']}/answer")
    waiting = await h.pbx.dial_in("+862354000002")
    await press_when_asked(h, waiting, "0")

    async def two_in_queue_or_desk() -> Any:
        calls = await h.call("GET", "/calls")
        states = sorted(c["state"] for c in calls)
        return calls if states == ["connected", "queued"] else None

    await eventually(two_in_queue_or_desk)
    in_menu = await h.pbx.dial_in("+862354000003")
    await waiting_for_keys(h, in_menu)
    await h.settle()

    h.pbx.set_link(False)

    async def three_tasks() -> Any:
        tasks = await callback_tickets(h)
        return tasks if len(tasks) == 3 else None

    tasks = await eventually(three_tasks)
    [down] = await events_named(h, "telephony.down")
    assert down["data"]["live_calls"] == 3
    # the line returns: the dropped calls end, the queued caller is "abandoned", and
    # still nobody gets a second task
    h.pbx.set_link(True)

    async def all_ended() -> bool:
        async with h.services.store.read() as session:
            states = (
                await session.execute(select(col(Call.state)).where(col(Call.direction) == "in"))
            ).scalars()
            return all(s in ("wrap_up", "ended", "abandoned") for s in states)

    await eventually(all_ended)
    await h.settle()
    assert [t.id for t in await callback_tickets(h)] == [t.id for t in tasks]
    assert len({t.call_id for t in tasks}) == 3
    up = (await events_named(h, "telephony.up"))[-1]
    assert up["data"]["callbacks"] == 3


async def test_given_an_offer_ringing_when_the_line_drops_then_a_new_call_without_penalty(
    harness: Harness,
) -> None:
    h = harness
    tid = await new_ticket(h)
    await h.call("POST", f"/tickets/{tid}/dispatch", json={})
    first = await ringing_out(h)
    await h.settle()

    h.pbx.set_link(False)
    await h.settle()
    h.pbx.set_link(True)  # the PBX reports the ringing call lost: nobody knows if it rang

    again = await ringing_out(h, exclude={first["ref"]})
    assert again["ref"] == f"{first['ref']}.r1"
    await h.settle()
    detail = await h.call("GET", f"/tickets/{tid}")
    [offer] = await offer_rows(h, tid)
    assert offer.state in ("placed", "ringing")  # the same offer, still live
    assert offer.call_ref == again["ref"]
    assert {"offer.waiting", "offer.resumed"} <= set(names(detail))
    assert "offer.failed" not in names(detail) and "offer.no_answer" not in names(detail)
    assert (await call_row(h, first["ref"])).cause == "lost"
    record = await h.call("GET", f"/merchants/{offer.merchant_id}/record")
    assert record["offers"] == 0
    await h.pbx.answer(again["ref"])
    await waiting_for_keys(h, again["ref"])
    await h.pbx.press(again["ref"], "1")
    await ticket_state(h, tid, "accepted")


async def test_given_a_waiting_offer_when_the_ticket_is_cancelled_then_nobody_is_rung_later(
    harness: Harness,
) -> None:
    h = harness
    h.pbx.set_link(False)
    tid = await new_ticket(h)
    await h.call("POST", f"/tickets/{tid}/dispatch", json={})
    await h.settle()
    [offer] = await offer_rows(h, tid)
    await h.call("POST", f"/tickets/{tid}/cancel", json={"reason": "family came"})

    h.pbx.set_link(True)
    await eventually(lambda: _ended(h, offer.call_ref))
    assert h.pbx.placed == set()
    assert (await call_row(h, offer.call_ref)).cause == "not_dialed"


async def _ended(h: Harness, ref: str) -> bool:
    return (await call_row(h, ref)).state == "ended"


async def test_given_the_line_down_then_check_in_and_survey_calls_wait_and_ring_when_back(
    harness: Harness,
) -> None:
    h = harness
    tid = await new_ticket(h)
    await h.call("POST", f"/tickets/{tid}/dispatch", json={})
    [offer] = await offer_rows(h, tid)
    await h.call("POST", f"/offers/{offer.id}/accept")
    await h.settle()

    h.pbx.set_link(False)
    check_in = (
        await h.call("POST", f"/tickets/{tid}/check-in", json={"kind": "arrival"}, expect=202)
    )["call_ref"]
    await h.call("POST", f"/tickets/{tid}/complete")
    await h.timers.advance(61)  # the survey falls due while the line is down
    await h.settle()
    detail = await h.call("GET", f"/tickets/{tid}")
    assert detail["state"] == "completed" and detail["survey_attempts"] == 1
    assert "survey.retry" not in names(detail)  # an unplaced survey is not an unanswered one
    assert h.pbx.placed == {offer.call_ref}
    # the check-in waits for the line; the survey in the outbound engine's queue, which
    # places nothing while the line is down
    assert len(await events_named(h, "call.deferred")) == 1

    h.pbx.set_link(True)
    survey = await ringing_out(h)
    assert survey["ref"] == f"survey-{tid}-1"
    # the arrival check-in is no longer needed (the visit is complete): never rung
    assert check_in not in h.pbx.placed
    assert (await call_row(h, check_in)).cause == "not_dialed"
    await h.pbx.answer(survey["ref"])
    await press_when_asked(h, survey["ref"], "1")
    await ticket_state(h, tid, "closed")


async def test_given_an_offer_waiting_for_the_line_when_restarted_then_placed_not_lost(
    tmp_path: Path, seeded_db_url: str
) -> None:
    morning = next_morning()
    down = RecordingPBX([])
    async with app_on(tmp_path, seeded_db_url, down, clock=morning) as one:
        down.set_link(False)
        ticket = await api(
            one, "POST", "/tickets", json={"category": "groceries", "resident_id": 1}
        )
        await api(one, "POST", f"/tickets/{ticket['id']}/dispatch", json={})
        services = one.app[services_key]  # type: ignore[index]
        [offer] = list(await services.dispatch.offers.offers(ticket["id"]))

        async def deferred() -> Any:
            events = await services.store.events_for("ticket", ticket["id"])
            return [e for e in events if e["name"] == "offer.waiting"]

        await eventually(deferred)
    assert down.log == []  # never rang in the first life
    up = RecordingPBX([])
    async with app_on(tmp_path, seeded_db_url, up, clock=morning) as two:
        services = two.app[services_key]  # type: ignore[index]
        await eventually(lambda: _placed(up, offer.call_ref))
        detail = await api(two, "GET", f"/tickets/{ticket['id']}")
        assert [o["state"] for o in detail["offers"]] in (["placed"], ["ringing"])
        assert len(up.log) == 1  # the waiting offer's call, once, with its own ref
        reconciled = await services.store.events_since(0)
        counts = [e["data"]["counts"] for e in reconciled if e["name"] == "system.reconciled"]
        assert all(c["lost_calls"] == 0 for c in counts)


async def _placed(pbx: MemoryPBX, ref: str) -> bool:
    return ref in pbx.placed
