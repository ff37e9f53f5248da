"""Registry import speed, and what an import does to everyone else, on SQLite and PostgreSQL.

For each database (a SQLite file, and a fresh PostgreSQL database at YIJING_TEST_PG that
is dropped afterwards) a real `yijing run` process is started on its own port with the
demo community. Residents files of generated rows (10,000 and 100,000 by default: name,
sex, birth year, ID number, phone, address, grid, groups, condition, medicine, notes and
one emergency contact, as survey files have them) are then uploaded through the HTTP API,
as the admin page does, while three clients keep using the service, each sending a
request, waiting for the answer, then pausing: an operator logging in (every 1 s),
`/healthz` and an operator creating a ticket (every 0.2 s).

Prints, per database and size: the rows imported per second (upload to answer); the CPU
time the server used meanwhile (the import and the other requests: on a shared machine
the wall time says little, the CPU time is what the import costs a machine that has
nothing else to do; PostgreSQL's own work is not in it); how long the final write took
and how much of it held the write lock (the server's log line); and for the other
requests the median and the longest wait during the import (and at rest before it, for
comparison), with any that did not answer 2xx. Measured, not asserted.

    .venv/bin/python bench/import.py [--sizes 10000 100000] [--only sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import socket
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from registry.demo import FEMALE, GRIDS, MALE, STREETS, SURNAMES  # noqa: E402

PG_ADMIN = os.environ.get("YIJING_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
PASSWORD = "bench-pass-123"
#: the pause after each answer, per kind of request (a login costs the server ~0.1 s of
#: password hashing on its event loop, so logins come less often)
PAUSE_S = {"login": 1.0, "healthz": 0.2, "ticket": 0.2}
HEADER = (
    "姓名,性别,出生年份,身份证号,电话,地址,楼栋,单元,房号,网格,类别,慢性病,用药,备注,"
    "联系人1姓名,联系人1关系,联系人1类型,联系人1电话"
)
FINAL_STEP = re.compile(r"(\d+) rows written in ([\d.]+) s, ([\d.]+) s of it under the write lock")


def residents_csv(n: int, first: int, seed: int = 11) -> bytes:
    """n residents numbered from `first`: ID numbers and phones of their own."""
    rng = random.Random(seed + first)
    out = [HEADER]
    for i in range(first, first + n):
        female = rng.random() < 0.58
        surname = rng.choice(SURNAMES)
        name = surname + rng.choice(FEMALE if female else MALE)
        year = rng.randint(1928, 1962)
        b, u, r = rng.randint(1, 40), rng.randint(1, 4), rng.randint(1, 9) * 100 + rng.randint(1, 4)
        id_number = f"5{i:010d}{year}{rng.randint(1, 12):02d}X"
        out.append(
            f"{name},{'女' if female else '男'},{year},{id_number},139{i:08d},"
            f"{rng.choice(STREETS)}{rng.randint(1, 400)}号{b}栋{u}单元{r}室,{b},{u},{r},"
            f"{GRIDS[i % len(GRIDS)][0]},空巢,高血压,硝苯地平缓释片,下午四点后再打,"
            f"{surname}明,儿子,家属,137{i:08d}"
        )
    return ("\n".join(out) + "\n").encode()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process used so far (Linux; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Load:
    """The other requests: (kind, seconds waited, HTTP status) while running."""

    samples: list[tuple[str, float, int]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def loop(self, kind: str, send: Any) -> None:
        """One client: a request, its answer, a pause, until told to stop."""
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                status = await send()
            except aiohttp.ClientError:
                status = 0
            self.samples.append((kind, time.perf_counter() - started, status))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), PAUSE_S[kind])


async def run_load(http: aiohttp.ClientSession, base: str, operator: str, load: Load) -> None:
    """Logins, health checks and ticket creation in three loops."""

    async def login() -> int:
        body = {"username": "operator", "password": PASSWORD}
        async with http.post(f"{base}/api/v1/login", json=body) as resp:
            await resp.read()
            return resp.status

    async def health() -> int:
        async with http.get(f"{base}/healthz") as resp:
            await resp.read()
            return resp.status

    async def ticket() -> int:
        body = {"category": "medicine", "resident_id": 1, "description": "bench"}
        headers = {"Authorization": f"Bearer {operator}"}
        async with http.post(f"{base}/api/v1/tickets", json=body, headers=headers) as resp:
            await resp.read()
            return resp.status

    await asyncio.gather(
        load.loop("login", login), load.loop("healthz", health), load.loop("ticket", ticket)
    )


def waits(samples: list[tuple[str, float, int]]) -> str:
    """Median and longest wait per kind, in ms, and the failures."""
    parts = []
    for kind in ("login", "healthz", "ticket"):
        times = [t for k, t, _ in samples if k == kind]
        bad = sum(1 for k, _, status in samples if k == kind and not 200 <= status < 300)
        if times:
            parts.append(
                f"{kind} {statistics.median(times) * 1000:.0f}/{max(times) * 1000:.0f}"
                + (f" ({bad} failed)" if bad else "")
            )
    return ", ".join(parts)


async def wait_up(base: str, proc: asyncio.subprocess.Process) -> None:
    """Poll /healthz until the server answers."""
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            if proc.returncode is not None:
                raise RuntimeError("yijing run exited; see its log")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{base}/healthz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError("yijing run did not come up")


async def bench(url: str, label: str, sizes: list[int], folder: Path) -> list[float]:
    """Start a server on `url`, import each size under load; returns the longest waits."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = os.environ | {
        "PYTHONASYNCIODEBUG": os.environ.get("BENCH_ASYNCIO_DEBUG", ""),
        "YIJING_DATABASE_URL": url,
        "YIJING_DATA_DIR": str(folder / "data"),
        "YIJING_PORT": str(port),
        "YIJING_PUBLIC_URL": base,
        "YIJING_DEMO_PASSWORD": PASSWORD,
        "YIJING_SECRET_KEY": "bench-secret-key-not-for-production",
    }
    log_path = Path(os.environ.get("BENCH_LOG_DIR", folder)) / f"server-{label}.log"
    with log_path.open("wb") as server_log:
        # the deploy step: on PostgreSQL `yijing run` only checks the revision
        upgraded = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "operator_console.cli",
            "db",
            "upgrade",
            cwd=ROOT,
            env=env,
            stdout=server_log,
            stderr=asyncio.subprocess.STDOUT,
        )
        if await upgraded.wait() != 0:
            raise RuntimeError("yijing db upgrade failed; see its log")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "operator_console.cli",
            "run",
            cwd=ROOT,
            env=env,
            stdout=server_log,
            stderr=asyncio.subprocess.STDOUT,
        )
    longest: list[float] = []
    try:
        await wait_up(base, proc)
        timeout = aiohttp.ClientTimeout(total=900)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            tokens = {}
            for user in ("demo", "operator"):
                body = {"username": user, "password": PASSWORD}
                async with http.post(f"{base}/api/v1/login", json=body) as resp:
                    tokens[user] = (await resp.json())["token"]
            first = 1
            for n in sizes:
                data = residents_csv(n, first)
                first += n
                rest = Load()
                rest_task = asyncio.create_task(run_load(http, base, tokens["operator"], rest))
                await asyncio.sleep(2)
                rest.stop.set()
                await rest_task

                load = Load()
                load_task = asyncio.create_task(run_load(http, base, tokens["operator"], load))
                await asyncio.sleep(1)
                form = aiohttp.FormData()
                form.add_field("file", data, filename="survey.csv")
                form.add_field("dry_run", "false")
                started, cpu = time.perf_counter(), cpu_seconds(proc.pid)
                async with http.post(
                    f"{base}/api/v1/registry/import/residents",
                    data=form,
                    headers={"Authorization": f"Bearer {tokens['demo']}"},
                ) as resp:
                    report = await resp.json()
                    status = resp.status
                elapsed = time.perf_counter() - started
                cpu = cpu_seconds(proc.pid) - cpu
                during = [s for s in load.samples]
                load.stop.set()
                await load_task
                final = FINAL_STEP.findall(log_path.read_text(errors="replace"))
                written = float(final[-1][1]) if final else float("nan")
                locked = float(final[-1][2]) if final else float("nan")
                created = report.get("created") if status == 200 else f"HTTP {status}"
                longest.append(max(t for _, t, _ in during))
                print(
                    f"{label:<11}{n:>8} rows  {elapsed:6.1f} s  {n / elapsed:>7.0f} rows/s  "
                    f"(server CPU {cpu:5.1f} s)  write {written:5.2f} s, lock {locked:5.2f} s  "
                    f"created {created}"
                )
                print(f"{'':<11}  other requests, median/longest ms: at rest {waits(rest.samples)}")
                print(f"{'':<11}  {'':>35}during {waits(during)}")
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    return longest


async def main() -> int:
    """Run the benchmark on SQLite and PostgreSQL."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--only", choices=["sqlite", "postgresql"], default=None)
    args = parser.parse_args()
    longest: list[float] = []
    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{tmp}/bench.db"
            longest += await bench(url, "SQLite", args.sizes, Path(tmp))
    if args.only in (None, "postgresql"):
        import asyncpg

        name = f"yijing_bench_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        try:
            with tempfile.TemporaryDirectory() as tmp:
                longest += await bench(f"{base}/{name}", "PostgreSQL", args.sizes, Path(tmp))
        finally:
            admin = await asyncpg.connect(PG_ADMIN)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
    print(f"longest wait of any other request during an import: {max(longest) * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
