"""What the queue reads (issue 20): in a surge every new caller, freed operator and place
announcement runs the queue; with nobody free to take a call, it reads no call at all."""

from __future__ import annotations

from tests.conftest import Harness
from tests.dispatch.test_queue import PHONES, press, wait_queued
from tests.operator_console.test_calls_reads import statements


async def test_given_nobody_free_when_distributing_then_the_waiting_calls_are_not_read(
    harness: Harness,
) -> None:
    h = harness
    for phone in PHONES:
        await press(h, await h.pbx.dial_in(phone), "0")
    await wait_queued(h, len(PHONES))
    await h.services.store.quiet()
    with statements(h) as seen:
        await h.services.dispatch.queue.distribute()
    reads_of_calls = [s for s in seen if "FROM call" in s]
    assert seen, "distribute asks whether anyone is free"
    assert reads_of_calls == []


async def test_given_someone_free_when_distributing_then_the_first_waiting_is_offered(
    harness: Harness,
) -> None:
    """The cheap check does not stop the hand-out: a free operator gets the first caller."""
    h = harness
    for phone in PHONES:
        await press(h, await h.pbx.dial_in(phone), "0")
    first = (await wait_queued(h, len(PHONES)))[0]
    await h.call("POST", "/operator/state", json={"action": "login"})
    await h.services.dispatch.queue.distribute()
    state = await h.call("GET", "/operator/state")
    assert (state["state"], state["call_id"]) == ("reserved", first["id"])
