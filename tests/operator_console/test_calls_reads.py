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
