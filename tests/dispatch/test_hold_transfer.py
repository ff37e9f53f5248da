"""Hold, resume and transfer at the operator desk, on SQLite and PostgreSQL: each use case
one unit of work with its events, the PBX told after the commit, refusals that change
nothing, a caller hanging up on hold, and the answer figures left as the first answer set
them."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import col

from dispatch.errors import Conflict, Invalid
from dispatch.figures import Ev, call_figures
from dispatch.machines import IllegalTransition
from dispatch.models import Call, OperatorStatus
from eventlog.models import Event
from operator_console import auth
from providers.base import TelephonyError, TransferFailed
from providers.memory import Script
from registry.models import Role, User
from tests.conftest import DEMO_PASSWORD, MORNING, Harness, eventually
from tests.dispatch.test_queue import PHONES, press, wait_queued


async def user(h: Harness, username: str) -> User:
    """A console user by name."""
    async with h.services.store.read() as session:
        found = (
            (await session.execute(select(User).where(col(User.username) == username)))
            .scalars()
            .one()
        )
        session.expunge(found)
        return found


async def add_operator(h: Harness, username: str, role: Role = Role.OPERATOR) -> User:
    """One more console login (the demo has one operator and one supervisor)."""
    async with h.services.store.read() as session:
        session.add(
            User(
                username=username,
                display_name=username,
                password_hash=auth.hash_password(DEMO_PASSWORD),
                role=role,
            )
        )
    return await user(h, username)


async def answered(h: Harness, as_user: str = "operator") -> tuple[dict[str, Any], str]:
    """A resident rings, presses 0, waits, and `as_user` answers; returns (call, PBX ref)."""
    ref = await h.pbx.dial_in(PHONES[0])
    await press(h, ref, "0")
    (queued,) = await wait_queued(h, 1)
    call = await h.call("POST", f"/calls/{queued['id']}/answer", as_user=as_user)

    async def bridged() -> bool:
        # the PBX's report of the bridge lands as an event of its own: wait for it, so a
        # snapshot taken next does not race it
        return "call.bridged" in await names(h, call["id"])

    await eventually(bridged)
    return call, ref


async def state(h: Harness, username: str) -> tuple[str, int | None]:
    """An operator's (state, call_id)."""
    s = await h.call("GET", "/operator/state", as_user=username)
    return s["state"], s["call_id"]


async def call_row(h: Harness, call_id: int) -> Call:
    """A call as stored."""
    async with h.services.store.read() as session:
        row = await session.get(Call, call_id)
        assert row is not None
        return row


async def names(h: Harness, call_id: int) -> list[str]:
    """The names of a call's events, in order."""
    return [e["name"] for e in await h.services.store.events_for("call", call_id)]


async def snapshot(h: Harness, call_id: int | None = None) -> tuple[Any, ...]:
    """What a refused transfer must leave exactly as it was: every call and operator row,
    the PBX, and the events a transfer of `call_id` would write (the call's own events and
    any `call.transfer*`). Other callers' events may land meanwhile (a second caller's
    queue and ring events come from the PBX pump, not from the refused transfer)."""
    async with h.services.store.read() as session:
        calls = [(c.id, c.state, c.operator_id, c.version) for c in (await session.execute(
            select(Call))).scalars()]  # fmt: skip
        ops = [(s.user_id, s.state, s.call_id, s.version) for s in (await session.execute(
            select(OperatorStatus))).scalars()]  # fmt: skip
        events = [
            (e.seq, e.name)
            for e in (await session.execute(select(Event))).scalars()
            if call_id is None
            or (e.subject == "call" and e.subject_id == str(call_id))
            or e.name.startswith("call.transfer")
        ]
    return sorted(calls), sorted(ops), sorted(events), sorted(h.pbx.snapshot(), key=str)


async def test_given_a_connected_call_when_held_then_resumed_then_events_pbx_and_hold_time(
    harness: Harness,
) -> None:
    h = harness
    call, ref = await answered(h)
    me = await user(h, "operator")

    held = await h.services.dispatch.desk.hold_call(call["id"], me)

    assert held.state == "on_hold" and held.held_at == MORNING
    assert h.pbx.calls[ref].state == "held" and h.pbx.calls[ref].peer == f"operator:{me.id}"
    assert await state(h, "operator") == ("on_call", call["id"])
    with pytest.raises(IllegalTransition, match="Hold not allowed in state 'on_hold'"):
        await h.services.dispatch.desk.hold_call(call["id"], me)

    h.clock.advance(42)
    resumed = await h.services.dispatch.desk.resume_call(call["id"], me)

    assert resumed.state == "connected" and resumed.held_at is None
    assert h.pbx.calls[ref].state == "bridged"
    events = await h.services.store.events_for("call", call["id"])
    held_ev, resumed_ev = [e for e in events if e["name"] in ("call.held", "call.resumed")]
    assert held_ev["actor"] == resumed_ev["actor"] == "operator"
    assert resumed_ev["data"]["held_s"] == 42.0
    with pytest.raises(IllegalTransition, match="Unhold not allowed in state 'connected'"):
        await h.services.dispatch.desk.resume_call(call["id"], me)


