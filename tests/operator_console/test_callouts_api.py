"""Operators call out, over HTTP on SQLite and PostgreSQL with the simulated PBX: the
desk rings first, then the number; numbers by id only and never shown; the callout's
timeline and wrap-up; the call back list (oldest first, its waiting time, answering one
dials it, its outcome closes or re-queues it); the emergency panel with its checklist.
Roles and bad input answer 401/403/404/409/422 in the API's error shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from dispatch.models import Call
from registry.models import EmergencyContact, Grid, Resident, ResidentPhone
from tests.conftest import Harness, eventually, started_harness
from tests.dispatch.test_hold_transfer import add_operator, names, state
from tests.dispatch.test_queue import PHONES, press, wait_queued

ROUTES = (
    ("POST", "/callouts", {"target": "emergency"}),
    ("GET", "/callouts/1", None),
    ("POST", "/callouts/1/wrap-up", {}),
    ("GET", "/callbacks", None),
    ("POST", "/callbacks/1/dial", None),
    ("GET", "/calls/1/emergency-panel", None),
    ("POST", "/calls/1/emergency-panel/steps", {"step": "120"}),
)


async def resident_numbers(h: Harness, resident_id: int) -> list[str]:
    """Every number a resident and their contacts have, as stored (the secrets)."""
    async with h.services.store.read() as session:
        phones = (
            (
                await session.execute(
                    select(col(ResidentPhone.number)).where(
                        col(ResidentPhone.resident_id) == resident_id
                    )
                )
            )
            .scalars()
            .all()
        )
        contacts = (
            (
                await session.execute(
                    select(EmergencyContact).where(col(EmergencyContact.resident_id) == resident_id)
                )
            )
            .scalars()
            .all()
        )
    return [*phones, *(n for c in contacts for n in [c.phone, *c.phones])]


def shows_none_of(data: Any, numbers: list[str]) -> bool:
    """No number appears anywhere in a response (in full, or without its +86)."""
    text = json.dumps(data, ensure_ascii=False)
    return not any(n in text or n.removeprefix("+86") in text for n in numbers if n)


async def pbx_call(h: Harness, ref: str, state_: str) -> Any:
    """The simulated PBX's view of a call once it is in `state_`."""

    async def check() -> Any:
        call = h.pbx.calls.get(ref)
        return call if call is not None and call.state == state_ else None

    return await eventually(check)


async def call_state(h: Harness, call_id: int, wanted: str) -> dict[str, Any]:
    async def check() -> Any:
        call = await h.call("GET", f"/callouts/{call_id}")
        return call if call["state"] == wanted else None

    result: dict[str, Any] = await eventually(check)
    return result


async def test_given_no_login_or_a_merchant_then_401_and_403(harness: Harness) -> None:
    h = harness
    for method, path, payload in ROUTES:
        resp = await h.client.request(method, "/api/v1" + path, json=payload)
        assert resp.status == 401, path
        assert (await resp.json())["error_id"] == "unauthorized"
    for method, path, payload in ROUTES:
        body = await h.call(method, path, as_user="merchant1", json=payload, expect=403)
        assert body["error_id"] == "forbidden", path
    # nothing was dialled for anyone
    assert h.pbx.calls == {}


async def test_given_a_free_operator_when_calling_a_resident_then_desk_number_and_wrap_up(
    harness: Harness,
) -> None:
    h = harness
    secrets_ = await resident_numbers(h, 1)
    call = await h.call("POST", "/callouts", json={"target": "resident", "id": 1}, expect=201)
    assert call["purpose"] == "callout" and call["direction"] == "out"
    assert call["resident_id"] == 1 and call["resident_name"]
    assert shows_none_of(call, secrets_)
    # the desk answered (the simulator's desks do), now the resident's phone rings
    sim = await pbx_call(h, call["ref"], "ringing")
    assert sim.number in secrets_ and sim.peer == f"operator:{call['operator_id']}"
    assert await state(h, "operator") == ("on_call", call["id"])

    await h.pbx.answer(call["ref"])
    await call_state(h, call["id"], "connected")
    await h.pbx.party_hangup(call["ref"])
    await call_state(h, call["id"], "wrap_up")
    assert (await state(h, "operator"))[0] == "wrap_up"

    done = await h.call("POST", f"/callouts/{call['id']}/wrap-up", json={"outcome": "talked"})
    assert done == {"ok": True, "task_state": None}
    assert await state(h, "operator") == ("available", None)
    timeline = await h.call("GET", f"/callouts/{call['id']}")
    assert [e["name"] for e in timeline["timeline"]] == [
        "call.callout",
        "call.bridged",
        "call.ringing",
        "call.answered",
        "call.ended",
        "call.wrapped_up",
    ]
    assert shows_none_of(timeline, secrets_)


