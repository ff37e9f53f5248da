"""Where a page starts its live stream: the newest seq in the log, however long the log
(a page that took the newest of the first 1,000 events would replay every later one as
if it had just happened)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlmodel import col

from eventlog.models import Event
from tests.conftest import Harness


async def test_given_a_long_event_log_when_a_page_asks_for_the_latest_seq_then_the_newest(
    harness: Harness,
) -> None:
    h = harness
    # operators and up only, like the log itself
    assert (await h.client.get("/api/v1/events/latest")).status == 401
    async with h.services.store.tx() as tx:
        for n in range(1_200):
            tx.emit("test.filler", "system", "bench", n=n)
    latest = await h.call("GET", "/events/latest")
    async with h.services.store.read() as session:
        newest = (await session.execute(select(func.max(col(Event.seq))))).scalar()
    assert latest == {"seq": newest}
    assert len(await h.call("GET", f"/events?since={newest}")) == 0