async def test_given_a_held_caller_who_hangs_up_then_wrap_up_not_abandoned(
    harness: Harness,
) -> None:
    h = harness
    call, ref = await answered(h)
    await h.services.dispatch.desk.hold_call(call["id"], await user(h, "operator"))

    await h.pbx.party_hangup(ref)

    async def ended() -> Any:
        return (await call_row(h, call["id"])).state == "wrap_up"

    await eventually(ended)
    row = await call_row(h, call["id"])
    assert row.held_at is None and row.cause == "normal"
    assert await state(h, "operator") == ("wrap_up", call["id"])
    events = await h.services.store.events_for("call", call["id"])
    (end,) = [e for e in events if e["name"].startswith("call.ended")]
    assert end["data"]["on_hold"] is True
    assert "call.abandoned" not in [e["name"] for e in events]
    await h.call("POST", f"/calls/{call['id']}/wrap-up", json={"disposition": "info"})
    assert (await call_row(h, call["id"])).state == "ended"


async def test_given_a_call_when_transferred_to_the_supervisor_then_hands_change_figures_stay(
    harness: Harness,
) -> None:
    h = harness
    await h.call("POST", "/operator/state", json={"action": "login"}, as_user="supervisor")
    await h.call("POST", "/operator/state", json={"action": "pause"}, as_user="supervisor")
    call, ref = await answered(h)
    first = await call_row(h, call["id"])
    me, boss = await user(h, "operator"), await user(h, "supervisor")
    h.clock.advance(30)

    moved = await h.services.dispatch.desk.transfer_call(call["id"], me, to_role="supervisor")

    assert (moved.state, moved.operator_id) == ("connected", boss.id)
    assert await state(h, "operator") == ("wrap_up", call["id"])
    assert await state(h, "supervisor") == ("on_call", call["id"])
    assert h.pbx.calls[ref].peer == f"operator:{boss.id}"
    assert f"wrapup:{me.id}" in await h.timers.keys()
    row = await call_row(h, call["id"])
    assert row.answered_at == first.answered_at and row.queued_at == first.queued_at
    events = await h.services.store.events_for("call", call["id"])
    (moved_ev,) = [e for e in events if e["name"] == "call.transferred"]
    assert moved_ev["data"] | {"held_s": None} == {
        "from_operator_id": me.id,
        "from_operator": "话务员小李",
        "to_operator_id": boss.id,
        "to_operator": "supervisor",
        "to": "supervisor",
        "held_s": None,
        "ticket_id": None,
        # what the receiving desk is told: who the caller is, and the sender's note
        "resident_id": row.resident_id,
        "note": "",
    }
    # answered once: the 60 s figure counts the first answer's wait, the transfer adds none
    assert [e["name"] for e in events].count("call.connected") == 1
    async with h.services.store.read() as session:
        rows = (await session.execute(select(Event).order_by(col(Event.seq)))).scalars().all()
    figures = call_figures(
        [Ev(e.name, e.subject_id, e.occurred_at, e.data) for e in rows],
        start=MORNING,
        end=h.clock.now(),
    )
    assert (figures.queued, figures.answered_60s, figures.abandoned) == (1, 1, 0)

    # the sender wraps up; the call goes on with the supervisor
    await h.call("POST", f"/calls/{call['id']}/wrap-up", json={"disposition": "other"})
    assert await state(h, "operator") == ("available", None)
    assert (await call_row(h, call["id"])).state == "connected"
    wrapped = (await h.services.store.events_for("call", call["id"]))[-1]
    assert wrapped["name"] == "call.wrapped_up" and wrapped["data"]["transferred"] is True
    # and the supervisor ends it as any call
    await h.pbx.party_hangup(ref)

    async def wrap() -> Any:
        return await state(h, "supervisor") == ("wrap_up", call["id"])

    await eventually(wrap)
    await h.call("POST", f"/calls/{call['id']}/wrap-up", json={}, as_user="supervisor")
    assert (await call_row(h, call["id"])).state == "ended"


