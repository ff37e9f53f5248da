"""The call list reads a fixed number of statements however many callers wait (the console
asks for it on every call event; one resident query per call grew with a surge)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from tests.conftest import Harness
from tests.dispatch.test_queue import PHONES, press, wait_queued

#: background work of the app's that reads on its own clock, not for the request
BACKGROUND = frozenset({"event-relay"})


@contextmanager
def statements(h: Harness) -> Iterator[list[str]]:
    """Every SQL statement the app runs meanwhile, but for its background tasks' (the
    event relay catches up from the log every few seconds, whatever the request)."""
    engine = h.services.store.sessions.kw["bind"].sync_engine
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        task = asyncio.current_task()
        if task is None or task.get_name() not in BACKGROUND:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


async def test_given_more_callers_waiting_when_listing_calls_then_no_more_statements(
    harness: Harness,
) -> None:
    h = harness
    await h.call("GET", "/calls")  # the operator's login and session reads are done
    counts = []
    for phones in (PHONES[:1], PHONES[1:]):
        for phone in phones:
            await press(h, await h.pbx.dial_in(phone), "0")
        waiting = len(await wait_queued(h, 1 if len(phones) == 1 else len(PHONES)))
        # the fewest of three listings: other work of the app's that happens to run during
        # one (the queue offering the new callers, an announcement's timer, on a loaded
        # box) only ever adds statements, never takes the request's own away
        runs = []
        for _ in range(3):
            await h.services.store.quiet()
            await h.settle()
            with statements(h) as seen:
                listed = await h.call("GET", "/calls")
            assert len(listed) == waiting and all(c["resident_name"] for c in listed)
            runs.append(len(seen))
        counts.append(min(runs))
    assert counts[0] == counts[1], counts


async def test_given_a_long_queue_when_listing_its_head_then_in_order_with_the_total(
    harness: Harness,
) -> None:
    """The console lists the head of the queue (`waiting_limit`) and the rest as a count:
    in a surge every call event re-read a thousand rows for every desk."""
    h = harness
    for n, phone in enumerate(PHONES):
        await press(h, await h.pbx.dial_in(phone), "1" if n == 2 else "0")  # 1: emergency
    everyone = await wait_queued(h, len(PHONES))
    await h.login("operator")
    resp = await h.client.get(
        "/api/v1/calls?waiting_limit=2",
        headers={"Authorization": f"Bearer {h.tokens['operator']}"},
    )
    assert resp.status == 200
    head = await resp.json()
    assert [c["id"] for c in head] == [c["id"] for c in everyone[:2]]
    assert head[0]["emergency"] and head[0]["number"].endswith(PHONES[2][-4:])
    assert resp.headers["X-Waiting-Total"] == str(len(PHONES))
    await h.call("GET", "/calls?waiting_limit=0", expect=422)
