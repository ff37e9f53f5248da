"""A notice to 5,000 residents through the one outbound engine, on the memory PBX.

The dispatch services run on a freshly seeded SQLite file with the memory PBX, a manual
clock and manual timers: simulated time jumps from one thing that happens to the next
(an answer, a hang-up, a timer), so hours of calls take minutes of wall time. The trunk
has `--channels` outbound channels (30) and `--reserved` more lines (4) kept for the
hotline. Every resident answers after a few seconds of ringing and stays on the line
for the rest of a call that lasts `--call-s` (120 s) on average, ring included (uniform
from half to one and a half times that); `--no-answer` of them (0 by default) let it ring
out instead, and are tried again as the campaign says (30 minutes later, twice in all).
Meanwhile callers ring the hotline about every `--inbound-gap-s` (120 s) of simulated
time and stay a minute.

Prints: the time the notice took against the physical limit (residents x call / channels:
5,000 x 120 s / 30 = 5.6 h), the most outbound calls at once, the engine's CPU per call
(its looks at the queue, including handing calls to the PBX) and the whole process's
CPU per call (the router, the campaign, the PBX simulation, this driver), and the hotline
during the campaign: callers who found a free line and how long, in wall time, the service
took to answer them (the first prompt of the menu). Measured, not asserted; exits 1 if the
notice did not finish. Usage: python bench/campaign.py [--residents N] [--channels N] ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dispatch.config import DispatchConfig  # noqa: E402
from dispatch.services import DispatchServices  # noqa: E402
from dispatch.timers import ManualTimers  # noqa: E402
from eventlog.bus import EventBus  # noqa: E402
from eventlog.clock import LOCAL_TZ, ManualClock  # noqa: E402
from eventlog.db import make_engine, make_sessionmaker  # noqa: E402
from eventlog.store import Store  # noqa: E402
from providers.base import OriginateFailure, UnknownCall  # noqa: E402
from providers.memory import MemoryPBX  # noqa: E402
from registry.models import Grid, Resident, ResidentPhone, User  # noqa: E402
from tests.conftest import _migrate_and_seed  # noqa: E402

GRID = "BENCH"
#: a weekday morning, at the end of the quiet hours
START = datetime(2026, 12, 7, 8, 30, tzinfo=LOCAL_TZ)


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def add_residents(url: str, n: int) -> None:
    """`n` registered residents in a grid of their own, one mobile each."""
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.execute(
            insert(Grid), [{"code": GRID, "name": "压测网格", "community": "白公路"}]
        )
        first = 1_000_000
        row = {"grid_code": GRID, "groups": [], "preferred_merchants": {}}
        people = [{**row, "id": first + i, "name": f"居民{i}"} for i in range(n)]
        await conn.execute(insert(Resident), people)
        await conn.execute(
            insert(ResidentPhone),
            [{"resident_id": first + i, "number": f"+86139{i:08d}"} for i in range(n)],
        )
    await engine.dispose()


class Run:
    """One simulated campaign: the services, the PBX, and what the residents do."""

    def __init__(self, url: str, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(7)
        self.engine = make_engine(url)
        self.clock = ManualClock(START)
        self.timers = ManualTimers(self.clock)
        self.store = Store(make_sessionmaker(self.engine), EventBus(), self.clock)
        # the PBX's own timers (ring timeouts, key timeouts) never fire: the residents here
        # decide every call's end, in simulated time
        self.pbx = MemoryPBX(time_scale=1e4)
        self.services = DispatchServices(
            store=self.store,
            telephony=self.pbx,
            timers=self.timers,
            clock=self.clock,
            config=DispatchConfig(
                outbound_channels=args.channels,
                inbound_reserved_lines=args.reserved,
                outbound_cps=args.cps,
            ),
        )
        self.timers.handler = self.services.router.on_timer
        self.heap: list[tuple[datetime, int, Callable[[], Any]]] = []
        self.seq = 0
        self.seen: set[str] = set()
        self.peak_out = 0
        self.inbound_wall_ms: list[float] = []
        self.inbound_blocked = 0
        self.inbound_unanswered = 0
        self.min_free_for_inbound: int | None = None
        self.placed_at: dict[str, datetime] = {}
        self.finished_at: datetime | None = None
        self.done = False
        self.store.bus.listen(self.follow, subjects=("campaign",))

    def later(self, seconds: float, fn: Callable[[], Any]) -> None:
        heapq.heappush(self.heap, (self.clock.now() + timedelta(seconds=seconds), self.seq, fn))
        self.seq += 1

    async def settle(self) -> None:
        """Route every event the PBX has given and let the engine's looks finish, as the
        app's pump would, before the clock moves on (in order, none left behind)."""
        events = self.pbx._events  # the simulator's queue: the bench is its only reader
        router, engine = self.services.router, self.services.outbound_engine
        while True:
            while not events.empty():
                await router.on_telephony(events.get_nowait())
            await engine.idle()
            await self.store.quiet()
            if events.empty():
                return

    def live(self) -> tuple[int, int]:
        out = inbound = 0
        for call in self.pbx.calls.values():
            if call.state != "ended":
                if call.direction == "out":
                    out += 1
                else:
                    inbound += 1
        return out, inbound

    def new_outbound(self) -> None:
        """What each resident does with a call that just started ringing."""
        for ref, call in list(self.pbx.calls.items()):
            if call.direction != "out" or ref in self.seen:
                continue
            self.seen.add(ref)
            self.placed_at[ref] = self.clock.now()
            if self.rng.random() < self.args.no_answer:
                self.later(30, lambda r=ref: self.reject(r))
                continue
            total = self.rng.uniform(0.5, 1.5) * self.args.call_s
            ring = min(self.rng.uniform(3, 10), total / 2)
            self.later(ring, lambda r=ref: self.answer(r))
            self.later(total, lambda r=ref: self.finish(r))
        out, _ = self.live()
        self.peak_out = max(self.peak_out, out)

    async def answer(self, ref: str) -> None:
        with contextlib.suppress(UnknownCall):
            await self.pbx.answer(ref)

    async def reject(self, ref: str) -> None:
        with contextlib.suppress(UnknownCall):
            await self.pbx.reject(ref, OriginateFailure.NO_ANSWER)

    async def finish(self, ref: str) -> None:
        """The notice heard: 1 (attend) when asked, else they hang up."""
        call = self.pbx.calls.get(ref)
        if call is None or call.state == "ended":
            return
        with contextlib.suppress(UnknownCall):
            if "1" in call.waiting_digits:
                await self.pbx.press(ref, "1")
            else:
                await self.pbx.party_hangup(ref)

    async def caller(self) -> None:
        """Someone rings the hotline: a free line or not, and the service's answer."""
        out, inbound = self.live()
        trunk = self.args.channels + self.args.reserved
        free = trunk - out - inbound
        self.min_free_for_inbound = (
            free if self.min_free_for_inbound is None else min(self.min_free_for_inbound, free)
        )
        if free <= 0:
            self.inbound_blocked += 1
        else:
            t0 = time.perf_counter()
            ref = await self.pbx.dial_in(f"+86137{self.rng.randrange(10**8):08d}")
            await self.settle()  # the service takes the call and plays its menu
            call = self.pbx.calls.get(ref)
            if call is not None and call.transcript:
                self.inbound_wall_ms.append((time.perf_counter() - t0) * 1000)
            else:
                self.inbound_unanswered += 1
            self.later(60, lambda r=ref: self.hang_up_inbound(r))
        if not self.done:
            self.later(self.rng.expovariate(1 / self.args.inbound_gap_s), self.caller)

    async def hang_up_inbound(self, ref: str) -> None:
        with contextlib.suppress(UnknownCall):
            await self.pbx.party_hangup(ref)

    def follow(self, event: dict[str, Any]) -> None:
        """The campaign's last outcome: the time it took."""
        if event["name"] == "campaign.done":
            self.finished_at = self.clock.now()
            self.done = True

    async def go(self) -> int:
        args = self.args
        async with self.pbx:
            try:
                await self.settle()
                async with self.store.read() as session:
                    user = (
                        await session.execute(select(User).where(User.username == "supervisor"))  # type: ignore[arg-type]
                    ).scalar_one()
                cpu0, wall0 = time.process_time(), time.perf_counter()
                campaign = await self.services.campaigns.create(
                    user=user,
                    title="压测通知",
                    text="本周六上午九点，社区活动室有健康讲座，请带好医保卡。",
                    question="您参加吗？",
                    grid_codes=[GRID],
                )
                assert campaign.id is not None
                created_s = time.perf_counter() - wall0
                self.later(args.inbound_gap_s, self.caller)
                steps = 0
                while True:
                    await self.settle()
                    self.new_outbound()
                    steps += 1
                    if steps % 5000 == 0:
                        progress = await self.services.campaigns.progress(campaign.id)
                        print(f"  ... {self.clock.now() - START} simulated: "
                              f"{progress['done_share']} % done", flush=True)  # fmt: skip
                    if self.finished_at is not None:
                        break
                    candidates = list(self.timers.pending.values())
                    if self.heap:
                        candidates.append(self.heap[0][0])
                    if not candidates:
                        break
                    nxt = min(candidates)
                    gap = (nxt - self.clock.now()).total_seconds()
                    if gap > 0:
                        await self.timers.advance(gap)
                    while self.heap and self.heap[0][0] <= self.clock.now():
                        _, _, fn = heapq.heappop(self.heap)
                        await fn()
                cpu = time.process_time() - cpu0
                wall = time.perf_counter() - wall0
                progress = await self.services.campaigns.progress(campaign.id)
            finally:
                await self.services.outbound_engine.stop()
        await self.engine.dispose()
        self.report(progress, self.finished_at, cpu, wall, created_s)
        return 0 if self.finished_at is not None else 1

    def report(
        self,
        progress: dict[str, Any],
        finished_at: datetime | None,
        cpu: float,
        wall: float,
        created_s: float,
    ) -> None:
        args = self.args
        engine = self.services.outbound_engine
        placed = len(self.seen)
        limit_s = args.residents * args.call_s / args.channels
        took_s = (finished_at - START).total_seconds() if finished_at else float("nan")
        print(f"notice to {progress['recipients']:,} residents, {args.channels} outbound channels "
              f"+ {args.reserved} lines kept for the hotline, {args.cps:g} calls/s, "
              f"{args.call_s:g} s average call, {args.no_answer:.0%} no answer")  # fmt: skip
        print(f"  outcomes: {progress['outcomes']}, answers {progress['answers']}")
        print(f"  time to finish: {took_s / 3600:.2f} h simulated "
              f"(physical limit {args.residents:,} x {args.call_s:g} s / {args.channels} = "
              f"{limit_s / 3600:.2f} h; {took_s / limit_s:.1%} of it)")  # fmt: skip
        print(f"  calls placed: {placed:,}; most outbound at once: {self.peak_out}")
        print(f"  engine CPU per call: {engine.cpu_s / max(1, engine.placed) * 1000:.2f} ms "
              f"({engine.placed:,} placed); whole process: {cpu / max(1, placed) * 1000:.2f} ms "
              f"per call ({cpu:.1f} s CPU, {wall:.1f} s wall; queueing all "
              f"{args.residents:,} took {created_s:.1f} s)")  # fmt: skip
        answered = self.inbound_wall_ms
        if answered:
            print(f"  hotline during the campaign: {len(answered)} callers, "
                  f"{self.inbound_blocked} found no free line (fewest free lines when one "
                  f"rang: {self.min_free_for_inbound}); answered in 0 s simulated; service's "
                  f"answer (first prompt) in wall time: median {statistics.median(answered):.1f} "
                  f"ms, p95 {pct(answered, 0.95):.1f} ms, max {max(answered):.1f} ms")  # fmt: skip


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="yijing-campaign-") as tmp:
        folder = Path(tmp)
        url = f"sqlite+aiosqlite:///{folder / 'yijing.db'}"
        t0 = time.perf_counter()
        await _migrate_and_seed(url, folder)
        await add_residents(url, args.residents)
        print(f"  seeded the demo and {args.residents:,} residents in "
              f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
        return await Run(url, args).go()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--residents", type=int, default=5000)
    parser.add_argument("--channels", type=int, default=30)
    parser.add_argument("--reserved", type=int, default=4)
    parser.add_argument("--cps", type=float, default=10.0)
    parser.add_argument("--call-s", type=float, default=120.0)
    parser.add_argument("--no-answer", type=float, default=0.0)
    parser.add_argument("--inbound-gap-s", type=float, default=120.0)
    sys.exit(asyncio.run(main(parser.parse_args())))