async def test_given_a_held_call_when_transferred_to_an_available_operator_then_unheld(
    harness: Harness,
) -> None:
    h = harness
    other = await add_operator(h, "operator2")
    await h.call("POST", "/operator/state", json={"action": "login"}, as_user="operator2")
    call, ref = await answered(h)
    me = await user(h, "operator")
    await h.services.dispatch.desk.hold_call(call["id"], me)
    h.clock.advance(12)

    await h.services.dispatch.desk.transfer_call(call["id"], me, to_user_id=other.id)

    row = await call_row(h, call["id"])
    assert (row.state, row.operator_id, row.held_at) == ("connected", other.id, None)
    assert (h.pbx.calls[ref].state, h.pbx.calls[ref].peer) == ("bridged", f"operator:{other.id}")
    assert await state(h, "operator2") == ("on_call", call["id"])
    (ev,) = [
        e
        for e in await h.services.store.events_for("call", call["id"])
        if e["name"] == "call.transferred"
    ]
    assert ev["data"]["held_s"] == 12.0 and ev["data"]["to"] == "operator"
    # the first operator may no longer hold or hand on a call that is not theirs
    with pytest.raises(Conflict, match="another operator"):
        await h.services.dispatch.desk.hold_call(call["id"], me)


async def refused(h: Harness, call_id: int, me: User, error: type[Exception], **target: Any) -> str:
    """Try a transfer that must be refused; nothing may change. Returns the message."""
    before = await snapshot(h, call_id)
    with pytest.raises(error) as caught:
        await h.services.dispatch.desk.transfer_call(call_id, me, **target)
    assert await snapshot(h, call_id) == before
    return str(caught.value)


async def test_given_targets_not_free_when_transferring_then_refused_and_nothing_changes(
    harness: Harness,
) -> None:
    h = harness
    other = await add_operator(h, "operator2")
    call, _ = await answered(h)
    me = await user(h, "operator")
    merchant = await user(h, "merchant1")

    assert "logged_out, not free" in await refused(h, call["id"], me, Conflict, to_user_id=other.id)
    assert "no supervisor" in await refused(h, call["id"], me, Conflict, to_role="supervisor")
    await refused(h, call["id"], me, Invalid, to_user_id=me.id)
    await refused(h, call["id"], me, LookupError, to_user_id=merchant.id)
    await refused(h, call["id"], me, LookupError, to_user_id=9999)
    await refused(h, call["id"], me, Invalid, to_role="admin")
    await refused(h, call["id"], me, Invalid)

    await h.call("POST", "/operator/state", json={"action": "login"}, as_user="operator2")
    await h.call("POST", "/operator/state", json={"action": "pause"}, as_user="operator2")
    assert "paused, not free" in await refused(h, call["id"], me, Conflict, to_user_id=other.id)

    # a second caller is offered to operator 2 (reserved), then taken (on_call)
    await h.call("POST", "/operator/state", json={"action": "resume"}, as_user="operator2")
    second = await h.pbx.dial_in(PHONES[1])
    await press(h, second, "0")

    async def reserved() -> Any:
        return (
            await state(h, "operator2") if (await state(h, "operator2"))[0] == "reserved" else None
        )

    _, waiting = await eventually(reserved)
    assert "reserved, not free" in await refused(h, call["id"], me, Conflict, to_user_id=other.id)
    await h.call("POST", f"/calls/{waiting}/answer", as_user="operator2")
    assert "on_call, not free" in await refused(h, call["id"], me, Conflict, to_user_id=other.id)


async def test_given_a_call_that_is_not_at_the_desk_then_hold_and_transfer_refused(
    harness: Harness,
) -> None:
    h = harness
    ref = await h.pbx.dial_in(PHONES[0])
    await press(h, ref, "0")
    (queued,) = await wait_queued(h, 1)
    me = await user(h, "operator")
    with pytest.raises(Conflict, match="not with an operator"):
        await h.services.dispatch.desk.hold_call(queued["id"], me)
    with pytest.raises(Conflict, match="not with an operator"):
        await h.services.dispatch.desk.transfer_call(queued["id"], me, to_role="supervisor")


async def test_given_the_pbx_cannot_hold_then_the_call_shows_connected_again(
    harness: Harness,
) -> None:
    h = harness
    call, ref = await answered(h)
    # the PBX still has the caller but lost the bridge (as after a PBX restart)
    h.pbx.calls[ref].state = "answered"

    with pytest.raises(TelephonyError):
        await h.services.dispatch.desk.hold_call(call["id"], await user(h, "operator"))

    row = await call_row(h, call["id"])
    assert (row.state, row.held_at) == ("connected", None)
    assert (await names(h, call["id"]))[-2:] == ["call.held", "call.hold_failed"]