async def test_given_every_kind_of_target_then_the_number_behind_its_id_is_rung(
    harness: Harness,
) -> None:
    h = harness
    async with h.services.store.tx() as tx:
        contact = (
            await tx.session.execute(
                select(EmergencyContact).where(col(EmergencyContact.resident_id) == 1)
                .order_by(col(EmergencyContact.position))
            )
        ).scalars().first()  # fmt: skip
        resident = await tx.session.get(Resident, 1)
        assert contact is not None and resident is not None
        grid = await tx.session.get(Grid, resident.grid_code)
        assert grid is not None
        grid.worker_name, grid.worker_phone = "网格员小李", "+8613900009999"
        merchant_phone = "+8613900008888"
        from registry.models import Merchant

        merchant = await tx.session.get(Merchant, 1)
        assert merchant is not None
        merchant.phones = [merchant_phone]
    h.services.dispatch.config.emergency_number = "120"
    expected = {
        ("contact", contact.id): contact.phone,
        ("merchant", 1): merchant_phone,
        ("grid_worker", 1): "+8613900009999",
        ("emergency", None): "120",
    }
    for (target, target_id), number in expected.items():
        call = await h.call(
            "POST", "/callouts", json={"target": target, "id": target_id}, expect=201
        )
        assert number not in json.dumps(call) or target == "emergency"
        sim = await pbx_call(h, call["ref"], "ringing")
        assert sim.number == number, target
        await h.call("POST", f"/calls/{call['id']}/hangup")
        await call_state(h, call["id"], "ended")
        # never reached: no wrap-up, the operator is free for the next
        assert await state(h, "operator") == ("available", None)


async def test_given_bad_requests_then_404_409_422(harness: Harness) -> None:
    h = harness
    for payload in (
        {},
        {"target": "phone", "id": 1},
        {"target": "resident"},
        {"target": "resident", "id": 0},
        {"target": "resident", "id": 1, "number": "+8613800000000"},
        {"target": "emergency", "number": "110"},
    ):
        body = await h.call("POST", "/callouts", json=payload, expect=422)
        assert body["error_id"] == "invalid_input", payload
    for target in ("resident", "contact", "merchant", "grid_worker", "callback"):
        body = await h.call("POST", "/callouts", json={"target": target, "id": 99999}, expect=404)
        assert body["error_id"] == "not_found", target
    await h.call("GET", "/callouts/99999", expect=404)
    await h.call("GET", "/calls/99999/emergency-panel", expect=404)
    await h.call("POST", "/callouts/abc/wrap-up", json={}, expect=422)

    first = await h.call("POST", "/callouts", json={"target": "resident", "id": 1}, expect=201)
    # on a callout already: a second one is refused, nothing more is dialled
    body = await h.call("POST", "/callouts", json={"target": "resident", "id": 2}, expect=409)
    assert body["error_id"] == "conflict"
    assert [c.ref for c in h.pbx.calls.values()] == [first["ref"]]
    # another operator's callout is not theirs to see or wrap up
    await add_operator(h, "op2")
    body = await h.call("GET", f"/callouts/{first['id']}", as_user="op2", expect=403)
    assert body["details"]["reason"] == "another_operator"
    await h.call("POST", f"/calls/{first['id']}/hangup", as_user="op2", expect=403)
    # not answered yet: nothing to wrap up
    body = await h.call("POST", f"/callouts/{first['id']}/wrap-up", json={}, expect=409)
    assert body["error_id"] == "illegal_transition"
    # the phone line down: 503 at once, nothing recorded for anyone
    h.pbx.set_link(False)
    body = await h.call("POST", "/callouts", json={"target": "resident", "id": 2}, as_user="op2",
                        expect=503)  # fmt: skip
    assert body["error_id"] == "telephony_unavailable"
    assert await state(h, "op2") == ("logged_out", None)


