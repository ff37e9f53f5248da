"""The tier's lines in the test summary: why it was skipped, and what it measured.

Called from `tests/conftest.py` (the one conftest the xdist controller loads): skip
reasons and figures come back from the workers in the test reports.
"""

from __future__ import annotations

from typing import Any

#: the `record_property` name the tier's figures go under
FIGURES = "asterisk_figures"


def summarize(terminalreporter: Any) -> None:
    """Write the tier's skip reason (never skipped silently) and its figures."""
    reasons: list[str] = []
    for report in terminalreporter.stats.get("skipped", []):
        if not str(getattr(report, "nodeid", "")).startswith("tests/pbx/"):
            continue
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ").removeprefix("asterisk tier: ")
        if reason not in reasons:
            reasons.append(reason)
    for reason in reasons:
        terminalreporter.write_line(f"asterisk tier SKIPPED: {reason}", yellow=True)
    for key in ("passed", "failed"):
        for report in terminalreporter.stats.get(key, []):
            for name, value in getattr(report, "user_properties", []):
                if name == FIGURES and getattr(report, "when", "") == "call":
                    terminalreporter.write_line(f"asterisk tier: {value}")
