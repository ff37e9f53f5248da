"""The service always starts again: stale states closed with a reason, bad rows skipped,
call refs unique across restarts, one process per database, callbacks never sent to
merchants, and a merchant's acceptance committed before they are thanked.

Two lives of the app one after the other on the same database (SQLite and PostgreSQL),
with the real APScheduler job store where the restart is the point.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, text, update
from sqlmodel import col

from dispatch.config import DispatchConfig
from dispatch.machines import call as cm
from dispatch.models import Call, OperatorStatus, Ticket
from operator_console.app import create_app, services_key
from operator_console.instance import AlreadyRunning
from providers.memory import MemoryPBX
from tests.conftest import DEMO_PASSWORD, Harness, eventually, make_settings
from tests.dispatch.test_queue import PHONES, press, wait_queued
from tests.dispatch.test_restart import api, next_morning

CONFIG = DispatchConfig(match_seed=7, offer_timeout_s=600, parallel_offers=1, wrap_up_s=0.3)


@asynccontextmanager
async def life(
    tmp_path: Path, seeded_db_url: str, *, morning: bool = False, **config: Any
) -> AsyncIterator[TestClient[Any, Any]]:
    """One process's life on the database, with the real scheduler; `morning` moves the
    clock to the next 10:00 in Shanghai (merchants open), at the price of timers that fall
    due that far ahead in real time."""
    app = create_app(
        make_settings(tmp_path, seeded_db_url),
        telephony=MemoryPBX(time_scale=1.0, ring_timeout_s=300),
        clock=next_morning() if morning else None,
        dispatch_config=replace(CONFIG, **config),
    )
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


def services(client: TestClient[Any, Any]) -> Any:
    return client.app[services_key]  # type: ignore[index]


async def call_row(client: TestClient[Any, Any], call_id: int) -> Call:
    async with services(client).store.read() as session:
        row = await session.get(Call, call_id)
        assert row is not None
        return row


async def call_names(client: TestClient[Any, Any], call_id: int) -> list[str]:
    return [e["name"] for e in await services(client).store.events_for("call", call_id)]


async def answered_then_hung_up(client: TestClient[Any, Any]) -> int:
    """A resident rings, an operator answers, the resident hangs up: the call wraps up."""
    pbx: MemoryPBX = services(client).telephony
    ref = await pbx.dial_in(PHONES[0])

    async def asking() -> bool:
        call = pbx.calls.get(ref)
        return bool(call and call.waiting_digits)

    await eventually(asking)
    await pbx.press(ref, "0")

    async def queued() -> Any:
        return next((c for c in await api(client, "GET", "/calls") if c["state"] == "queued"), None)

    call = await eventually(queued)
    await api(client, "POST", f"/calls/{call['id']}/answer")
    await pbx.party_hangup(ref)
    return int(call["id"])


async def wrapping_up(client: TestClient[Any, Any]) -> int:
    """A call whose caller hung up, waiting for its operator's wrap-up."""
    call_id = await answered_then_hung_up(client)

    async def wrapping() -> bool:
        return (await call_row(client, call_id)).state == cm.CallState.WRAP_UP

    await eventually(wrapping)
    return call_id


# -- the wrap-up nobody presses ---------------------------------------------------------


async def test_given_a_wrap_up_nobody_finishes_when_its_timer_fires_then_the_call_ends_too(
    tmp_path: Path, seeded_db_url: str
) -> None:
    async with life(tmp_path, seeded_db_url) as one:
        call_id = await answered_then_hung_up(one)

        async def ended() -> bool:
            return (await call_row(one, call_id)).state == cm.CallState.ENDED

        await eventually(ended)
        wrapped = [
            e
            for e in await services(one).store.events_for("call", call_id)
            if e["name"] == "call.wrapped_up"
        ]
        assert [e["data"] for e in wrapped] == [{"disposition": "wrap_up_timeout", "auto": True}]
        status = await api(one, "GET", "/operator/state")
        assert status["state"] == "available"


async def test_given_a_call_left_in_wrap_up_when_the_service_starts_again_then_it_is_closed(
    tmp_path: Path, seeded_db_url: str
) -> None:
    # the old code: the wrap-up timer freed the operator but left the call in wrap_up,
    # and the next start tried to hang it up and died
    async with life(tmp_path, seeded_db_url, wrap_up_s=3600) as one:
        call_id = await wrapping_up(one)
        # as the old wrap-up timer left things: operator free, call still wrapping up
        async with services(one).store.tx() as tx:
            await tx.session.execute(update(OperatorStatus).values(state="available", call_id=None))
    async with life(tmp_path, seeded_db_url) as two:
        assert (await call_row(two, call_id)).state == cm.CallState.ENDED
        names = await call_names(two, call_id)
        assert names[-1] == "call.wrapped_up"
        (event,) = [
            e
            for e in await services(two).store.events_for("call", call_id)
            if e["name"] == "call.wrapped_up"
        ]
        assert event["data"] == {"disposition": "closed_at_start", "auto": True}
        resp = await two.get("/healthz")
        assert resp.status == 200