async def hang_up_in_queue(h: Harness, phone: str) -> int:
    """A resident rings, asks for an operator, and hangs up waiting: a call back task."""
    ref = await h.pbx.dial_in(phone)
    await press(h, ref, "0")
    await wait_queued(h, 1)
    await h.pbx.party_hangup(ref)

    async def task() -> Any:
        return [
            t
            for t in await h.call("GET", "/callbacks")
            if t["number"] and t["number"][-4:] == phone[-4:]
        ]

    (found,) = await eventually(task)
    return int(found["ticket_id"])


async def test_given_call_backs_then_listed_oldest_first_and_answering_dials_the_caller(
    harness: Harness,
) -> None:
    h = harness
    first = await hang_up_in_queue(h, PHONES[0])
    h.clock.advance(120)
    second = await hang_up_in_queue(h, PHONES[1])
    h.clock.advance(60)
    listed = await h.call("GET", "/callbacks")
    assert [t["ticket_id"] for t in listed] == [first, second]
    assert [t["waiting_s"] for t in listed] == [180, 60]
    assert shows_none_of(listed, PHONES)

    # answering the oldest dials the number its caller rang from
    call = await h.call("POST", f"/callbacks/{first}/dial", expect=201)
    assert call["ticket_id"] == first
    sim = await pbx_call(h, call["ref"], "ringing")
    assert sim.number == PHONES[0]
    # a colleague answering the same task is refused while it is being dialled
    await add_operator(h, "op2")
    body = await h.call("POST", f"/callbacks/{first}/dial", as_user="op2", expect=409)
    assert "being dialled" in body["message"]
    assert (await h.call("GET", "/callbacks"))[0]["dialling"] == call["operator_id"]

    # nobody answers: the operator is free at once, the task waits on with its attempt
    await h.pbx.reject(call["ref"])
    await call_state(h, call["id"], "ended")
    assert await state(h, "operator") == ("available", None)
    again = await h.call("GET", "/callbacks")
    assert [(t["ticket_id"], t["attempts"], t["dialling"]) for t in again] == [
        (first, 1, None),
        (second, 0, None),
    ]

    # the second try: answered, and the outcome "reached" closes the task
    call = await h.call("POST", f"/callbacks/{first}/dial", expect=201)
    await pbx_call(h, call["ref"], "ringing")
    await h.pbx.answer(call["ref"])
    await call_state(h, call["id"], "connected")
    await h.call("POST", f"/calls/{call['id']}/hangup")
    await call_state(h, call["id"], "wrap_up")
    done = await h.call("POST", f"/callouts/{call['id']}/wrap-up", json={"outcome": "reached"})
    assert done["task_state"] == "closed"
    assert [t["ticket_id"] for t in await h.call("GET", "/callbacks")] == [second]
    ticket = await h.call("GET", f"/tickets/{first}")
    assert ticket["state"] == "closed"

    # any other outcome re-queues: the task stays, attempted
    call = await h.call("POST", f"/callbacks/{second}/dial", expect=201)
    await pbx_call(h, call["ref"], "ringing")
    await h.pbx.answer(call["ref"])
    await call_state(h, call["id"], "connected")
    await h.pbx.party_hangup(call["ref"])
    await call_state(h, call["id"], "wrap_up")
    done = await h.call(
        "POST", f"/callouts/{call['id']}/wrap-up", json={"outcome": "call_again_later"}
    )
    assert done["task_state"] == "new"
    assert [(t["ticket_id"], t["attempts"]) for t in await h.call("GET", "/callbacks")] == [
        (second, 1)
    ]
    # a closed task cannot be dialled again
    body = await h.call("POST", f"/callbacks/{first}/dial", expect=409)
    assert body["error_id"] == "conflict"


async def emergency_answered(h: Harness) -> dict[str, Any]:
    """Resident 1 presses the emergency key and the operator answers."""
    ref = await h.pbx.dial_in(PHONES[0])
    await press(h, ref, "1")
    (queued,) = await wait_queued(h, 1)
    assert queued["emergency"] is True
    call: dict[str, Any] = await h.call("POST", f"/calls/{queued['id']}/answer")
    return call


