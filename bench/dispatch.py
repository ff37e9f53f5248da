"""Dispatch speed: ranking among 100,000 merchants, and 100,000 deadlines through APScheduler.

For each database (a SQLite file, and a fresh PostgreSQL database at YIJING_TEST_PG):

1. rank: 100,000 merchants over 2,000 grids (1-2 categories each, a third of them also
   serving a 2 km radius) are written, loaded once into the in-memory `MatchIndex`, then
   RANK_NEEDS needs at random places are ranked: "pure" is index lookup + `rank`, "with
   stats" adds the two database queries for acceptance, ratings, no-shows and last offer
   (over 100,000 offers and 20,000 rated tickets); "with cached stats" takes the records
   from the ranking's `StatsCache` once a first pass over the same needs has filled it.
2. timers: `SchedulerTimers` (keys in the `timer` table, one persistent APScheduler job per
   250 ms bucket): the cost of single `schedule()` calls (sequential, then concurrent), then
   N deadlines written with `schedule_many` in chunks of 10,000, due spread over SPREAD_S
   seconds starting 15 s from then; we wait for them all and report how late each fired.

Prints medians and 99th percentiles; exits 0 when everything fired (targets are reported,
not asserted). Usage: python bench/dispatch.py [--merchants N] [--deadlines N] [--only sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
from sqlalchemy import insert

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dispatch.matching import Need, rank  # noqa: E402
from dispatch.models import Offer, Ticket  # noqa: E402
from dispatch.services import DispatchServices  # noqa: E402
from dispatch.timers import ManualTimers, SchedulerTimers  # noqa: E402
from eventlog.bus import EventBus  # noqa: E402
from eventlog.clock import SystemClock  # noqa: E402
from eventlog.db import make_engine, make_sessionmaker, sync_url  # noqa: E402
from eventlog.store import Store  # noqa: E402
from operator_console.migrate import upgrade  # noqa: E402
from providers.memory import MemoryPBX  # noqa: E402
from registry.catalog import default_catalog  # noqa: E402
from registry.models import Grid, Merchant, MerchantService  # noqa: E402

PG_ADMIN = os.environ.get("YIJING_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
GRIDS = 2000
RANK_NEEDS = 2000
SPREAD_S = 60.0
BASE_LAT, BASE_LON = 30.0, 108.0
CATEGORIES = [c.code for c in default_catalog()]
ALL_DAY = {str(d): [["00:00", "24:00"]] for d in range(7)}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def grid_of(i: int) -> str:
    return f"G{i:04d}"


def grid_centre(g: int) -> tuple[float, float]:
    # 2,000 grids on a 50 x 40 lattice, about 1.1 km apart
    return BASE_LAT + (g // 50) * 0.01, BASE_LON + (g % 50) * 0.01


async def seed(url: str, merchants: int) -> None:
    rng = random.Random(1)
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.execute(
            insert(Grid),
            [{"code": grid_of(g), "name": grid_of(g), "community": "b"} for g in range(GRIDS)],
        )
        await conn.execute(
            insert(Grid.metadata.tables["service_category"]),
            [c.model_dump() for c in default_catalog()],
        )
        rows, services = [], []
        for m in range(1, merchants + 1):
            g = rng.randrange(GRIDS)
            lat, lon = grid_centre(g)
            rows.append(
                {
                    "id": m,
                    "name": f"m{m}",
                    "kind": "shop",
                    "address": "",
                    "grid_code": grid_of(g),
                    "lat": lat + rng.uniform(-0.004, 0.004),
                    "lon": lon + rng.uniform(-0.004, 0.004),
                    "service_grids": [grid_of(g), grid_of((g + 1) % GRIDS)],
                    "radius_m": 2000 if m % 3 == 0 else 0,
                    "capacity": rng.randint(2, 5),
                    "hours": ALL_DAY,
                    "phones": [f"+86139{m:08d}"],
                    "contract_status": "active",
                    "contract_start": date(2026, 1, 1),
                    "created_at": datetime.now(UTC),
                }
            )
            for code in rng.sample(CATEGORIES, rng.randint(1, 2)):
                services.append({"merchant_id": m, "category_code": code, "price_note": ""})
        for i in range(0, len(rows), 5000):
            await conn.execute(insert(Merchant), rows[i : i + 5000])
        for i in range(0, len(services), 10000):
            await conn.execute(insert(MerchantService), services[i : i + 10000])
        now = datetime.now(UTC)
        tickets = [
            {
                "id": t,
                "category_code": rng.choice(CATEGORIES),
                "state": "closed",
                "merchant_id": rng.randint(1, merchants),
                "rating": rng.choice(
                    ["satisfied", "satisfied", "basically_satisfied", "not_satisfied"]
                ),
                "rated_at": now - timedelta(days=rng.randint(1, 80)),
                "created_at": now - timedelta(days=90),
                "plan": [],
                "code_word": "0000",
            }
            for t in range(1, 20_001)
        ]
        for i in range(0, len(tickets), 5000):
            await conn.execute(insert(Ticket), tickets[i : i + 5000])
        offers = [
            {
                "ticket_id": rng.randint(1, 20_000),
                "merchant_id": rng.randint(1, merchants),
                "state": rng.choice(["accepted", "declined", "no_answer", "busy", "expired"]),
                "call_ref": f"o{o}",
                "phone": "+86139",
                "placed_at": now - timedelta(minutes=rng.randint(1, 80 * 1440)),
            }
            for o in range(100_000)
        ]
        for i in range(0, len(offers), 10000):
            await conn.execute(insert(Offer), offers[i : i + 10000])
    await engine.dispose()


async def bench_rank(url: str, merchants: int) -> None:
    t0 = time.perf_counter()
    await seed(url, merchants)
    print(f"  seeded {merchants:,} merchants, 100,000 offers in {time.perf_counter() - t0:.1f} s")
    engine = make_engine(url)
    clock = SystemClock()
    store = Store(make_sessionmaker(engine), EventBus(), clock)
    ranking = DispatchServices(
        store=store,
        telephony=MemoryPBX(),
        timers=ManualTimers(None),
        clock=clock,  # type: ignore[arg-type]
    ).ranking
    async with store.read() as session:
        t0 = time.perf_counter()
        index = await ranking.merchant_index(session)
        print(f"  index of {len(index):,} merchants loaded in {time.perf_counter() - t0:.2f} s")
    rng = random.Random(2)
    needs = []
    for _ in range(RANK_NEEDS):
        g = rng.randrange(GRIDS)
        lat, lon = grid_centre(g)
        needs.append(Need(rng.choice(CATEGORIES), grid_of(g), lat=lat, lon=lon))
    pure: list[float] = []
    full: list[float] = []
    cached: list[float] = []
    sizes: list[int] = []
    now = datetime.now(UTC)
    async with store.read() as session:
        for need in needs:
            t0 = time.perf_counter()
            near = index.near(need)
            ranked = rank(need, near, loads={}, now=now, seed=1)
            t1 = time.perf_counter()
            stats = await ranking.merchant_stats(session, [m.id for m in near if m.id])
            rank(need, near, loads={}, now=now, stats=stats, seed=1)
            t2 = time.perf_counter()
            pure.append((t1 - t0) * 1000)
            full.append((t2 - t0) * 1000)
            sizes.append(len(ranked))
        # the same needs again through the ranking's cache: the first pass fills it
        # (misses cost what "with stats" costs), the second is the steady state
        for need in needs:
            await ranking.stats.get(session, [m.id for m in index.near(need) if m.id])
        reads = ranking.stats.reads
        for need in needs:
            t0 = time.perf_counter()
            near = index.near(need)
            stats = await ranking.stats.get(session, [m.id for m in near if m.id])
            rank(need, near, loads={}, now=now, stats=stats, seed=1)
            cached.append((time.perf_counter() - t0) * 1000)
        assert ranking.stats.reads == reads, "the warm pass read the database"
    print(
        f"  rank ({RANK_NEEDS} needs, median {statistics.median(sizes):.0f} candidates): "
        f"pure median {statistics.median(pure):.3f} ms p99 {pct(pure, 0.99):.3f} ms; "
        f"with stats median {statistics.median(full):.3f} ms p99 {pct(full, 0.99):.3f} ms; "
        f"with cached stats median {statistics.median(cached):.3f} ms "
        f"p99 {pct(cached, 0.99):.3f} ms"
    )
    await engine.dispose()


async def bench_timers(url: str, n: int) -> bool:
    due: dict[str, float] = {}
    late: list[float] = []
    done = asyncio.Event()

    async def fired(key: str) -> None:
        if key not in due:
            return
        late.append(time.time() - due[key])
        if len(late) == n:
            done.set()

    timers = SchedulerTimers(sync_url=sync_url(url), handler=fired, name="bench")
    async with timers:
        # one call at a time (each waits for its commit), then concurrent calls (group commit)
        sample = min(1000, n)
        far = datetime.now(UTC) + timedelta(days=1)
        t0 = time.perf_counter()
        for i in range(sample):
            await timers.schedule(f"probe:{i}", far)
        one = (time.perf_counter() - t0) / sample
        t0 = time.perf_counter()
        await asyncio.gather(
            *(timers.schedule(f"probe:{i}", far) for i in range(sample, 10 * sample))
        )
        together = 9 * sample / (time.perf_counter() - t0)
        await asyncio.gather(*(timers.cancel(f"probe:{i}") for i in range(10 * sample)))
        print(
            f"  schedule(): {one * 1000:.2f} ms per sequential call; "
            f"{together:,.0f}/s for {9 * sample:,} concurrent calls"
        )
        start = time.time() + 15
        items = []
        for i in range(n):
            at = start + SPREAD_S * i / n
            key = f"deadline:{i}"
            due[key] = at
            items.append((key, datetime.fromtimestamp(at, UTC)))
        t0 = time.perf_counter()
        for i in range(0, n, 10_000):
            await timers.schedule_many(items[i : i + 10_000])
        took = time.perf_counter() - t0
        print(f"  schedule_many: {n:,} deadlines in {took:.2f} s ({n / took:,.0f}/s)")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                done.wait(), timeout=max(0, start - time.time()) + SPREAD_S + 600
            )
    if late:
        print(
            f"  fired {len(late):,}/{n:,} over {SPREAD_S:.0f} s: "
            f"late median {statistics.median(late) * 1000:.0f} ms, "
            f"p99 {pct(late, 0.99) * 1000:.0f} ms, max {max(late) * 1000:.0f} ms, "
            f"early {sum(1 for x in late if x < 0)}"
        )
    return len(late) == n


async def fresh_pg() -> tuple[str, str]:
    name = f"yijing_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}", name


async def drop_pg(name: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--merchants", type=int, default=100_000)
    parser.add_argument("--deadlines", type=int, default=100_000)
    parser.add_argument("--only", choices=["sqlite", "postgresql"], default=None)
    parser.add_argument("--timers-only", action="store_true", help="skip the ranking part")
    parser.add_argument("--rank-only", action="store_true", help="skip the timers part")
    args = parser.parse_args()
    ok = True
    for dialect in ("sqlite", "postgresql"):
        if args.only and dialect != args.only:
            continue
        print(f"{dialect}:")
        pg_name = None
        with tempfile.TemporaryDirectory() as tmp:
            if dialect == "sqlite":
                url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
            else:
                url, pg_name = await fresh_pg()
            try:
                await asyncio.to_thread(upgrade, url)
                if not args.timers_only:
                    await bench_rank(url, args.merchants)
                if not args.rank_only:
                    ok = await bench_timers(url, args.deadlines) and ok
            finally:
                if pg_name:
                    await drop_pg(pg_name)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
