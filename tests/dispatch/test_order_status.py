"""A resident with an open order who calls the hotline hears its status first: who took
it and by when; 1 an emergency, 9 again, 2 then 1 cancels it, 3 the normal menu, 0 an
operator."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from dispatch.models import Call
from ivr.prompts import render
from tests.conftest import Harness, eventually
from tests.dispatch.test_cascade import live_offer_count, names, new_ticket
from tests.dispatch.test_told import accepted_from_console, merchant_of
from tests.operator_console.test_whole_path import (
    RESIDENT_PHONE,
    press_when_asked,
    queued_call,
    ringing_out,
    ticket_state,
    waiting_for_keys,
)

MENU = render("hotline.menu", "zh-CN")


async def said(h: Harness, ref: str, text: str, times: int = 1) -> list[str]:
    """Wait until the caller has heard `text` (at least `times` times)."""

    async def check() -> Any:
        transcript = h.pbx.calls[ref].transcript
        return transcript if sum(text in line for line in transcript) >= times else None

    return list(await eventually(check))


async def self_served(h: Harness, ref: str) -> bool:
    """Whether the call ended served by the keypad (not abandoned)."""
    async with h.services.store.read() as session:
        call = (await session.execute(select(Call).where(Call.ref == ref))).scalars().one()
    return call.cause == "self_served"


async def test_given_an_accepted_order_when_the_resident_calls_then_who_and_when_come_first(
    harness: Harness,
) -> None:
    h = harness
    tid, _ = await accepted_from_console(h)
    shop = merchant_of(await ticket_state(h, tid, "accepted"))
    ref = await h.pbx.dial_in(RESIDENT_PHONE)
    await waiting_for_keys(h, ref)
    heard = " ".join(h.pbx.calls[ref].transcript)
    assert f"您的送药订单已由{shop}接单，预计" in heard and "前到" in heard
    assert MENU not in heard  # the status comes before the menu
    await h.pbx.press(ref, "9")
    await said(h, ref, shop, times=2)
    # 3: the normal menu, where a need can be ordered as always
    await press_when_asked(h, ref, "3")
    await said(h, ref, MENU)
    await press_when_asked(h, ref, "0")
    call = await queued_call(h)
    assert call["resident_id"] == 1
    detail = await h.call("GET", f"/tickets/{tid}")
    assert detail["state"] == "accepted"


async def test_given_an_open_order_when_the_resident_presses_0_then_an_operator(
    harness: Harness,
) -> None:
    h = harness
    await accepted_from_console(h)
    ref = await h.pbx.dial_in(RESIDENT_PHONE)
    await press_when_asked(h, ref, "0")
    call = await queued_call(h)
    assert call["resident_id"] == 1
    assert render("hotline.to_operator", "zh-CN") in h.pbx.calls[ref].transcript


async def test_given_an_open_order_when_the_resident_presses_1_then_an_emergency_as_ever(
    harness: Harness,
) -> None:
    """1 is the emergency key everywhere on the hotline: a resident who presses it by habit
    while hearing their order's status is an emergency at once, not sent to a menu."""
    h = harness
    await accepted_from_console(h)
    ref = await h.pbx.dial_in(RESIDENT_PHONE)
    await press_when_asked(h, ref, "1")
    call = await queued_call(h)
    assert call["resident_id"] == 1 and call["emergency"] is True
    assert call["emergency_reason"] == "key"
    assert render("hotline.emergency", "zh-CN") in h.pbx.calls[ref].transcript


async def test_given_an_order_being_offered_when_2_then_1_then_cancelled_and_the_offer_withdrawn(
    harness: Harness,
) -> None:
    h = harness
    tid = await new_ticket(h, "medicine")
    await h.call("POST", f"/tickets/{tid}/dispatch", json={})
    await live_offer_count(h, tid, 1)
    merchant = await ringing_out(h)
    ref = await h.pbx.dial_in(RESIDENT_PHONE)
    await waiting_for_keys(h, ref)
    assert "正在联系商家" in " ".join(h.pbx.calls[ref].transcript)
    await h.pbx.press(ref, "2")
    await said(h, ref, "确认取消请按 1")
    await press_when_asked(h, ref, "1")
    await said(h, ref, "已经取消")
    detail = await ticket_state(h, tid, "cancelled")
    assert [o["state"] for o in detail["offers"]] == ["withdrawn"]
    cancelled = [e for e in detail["timeline"] if e["name"] == "ticket.cancelled"]
    assert cancelled[-1]["actor"] == "resident"

    async def merchant_hung_up() -> bool:
        return bool(h.pbx.calls[merchant["ref"]].state == "ended")

    await eventually(merchant_hung_up)
    # served by the keypad, not abandoned: calling again soon is no emergency
    await eventually(lambda: self_served(h, ref))
    assert f"deadline:{tid}" not in h.timers.pending


async def test_given_2_then_2_when_asked_to_confirm_then_the_order_is_kept(
    harness: Harness,
) -> None:
    h = harness
    tid, _ = await accepted_from_console(h)
    ref = await h.pbx.dial_in(RESIDENT_PHONE)
    await press_when_asked(h, ref, "2")
    await said(h, ref, "确认取消请按 1")
    await press_when_asked(h, ref, "2")
    await said(h, ref, "接单，预计", times=2)
    detail = await h.call("GET", f"/tickets/{tid}")
    assert detail["state"] == "accepted" and "ticket.cancelled" not in names(detail)


async def test_given_no_open_order_when_the_resident_calls_then_the_normal_menu(
    harness: Harness,
) -> None:
    h = harness
    ref = await h.pbx.dial_in(RESIDENT_PHONE)
    await waiting_for_keys(h, ref)
    heard = h.pbx.calls[ref].transcript
    assert MENU in heard
    assert not any("订单" in line for line in heard)


async def test_given_the_status_when_no_key_is_pressed_then_an_operator_as_in_the_menu(
    harness: Harness,
) -> None:
    h = harness
    await accepted_from_console(h)
    h.pbx.time_scale = 0.01  # the menu's waits for a key pass at once
    ref = await h.pbx.dial_in(RESIDENT_PHONE)
    call = await queued_call(h)
    assert call["ref"] == ref
    assert "接单，预计" in " ".join(h.pbx.calls[ref].transcript)
