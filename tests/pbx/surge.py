"""A surge of inbound calls on the real PBX, and how long each took from the caller's
INVITE (SIPp's message trace) to the console's WebSocket (`call.offered`).

Used by `tests/pbx/test_pbx_surge.py` (the tier prints the figures in its summary) and
by `bench/pbx_surge.py`.
"""

from __future__ import annotations

import asyncio
import re
import socket
import statistics
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tests.pbx.harness import Pbx, Yijing, eventually, free_port, resident_scenario, sipp

_ENTRY = re.compile(
    r"^-{10,} (?P<date>\d{4}-\d\d-\d\d)[ \t](?P<time>[\d:.]+)(?:[ \t](?P<epoch>[\d.]+))?\n"
    r"UDP message sent.*?\n\nINVITE .*?^From: <sip:(?P<caller>[+\d]+)@",
    re.M | re.S,
)


@dataclass(frozen=True)
class SurgeFigures:
    """What one surge showed."""

    calls: int
    offered: int
    median_s: float
    p99_s: float
    max_s: float

    def line(self) -> str:
        """The figures as one line."""
        return (
            f"surge of {self.calls} calls: {self.offered} reached the console; INVITE to "
            f"WebSocket median {self.median_s:.2f} s, p99 {self.p99_s:.2f} s, "
            f"max {self.max_s:.2f} s"
        )


def invites(trace: Path) -> dict[str, float]:
    """Caller number -> when SIPp sent its first INVITE (epoch seconds)."""
    sent: dict[str, float] = {}
    for m in _ENTRY.finditer(trace.read_text(errors="replace")):
        if m["epoch"]:
            at = float(m["epoch"])
        else:
            at = datetime.fromisoformat(f"{m['date']}T{m['time']}").astimezone().timestamp()
        sent.setdefault(m["caller"], at)
    return sent


async def surge(
    pbx: Pbx, app: Yijing, folder: Path, *, calls: int = 100, rate: float = 10.0
) -> SurgeFigures:
    """`calls` new callers at `rate` a second; each hangs up after 20 s in the menu."""
    callers = [f"+8615000{n:06d}" for n in range(1, calls + 1)]
    scenario = resident_scenario(folder, [], hang_up_after_ms=20_000)
    async with app.stream(as_user="supervisor") as feed:
        port = free_port(socket.SOCK_DGRAM)
        run = await sipp(
            scenario,
            port=port,
            target=f"127.0.0.1:{pbx.sip_port}",
            callers=callers,
            calls=calls,
            rate=rate,
            limit=calls,
            trace=True,
        )

        def offered() -> dict[str, float]:
            seen: dict[str, float] = {}
            for at, event in feed:
                if event.get("name") == "call.offered":
                    seen.setdefault(str(event["data"].get("number", ""))[-4:], at)
            return seen

        async def all_offered() -> bool:
            return len(offered()) >= calls or run.process.returncode is not None

        await eventually(all_offered, within=calls / rate + 120, what="every call offered")
        rc = await run.wait(120)
        arrived = offered()
    sent = invites(run.trace)
    delays = sorted(
        arrived[number[-4:]] - at for number, at in sent.items() if number[-4:] in arrived
    )
    if not delays:
        raise AssertionError(f"no call reached the console (SIPp exit {rc}): {run.stats()}")
    p99 = delays[min(len(delays) - 1, round(0.99 * (len(delays) - 1)))]
    await asyncio.sleep(0)
    return SurgeFigures(
        calls=calls,
        offered=len(delays),
        median_s=statistics.median(delays),
        p99_s=p99,
        max_s=delays[-1],
    )
