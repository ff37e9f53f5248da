"""A surge through the running service: everyone calls at once.

Starts `yijing run` as a process of its own (memory PBX, the demo registry; SQLite, or a
PostgreSQL database of its own with `--db postgresql`). `--operators` operators log in on
the desk API; each takes the call offered to it (`POST /calls/{id}/answer`), talks for
`--talk` seconds, hangs up and wraps up, as fast as the API answers. Callers are placed
through the simulator API (`POST /sim/dial`), `--calls` of them spread evenly over
`--over` seconds, each from a number of its own. An observer holds the WebSocket from the
newest event.

Prints, from one run:
- lost: calls placed that never showed on the WebSocket, and never reached "queued";
- screen-pop: call placed (its dial request sent) to its first event on the WebSocket
  (`call.offered`), median and p99; "queued": placed to its `call.queued`;
- the desk API's latency during the surge (every operator request), median and p99;
- the server's CPU seconds (user + system, from /proc) over the dial phase and after, and
  its peak resident memory (VmHWM);
- the drain: seconds from the last dial until no caller waits (the waiting callers are
  hung up by the bench at `--drain` seconds, counted as abandoned).

Measured, not asserted: issue 20's goal is screen-pop p99 under 100 ms and "queued" p99
under 250 ms at 1,000 calls in 60 s.

    .venv/bin/python bench/surge.py [--calls 1000] [--over 60] [--db sqlite|postgresql]
        [--operators 12] [--talk 5] [--drain 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.processes import PASSWORD, Server, free_port, pct, token  # noqa: E402
from bench.processes import database as pg_database  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def database(kind: str, folder: Path) -> AsyncIterator[str]:
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{folder / 'surge.db'}"
        return
    async with pg_database() as url:
        yield url


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def peak_memory_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def masked(number: str) -> str:
    """The number as the events show it (registry.phones.mask)."""
    return number[:6] + "****" + number[-4:]


def caller_number(n: int) -> str:
    """A number of its own per caller, unique in its masked form: +8613d0000nnnn."""
    return f"+8613{n // 10000 % 10}0000{n % 10000:04d}"


class Surge:
    def __init__(self, server: Server, http: aiohttp.ClientSession, admin: str) -> None:
        self.server = server
        self.http = http
        self.admin = {"Authorization": f"Bearer {admin}"}
        self.placed: dict[str, float] = {}  # masked number -> when its dial was sent
        self.first_seen: dict[str, float] = {}
        self.queued_seen: dict[str, float] = {}
        self.number_of_call: dict[int, str] = {}
        self.waiting: set[int] = set()
        self.desk_ms: list[float] = []
        self.errors = 0
        self.error_kinds: dict[str, int] = {}
        self.answered = 0
        self.refs: list[str] = []

    async def api(self, method: str, path: str, headers: dict[str, str], **kw: Any) -> Any:
        async with self.http.request(
            method, self.server.url + "/api/v1" + path, headers=headers, **kw
        ) as resp:
            if resp.status >= 400:
                self.errors += 1
                key = f"{method} {path.split('/')[1]} {resp.status}"
                self.error_kinds[key] = self.error_kinds.get(key, 0) + 1
                if os.environ.get("SURGE_SHOW_ERRORS"):
                    print(key, (await resp.text())[:300], file=sys.stderr)
                return None
            return await resp.json()

    async def observe(self, ready: asyncio.Event) -> None:
        latest = await self.api("GET", "/events/latest", self.admin)
        since = latest["seq"] or 0
        url = f"{self.server.url}/api/v1/ws?since={since}"
        async with self.http.ws_connect(url, headers=self.admin, max_msg_size=0) as ws:
            ready.set()
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                now = time.perf_counter()
                data = json.loads(msg.data)
                for event in data if isinstance(data, list) else [data]:
                    self.note(event, now)

    def note(self, event: dict[str, Any], now: float) -> None:
        if event.get("subject") != "call":
            return
        call_id = int(event["subject_id"])
        name = event.get("name")
        if name == "call.offered":
            number = str((event.get("data") or {}).get("number", ""))
            self.number_of_call[call_id] = number
            self.first_seen.setdefault(number, now)
        number = self.number_of_call.get(call_id)
        if number is None:
            return
        if name == "call.queued":
            self.queued_seen.setdefault(number, now)
            self.waiting.add(call_id)
        elif name in ("call.connected", "call.abandoned", "call.ended"):
            self.waiting.discard(call_id)

    async def dial(self, number: str) -> None:
        self.placed[masked(number)] = time.perf_counter()
        out = await self.api("POST", "/sim/dial", self.admin, json={"number": number})
        if out is not None:
            self.refs.append(out["ref"])

    async def operator(self, bearer: str, talk: float, stop: asyncio.Event) -> None:
        headers = {"Authorization": f"Bearer {bearer}"}
        await self.timed("POST", "/operator/state", headers, json={"action": "login"})
        while not stop.is_set():
            state = await self.timed("GET", "/operator/state", headers)
            call_id = (state or {}).get("call_id")
            if not state or state.get("state") != "reserved" or call_id is None:
                await asyncio.sleep(0.05)
                continue
            if await self.timed("POST", f"/calls/{call_id}/answer", headers) is None:
                continue
            self.answered += 1
            await asyncio.sleep(talk)
            await self.timed("POST", f"/calls/{call_id}/hangup", headers)
            # the PBX reports the hang-up back; the desk wraps up once the call has ended
            while not stop.is_set():
                state = await self.timed("GET", "/operator/state", headers)
                if (state or {}).get("state") == "wrap_up":
                    break
                await asyncio.sleep(0.05)
            if stop.is_set():
                break  # the bench ends with this call still on the line
            await self.timed(
                "POST", f"/calls/{call_id}/wrap-up", headers, json={"disposition": "info"}
            )

    async def timed(self, method: str, path: str, headers: dict[str, str], **kw: Any) -> Any:
        start = time.perf_counter()
        try:
            return await self.api(method, path, headers, **kw)
        finally:
            self.desk_ms.append((time.perf_counter() - start) * 1000)


async def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    async with database(args.db, folder) as url, aiohttp.ClientSession() as http:
        env = {
            "YIJING_DATABASE_URL": url,
            "YIJING_MIGRATE": "auto",
            "YIJING_TELEPHONY": "memory",
            "YIJING_SECRET_KEY": "bench-secret-key-for-the-surge",
            "YIJING_DEMO_PASSWORD": PASSWORD,
            "YIJING_LOGIN_PER_CLIENT": "100000",
            "YIJING_LOGIN_PER_ACCOUNT": "100000",
            "YIJING_DESK_OPEN": "00:00",
            "YIJING_DESK_CLOSE": "23:59:59.999999",
        }
        server = Server(folder / "server", env)
        server.port = free_port()
        await server.start(http, "owner")
        assert server.proc is not None
        pid = server.proc.pid
        try:
            admin = await token(http, server.url, "demo")
            surge = Surge(server, http, admin)
            bearers = [await token(http, server.url, "operator")]
            for n in range(1, args.operators):
                name = f"surgeop{n}"
                body = {"username": name, "role": "operator", "password": PASSWORD}
                await surge.api("POST", "/users", surge.admin, json=body)
                bearers.append(await token(http, server.url, name))
            ready = asyncio.Event()
            observer = asyncio.create_task(surge.observe(ready))
            await ready.wait()
            stop = asyncio.Event()
            desks = [asyncio.create_task(surge.operator(b, args.talk, stop)) for b in bearers]
            cpu0, start = cpu_seconds(pid), time.perf_counter()
            gap = args.over / args.calls
            dials = []
            for n in range(args.calls):
                due = start + n * gap
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                dials.append(asyncio.create_task(surge.dial(caller_number(n))))
            await asyncio.gather(*dials)
            dial_end = time.perf_counter()
            cpu_dial = cpu_seconds(pid) - cpu0
            desk_during = list(surge.desk_ms)
            # the backlog: until every caller was shown and queued, and nobody waits
            drained_at = None
            while time.perf_counter() - dial_end < args.drain:
                shown = len(surge.first_seen) >= args.calls
                if shown and not surge.waiting and len(surge.queued_seen) >= args.calls:
                    drained_at = time.perf_counter()
                    break
                await asyncio.sleep(0.2)
            stop.set()
            await asyncio.gather(*desks, return_exceptions=True)
            cpu_all = cpu_seconds(pid) - cpu0
            peak = peak_memory_mb(pid)
            observer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await observer
        finally:
            await server.stop()
    pops = [
        (surge.first_seen[n] - t) * 1000 for n, t in surge.placed.items() if n in surge.first_seen
    ]
    queued = [
        (surge.queued_seen[n] - t) * 1000 for n, t in surge.placed.items() if n in surge.queued_seen
    ]
    return {
        "placed": len(surge.placed),
        "never_shown": len(surge.placed) - len(pops),
        "never_queued": len(surge.placed) - len(queued),
        "pop": (statistics.median(pops), pct(pops, 0.99)) if pops else None,
        "queued": (statistics.median(queued), pct(queued, 0.99)) if queued else None,
        "desk": (statistics.median(desk_during), pct(desk_during, 0.99)) if desk_during else None,
        "answered": surge.answered,
        "errors": surge.errors,
        "error_kinds": surge.error_kinds,
        "cpu_dial": cpu_dial,
        "dial_s": dial_end - start,
        "cpu_all": cpu_all,
        "peak_mb": peak,
        "drain_s": None if drained_at is None else drained_at - dial_end,
    }


def ms(pair: tuple[float, float] | None) -> str:
    return "-" if pair is None else f"{pair[0]:.0f} / {pair[1]:.0f} ms"


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--over", type=float, default=60.0)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--operators", type=int, default=12)
    parser.add_argument("--talk", type=float, default=5.0)
    parser.add_argument("--drain", type=float, default=60.0)
    args = parser.parse_args()
    print(
        f"load average {os.getloadavg()[0]:.2f}; {args.calls} calls over {args.over:.0f} s on "
        f"{args.db}, {args.operators} operators talking {args.talk:.0f} s"
    )
    with tempfile.TemporaryDirectory() as folder:
        r = await run(args, Path(folder))
    drain = "not within the limit" if r["drain_s"] is None else f"{r['drain_s']:.1f} s"
    print(
        f"placed {r['placed']}: {r['never_shown']} never shown, {r['never_queued']} never "
        f"queued; screen-pop median / p99 {ms(r['pop'])}; queued {ms(r['queued'])}; desk API "
        f"{ms(r['desk'])}; {r['answered']} answered, {r['errors']} API errors "
        f"{r['error_kinds'] or ''}"
    )
    print(
        f"server CPU {r['cpu_dial']:.1f} s over the {r['dial_s']:.0f} s dial phase "
        f"({r['cpu_dial'] / r['dial_s']:.2f} of a core), {r['cpu_all']:.1f} s in all; peak "
        f"memory {r['peak_mb']:.0f} MB; backlog drained {drain} after the last dial"
    )
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
