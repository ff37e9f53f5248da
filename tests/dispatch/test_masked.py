"""Masked calls between a merchant and the resident of an open order (issue 16), on the
simulated PBX, SQLite and PostgreSQL: the merchant asks from their page (their phone rings
first, then the resident's, then the two are joined), or the resident presses 4 in the
status menu (the merchant is rung and joined with them). Each phone sees the hotline's
number only; nothing the merchant receives, and no event, carries the resident's number;
the call is on the ticket's timeline; only while the order is open, a few times an hour."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from dispatch.models import Call
from eventlog.models import Event
from ivr.prompts import render
from operator_console import auth
from providers.base import OriginateFailure
from registry.models import Merchant, ResidentPhone, Role, User
from tests.conftest import DEMO_PASSWORD, Harness, eventually
from tests.dispatch.test_cascade import names
from tests.dispatch.test_told import accepted_from_console
from tests.operator_console.test_whole_path import (
    RESIDENT_PHONE,
    press_when_asked,
    ringing_out,
    ticket_state,
)

HOTLINE = "12349"


async def merchant_login(h: Harness, tid: int) -> tuple[str, str]:
    """A login for the merchant who took ticket `tid`, and that merchant's phone."""
    detail = await h.call("GET", f"/tickets/{tid}")
    merchant_id = detail["merchant_id"]
    username = f"shop-{merchant_id}"
    async with h.services.store.tx() as tx:
        merchant = await tx.session.get(Merchant, merchant_id)
        assert merchant is not None and merchant.phones
        tx.session.add(
            User(
                username=username,
                password_hash=auth.hash_password(DEMO_PASSWORD),
                role=Role.MERCHANT,
                merchant_id=merchant_id,
            )
        )
    return username, merchant.phones[0]


async def resident_digits(h: Harness, resident_id: int = 1) -> list[str]:
    """Every phone number of the resident, as digits without the country code."""
    async with h.services.store.read() as session:
        rows = await session.execute(
            select(col(ResidentPhone.number)).where(col(ResidentPhone.resident_id) == resident_id)
        )
        numbers = list(rows.scalars())
    assert numbers
    return [n.removeprefix("+86").lstrip("0") for n in numbers]


def leaks(payload: Any, digits: list[str]) -> list[str]:
    """The resident's numbers found anywhere in a payload (as JSON text)."""
    text = json.dumps(payload, ensure_ascii=False, default=str)
    return [d for d in digits if d in text]


async def ringing_to(h: Harness, number: str) -> dict[str, Any]:
    async def check() -> Any:
        return next(
            (
                c
                for c in h.pbx.snapshot()
                if c["direction"] == "out" and c["state"] == "ringing" and c["number"] == number
            ),
            None,
        )

    return dict(await eventually(check))


async def pbx_state(h: Harness, ref: str, state: str) -> None:
    async def check() -> bool:
        return h.pbx.calls[ref].state == state

    await eventually(check)


async def timeline_has(h: Harness, tid: int, name: str) -> dict[str, Any]:
    async def check() -> Any:
        detail = await h.call("GET", f"/tickets/{tid}")
        return detail if name in names(detail) else None

    return dict(await eventually(check))


async def masked_events(h: Harness, tid: int) -> list[Event]:
    """The ticket's events and those of every call of the ticket."""
    async with h.services.store.read() as session:
        call_ids = [
            str(i)
            for i in (
                await session.execute(select(col(Call.id)).where(col(Call.ticket_id) == tid))
            ).scalars()
        ]
        rows = await session.execute(
            select(Event).where(
                ((col(Event.subject) == "ticket") & (col(Event.subject_id) == str(tid)))
                | ((col(Event.subject) == "call") & col(Event.subject_id).in_(call_ids))
            )
        )
        return list(rows.scalars())