async def test_given_an_operator_still_wrapping_up_when_restarted_then_the_timer_still_ends_it(
    tmp_path: Path, seeded_db_url: str
) -> None:
    async with life(tmp_path, seeded_db_url, wrap_up_s=3600) as one:
        call_id = await wrapping_up(one)
        await services(one).timers.cancel("wrapup:2")  # the crash lost the timer too
    async with life(tmp_path, seeded_db_url, wrap_up_s=0.3) as two:

        async def ended() -> bool:
            return (await call_row(two, call_id)).state == cm.CallState.ENDED

        await eventually(ended)
        wrapped = [
            e["data"]
            for e in await services(two).store.events_for("call", call_id)
            if e["name"] == "call.wrapped_up"
        ]
        assert wrapped == [{"disposition": "wrap_up_timeout", "auto": True}]


@pytest.mark.parametrize(
    "damage", ["call_of_a_missing_offer", "call_in_an_unknown_state", "ticket_in_an_unknown_state"]
)
async def test_given_a_bad_row_when_starting_then_it_is_logged_and_skipped_not_fatal(
    tmp_path: Path, seeded_db_url: str, damage: str
) -> None:
    async with life(tmp_path, seeded_db_url) as one:
        ticket = await api(one, "POST", "/tickets", json={"category": "medicine", "resident_id": 1})
        now = services(one).clock.now()
        async with services(one).store.tx() as tx:
            good = Call(
                ref="good-lost-call",
                direction="in",
                purpose="hotline",
                number="+862354000002",
                state=cm.CallState.QUEUED,
                started_at=now,
                queued_at=now,
            )
            tx.session.add(good)
            tx.session.add(
                Call(
                    ref="bad-call",
                    direction="out" if damage == "call_of_a_missing_offer" else "in",
                    purpose="offer" if damage == "call_of_a_missing_offer" else "hotline",
                    number="+862354000003",
                    offer_id=987654 if damage == "call_of_a_missing_offer" else None,
                    state=cm.CallState.RINGING,
                    started_at=now,
                    dialed_at=now,
                )
            )
            await tx.session.flush()
            good_id = good.id
        # a state this version does not know (a newer release's, or a hand edit)
        async with services(one).engine.begin() as conn:
            if damage == "call_in_an_unknown_state":
                await conn.execute(
                    text("UPDATE call SET state = 'sleeping' WHERE ref = 'bad-call'")
                )
            elif damage == "ticket_in_an_unknown_state":
                await conn.execute(
                    text("UPDATE ticket SET state = 'sleeping' WHERE id = :id"),
                    {"id": ticket["id"]},
                )
    async with life(tmp_path, seeded_db_url) as two:
        resp = await two.get("/healthz")
        assert resp.status == 200
        # the good row was still repaired: the lost caller ended and got a call back
        assert (await call_row(two, good_id)).state == cm.CallState.ABANDONED
        skipped = [
            e
            for e in await services(two).store.events_since(0, limit=100_000)
            if e["name"] == "system.reconcile_skipped"
        ]
        assert skipped, "the bad row is recorded where a supervisor can see it"
        assert {e["data"]["kind"] for e in skipped} == {
            "ticket" if damage.startswith("ticket") else "call"
        }
        assert all(e["data"]["error"] for e in skipped)
        report = next(
            e
            for e in reversed(await services(two).store.events_since(0, limit=100_000))
            if e["name"] == "system.reconciled"
        )
        assert report["data"]["counts"]["skipped"] >= 1


# -- refs unique across restarts ---------------------------------------------------------


async def test_given_a_kept_database_when_calls_come_in_after_a_restart_then_refs_never_clash(
    tmp_path: Path, seeded_db_url: str
) -> None:
    refs: list[str] = []
    for _ in range(2):
        async with life(tmp_path, seeded_db_url) as app:
            pbx: MemoryPBX = services(app).telephony
            ref = await pbx.dial_in(PHONES[0])
            refs.append(ref)

            async def recorded(ref: str = ref) -> Any:
                async with services(app).store.read() as session:
                    return (
                        await session.execute(select(Call).where(col(Call.ref) == ref))
                    ).scalar()

            call = await eventually(recorded)
            assert call.state == cm.CallState.IVR  # greeted, not left in silence
    assert refs[0] != refs[1]


def test_given_two_simulators_then_their_refs_differ() -> None:
    async def refs() -> list[str]:
        out = []
        for _ in range(2):
            async with MemoryPBX() as pbx:
                out.append(await pbx.dial_in(PHONES[0]))
        return out

    first, second = asyncio.run(refs())
    assert first != second


