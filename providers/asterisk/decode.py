"""Decode a raw AMI capture into the call events the adapter would have emitted.

``yijing ami-decode FILE`` prints one JSON object per line, e.g.
``{"event": "CallOffered", "ref": "ast-1795290863.0", "caller": "13800000001", ...}``.
It runs the very parser (`wire.FrameParser`) and correlator (`correlate.Correlator`) the
live adapter runs; nothing here talks to a network. ``.gz`` files are read transparently.
"""

from __future__ import annotations

import argparse
import enum
import gzip
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from providers.asterisk.correlate import Correlator
from providers.asterisk.wire import FrameParser
from providers.base import TelephonyEvent

#: The shipped dialplan's hotline context and the one of the capture PBX in ../shared.
DEFAULT_INBOUND_CONTEXTS = ("yijing-hotline", "hotline-in")
DEFAULT_REF_VARS = ("YIJING_REF",)
_CHUNK = 64 * 1024


def event_dict(event: TelephonyEvent) -> dict[str, Any]:
    """A JSON-ready dict for one port event: its class name under "event", then its fields."""
    out: dict[str, Any] = {"event": type(event).__name__}
    for f in fields(event):
        value = getattr(event, f.name)
        if isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, dict) or hasattr(value, "items"):
            value = dict(value)
        out[f.name] = value
    return out


def decode_chunks(
    chunks: Iterable[bytes],
    *,
    inbound_contexts: Iterable[str] = DEFAULT_INBOUND_CONTEXTS,
    ref_vars: Iterable[str] = DEFAULT_REF_VARS,
) -> Iterator[dict[str, Any]]:
    """Decode a capture delivered in arbitrary chunks (as TCP reads would deliver it)."""
    parser = FrameParser()
    correlator = Correlator(inbound_contexts=inbound_contexts, ref_vars=ref_vars)
    for chunk in chunks:
        for msg in parser.feed(chunk):
            for event in correlator.feed(msg):
                yield event_dict(event)


def decode_bytes(
    data: bytes,
    *,
    inbound_contexts: Iterable[str] = DEFAULT_INBOUND_CONTEXTS,
    ref_vars: Iterable[str] = DEFAULT_REF_VARS,
) -> Iterator[dict[str, Any]]:
    """Decode a whole raw capture held in memory."""
    chunks = (data[i : i + _CHUNK] for i in range(0, len(data), _CHUNK))
    return decode_chunks(chunks, inbound_contexts=inbound_contexts, ref_vars=ref_vars)


def _read_chunks(path: Path) -> Iterator[bytes]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            yield chunk


def decode_file(
    path: str | Path,
    *,
    inbound_contexts: Iterable[str] = DEFAULT_INBOUND_CONTEXTS,
    ref_vars: Iterable[str] = DEFAULT_REF_VARS,
) -> Iterator[dict[str, Any]]:
    """Decode a raw capture file (``.raw`` or ``.raw.gz``)."""
    return decode_chunks(
        _read_chunks(Path(path)), inbound_contexts=inbound_contexts, ref_vars=ref_vars
    )


def main(argv: list[str] | None = None) -> int:
    """CLI: print the decoded events of a capture, one JSON object per line."""
    parser = argparse.ArgumentParser(
        prog="yijing ami-decode", description="Decode a raw AMI capture into call events."
    )
    parser.add_argument("file", help="raw AMI capture (bytes as received), .gz accepted")
    parser.add_argument(
        "--inbound-context",
        action="append",
        help="hotline dialplan context (repeatable; default: "
        + ", ".join(DEFAULT_INBOUND_CONTEXTS)
        + ")",
    )
    parser.add_argument(
        "--ref-var",
        action="append",
        help="channel variable naming outbound calls (repeatable; default YIJING_REF)",
    )
    args = parser.parse_args(argv)
    try:
        events = decode_file(
            args.file,
            inbound_contexts=args.inbound_context or DEFAULT_INBOUND_CONTEXTS,
            ref_vars=args.ref_var or DEFAULT_REF_VARS,
        )
        for item in events:
            sys.stdout.write(json.dumps(item, ensure_ascii=False) + "\n")
    except OSError as exc:
        sys.stderr.write(f"ami-decode: {exc}\n")
        return 1
    return 0
