"""A flood of wrong passwords against a real `yijing run`: does the console stay fast?

Starts the service as its own process (the embedded demo on a temporary SQLite file,
behind a "trusted proxy" so that the flood can come from many client addresses through
X-Forwarded-For), logs in an operator, then measures two requests, `/healthz` and the
operator's `GET /api/v1/calls`, probing each in turn, in three phases:

1. quiet: no flood;
2. one address: RATE wrong logins a second on a real account from one client address
   (throttled after a few: from then on each costs two small queries and a 429);
3. many addresses: RATE wrong logins a second, each from a new address and on a new
   name, so that no throttle applies and every attempt would cost a full argon2 hash.

The phases take turns, ROUNDS times (SECONDS / ROUNDS each time), so that whatever else
the machine does at the time weighs on all three alike. Prints, per phase and request,
the median and p99 latency and their ratio to the quiet phase, how the flood's logins
were answered (401 wrong, 429 throttled, 503 busy), and how long right logins from an
address someone logged in from before took meanwhile. Measured, not asserted.

    .venv/bin/python bench/login_flood.py [--rate 10] [--seconds 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "bench-demo-pass"
PROBE_INTERVAL_S = 0.02
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start_server(data_dir: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "YIJING_DATA_DIR": str(data_dir),
        "YIJING_PORT": str(port),
        "YIJING_PUBLIC_URL": url,
        "YIJING_DEMO_PASSWORD": PASSWORD,
        "YIJING_TRUST_PROXY": "true",
    }
    env.pop("YIJING_DATABASE_URL", None)
    log = data_dir / "server.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "operator_console.cli", "run"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    return proc, url, log


async def wait_up(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited; see {log}")
            try:
                async with http.get(url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"server did not come up; see {log}")


async def login(
    http: aiohttp.ClientSession, url: str, username: str, password: str, client: str
) -> tuple[int, float]:
    start = time.perf_counter()
    async with http.post(
        url + "/api/v1/login",
        json={"username": username, "password": password},
        headers={"X-Forwarded-For": client},
    ) as resp:
        await resp.read()
        return resp.status, time.perf_counter() - start


def empty() -> dict[str, Any]:
    """What a phase gathers over its rounds."""
    return {
        "timings": {"/healthz": [], "/api/v1/calls": []},
        "outcomes": collections.Counter(),
        "right": [],
        "cpu_s": 0.0,
        "wall_s": 0.0,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def phase(
    url: str,
    token: str,
    into: dict[str, Any],
    *,
    pid: int,
    seconds: float,
    rate: float,
    flood: str | None,
    round_no: int,
) -> None:
    """Probe for `seconds` while (maybe) flooding; adds the latencies and outcomes."""
    timings: dict[str, list[float]] = into["timings"]
    outcomes: collections.Counter[int] = into["outcomes"]
    right_logins: list[float] = into["right"]
    tasks: set[asyncio.Task[None]] = set()
    connector = aiohttp.TCPConnector(limit=0)
    cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar()
    ) as http:
        end = time.monotonic() + seconds

        async def wrong(i: int) -> None:
            if flood == "one":
                name, client = "operator", "203.0.113.66"
            else:
                name, client = f"guess{round_no}-{i}", f"10.{round_no}.{(i >> 8) & 255}.{i & 255}"
            try:
                status, _ = await login(http, url, name, "not-the-password", client)
            except aiohttp.ClientError:
                status = -1
            outcomes[status] += 1

        async def flooder() -> None:
            i = 0
            next_at = time.monotonic()
            while time.monotonic() < end:
                i += 1
                task = asyncio.create_task(wrong(i))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                next_at += 1 / rate
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

        async def prober() -> None:
            headers = {"Authorization": f"Bearer {token}"}
            n = 0
            while time.monotonic() < end:
                path = "/healthz" if n % 2 == 0 else "/api/v1/calls"
                n += 1
                start = time.perf_counter()
                async with http.get(url + path, headers=headers) as resp:
                    await resp.read()
                    assert resp.status == 200, (path, resp.status)
                timings[path].append(time.perf_counter() - start)
                await asyncio.sleep(PROBE_INTERVAL_S)

        async def right() -> None:
            # a colleague logging in from an address of their own, every few seconds
            while time.monotonic() < end - 1:
                await asyncio.sleep(max(1.0, seconds / 3))
                status, took = await login(http, url, "supervisor", PASSWORD, "198.51.100.20")
                if status == 200:
                    right_logins.append(took)
                else:
                    outcomes[1000 + status] += 1

        jobs = [prober(), right()]
        if flood:
            jobs.append(flooder())
        await asyncio.gather(*jobs)
        if tasks:
            await asyncio.wait(tasks, timeout=30)
    into["cpu_s"] += cpu_seconds(pid) - cpu_before
    into["wall_s"] += time.monotonic() - wall_before


def report(results: dict[str, dict[str, Any]], rate: float, seconds: float) -> None:
    print(
        f"\n/healthz and an operator's GET /api/v1/calls, {seconds:.0f} s a phase, flood {rate:g}/s"
    )
    head = (
        f"{'phase':<16} {'request':<15} {'n':>5} {'median ms':>10} {'p99 ms':>8}"
        f" {'x median':>9} {'x p99':>7}"
    )
    print(head)
    print("-" * len(head))
    quiet = results["quiet"]["timings"]
    for name, result in results.items():
        for path, values in result["timings"].items():
            med, p99 = statistics.median(values) * 1000, pct(values, 0.99) * 1000
            q_med = statistics.median(quiet[path]) * 1000
            q_p99 = pct(quiet[path], 0.99) * 1000
            print(
                f"{name:<16} {path:<15} {len(values):>5} {med:>10.1f} {p99:>8.1f}"
                f" {med / q_med:>9.2f} {p99 / q_p99:>7.2f}"
            )
    print()
    for name, result in results.items():
        outcomes = dict(sorted(result["outcomes"].items()))
        right = result["right"]
        took = f"{statistics.median(right) * 1000:.0f} ms median" if right else "none"
        print(
            f"{name:<16} flood answers {outcomes or '-'}; right logins meanwhile: "
            f"{len(right)} ({took}); server CPU {100 * result['cpu_s'] / result['wall_s']:.0f}%"
            " of a core"
        )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=10.0, help="wrong logins a second")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=3, help="turns the phases take")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="yijing-flood-") as tmp:
        proc, url, log = start_server(Path(tmp) / "data")
        try:
            await wait_up(url, proc, log)
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    url + "/api/v1/login",
                    json={"username": "operator", "password": PASSWORD},
                    headers={"X-Forwarded-For": "198.51.100.10"},
                ) as resp,
            ):
                token = (await resp.json())["token"]
            phases = (("quiet", None), ("one address", "one"), ("many addresses", "many"))
            results: dict[str, dict[str, Any]] = {name: empty() for name, _ in phases}
            for round_no in range(args.rounds):
                for name, flood in phases:
                    print(f"round {round_no + 1}: {name} ...", flush=True)
                    await phase(
                        url,
                        token,
                        results[name],
                        pid=proc.pid,
                        seconds=args.seconds / args.rounds,
                        rate=args.rate,
                        flood=flood,
                        round_no=round_no,
                    )
            report(results, args.rate, args.seconds)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
