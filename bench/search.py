"""Resident search on 100,000 generated residents, on SQLite and on PostgreSQL.

Prints the index load time and, per kind of query, the median and p99 latency of
`registry.search.search_residents` (the catch-up query against the database plus the
in-memory search), which is what the API handler does. Measured, not asserted.

    .venv/bin/python bench/search.py [--residents 100000] [--repeat 200] [--sqlite-only]

PostgreSQL comes from YIJING_TEST_PG (default postgresql://postgres@127.0.0.1:5432/test);
a scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert, update

from eventlog.db import make_engine, make_sessionmaker
from operator_console.migrate import upgrade
from registry.demo import FEMALE, GRIDS, MALE, STREETS, SURNAMES
from registry.models import Grid, RegistryRevision, Resident, ResidentPhone
from registry.names import pinyin_keys
from registry.search import SearchIndex, search_residents

PG_ADMIN = os.environ.get("YIJING_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def rows(n: int, seed: int = 7) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Residents and phones as plain rows for a bulk insert."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    residents, phones = [], []
    given = FEMALE + MALE + ["红", "英", "华", "军", "平", "芳", "霞", "敏"]
    for rid in range(1, n + 1):
        name = rng.choice(SURNAMES) + rng.choice(given)
        if rng.random() < 0.3:
            name += rng.choice("明丽强伟秀")
        pinyin, initials = pinyin_keys(name)
        b, u, r = rng.randint(1, 40), rng.randint(1, 4), rng.randint(1, 9) * 100 + rng.randint(1, 4)
        residents.append(
            {
                "id": rid,
                "name": name,
                "sex": "女",
                "birth_year": rng.randint(1928, 1962),
                "id_number": None,
                "address": f"{rng.choice(STREETS)}{rng.randint(1, 400)}号{b}栋{u}单元{r}室",
                "building": str(b),
                "unit": str(u),
                "room": str(r),
                "grid_code": GRIDS[rid % len(GRIDS)][0],
                "community": "白公路社区",
                "groups": ["空巢"],
                "mobility": "",
                "hearing": "",
                "sight": "",
                "dialect": "",
                "health_notes": "",
                "conditions": "",
                "medicines": "",
                "notes": "",
                "language": "zh-CN",
                "usual_pharmacy_id": None,
                "preferred_merchants": {},
                "status": "registered",
                "name_pinyin": pinyin,
                "name_initials": initials,
                "created_at": now,
                "updated_at": now,
                "revision": rid,
            }
        )
        phones.append(
            {
                "resident_id": rid,
                "number": f"+8623{rng.randint(10**7, 10**8 - 1)}",
                "kind": "landline",
            }
        )
        if rng.random() < 0.6:
            phones.append(
                {
                    "resident_id": rid,
                    "number": f"+86138{rng.randint(10**7, 10**8 - 1)}",
                    "kind": "mobile",
                }
            )
    return residents, phones


QUERIES = {
    "name part (秀英)": ["秀英", "桂兰", "建国", "志强", "玉兰"],
    "full name": ["王秀英", "李建国", "张桂兰", "刘志强", "陈玉兰"],
    "pinyin initials": ["wxy", "ljg", "zgl", "lzq", "cyl"],
    "full pinyin": ["wangxiuying", "lijianguo", "zhangguilan", "liuzhiqiang"],
    "phone last 4": ["1234", "5678", "0001", "4321", "8888"],
    "address part": ["巴王路12号", "滨江路300号", "忠州大道8号3栋", "白公路1号"],
    "grid": ["BG03", "第二网格"],
    "name + address": ["王 巴王路", "秀英 滨江路"],
    "fuzzy miss (王秀音)": ["王秀音"],
}


async def run(url: str, label: str, n: int, repeat: int) -> None:
    """Fill a database, load the index, time each kind of query."""
    await asyncio.to_thread(upgrade, url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    residents, phones = rows(n)
    started = time.perf_counter()
    async with sessions() as session:
        await session.execute(
            insert(Grid),
            [{"code": c, "name": name, "community": "白公路社区"} for c, name in GRIDS],
        )
        for i in range(0, len(residents), 5000):
            await session.execute(insert(Resident), residents[i : i + 5000])
        for i in range(0, len(phones), 5000):
            await session.execute(insert(ResidentPhone), phones[i : i + 5000])
        await session.execute(update(RegistryRevision).values(value=n))
        await session.commit()
    print(
        f"\n== {label}: {n} residents, {len(phones)} phones "
        f"(insert {time.perf_counter() - started:.1f} s)"
    )
    index = SearchIndex()
    async with sessions() as session:
        started = time.perf_counter()
        await index.load(session)
        print(f"index load: {(time.perf_counter() - started) * 1000:.0f} ms")
    print(f"{'query kind':<22}{'median ms':>10}{'p99 ms':>10}{'hits':>7}")
    async with sessions() as session:
        for kind, queries in QUERIES.items():
            times, hits = [], 0
            for i in range(repeat):
                q = queries[i % len(queries)]
                t0 = time.perf_counter()
                found = await search_residents(index, session, query=q)
                times.append((time.perf_counter() - t0) * 1000)
                hits += len(found)
            times.sort()
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            print(f"{kind:<22}{statistics.median(times):>10.2f}{p99:>10.2f}{hits / repeat:>7.1f}")
    await engine.dispose()


async def main() -> int:
    """Run the benchmark on SQLite and PostgreSQL."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--residents", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        await run(f"sqlite+aiosqlite:///{tmp}/bench.db", "SQLite", args.residents, args.repeat)
    if args.sqlite_only:
        return 0
    import asyncpg

    name = f"yijing_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        await run(f"{base}/{name}", "PostgreSQL", args.residents, args.repeat)
    finally:
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
