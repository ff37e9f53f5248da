"""One record, one line: values with line breaks cannot forge a log record, and no line of
a traceback (whose last line quotes the exception's message) can pass for one."""

from __future__ import annotations

import logging

from operator_console.logsafe import SafeFormatter, escape

FORGED = "CA1\n2026-12-01 10:00:00,000 CRITICAL operator_console.admin_api admin password reset"


def test_given_a_value_with_line_breaks_when_formatted_then_it_stays_on_one_line() -> None:
    formatter = SafeFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "call %s is %s", (FORGED, 3), None)

    line = formatter.format(record)

    assert "\n" not in line and line.startswith("INFO call CA1\\n2026-12-01")
    assert line.endswith(" is 3")


def test_given_a_traceback_whose_message_has_line_breaks_then_no_line_starts_a_record() -> None:
    formatter = SafeFormatter("%(asctime)s %(levelname)s %(message)s")
    try:
        raise ValueError(FORGED)
    except ValueError as exc:
        record = logging.LogRecord(
            "t", logging.ERROR, __file__, 1, "failed", None, (type(exc), exc, exc.__traceback__)
        )

    lines = formatter.format(record).splitlines()

    assert lines[0].endswith("ERROR failed")
    assert all(line.startswith("    | ") for line in lines[1:])


def test_escape_shows_every_control_character() -> None:
    assert escape("a\r\nb\x00c\u2028") == "a\\r\\nb\\x00c\\u2028"