async def test_given_an_accepted_order_when_the_merchant_connects_then_both_rung_and_joined_masked(
    harness: Harness,
) -> None:
    h = harness
    tid, _ = await accepted_from_console(h)
    shop, shop_phone = await merchant_login(h, tid)
    digits = await resident_digits(h)

    started = await h.call(
        "POST", f"/merchant/orders/{tid}/connect", as_user=shop, json={}, expect=201
    )
    assert started["ticket_id"] == tid and started["state"] == "calling_you"
    # the merchant's own phone first, showing the hotline
    first = await ringing_to(h, shop_phone)
    assert h.pbx.calls[first["ref"]].caller_id == HOTLINE
    await h.pbx.answer(first["ref"])

    async def heard_connecting() -> bool:
        return render("masked.calling_resident", "zh-CN") in h.pbx.calls[first["ref"]].transcript

    await eventually(heard_connecting)
    # then the resident's, showing the hotline too, never the merchant's number
    second = await ringing_out(h, exclude={first["ref"]})
    assert second["number"].removeprefix("+86").lstrip("0") in digits
    assert h.pbx.calls[second["ref"]].caller_id == HOTLINE
    await h.pbx.answer(second["ref"])
    await pbx_state(h, first["ref"], "bridged")
    assert h.pbx.calls[first["ref"]].peer == second["ref"]
    assert h.pbx.calls[second["ref"]].peer == first["ref"]
    await timeline_has(h, tid, "masked.connected")

    # the resident hangs up: the merchant's leg is hung up by the service
    await h.pbx.party_hangup(second["ref"])
    await pbx_state(h, first["ref"], "ended")
    detail = await timeline_has(h, tid, "masked.ended")
    masked = [e for e in detail["timeline"] if e["name"].startswith("masked.")]
    assert [e["name"] for e in masked] == ["masked.started", "masked.connected", "masked.ended"]
    assert masked[0]["actor"] == shop and masked[0]["data"]["initiated_by"] == "merchant"
    assert masked[2]["data"]["hung_up_by"] == "resident"

    # nothing the merchant receives, and no event of the ticket or its calls, has the number
    orders = await h.call("GET", "/merchant/orders", as_user=shop)
    assert leaks(started, digits) == [] and leaks(orders, digits) == []
    events = await masked_events(h, tid)
    assert {e.name for e in events} >= {"masked.started", "call.answered", "call.bridged"}
    assert leaks([e.data for e in events], digits) == []


async def test_given_an_order_not_open_or_not_theirs_when_connecting_then_refused_clearly(
    harness: Harness,
) -> None:
    h = harness
    tid, _ = await accepted_from_console(h)
    shop, _ = await merchant_login(h, tid)
    # staff use the console's own click-to-call, not the merchant's page
    await h.call("POST", f"/merchant/orders/{tid}/connect", json={}, expect=403)
    # another merchant's ticket (or none): 404, as for every merchant read
    other = "merchant1" if shop != "shop-1" else None
    if other is not None:
        refused = await h.call(
            "POST", f"/merchant/orders/{tid}/connect", as_user=other, json={}, expect=404
        )
        assert refused["error_id"] == "not_found"
    await h.call("POST", "/merchant/orders/999999/connect", as_user=shop, json={}, expect=404)
    # at the door (in service) it may be asked: "I am at the gate"
    await h.call("POST", f"/tickets/{tid}/arrive", as_user=shop, json={})
    await ticket_state(h, tid, "in_service")
    await h.call("POST", f"/merchant/orders/{tid}/connect", as_user=shop, json={}, expect=201)
    # once the visit is done the order is not open: 409 with its state
    await h.call("POST", f"/tickets/{tid}/complete", as_user=shop, json={})
    await ticket_state(h, tid, "completed")
    closed = await h.call(
        "POST", f"/merchant/orders/{tid}/connect", as_user=shop, json={}, expect=409
    )
    assert closed["error_id"] == "order_not_open"
    assert closed["details"] == {"ticket_id": tid, "state": "completed"}
    assert names(await h.call("GET", f"/tickets/{tid}")).count("masked.started") == 1


