"""Waiting calls are offered to available operators; one who lets them ring is paused."""

from __future__ import annotations

from typing import Any

from tests.conftest import Harness, eventually
from tests.dispatch.test_queue import PHONES, press, wait_queued


async def my_state(h: Harness, user: str) -> dict[str, Any]:
    """An operator's own state."""
    state: dict[str, Any] = await h.call("GET", "/operator/state", as_user=user)
    return state


async def state_is(h: Harness, user: str, expected: str) -> dict[str, Any]:
    """Wait for an operator's state."""

    async def check() -> Any:
        state = await my_state(h, user)
        return state if state["state"] == expected else None

    return await eventually(check)


async def test_given_an_available_operator_when_a_call_queues_then_it_is_offered_to_them(
    harness: Harness,
) -> None:
    h = harness
    await h.call("POST", "/operator/state", json={"action": "login"})
    ref = await h.pbx.dial_in(PHONES[0])
    await press(h, ref, "0")
    (call,) = await wait_queued(h, 1)
    offered = await state_is(h, "operator", "reserved")
    assert offered["call_id"] == call["id"]
    answered = await h.call("POST", f"/calls/{call['id']}/answer")
    assert answered["state"] == "connected"
    assert (await my_state(h, "operator"))["state"] == "on_call"
    assert "ring:" + str((await h.call("GET", "/me"))["user"]["id"]) not in await h.timers.keys()


async def test_given_an_operator_who_lets_offered_calls_ring_then_paused_after_three(
    harness: Harness,
) -> None:
    h = harness
    await h.call("POST", "/operator/state", json={"action": "login"})
    await h.call("POST", "/operator/state", json={"action": "login"}, as_user="supervisor")
    ref = await h.pbx.dial_in(PHONES[0])
    await press(h, ref, "0")
    (call,) = await wait_queued(h, 1)
    # the call goes to whoever has been idle longest, then to the other, in turn
    seen: list[str] = []
    for _ in range(5):

        async def someone_reserved() -> Any:
            for user in ("operator", "supervisor"):
                if (await my_state(h, user))["state"] == "reserved":
                    return user
            return None

        seen.append(await eventually(someone_reserved))
        await h.timers.advance(21)
        await h.settle()
    assert set(seen) == {"operator", "supervisor"}
    assert seen[0] != seen[1]
    for user in ("operator", "supervisor"):
        misses = seen.count(user)
        state = await my_state(h, user)
        if misses >= 3:
            assert (state["state"], state["reason"]) == ("paused", "missed calls")
        else:
            assert state["state"] in ("available", "reserved")
    assert (await h.call("GET", f"/calls/{call['id']}"))["state"] == "queued"
