"""In-process fan-out of committed events: to subscribers' queues (the WebSocket streams)
and to listeners called as the events are published (caches that follow changes).

Listeners run synchronously in `publish`, which `Store.tx` calls right after the commit,
before the unit of work returns: the next read by anyone in this process already finds
the cache that followed the change. They must be quick and must not do I/O.

The store publishes in seq order, each event once, including the events other processes
commit (`eventlog.relay`, PostgreSQL): listeners and subscribers see the log's order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

log = logging.getLogger(__name__)

#: something that follows committed events (an event in its public shape)
Listener = Callable[[dict[str, Any]], None]


class EventBus:
    """In-process fan-out of committed events to listeners and subscribers."""

    def __init__(self, *, queue_size: int = 10_000) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._listeners: list[tuple[Listener, frozenset[str] | None]] = []
        self._queue_size = queue_size

    def listen(self, fn: Listener, *, subjects: Iterable[str] | None = None) -> Callable[[], None]:
        """Call `fn` with every committed event (of these subjects only, when given), in
        commit order; returns the function that stops it."""
        entry = (fn, frozenset(subjects) if subjects is not None else None)
        self._listeners.append(entry)

        def stop() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(entry)

        return stop

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        """A queue that receives every event published from now on."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        """Stop delivering to a queue."""
        self._subscribers.discard(queue)

    def publish(self, events: Sequence[dict[str, Any]]) -> None:
        """Deliver events: listeners first (a stream's client that reacts to an event must
        find the caches already following it), then subscribers; a subscriber too slow to
        keep up is cut off (it resumes by seq)."""
        self._notify(events)
        for queue in list(self._subscribers):
            for event in events:
                try:
                    queue.put_nowait(event)
                except asyncio.QueueFull:
                    log.warning("event subscriber overflowed at seq %s; dropping it", event["seq"])
                    self._subscribers.discard(queue)
                    queue.get_nowait()  # make room for the end-of-stream marker
                    queue.put_nowait(None)
                    break

    def _notify(self, events: Sequence[dict[str, Any]]) -> None:
        for event in events:
            for fn, subjects in list(self._listeners):
                if subjects is not None and event["subject"] not in subjects:
                    continue
                try:
                    fn(event)
                except Exception:  # one broken listener must not stop the others or the feed
                    log.exception("event listener %r failed on seq %s", fn, event["seq"])

    def close(self) -> None:
        """Tell every subscriber the stream ends."""
        for queue in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        self._subscribers.clear()
