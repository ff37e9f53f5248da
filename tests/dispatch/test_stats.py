"""The in-memory cache of merchants' records used by the ranking."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from dispatch.matching import MerchantStats
from dispatch.stats import StatsCache
from eventlog.clock import ManualClock
from tests.conftest import Harness, eventually
from tests.operator_console.test_whole_path import ringing_out, waiting_for_keys


class Records:
    """A table of records standing in for the two grouped queries, counting reads."""

    def __init__(self) -> None:
        self.rows: dict[int, MerchantStats] = {1: MerchantStats(offers=4, accepted=3)}
        self.asked: list[list[int]] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, session: Any, ids: Sequence[int]) -> dict[int, MerchantStats]:
        self.asked.append(list(ids))
        snapshot = {i: self.rows[i] for i in ids if i in self.rows}
        if self.gate is not None:
            await self.gate.wait()
        return snapshot


def make() -> tuple[StatsCache, Records, ManualClock]:
    clock = ManualClock()
    records = Records()
    return StatsCache(records, clock=clock, ttl_s=60), records, clock


async def test_given_cached_records_when_ranked_again_then_no_second_read() -> None:
    cache, records, _ = make()
    first = await cache.get(None, [1, 2])
    second = await cache.get(None, [1, 2])
    assert first == second == {1: MerchantStats(offers=4, accepted=3)}
    assert records.asked == [[1, 2]]  # merchant 2 has no record, and that is cached too


async def test_given_a_touched_merchant_when_ranked_then_only_it_is_read_again() -> None:
    cache, records, _ = make()
    await cache.get(None, [1, 2])
    records.rows[1] = MerchantStats(offers=5, accepted=3)
    cache.touch(1)
    assert (await cache.get(None, [1, 2]))[1].offers == 5
    assert records.asked == [[1, 2], [1]]


async def test_given_another_process_decided_an_offer_when_its_event_arrives_then_read_again() -> (
    None
):
    cache, records, _ = make()
    await cache.get(None, [1, 2])
    records.rows[1] = MerchantStats(offers=5, accepted=3)
    # what the event log brings from another process: an offer decided, a rating
    cache.follow({"name": "offer.declined", "subject": "ticket", "data": {"merchant_id": 1}})
    cache.follow({"name": "ticket.note", "subject": "ticket", "data": {"merchant_id": 2}})
    assert (await cache.get(None, [1, 2]))[1].offers == 5
    assert records.asked == [[1, 2], [1]]  # merchant 2 untouched: a note is no record
    cache.follow({"name": "ticket.rated", "subject": "ticket", "data": {"merchant_id": 2}})
    await cache.get(None, [1, 2])
    assert records.asked == [[1, 2], [1], [2]]
    # a supervisor overturned a rating or no-show of merchant 1 on its dispute
    cache.follow({"name": "dispute.opened", "subject": "ticket", "data": {"merchant_id": 1}})
    await cache.get(None, [1, 2])
    assert records.asked == [[1, 2], [1], [2]]  # an open dispute changes no record
    cache.follow({"name": "dispute.overturned", "subject": "ticket", "data": {"merchant_id": 1}})
    await cache.get(None, [1, 2])
    assert records.asked == [[1, 2], [1], [2], [1]]


async def test_given_an_old_record_when_the_ttl_passes_then_it_is_read_again() -> None:
    cache, records, clock = make()
    await cache.get(None, [1])
    clock.advance(59)
    await cache.get(None, [1])
    clock.advance(1)
    await cache.get(None, [1])
    assert records.asked == [[1], [1]]


async def test_given_a_touch_during_a_read_when_it_returns_then_the_old_record_is_not_kept() -> (
    None
):
    cache, records, _ = make()
    records.gate = asyncio.Event()
    reading = asyncio.create_task(cache.get(None, [1]))
    await asyncio.sleep(0)
    records.rows[1] = MerchantStats(offers=9, accepted=9)
    cache.touch(1)
    records.gate.set()
    assert (await reading)[1].offers == 4  # that ranking saw the snapshot it read
    records.gate = None
    assert (await cache.get(None, [1]))[1].offers == 9
    assert records.asked == [[1], [1]]


async def test_given_a_ranking_was_cached_when_a_merchant_declines_then_the_next_ranking_knows(
    harness: Harness,
) -> None:
    h = harness
    first = await h.call(
        "POST", "/tickets", json={"category": "medicine", "resident_id": 1}, expect=201
    )
    before = await h.call("GET", f"/tickets/{first['id']}/candidates")
    top = before[0]["merchant_id"]
    # no history yet, now cached
    assert not any(w["code"] == "acceptance" for w in before[0]["why"])

    await h.call("POST", f"/tickets/{first['id']}/dispatch", json={"merchant_ids": [top]})
    ringing = await ringing_out(h)
    await h.pbx.answer(ringing["ref"])
    await waiting_for_keys(h, ringing["ref"])
    await h.pbx.press(ringing["ref"], "2")
    await eventually(lambda: offer_states(h, first["id"], "declined"))

    second = await h.call(
        "POST", "/tickets", json={"category": "medicine", "resident_id": 1}, expect=201
    )
    after = await h.call("GET", f"/tickets/{second['id']}/candidates")
    [declined] = [c for c in after if c["merchant_id"] == top]
    assert {"code": "acceptance", "pct": "0%"} in declined["why"]


async def offer_states(h: Harness, ticket_id: int, state: str) -> bool:
    detail = await h.call("GET", f"/tickets/{ticket_id}")
    return any(o["state"] == state for o in detail["offers"])