@pytest.mark.parametrize("held", [False, True])
async def test_given_a_transfer_nobody_answers_then_caller_requeued_first_and_target_free(
    harness: Harness, held: bool
) -> None:
    h = harness
    # the supervisor desk takes a transfer while paused, so a newer caller can wait meanwhile
    await h.call("POST", "/operator/state", json={"action": "login"}, as_user="supervisor")
    await h.call("POST", "/operator/state", json={"action": "pause"}, as_user="supervisor")
    other = await user(h, "supervisor")
    h.pbx.script_desk(f"operator:{other.id}", Script(action="busy"))
    call, ref = await answered(h)
    first = await call_row(h, call["id"])
    me = await user(h, "operator")
    if held:
        await h.services.dispatch.desk.hold_call(call["id"], me)
    h.clock.advance(20)
    # a newer caller waits meanwhile: the returning caller must go before them
    newer = await h.pbx.dial_in(PHONES[1])
    await press(h, newer, "0")
    await wait_queued(h, 1)

    await h.services.dispatch.desk.transfer_call(call["id"], me, to_role="supervisor")

    async def requeued() -> Any:
        return (await call_row(h, call["id"])).state == "queued"

    await eventually(requeued)
    row = await call_row(h, call["id"])
    assert (row.operator_id, row.held_at) == (None, None)
    assert (row.answered_at, row.queued_at) == (first.answered_at, first.queued_at)
    queue = await wait_queued(h, 2)
    assert queue[0]["id"] == call["id"]  # its first place kept, ahead of the newer caller
    assert (h.pbx.calls[ref].state, h.pbx.calls[ref].peer) == ("answered", None)
    # the operator who never answered is free again (and may be offered a waiting call);
    # the one who handed the caller on is still wrapping up
    assert (await state(h, "supervisor"))[0] in ("available", "reserved")
    assert await state(h, "operator") == ("wrap_up", call["id"])
    events = await h.services.store.events_for("call", call["id"])
    (failed,) = [e for e in events if e["name"] == "call.transfer_unanswered"]
    assert failed["data"] | {"emergency": None} == {
        "to_operator_id": other.id,
        "to_operator": "supervisor",
        "requeued": True,
        "emergency": None,
        "ticket_id": None,
    }
    # the console's timeline (GET /calls/{id}) carries it
    shown = await h.call("GET", f"/calls/{call['id']}")
    assert "call.transfer_unanswered" in [e["name"] for e in shown["timeline"]]
    assert f"queue:{call['id']}" in await h.timers.keys()

    # whoever answers next takes the caller; the first answer stays the one that counts
    await h.call("POST", f"/calls/{call['id']}/wrap-up", json={"disposition": "other"})
    h.clock.advance(5)
    again = await h.call("POST", f"/calls/{call['id']}/answer")
    assert again["state"] == "connected"
    row = await call_row(h, call["id"])
    assert row.answered_at == first.answered_at and row.operator_id == me.id
    assert h.pbx.calls[ref].peer == f"operator:{me.id}"


async def test_given_a_late_transfer_failure_for_another_desk_then_nothing_changes(
    harness: Harness,
) -> None:
    h = harness
    call, ref = await answered(h)

    async def settled() -> bool:
        # the PBX's bridge report lands through the pump: take the snapshot after it
        return "call.bridged" in await names(h, call["id"])

    await eventually(settled)
    before = await snapshot(h)

    await h.services.dispatch.router.on_telephony(TransferFailed(ref, "operator:999"))
    await h.services.dispatch.router.on_telephony(TransferFailed("no-such-ref", "operator:1"))

    assert await snapshot(h) == before


async def test_given_a_supervisor_wrapping_up_when_a_transfer_comes_then_wrap_up_finished(
    harness: Harness,
) -> None:
    h = harness
    first, first_ref = await answered(h, as_user="supervisor")
    await h.pbx.party_hangup(first_ref)

    async def wrapping() -> Any:
        return await state(h, "supervisor") == ("wrap_up", first["id"])

    await eventually(wrapping)
    boss = await user(h, "supervisor")
    assert f"wrapup:{boss.id}" in await h.timers.keys()
    ref = await h.pbx.dial_in(PHONES[1])
    await press(h, ref, "0")
    (queued,) = await wait_queued(h, 1)
    call = await h.call("POST", f"/calls/{queued['id']}/answer")
    me = await user(h, "operator")

    await h.services.dispatch.desk.transfer_call(call["id"], me, to_role="supervisor")

    assert await state(h, "supervisor") == ("on_call", call["id"])
    assert (await call_row(h, first["id"])).state == "ended"
    wrapped = (await h.services.store.events_for("call", first["id"]))[-1]
    assert wrapped["name"] == "call.wrapped_up" and wrapped["actor"] == "supervisor"
    assert wrapped["data"] == {"disposition": "transferred_in", "auto": True}
    assert f"wrapup:{boss.id}" not in await h.timers.keys()
    names_of_boss = [e["name"] for e in await h.services.store.events_for("operator", boss.id)]
    assert names_of_boss[-2:] == ["operator.available", "operator.on_call"]
