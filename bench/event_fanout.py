"""Event fan-out between processes: from a unit of work in one to the bus of another.

Two stores on two engines of one fresh PostgreSQL database at YIJING_TEST_PG (two
"processes", each with its relay: a LISTEN connection on `yijing_events`). Store A writes
N events, one unit of work each; B's bus listener notes when each arrives. The latency is
from the end of A's unit of work's body (before its NOTIFY and commit) to B's listener,
in two runs: paced (one event every PACE_S, a busy desk) and a burst (as fast as A can
write, which also gives A's writes per second with the advisory lock and the NOTIFY).

Prints medians and 99th percentiles; exits non-zero unless B saw every event, in the
log's order, once. Usage: python bench/event_fanout.py [--events N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eventlog.bus import EventBus  # noqa: E402
from eventlog.clock import SystemClock  # noqa: E402
from eventlog.db import make_engine, make_sessionmaker  # noqa: E402
from eventlog.relay import relay  # noqa: E402
from eventlog.store import Store  # noqa: E402
from operator_console.migrate import upgrade  # noqa: E402

PG_ADMIN = os.environ.get("YIJING_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
PACE_S = 0.005


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(a: Store, b: Store, n: int, pace_s: float) -> tuple[list[float], float, bool]:
    """Write n events through A; returns the latencies (s), A's writes per second, and
    whether B saw exactly the log's seqs in order."""
    sent: dict[int, float] = {}
    seen: dict[int, float] = {}
    order: list[int] = []
    done = asyncio.Event()

    def heard(event: dict[str, object]) -> None:
        seq = int(str(event["seq"]))
        seen[seq] = time.perf_counter()
        order.append(seq)
        if len(order) >= n:
            done.set()

    stop = b.bus.listen(heard, subjects=("bench",))
    began = time.perf_counter()
    try:
        for k in range(n):
            async with a.tx() as tx:
                event = tx.emit("bench.fanout", "bench", k)
                await tx.session.flush()
                stamp = time.perf_counter()
            assert event.seq is not None
            sent[event.seq] = stamp
            if pace_s:
                await asyncio.sleep(pace_s)
        wrote = time.perf_counter() - began
        await asyncio.wait_for(done.wait(), 60)
    except TimeoutError:
        wrote = time.perf_counter() - began
    finally:
        stop()
    latencies = [seen[s] - sent[s] for s in sent if s in seen]
    in_order = order == sorted(sent)
    return latencies, n / wrote, in_order


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2_000)
    args = parser.parse_args()
    name = f"yijing_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    url = f"{base}/{name}"
    ok = True
    try:
        await asyncio.to_thread(upgrade, url)
        engines = [make_engine(url), make_engine(url)]
        try:
            a, b = (Store(make_sessionmaker(e), EventBus(), SystemClock()) for e in engines)
            async with relay(a, engines[0]), relay(b, engines[1]):
                print(f"postgresql: {args.events:,} events from store A to store B's bus")
                for label, pace in (("paced", PACE_S), ("burst", 0.0)):
                    lat, rate, in_order = await run(a, b, args.events, pace)
                    missing = args.events - len(lat)
                    ok = ok and in_order and not missing
                    print(
                        f"  {label:5}: median {statistics.median(lat) * 1000:.1f} ms, "
                        f"p99 {pct(lat, 0.99) * 1000:.1f} ms, max {max(lat) * 1000:.1f} ms; "
                        f"A wrote {rate:,.0f} units of work/s; "
                        f"{'in order' if in_order else 'OUT OF ORDER'}, missing {missing}"
                    )
        finally:
            for engine in engines:
                await engine.dispose()
    finally:
        admin = await asyncpg.connect(PG_ADMIN, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