async def test_given_an_emergency_when_answered_then_the_panel_and_its_checklist(
    harness: Harness,
) -> None:
    h = harness
    async with h.services.store.tx() as tx:
        resident = await tx.session.get(Resident, 1)
        assert resident is not None
        resident.risk_notes, resident.key_holder = "独居，易跌倒", "邻居张大爷 3单元"
        resident.key_safe = "门口左侧，密码在钥匙保管人处"
    secrets_ = await resident_numbers(h, 1)
    call = await emergency_answered(h)
    panel = await h.call("GET", f"/calls/{call['id']}/emergency-panel")
    assert panel["emergency"] is True
    assert panel["resident"]["risk_notes"] == "独居，易跌倒"
    assert panel["resident"]["key_holder"] == "邻居张大爷 3单元"
    assert panel["resident"]["key_safe"].startswith("门口左侧")
    assert "medicines" in panel["resident"]
    steps = [s["step"] for s in panel["steps"]]
    assert steps[0] == "120" and steps[-1] == "grid_worker"
    contacts = [s for s in panel["steps"] if s["kind"] == "contact"]
    assert contacts and [c["position"] for c in contacts] == sorted(c["position"] for c in contacts)
    assert not any(s["done"] for s in panel["steps"])
    assert shows_none_of(panel, secrets_)

    # one click calls 120 while the operator stays with the caller
    out = await h.call(
        "POST", "/callouts", json={"target": "emergency", "for_call_id": call["id"]}, expect=201
    )
    assert out["parent_call_id"] == call["id"]
    sim = await pbx_call(h, out["ref"], "ringing")
    assert sim.number == h.services.dispatch.config.emergency_number
    assert await state(h, "operator") == ("on_call", call["id"])
    # and the first contact, a second line too
    contact_call = await h.call(
        "POST",
        "/callouts",
        json={"target": "contact", "id": contacts[0]["target_id"], "for_call_id": call["id"]},
        expect=201,
    )
    await pbx_call(h, contact_call["ref"], "ringing")

    ticked = await h.call(
        "POST",
        f"/calls/{call['id']}/emergency-panel/steps",
        json={"step": "120", "note": "救护车已派出"},
    )
    step = ticked["steps"][0]
    assert step["done"] is True and step["done_by"] == "operator" and step["done_at"]
    assert step["note"] == "救护车已派出" and step["callouts"] == [out["id"]]
    timeline = await names(h, call["id"])
    assert timeline.count("call.callout_placed") == 2 and "emergency.step" in timeline

    # a supervisor may look; another operator may not; unknown steps are 422
    await h.call("GET", f"/calls/{call['id']}/emergency-panel", as_user="supervisor")
    await add_operator(h, "op2")
    body = await h.call("GET", f"/calls/{call['id']}/emergency-panel", as_user="op2", expect=403)
    assert body["details"]["reason"] == "another_operator"
    await h.call(
        "POST", f"/calls/{call['id']}/emergency-panel/steps", json={"step": "110"}, expect=422
    )
    # another operator cannot ring out "for" a call that is not theirs
    await h.call(
        "POST",
        "/callouts",
        as_user="op2",
        json={"target": "emergency", "for_call_id": call["id"]},
        expect=409,
    )
    # the second line's end leaves the operator with their caller, no wrap-up of its own
    await h.pbx.answer(out["ref"])
    await call_state(h, out["id"], "connected")
    await h.pbx.party_hangup(out["ref"])
    await call_state(h, out["id"], "ended")
    assert await state(h, "operator") == ("on_call", call["id"])


async def test_given_a_callout_ringing_when_the_service_restarts_then_lost_and_the_desk_free(
    tmp_path: Path, seeded_db_url: str
) -> None:
    async with started_harness(tmp_path, seeded_db_url) as h:
        task = await hang_up_in_queue(h, PHONES[0])
        call = await h.call("POST", f"/callbacks/{task}/dial", expect=201)
        await pbx_call(h, call["ref"], "ringing")
        assert (await state(h, "operator"))[0] == "on_call"
    # a new process: its PBX knows no such call
    async with started_harness(tmp_path, seeded_db_url) as h:

        async def lost() -> Any:
            async with h.services.store.read() as session:
                row = await session.get(Call, call["id"])
                return row if row is not None and row.cause == "lost" else None

        row = await eventually(lost)
        assert row.state.value == "ended"
        assert (await state(h, "operator"))[0] != "on_call"
        # the task waits on, its try counted; nobody is dialling it
        (waiting,) = await h.call("GET", "/callbacks")
        assert (waiting["ticket_id"], waiting["attempts"], waiting["dialling"]) == (task, 1, None)
        assert h.pbx.calls == {}  # never placed again on anyone's behalf