# -- one process per database ---------------------------------------------------------------


async def test_given_a_running_process_when_a_second_starts_on_its_database_then_it_refuses(
    tmp_path: Path, seeded_db_url: str
) -> None:
    async with life(tmp_path, seeded_db_url, morning=True) as one:
        ticket = await api(one, "POST", "/tickets", json={"category": "medicine", "resident_id": 1})
        await api(one, "POST", f"/tickets/{ticket['id']}/dispatch", json={})
        pbx: MemoryPBX = services(one).telephony

        async def ringing() -> bool:
            return any(c["direction"] == "out" for c in pbx.snapshot())

        await eventually(ringing)

        async def offers_ringing() -> Any:
            offers = (await api(one, "GET", f"/tickets/{ticket['id']}"))["offers"]
            return offers if offers and {o["state"] for o in offers} == {"ringing"} else None

        before = await eventually(offers_ringing)
        second = create_app(
            make_settings(tmp_path / "second", seeded_db_url),
            telephony=MemoryPBX(),
            dispatch_config=CONFIG,
        )
        client = TestClient(TestServer(second, host="127.0.0.1"))
        with pytest.raises(AlreadyRunning, match="another Yijing process"):
            await client.start_server()
        await client.close()
        # the first process's offer was not touched by the second
        detail = await api(one, "GET", f"/tickets/{ticket['id']}")
        assert detail["offers"] == before
        assert {o["state"] for o in before} == {"ringing"}
    # once the first has stopped, the database is free again
    async with life(tmp_path, seeded_db_url) as three:
        assert (await three.get("/healthz")).status == 200


# -- callbacks are for operators ---------------------------------------------------------------


async def _callback_tickets(client: TestClient[Any, Any]) -> list[Ticket]:
    async with services(client).store.read() as session:
        return list(
            (
                await session.execute(select(Ticket).where(col(Ticket.category_code) == "callback"))
            ).scalars()
        )


