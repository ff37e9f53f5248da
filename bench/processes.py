"""One process or three on one PostgreSQL: what the API serves, and how fast events fan out.

Starts `yijing run` processes on a PostgreSQL database of its own with the Asterisk backend
(the fake AMI server of the test suite on loopback: the PBX is not what is measured), the
first owning the PBX link and the others standing by (README, Running several processes).
Then, for `--seconds`, operators spread over the processes round-robin make a steady load:
each creates a ticket (for a resident, at random) and reads the desk's call list, as fast as
answers come, `--clients` at a time. An observer holds a WebSocket open on every process.

Prints, for one process and for three, measured in the same run one after the other:
requests per second answered, their latency (median, p99), and the fan-out delay of a
ticket created through one process to its `ticket.created` event on each process's
WebSocket, counted from when its POST was sent (median, p99; "same process", where the event
is published before the answer, and "other processes" apart), with the ratios of three to
one. Measured, not asserted.

    .venv/bin/python bench/processes.py [--seconds 20] [--clients 12]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.providers.asterisk.fake_ami import FakeAMI  # noqa: E402

PASSWORD = "bench-demo-pass"
PG = "postgresql://postgres@127.0.0.1:5432"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@contextlib.asynccontextmanager
async def database() -> AsyncIterator[str]:
    name = f"yijing_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(f"{PG}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


class Server:
    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        folder.mkdir(parents=True)
        self.log = folder / "server.log"
        self.env = {
            **os.environ,
            **env,
            "YIJING_DATA_DIR": str(folder),
            "YIJING_PORT": str(self.port),
            "YIJING_PUBLIC_URL": self.url,
        }
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, http: aiohttp.ClientSession, role: str) -> None:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "operator_console.cli", "run",
                env=self.env, stdout=out, stderr=asyncio.subprocess.STDOUT, cwd=ROOT,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                raise RuntimeError(f"server exited; see {self.log}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(self.url + "/healthz") as resp:
                    if (await resp.json()).get("role") == role:
                        return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"server did not come up as {role}; see {self.log}")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


async def token(http: aiohttp.ClientSession, url: str, username: str) -> str:
    async with http.post(
        url + "/api/v1/login", json={"username": username, "password": PASSWORD}
    ) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["token"])


async def observe(
    http: aiohttp.ClientSession, server: Server, bearer: str, seen: dict[int, dict[int, float]]
) -> None:
    """Note when each ticket.created event reaches this process's WebSocket."""
    headers = {"Authorization": f"Bearer {bearer}"}
    async with http.get(server.url + "/api/v1/events/latest", headers=headers) as resp:
        since = (await resp.json())["seq"] or 0
    async with http.ws_connect(f"{server.url}/api/v1/ws?since={since}", headers=headers) as ws:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            event = json.loads(msg.data)
            if isinstance(event, dict) and event.get("name") == "ticket.created":
                seen.setdefault(int(event["subject_id"]), {})[server.port] = time.perf_counter()


async def run(
    servers: list[Server], *, seconds: float, clients: int, http: aiohttp.ClientSession
) -> dict[str, Any]:
    bearers = [await token(http, s.url, "operator") for s in servers]
    seen: dict[int, dict[int, float]] = {}
    observers = [
        asyncio.create_task(observe(http, s, b, seen))
        for s, b in zip(servers, bearers, strict=True)
    ]
    await asyncio.sleep(1.0)
    created: dict[int, tuple[float, int]] = {}
    latency: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds
    turn = itertools.count()

    async def client() -> None:
        nonlocal errors
        rng = random.Random()
        while time.perf_counter() < stop_at:
            n = next(turn) % len(servers)
            server, bearer = servers[n], bearers[n]
            headers = {"Authorization": f"Bearer {bearer}"}
            t0 = time.perf_counter()
            body = {"category": "groceries", "resident_id": rng.randint(1, 200)}
            async with http.post(server.url + "/api/v1/tickets", json=body, headers=headers) as r:
                data = await r.json()
                if r.status != 201:
                    errors += 1
                    continue
                created[int(data["id"])] = (t0, server.port)
            latency.append(time.perf_counter() - t0)
            t1 = time.perf_counter()
            async with http.get(server.url + "/api/v1/calls", headers=headers) as r:
                await r.read()
                errors += r.status != 200
            latency.append(time.perf_counter() - t1)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - started
    await asyncio.sleep(2.0)  # the last events fan out
    for task in observers:
        task.cancel()
    same: list[float] = []
    other: list[float] = []
    missing = 0
    for ticket_id, (sent, port) in created.items():
        arrivals = seen.get(ticket_id, {})
        for server in servers:
            at = arrivals.get(server.port)
            if at is None:
                missing += 1
                continue
            (same if server.port == port else other).append(at - sent)
    return {
        "rps": len(latency) / wall,
        "median_ms": statistics.median(latency) * 1000,
        "p99_ms": pct(latency, 0.99) * 1000,
        "errors": errors,
        "same_ms": (statistics.median(same) * 1000, pct(same, 0.99) * 1000) if same else None,
        "other_ms": (statistics.median(other) * 1000, pct(other, 0.99) * 1000) if other else None,
        "missing": missing,
        "tickets": len(created),
    }


async def with_processes(count: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    ami = await FakeAMI().start()
    try:
        async with database() as url, aiohttp.ClientSession() as http:
            env = {
                "YIJING_DATABASE_URL": url,
                "YIJING_MIGRATE": "auto",
                "YIJING_TELEPHONY": "asterisk",
                "YIJING_ASTERISK_PORT": str(ami.port),
                "YIJING_ASTERISK_SECRET": ami.secret,
                "YIJING_ASTERISK_AGI_PORT": str(free_port()),
                "YIJING_SECRET_KEY": "bench-secret-key-shared-by-every-process",
                "YIJING_DEMO_PASSWORD": PASSWORD,
                "YIJING_LOGIN_PER_CLIENT": "1000",
            }
            servers = [Server(tmp / f"{count}-{n}", env) for n in range(count)]
            try:
                for n, server in enumerate(servers):
                    await server.start(http, "owner" if n == 0 else "standby")
                return await run(servers, seconds=args.seconds, clients=args.clients, http=http)
            finally:
                for server in reversed(servers):
                    await server.stop()
    finally:
        await ami.close()


def show(label: str, r: dict[str, Any]) -> None:
    def pair(v: tuple[float, float] | None) -> str:
        return "-" if v is None else f"{v[0]:.1f} / {v[1]:.1f} ms"

    print(
        f"{label}: {r['rps']:.0f} requests/s, latency median {r['median_ms']:.1f} ms, "
        f"p99 {r['p99_ms']:.1f} ms, {r['errors']} errors; {r['tickets']} tickets; fan-out "
        f"to the same process {pair(r['same_ms'])}, to the others {pair(r['other_ms'])}; "
        f"{r['missing']} events never seen"
    )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=12)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; {args.clients} clients for {args.seconds} s")
    with tempfile.TemporaryDirectory() as folder:
        one = await with_processes(1, args, Path(folder))
        show("1 process  ", one)
        three = await with_processes(3, args, Path(folder))
        show("3 processes", three)
    print(
        f"ratio 3/1: requests/s {three['rps'] / one['rps']:.2f}, "
        f"p99 latency {three['p99_ms'] / one['p99_ms']:.2f}"
    )
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
