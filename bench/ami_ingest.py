"""AMI ingest: our parse + correlate + SQLite persistence vs bare panoramisk parsing.

Input: the real 320-call surge capture, replayed COPIES times with rewritten uniqueids
(1,280 calls, ~114k AMI messages), fed in 4 KiB reads as a socket would deliver them.
Prints medians of ROUNDS rounds and the ratio; exits non-zero if any event is lost.
"""

from __future__ import annotations

import gzip
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from panoramisk.ami_protocol import AMIProtocol

from providers.asterisk.correlate import Correlator
from providers.asterisk.decode import event_dict
from providers.asterisk.wire import FrameParser

ROOT = Path(__file__).resolve().parents[1]
CAPTURE = ROOT / "tests" / "fixtures" / "asterisk" / "surge_hotline.raw.gz"
COPIES = 4
ROUNDS = 5
READ = 4096
BATCH = 500
CALLS_PER_COPY = 320
MESSAGES_PER_COPY = 28_433  # 28,431 events + Login and Logoff responses (see notes)
_UID = re.compile(rb"\b(1795\d{6})\.(\d+)\b")


def scaled_stream(raw: bytes, copies: int) -> bytes:
    """The capture `copies` times; each copy's uniqueids are shifted so calls stay distinct."""
    parts = []
    for k in range(copies):
        offset = k * 1_000_000
        parts.append(_UID.sub(lambda m, o=offset: b"%s.%d" % (m[1], int(m[2]) + o), raw))
    return b"".join(parts)


def chunks(data: bytes) -> list[bytes]:
    """The stream cut into socket-sized reads."""
    return [data[i : i + READ] for i in range(0, len(data), READ)]


def run_ours(reads: list[bytes], db_path: str) -> tuple[float, int, Counter[str]]:
    """Parse, correlate and persist the derived call events; returns (seconds, messages, events)."""
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("DROP TABLE IF EXISTS call_event")
    conn.execute(
        "CREATE TABLE call_event (seq INTEGER PRIMARY KEY, name TEXT, ref TEXT, data TEXT)"
    )
    parser, correlator = FrameParser(), Correlator(inbound_contexts=("hotline-in",))
    messages, counts, batch = 0, Counter[str](), []
    start = time.perf_counter()
    for read in reads:
        for msg in parser.feed(read):
            messages += 1
            for event in correlator.feed(msg):
                item = event_dict(event)
                counts[item["event"]] += 1
                batch.append((item["event"], item["ref"], repr(item)))
        if len(batch) >= BATCH:
            with conn:
                conn.executemany("INSERT INTO call_event (name, ref, data) VALUES (?, ?, ?)", batch)
            batch.clear()
    if batch:
        with conn:
            conn.executemany("INSERT INTO call_event (name, ref, data) VALUES (?, ?, ?)", batch)
    elapsed = time.perf_counter() - start
    stored = conn.execute("SELECT count(*) FROM call_event").fetchone()[0]
    conn.close()
    assert stored == sum(counts.values()), (stored, counts)
    return elapsed, messages, counts


class _CountingFactory:
    save_stream = None

    def __init__(self) -> None:
        self.events = 0

    def dispatch(self, message: object) -> None:
        self.events += 1


def run_panoramisk(reads: list[bytes]) -> tuple[float, int]:
    """Bare panoramisk 1.4 protocol parsing the same reads; returns (seconds, events)."""
    proto = AMIProtocol()
    proto.connection_made(transport=None)
    factory = _CountingFactory()
    proto.factory, proto.encoding, proto.responses = factory, "utf8", {}
    start = time.perf_counter()
    for read in reads:
        proto.data_received(read)
    return time.perf_counter() - start, factory.events


def main() -> int:
    """Run the rounds and print the figures."""
    data = scaled_stream(gzip.decompress(CAPTURE.read_bytes()), COPIES)
    reads = chunks(data)
    calls = CALLS_PER_COPY * COPIES
    expected_msgs = MESSAGES_PER_COPY * COPIES
    ours, bare = [], []
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "ingest.sqlite")
        for _ in range(ROUNDS):
            seconds, messages, counts = run_ours(reads, db)
            assert messages == expected_msgs, (messages, expected_msgs)
            for name in ("CallOffered", "CallAnswered", "DigitPressed", "CallEnded"):
                assert counts[name] == calls, (name, counts)
            ours.append(messages / seconds)
            seconds, events = run_panoramisk(reads)
            assert events == expected_msgs - 2 * COPIES, (events, expected_msgs)
            bare.append(events / seconds)
    mo, mb = statistics.median(ours), statistics.median(bare)
    print(f"input: {len(data) / 1e6:.1f} MB, {calls} calls, {expected_msgs} AMI messages, "
          f"{len(reads)} reads of {READ} B, {ROUNDS} rounds")  # fmt: skip
    print(f"ours (parse + correlate + SQLite, batches of {BATCH}): {mo:,.0f} messages/s (median)")
    print(f"bare panoramisk 1.4 parse only:                 {mb:,.0f} messages/s (median)")
    print(f"ratio ours / bare: {mo / mb:.2f}")
    print(f"derived call events (all copies): {dict(counts)}; none lost")
    return 0


if __name__ == "__main__":
    sys.exit(main())