async def test_given_unanswered_masked_calls_when_asked_again_and_again_then_rate_limited(
    harness: Harness,
) -> None:
    h = harness
    tid, _ = await accepted_from_console(h)
    shop, shop_phone = await merchant_login(h, tid)
    limit = h.services.dispatch.config.masked_per_hour
    for _ in range(limit):
        await h.call("POST", f"/merchant/orders/{tid}/connect", as_user=shop, json={}, expect=201)
        # one at a time: a second while the first rings is refused
        busy = await h.call(
            "POST", f"/merchant/orders/{tid}/connect", as_user=shop, json={}, expect=409
        )
        assert busy["error_id"] == "masked_busy"
        ringing = await ringing_to(h, shop_phone)
        await h.pbx.reject(ringing["ref"])
        await pbx_state(h, ringing["ref"], "ended")

        async def failed_once_more(n: int = _ + 1) -> bool:
            detail = await h.call("GET", f"/tickets/{tid}")
            return names(detail).count("masked.failed") == n

        await eventually(failed_once_more)
    limited = await h.call(
        "POST", f"/merchant/orders/{tid}/connect", as_user=shop, json={}, expect=429
    )
    assert limited["error_id"] == "rate_limited"
    failed = [e for e in (await h.call("GET", f"/tickets/{tid}"))["timeline"]
              if e["name"] == "masked.failed"]  # fmt: skip
    assert failed[0]["data"]["reason"] == "merchant_unreached"
    # an hour later it may be asked again
    h.clock.advance(3601)
    await h.call("POST", f"/merchant/orders/{tid}/connect", as_user=shop, json={}, expect=201)


async def test_given_an_accepted_order_when_the_resident_presses_4_then_joined_with_the_merchant(
    harness: Harness,
) -> None:
    h = harness
    tid, _ = await accepted_from_console(h)
    _, shop_phone = await merchant_login(h, tid)
    digits = await resident_digits(h)
    ref = await h.pbx.dial_in(RESIDENT_PHONE)
    await press_when_asked(h, ref, "4")

    async def heard_connecting() -> bool:
        return render("masked.calling_merchant", "zh-CN") in h.pbx.calls[ref].transcript

    await eventually(heard_connecting)
    merchant = await ringing_to(h, shop_phone)
    # the merchant sees the hotline calling, not the resident
    assert h.pbx.calls[merchant["ref"]].caller_id == HOTLINE
    await h.pbx.answer(merchant["ref"])
    await pbx_state(h, ref, "bridged")
    assert h.pbx.calls[ref].peer == merchant["ref"]
    assert h.pbx.calls[merchant["ref"]].peer == ref
    await timeline_has(h, tid, "masked.connected")
    # the merchant hangs up: so does the resident's line
    await h.pbx.party_hangup(merchant["ref"])
    await pbx_state(h, ref, "ended")
    detail = await timeline_has(h, tid, "masked.ended")
    masked = [e for e in detail["timeline"] if e["name"].startswith("masked.")]
    assert [e["name"] for e in masked] == ["masked.started", "masked.connected", "masked.ended"]
    assert masked[0]["actor"] == "resident" and masked[0]["data"]["initiated_by"] == "resident"
    assert masked[2]["data"]["hung_up_by"] == "merchant"
    events = await masked_events(h, tid)
    assert leaks([e.data for e in events if e.name.startswith("masked.")], digits) == []
    # served by the keypad: not an abandoned call
    async with h.services.store.read() as session:
        call = (await session.execute(select(Call).where(col(Call.ref) == ref))).scalars().one()
    assert call.cause == "self_served"


async def test_given_the_merchant_never_answers_when_the_resident_pressed_4_then_told_and_0_helps(
    harness: Harness,
) -> None:
    h = harness
    tid, _ = await accepted_from_console(h)
    _, shop_phone = await merchant_login(h, tid)
    ref = await h.pbx.dial_in(RESIDENT_PHONE)
    await press_when_asked(h, ref, "4")
    merchant = await ringing_to(h, shop_phone)
    await h.pbx.reject(merchant["ref"])

    async def told() -> bool:
        return render("masked.unreached", "zh-CN") in h.pbx.calls[ref].transcript

    await eventually(told)
    await press_when_asked(h, ref, "0")

    async def queued() -> Any:
        calls = await h.call("GET", "/calls")
        return next((c for c in calls if c["state"] == "queued"), None)

    assert (await eventually(queued))["resident_id"] == 1
    detail = await timeline_has(h, tid, "masked.failed")
    failed = [e for e in detail["timeline"] if e["name"] == "masked.failed"]
    assert failed[0]["data"]["reason"] == "merchant_unreached"