async def test_given_callback_tickets_when_restarting_then_they_never_go_to_merchants(
    tmp_path: Path, seeded_db_url: str
) -> None:
    async with life(tmp_path, seeded_db_url) as one:
        pbx: MemoryPBX = services(one).telephony
        ref = await pbx.dial_in(PHONES[0])

        async def asking() -> bool:
            call = pbx.calls.get(ref)
            return bool(call and call.waiting_digits)

        await eventually(asking)
        await pbx.press(ref, "0")

        async def queued() -> Any:
            calls = await api(one, "GET", "/calls")
            return next((c for c in calls if c["state"] == "queued"), None)

        await eventually(queued)
        await pbx.party_hangup(ref)  # hung up while waiting: a callback task
        await eventually(lambda: _callback_tickets(one))
    async with life(tmp_path, seeded_db_url) as two:
        # the start-up repair is part of the start: what it would have dispatched, it has
        (ticket,) = await _callback_tickets(two)
        assert ticket.state == "new"  # waiting for an operator, not "unassigned"
        events = [e["name"] for e in await services(two).store.events_for("ticket", ticket.id)]
        assert "ticket.matching" not in events and "ticket.unassigned" not in events
        resp = await two.post(
            "/api/v1/login", json={"username": "operator", "password": DEMO_PASSWORD}
        )
        token = (await resp.json())["token"]
        resp = await two.post(
            f"/api/v1/tickets/{ticket.id}/dispatch",
            json={},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert resp.status == 422
        body = await resp.json()
        assert body["error_id"] == "operator_task"


async def test_given_a_call_back_after_an_order_when_pressing_9_then_the_order_is_repeated(
    harness: Harness,
) -> None:
    from ivr.prompts import render

    h = harness
    await h.call("POST", "/tickets", json={"category": "groceries", "resident_id": 1}, expect=201)
    ref = await h.pbx.dial_in(PHONES[0])
    await press(h, ref, "0")
    await wait_queued(h, 1)
    await h.pbx.party_hangup(ref)  # a call back is now the latest ticket

    async def has_callback() -> Any:
        tickets = await h.call("GET", "/tickets")
        return [t for t in tickets if t["category_code"] == "callback"]

    await eventually(has_callback)
    again = await h.pbx.dial_in(PHONES[0])
    # the groceries are still open: their status comes first, 3 is the menu
    await press(h, again, "3")
    await press(h, again, "9")  # "same as last time": the groceries, not the call back
    await press(h, again, "1")
    transcript = h.pbx.calls[again].transcript
    assert render("hotline.confirm.groceries", "zh-CN") in transcript
    assert render("hotline.no_last", "zh-CN") not in transcript

    async def repeated() -> Any:
        tickets = await h.call("GET", "/tickets")
        return [t for t in tickets if t["category_code"] == "groceries" and t["repeat_of"]]

    await eventually(repeated)


async def test_given_a_callback_ticket_when_dispatched_through_the_service_then_refused(
    harness: Harness,
) -> None:
    from dispatch.errors import OperatorTask

    h = harness
    ticket = await h.call(
        "POST", "/tickets", json={"category": "callback", "resident_id": 1}, expect=201
    )
    with pytest.raises(OperatorTask):
        await h.services.dispatch.offers.dispatch(ticket["id"], user=None)
    with pytest.raises(OperatorTask):
        await h.services.dispatch.tickets.repeat_order(ticket["id"], user=None)


# -- a merchant's acceptance is never lost ---------------------------------------------------


async def _answered_offer(h: Harness, exclude: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    from tests.operator_console.test_whole_path import ringing_out, waiting_for_keys

    call = await ringing_out(h, exclude=exclude)
    await h.pbx.answer(call["ref"])
    await waiting_for_keys(h, call["ref"])
    return str(call["ref"])


async def test_given_a_merchant_presses_1_when_the_accept_cannot_commit_then_no_code_word_heard(
    harness: Harness,
) -> None:
    from ivr.prompts import render
    from tests.dispatch.test_cascade import new_ticket

    h = harness
    tid = await new_ticket(h, "groceries")
    await h.call("POST", f"/tickets/{tid}/dispatch", json={})
    ref = await _answered_offer(h)
    offers = h.services.dispatch.offers

    crashed = asyncio.Event()

    async def crash(*args: Any, **kw: Any) -> None:
        crashed.set()
        raise RuntimeError("the process died while committing the accept")

    offers._accept = crash  # type: ignore[method-assign]
    await h.pbx.press(ref, "1")
    await asyncio.wait_for(crashed.wait(), 5)
    await h.settle()  # the pump finishes the press (the crash is logged, nothing said)
    transcript = h.pbx.calls[ref].transcript
    code_word = (await h.call("GET", f"/tickets/{tid}"))["code_word"]
    assert not any(code_word in line or "暗号" in line for line in transcript), transcript
    assert render("offer.accepted", "zh-CN", {"code_word": code_word}) not in transcript


async def test_given_a_merchant_presses_1_then_the_code_word_comes_after_the_commit(
    harness: Harness,
) -> None:
    from ivr.prompts import render
    from tests.dispatch.test_cascade import new_ticket
    from tests.operator_console.test_whole_path import ticket_state

    h = harness
    tid = await new_ticket(h, "groceries")
    await h.call("POST", f"/tickets/{tid}/dispatch", json={})
    ref = await _answered_offer(h)
    heard_when: list[str] = []
    original = h.pbx.run_flow

    async def spying(ref: str, flow: Any, **kw: Any) -> None:
        detail = await h.call("GET", f"/tickets/{tid}")
        heard_when.append(f"{flow.name}:{detail['state']}")
        await original(ref, flow, **kw)

    h.pbx.run_flow = spying  # type: ignore[method-assign]
    await h.pbx.press(ref, "1")
    detail = await ticket_state(h, tid, "accepted")

    async def told() -> bool:
        call = h.pbx.calls.get(ref)
        return bool(call and call.state == "ended")

    await eventually(told)
    assert heard_when == ["merchant_accepted:accepted"]
    expected = render("offer.accepted", "zh-CN", {"code_word": detail["code_word"]})
    assert h.pbx.calls[ref].transcript[-1] == expected


async def test_given_another_merchant_won_when_a_second_presses_1_then_told_it_is_taken(
    harness: Harness,
) -> None:
    from ivr.prompts import render
    from tests.dispatch.test_cascade import live_offer_count, new_ticket

    h = harness
    h.services.dispatch.config.parallel_offers_urgent = 2
    tid = await new_ticket(h, "medicine")  # urgent: two offers at once
    await h.call("POST", f"/tickets/{tid}/dispatch", json={})
    await live_offer_count(h, tid, 2)
    first = await _answered_offer(h)
    second = await _answered_offer(h, exclude={first})

    async def keep_line(ref: str) -> None:  # the withdrawal's hang-up has not arrived yet
        return None

    h.pbx.hangup = keep_line  # type: ignore[method-assign]
    await h.pbx.press(first, "1")

    async def accepted() -> bool:
        return (await h.call("GET", f"/tickets/{tid}"))["state"] == "accepted"

    await eventually(accepted)
    await h.pbx.press(second, "1")

    async def told() -> bool:
        return render("offer.taken", "zh-CN") in h.pbx.calls[second].transcript

    await eventually(told)
    assert h.pbx.calls[second].state == "ended"
    assert not any("暗号" in line for line in h.pbx.calls[second].transcript)
    detail = await h.call("GET", f"/tickets/{tid}")
    assert sorted(o["state"] for o in detail["offers"]) == ["accepted", "withdrawn"]
