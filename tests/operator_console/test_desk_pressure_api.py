"""What the desk reads to ring, count down and show the way a caller came (issue 18), on
SQLite and PostgreSQL: the offered call's ring-out moment on one's own state, the answer
time and the menu path on a call."""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.conftest import Harness
from tests.dispatch.test_operator_offers import state_is
from tests.operator_console.test_whole_path import RESIDENT_PHONE, press_when_asked, queued_call


async def test_given_a_free_operator_when_offered_a_call_then_their_state_says_when_it_rings_out(
    harness: Harness,
) -> None:
    h = harness
    await h.call("POST", "/operator/state", json={"action": "login"})
    free = await h.call("GET", "/operator/state")
    assert free["state"] == "available" and free["offer_expires_at"] is None
    assert datetime.fromisoformat(free["at"]) == h.clock.now()
    ref = await h.pbx.dial_in(RESIDENT_PHONE)
    await press_when_asked(h, ref, "0")
    offered = await state_is(h, "operator", "reserved")
    since = datetime.fromisoformat(offered["since"])
    ring_s = h.services.dispatch.core.config.ring_operator_s
    assert datetime.fromisoformat(offered["offer_expires_at"]) == since + timedelta(seconds=ring_s)
    assert offered["call_id"] is not None

    await h.call("POST", f"/calls/{offered['call_id']}/answer")
    on_call = await state_is(h, "operator", "on_call")
    assert on_call["offer_expires_at"] is None and on_call["call_id"] == offered["call_id"]


async def test_given_a_caller_who_pressed_0_when_the_call_is_read_then_it_shows_the_menu_path(
    harness: Harness,
) -> None:
    h = harness
    ref = await h.pbx.dial_in(RESIDENT_PHONE)
    await press_when_asked(h, ref, "0")
    call = await queued_call(h)
    assert call["menu_keys"] == ["0"] and call["menu_outcome"] == "transfer"
    assert call["answered_at"] is None
    h.clock.advance(12)
    answered = await h.call("POST", f"/calls/{call['id']}/answer")
    assert datetime.fromisoformat(answered["answered_at"]) == h.clock.now()
    detail = await h.call("GET", f"/calls/{call['id']}")
    assert detail["menu_keys"] == ["0"] and detail["menu_outcome"] == "transfer"


async def test_given_a_caller_without_a_menu_when_queued_then_the_path_has_no_keys(
    harness: Harness,
) -> None:
    h = harness
    await h.pbx.dial_in("+8613912345678")  # an unknown number goes straight to the queue
    call = await queued_call(h)
    assert call["menu_keys"] == [] and call["menu_outcome"] == "transfer"