async def test_given_the_merchant_waits_when_the_resident_never_answers_then_told_and_hung_up(
    harness: Harness,
) -> None:
    h = harness
    tid, _ = await accepted_from_console(h)
    shop, shop_phone = await merchant_login(h, tid)
    await h.call("POST", f"/merchant/orders/{tid}/connect", as_user=shop, json={}, expect=201)
    first = await ringing_to(h, shop_phone)
    await h.pbx.answer(first["ref"])
    second = await ringing_out(h, exclude={first["ref"]})
    await h.pbx.reject(second["ref"], OriginateFailure.NO_ANSWER)
    # the merchant hears that nobody answered, and the call ends
    await pbx_state(h, first["ref"], "ended")
    transcript = h.pbx.calls[first["ref"]].transcript
    assert render("masked.unreached", "zh-CN") in transcript
    assert render("masked.unreached_menu", "zh-CN") not in transcript  # no operator menu
    detail = await timeline_has(h, tid, "masked.failed")
    masked = [e for e in detail["timeline"] if e["name"].startswith("masked.")]
    assert [e["name"] for e in masked] == ["masked.started", "masked.failed"]
    assert masked[1]["data"]["reason"] == "resident_unreached"


async def test_given_the_resident_rings_when_the_merchant_hangs_up_then_the_resident_leg_ends(
    harness: Harness,
) -> None:
    h = harness
    tid, _ = await accepted_from_console(h)
    shop, shop_phone = await merchant_login(h, tid)
    await h.call("POST", f"/merchant/orders/{tid}/connect", as_user=shop, json={}, expect=201)
    first = await ringing_to(h, shop_phone)
    await h.pbx.answer(first["ref"])
    second = await ringing_out(h, exclude={first["ref"]})
    await h.pbx.party_hangup(first["ref"])
    await pbx_state(h, second["ref"], "ended")
    detail = await timeline_has(h, tid, "masked.failed")
    masked = [e for e in detail["timeline"] if e["name"].startswith("masked.")]
    assert [e["name"] for e in masked] == ["masked.started", "masked.failed"]
    assert masked[1]["data"] == {
        "masked_id": masked[0]["data"]["masked_id"],
        "reason": "hung_up",
        "hung_up_by": "merchant",
    }


async def test_given_an_arrival_check_in_when_the_merchant_presses_4_then_joined_with_the_resident(
    harness: Harness,
) -> None:
    """ "I am at the gate" by keypad: on the service's arrival call the merchant presses 4,
    stays on the line, and the resident is rung and joined with that very call."""
    h = harness
    tid, _ = await accepted_from_console(h)
    _, shop_phone = await merchant_login(h, tid)
    digits = await resident_digits(h)
    placed = await h.call("POST", f"/tickets/{tid}/check-in", json={"kind": "arrival"}, expect=202)
    ref = placed["call_ref"]
    await h.pbx.answer(ref)
    await press_when_asked(h, ref, "4")

    async def heard_connecting() -> bool:
        return render("masked.calling_resident", "zh-CN") in h.pbx.calls[ref].transcript

    await eventually(heard_connecting)
    resident = await ringing_out(h, exclude={ref})
    assert resident["number"].removeprefix("+86").lstrip("0") in digits
    assert h.pbx.calls[resident["ref"]].caller_id == HOTLINE
    await h.pbx.answer(resident["ref"])
    await pbx_state(h, resident["ref"], "bridged")
    assert h.pbx.calls[resident["ref"]].peer == ref and h.pbx.calls[ref].peer == resident["ref"]
    await timeline_has(h, tid, "masked.connected")
    # the merchant hangs up their check-in call: the resident's leg goes too
    await h.pbx.party_hangup(ref)
    await pbx_state(h, resident["ref"], "ended")
    detail = await timeline_has(h, tid, "masked.ended")
    masked = [e for e in detail["timeline"] if e["name"].startswith("masked.")]
    assert [e["name"] for e in masked] == ["masked.started", "masked.connected", "masked.ended"]
    assert masked[0]["data"]["initiated_by"] == "merchant"
    assert masked[2]["data"]["hung_up_by"] == "merchant"
    assert detail["state"] == "accepted"  # 4 is not "arrived"
    events = await masked_events(h, tid)
    assert leaks([e.data for e in events if e.name.startswith("masked.")], digits) == []
    assert h.pbx.calls[ref].number == shop_phone
