"""Log lines that a request cannot forge: one record, one line, whatever it carries.

`SafeFormatter` escapes control characters (a line break above all) in a record's
arguments, the values the code put into its message with `%s`, and in a message that is
not a format string of ours. The message's own text comes from the code and keeps its
layout. Every line of a traceback is indented, so that even an exception's message, which
may quote what a request sent, cannot start a line that reads like a record of its own.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape(text: str) -> str:
    """`text` with every control character as a visible escape: a line break is `\\n`."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def _clean(value: Any) -> Any:
    if value is None or isinstance(value, int | float):
        return value
    return escape(value if isinstance(value, str) else str(value))


class SafeFormatter(logging.Formatter):
    """A formatter whose records are each exactly one line plus indented tracebacks."""

    def format(self, record: logging.LogRecord) -> str:
        """Format a copy of the record with its arguments escaped."""
        safe = copy.copy(record)
        if isinstance(safe.args, dict):
            safe.args = {k: _clean(v) for k, v in safe.args.items()}
        elif safe.args:
            safe.args = tuple(_clean(a) for a in safe.args)
        if not isinstance(safe.msg, str):
            safe.msg = _clean(safe.msg)
        elif not safe.args:
            # no arguments: the message may be a value logged as is
            safe.msg = escape(safe.msg)
        return super().format(safe)

    def formatException(self, ei: Any) -> str:
        """The traceback, every line indented."""
        return _indent(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        """A stack, every line indented."""
        return _indent(super().formatStack(stack_info))


def _indent(text: str) -> str:
    return "\n".join("    | " + line for line in text.splitlines())


#: libraries whose INFO lines are noise or carry personal data, and the level they log at
QUIET_LOGGERS = {
    "alembic": logging.WARNING,
    # each statement with its parameters (names, addresses) at DEBUG
    "aiosqlite": logging.INFO,
    # "Added job", "Running job", "executed successfully" for every timer: a line or
    # three per offer, survey and reconcile, which drowned the call lines on a real PBX
    "apscheduler": logging.WARNING,
}


def configure(level: int = logging.INFO) -> None:
    """Log to stderr through `SafeFormatter` (the `yijing` command's logging)."""
    handler = logging.StreamHandler()
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name, quiet in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(level, quiet))
