"""A menu cut off by our own restart: the PBX holds the caller for an operator and says so
(`CallWaiting`, Asterisk's `[yijing-hold]` asking us in); a caller we still have in the
menu becomes a waiting caller, once. A caller queued by their own 0 changes nothing.
On the memory PBX, SQLite and PostgreSQL (the real Asterisk scenario is in tests/pbx)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlmodel import col

from dispatch.models import Call
from providers.base import CallWaiting
from tests.conftest import Harness, eventually
from tests.operator_console.test_whole_path import press_when_asked

RESIDENT = "+862354000001"


async def call_id(h: Harness, ref: str) -> int:
    async def check() -> Any:
        async with h.services.store.read() as session:
            return await session.scalar(select(col(Call.id)).where(col(Call.ref) == ref))

    return int(await eventually(check))


async def state_of(h: Harness, cid: int, state: str) -> Any:
    async def check() -> Any:
        call = await h.call("GET", f"/calls/{cid}")
        return call if call["state"] == state else None

    return await eventually(check)


async def names(h: Harness, cid: int) -> list[str]:
    return [e["name"] for e in await h.services.store.events_for("call", cid)]


async def test_given_a_caller_in_the_menu_when_the_pbx_holds_them_then_queued_once(
    harness: Harness,
) -> None:
    h = harness
    ref = await h.pbx.dial_in(RESIDENT)
    cid = await call_id(h, ref)
    await state_of(h, cid, "ivr")
    router = h.services.dispatch.router
    await router.on_telephony(CallWaiting(ref))
    await state_of(h, cid, "queued")
    await router.on_telephony(CallWaiting(ref))  # the hold asks again every 15 s
    assert (await names(h, cid)).count("call.menu_lost") == 1
    assert (await names(h, cid)).count("call.queued") == 1
    events = await h.services.store.events_for("call", cid)
    [queued] = [e for e in events if e["name"] == "call.queued"]
    assert queued["data"]["outcome"] == "menu_lost"
    await router.on_telephony(CallWaiting("no-such-ref"))  # nothing to do, no error


async def test_given_a_caller_who_pressed_0_when_the_pbx_holds_them_then_nothing_changes(
    harness: Harness,
) -> None:
    h = harness
    ref = await h.pbx.dial_in(RESIDENT)
    await press_when_asked(h, ref, "0")
    cid = await call_id(h, ref)
    await state_of(h, cid, "queued")
    before = await names(h, cid)
    await h.services.dispatch.router.on_telephony(CallWaiting(ref))
    assert await names(h, cid) == before


async def test_given_a_high_risk_resident_cut_off_in_the_menu_then_not_taken_for_silent(
    harness: Harness,
) -> None:
    """No key pressed because the menu died with us: that says nothing of the caller."""
    h = harness
    card = await h.call("GET", "/residents/1?reason=edit", as_user="demo")
    groups = sorted({*card["groups"], "孤寡"})
    await h.call(
        "PATCH",
        "/residents/1",
        as_user="demo",
        json={"groups": groups, "version": str(card["revision"])},
    )
    ref = await h.pbx.dial_in(RESIDENT)
    cid = await call_id(h, ref)
    await state_of(h, cid, "ivr")
    await h.services.dispatch.router.on_telephony(CallWaiting(ref))
    queued = await state_of(h, cid, "queued")
    assert queued["emergency"] is False
    assert "emergency.flagged" not in await names(h, cid)
