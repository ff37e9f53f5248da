"""Merchants' recent records for the ranking, kept in memory between rankings.

Ranking a need reads each nearby merchant's acceptance, ratings, no-shows and last offer
over `stats_window_days`. Reading them from the database on every ranking costs two
grouped queries (10-40 ms among 100,000 merchants); the ranking itself takes about 3 ms.
So the records are cached per merchant and dropped when something about that merchant
changes: a `TouchMerchant` command (`dispatch.effects`) calls `touch` after a commit that
placed or decided one of its offers, rated one of its tickets or overturned a rating or
no-show of it on a dispute, and `follow` does the same for those events from the log
(what another process on the database committed). A record is also read again after
`ttl_s`, which moves the window forward.

A read that started before a `touch` may return the older record; it is used for that
one ranking but never kept, so a later ranking always sees the committed change.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from dispatch.matching import MerchantStats
from eventlog.clock import Clock

#: reads the records of some merchants (only those with any record are returned)
Fetch = Callable[[Any, Sequence[int]], Awaitable[dict[int, MerchantStats]]]


class StatsCache:
    """Per-merchant `MerchantStats`, read on a miss, dropped on `touch` or after `ttl_s`."""

    def __init__(self, fetch: Fetch, *, clock: Clock, ttl_s: float) -> None:
        self._fetch = fetch
        self._clock = clock
        self._ttl_s = ttl_s
        self._entries: dict[int, tuple[MerchantStats | None, datetime]] = {}
        self._generation: dict[int, int] = {}
        self.reads = 0

    def touch(self, merchant_id: int | None) -> None:
        """Something about this merchant's record changed (and is committed)."""
        if merchant_id is None:
            return
        self._entries.pop(merchant_id, None)
        self._generation[merchant_id] = self._generation.get(merchant_id, 0) + 1

    def follow(self, event: Mapping[str, Any]) -> None:
        """A bus listener: an offer decided or a ticket rated by any process (with several
        processes on one database, the other's `touch` never reaches this one)."""
        name = event["name"]
        if name.startswith("offer.") or name in ("ticket.rated", "dispute.overturned"):
            merchant_id = event["data"].get("merchant_id")
            if isinstance(merchant_id, int):
                self.touch(merchant_id)

    async def get(self, session: Any, ids: Sequence[int]) -> dict[int, MerchantStats]:
        """The records of these merchants; those without any history are left out."""
        now = self._clock.now()
        out: dict[int, MerchantStats] = {}
        missing: list[int] = []
        for merchant_id in ids:
            entry = self._entries.get(merchant_id)
            if entry is None or (now - entry[1]).total_seconds() >= self._ttl_s:
                missing.append(merchant_id)
            elif entry[0] is not None:
                out[merchant_id] = entry[0]
        if missing:
            before = {m: self._generation.get(m, 0) for m in missing}
            fetched = await self._fetch(session, missing)
            self.reads += 1
            for merchant_id in missing:
                record = fetched.get(merchant_id)
                if record is not None:
                    out[merchant_id] = record
                if self._generation.get(merchant_id, 0) == before[merchant_id]:
                    self._entries[merchant_id] = (record, now)
        return out
