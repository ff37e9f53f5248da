"""The AMI wire format: bytes from the socket -> one dict per message.

One parser serves the live adapter (inside the panoramisk protocol) and the offline
decoder, so what the tests replay is what production parses.

It covers what panoramisk 1.4's own parser gets wrong: bytes are decoded with an
incremental UTF-8 decoder, so a Chinese caller name split across two TCP reads
arrives whole; garbage lines, a frame missing its blank line and over-long junk are
skipped with a log line instead of poisoning the stream or the connection.

Messages are plain ``dict[str, str]``: the first value of a repeated key wins (Asterisk
repeats ``CallerIDNum`` inside ``UserEvent``); ``ChanVariable: NAME=value`` lines (from
``channelvars`` in manager.conf, either the Asterisk 12+ or the older
``ChanVariable(chan):`` spelling) become keys ``ChanVariable(NAME)``.
"""

from __future__ import annotations

import codecs
import logging

log = logging.getLogger(__name__)

Message = dict[str, str]

#: A line longer than this is junk, not AMI (Asterisk's own lines stay far below).
MAX_LINE = 64 * 1024
#: A frame with more headers than this is junk.
MAX_HEADERS = 1024
_MAX_KEY = 80
_FRAME_STARTS = ("Event", "Response")


class FrameParser:
    """Incremental AMI parser: `feed` bytes as they arrive, get complete messages back."""

    __slots__ = (
        "_decoder",
        "_discarding",
        "_headers",
        "_tail",
        "bad_frames",
        "max_headers",
        "max_line",
        "skipped_bytes",
        "skipped_lines",
        "version",
    )

    def __init__(self, *, max_line: int = MAX_LINE, max_headers: int = MAX_HEADERS) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._tail = ""
        self._headers: Message = {}
        self._discarding = False
        self.max_line = max_line
        self.max_headers = max_headers
        self.version: str | None = None
        self.skipped_lines = 0
        self.skipped_bytes = 0
        self.bad_frames = 0

    def feed(self, data: bytes) -> list[Message]:
        """Parse another chunk of bytes; returns the messages it completed."""
        text = self._decoder.decode(data)
        if self._tail:
            text = self._tail + text
        lines = text.split("\n")
        tail = lines.pop()
        out: list[Message] = []
        skipped = 0
        headers = self._headers
        for line in lines:
            if self._discarding:
                # the end of an over-long line whose start was already thrown away
                self._discarding = False
                continue
            if line and line[-1] == "\r":
                line = line[:-1]
            if not line:
                if headers:
                    self._finish(headers, out)
                    headers = self._headers = {}
                continue
            key, sep, value = line.partition(": ")
            if not sep:
                if line[-1] == ":" and " " not in line:
                    key, value = line[:-1], ""  # "Key:" with the space trimmed somewhere
                elif line.startswith("Asterisk Call Manager/"):
                    self.version = line.partition("/")[2].strip()
                    continue
                else:
                    skipped += 1
                    continue
            if len(key) > _MAX_KEY or " " in key or not key:
                skipped += 1
                continue
            if key in _FRAME_STARTS and key in headers:
                # a frame that lost its blank line: close it and start the next one
                # (OriginateResponse legitimately carries both Event and Response)
                log.warning("AMI frame without blank line before %s: %s", key, value[:40])
                self._finish(headers, out)
                headers = self._headers = {}
            if "ChanVariable" in key:
                name, _, var = value.partition("=")
                key = key.partition("(")[0] + "(" + name + ")"
                value = var
            if key not in headers:
                if len(headers) >= self.max_headers:
                    self.bad_frames += 1
                    log.warning("AMI frame over %d headers dropped", self.max_headers)
                    headers = self._headers = {}
                    continue
                headers[key] = value
        if len(tail) > self.max_line:
            self.skipped_bytes += len(tail.encode("utf-8", "replace"))
            log.warning("AMI over-long line (%d chars) skipped", len(tail))
            tail = ""
            self._discarding = True
        self._tail = tail
        if skipped:
            self.skipped_lines += skipped
            log.warning("AMI: skipped %d malformed line(s)", skipped)
        return out

    def _finish(self, headers: Message, out: list[Message]) -> None:
        if "Event" in headers or "Response" in headers:
            out.append(headers)
        else:
            self.bad_frames += 1
            log.warning("AMI frame without Event or Response dropped (%d headers)", len(headers))


def parse_bytes(data: bytes) -> list[Message]:
    """Every complete message in a byte string."""
    return FrameParser().feed(data)
