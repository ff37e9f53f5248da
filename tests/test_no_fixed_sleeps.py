"""Tests wait on events and conditions, not on the clock: a fixed sleep is either too short
on a loaded machine (a flaky test) or too long everywhere (a slow suite).

This guard reads every Python file under tests/ and fails on `time.sleep(...)` and on
`asyncio.sleep(<number>)` above 0.05 s (a yield to the loop, `asyncio.sleep(0)`, or a
poll interval inside a wait loop is fine), outside the allow-list below, where each entry
says why that sleep is the thing under test or cannot be an event.
"""

from __future__ import annotations

import ast
import warnings
from dataclasses import dataclass
from pathlib import Path

TESTS = Path(__file__).resolve().parent
#: the longest `asyncio.sleep` of a constant that counts as a yield or a poll interval
MAX_ASYNC_SLEEP_S = 0.05

#: (file under tests/, enclosing function) -> why a fixed sleep is right there
ALLOWED: dict[tuple[str, str], str] = {
    ("pbx/harness.py", "Pbx.start"): (
        "polls for Asterisk's control socket to appear while it boots (a wait loop bounded "
        "by 60 s; Asterisk gives no event before the socket exists)"
    ),
    ("e2e/conftest.py", "Server.start"): (
        "a port taken by another process between choosing and binding it: back off before "
        "choosing again (there is no event for another process letting go of a port)"
    ),
    ("e2e/conftest.py", "Server._start"): (
        "polls /healthz of a subprocess every 0.1 s until it answers (a wait loop)"
    ),
    (
        "e2e/test_console.py",
        "test_given_a_resident_named_like_a_script_when_shown_then_it_is_text_and_nothing_runs",
    ): (
        "a negative check: a script that ran would open a dialog some time after rendering; "
        "nothing signals that nothing ran"
    ),
    (
        "operator_console/test_login_throttle.py",
        "test_given_a_flood_from_new_addresses_then_a_known_address_still_logs_in.slow",
    ): (
        "stands in for a slow argon2 hash in the hashing thread (not the loop), so that logins "
        "queue in the lane: the queue's bound is what the test checks"
    ),
    (
        "providers/asterisk/test_ami_adapter.py",
        "test_given_bad_password_then_health_says_authentication_failed_without_hammering",
    ): (
        "counts the login retries within a window of time: a rate, not an event (a tight "
        "loop shows as many retries, a missing retry as too few)"
    ),
    ("dispatch/test_timers.py", "*"): (
        "the real APScheduler job store against real time: a key must fire at its instant, "
        "not early, and a second firing must not follow within the next buckets"
    ),
    (
        "dispatch/test_restart.py",
        "test_given_a_deadline_due_while_down_when_started_then_it_fires_exactly_once",
    ): (
        "the real scheduler between two lives of the app: the deadline must fall due while no "
        "process runs, and a second firing must not follow"
    ),
}


@dataclass(frozen=True)
class Sleep:
    """A fixed sleep found in a test file."""

    path: str
    function: str
    line: int
    code: str


def _is_call_to(node: ast.Call, module: str, name: str, imported: set[str]) -> bool:
    func = node.func
    if isinstance(func, ast.Attribute) and func.attr == name:
        return isinstance(func.value, ast.Name) and func.value.id == module
    return isinstance(func, ast.Name) and func.id in imported


def _imported_names(tree: ast.Module, module: str, name: str) -> set[str]:
    """Local names bound to `module.name` by `from module import name [as x]`."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == module:
            names |= {a.asname or a.name for a in node.names if a.name == name}
    return names


def _too_long(node: ast.Call) -> bool:
    """An `asyncio.sleep` of a constant above the limit (a computed delay is someone's
    deadline, which the reviewer reads)."""
    if not node.args:
        return False
    arg = node.args[0]
    return (
        isinstance(arg, ast.Constant)
        and isinstance(arg.value, int | float)
        and arg.value > MAX_ASYNC_SLEEP_S
    )


def fixed_sleeps(path: Path, root: Path = TESTS) -> list[Sleep]:
    """Every `time.sleep(...)` and long constant `asyncio.sleep(...)` in a file, with the
    dotted name of the function it is in."""
    source = path.read_text(encoding="utf-8")
    with warnings.catch_warnings():
        # parsing allocates enough to run the garbage collector, which may finalise a socket
        # an earlier test in this worker leaked: its ResourceWarning (an error under this
        # suite's filters) would be raised inside the parser (CPython 3.11 then fails with
        # "AST constructor recursion depth mismatch") and blamed on this test
        warnings.simplefilter("ignore", ResourceWarning)
        tree = ast.parse(source, filename=str(path))
    time_sleep = _imported_names(tree, "time", "sleep")
    async_sleep = _imported_names(tree, "asyncio", "sleep")
    found: list[Sleep] = []
    rel = path.relative_to(root).as_posix()

    def visit(node: ast.AST, scope: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            inner = scope
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                inner = [*scope, child.name]
            if isinstance(child, ast.Call) and (
                _is_call_to(child, "time", "sleep", time_sleep)
                or (_is_call_to(child, "asyncio", "sleep", async_sleep) and _too_long(child))
            ):
                found.append(
                    Sleep(
                        rel,
                        ".".join(scope),
                        child.lineno,
                        ast.get_source_segment(source, child) or "",
                    )
                )
            visit(child, inner)

    visit(tree, [])
    return found


def _allowed(sleep: Sleep) -> bool:
    return (sleep.path, sleep.function) in ALLOWED or (sleep.path, "*") in ALLOWED


def test_given_the_test_files_then_no_fixed_sleep_outside_the_allow_list() -> None:
    sleeps = [s for p in sorted(TESTS.rglob("*.py")) for s in fixed_sleeps(p)]
    offending = [s for s in sleeps if not _allowed(s)]

    assert not offending, "fixed sleeps in tests (wait on an event or a condition):\n" + "\n".join(
        f"  {s.path}:{s.line} in {s.function or '<module>'}: {s.code}" for s in offending
    )


def test_given_the_allow_list_then_every_entry_still_names_a_sleep() -> None:
    """An entry whose sleep is gone is removed, so the list stays the list of reasons."""
    sleeps = [s for p in sorted(TESTS.rglob("*.py")) for s in fixed_sleeps(p)]
    used = {(s.path, s.function) for s in sleeps} | {(s.path, "*") for s in sleeps}

    assert set(ALLOWED) <= used, sorted(set(ALLOWED) - used)


def test_given_sleeps_of_each_kind_then_the_guard_finds_them(tmp_path: Path) -> None:
    """The guard itself: what it must catch and what it must let pass."""
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "import asyncio\n"
        "import time\n"
        "from asyncio import sleep as nap\n"
        "from time import sleep\n"
        "async def test_a():\n"
        "    await asyncio.sleep(0.5)\n"
        "    await asyncio.sleep(0)\n"
        "    await asyncio.sleep(0.01)\n"
        "    await nap(2)\n"
        "    time.sleep(0.01)\n"
        "    sleep(1)\n"
        "class Helper:\n"
        "    async def wait(self, delay):\n"
        "        await asyncio.sleep(delay)\n",
        encoding="utf-8",
    )
    found = fixed_sleeps(sample, root=tmp_path)

    assert [(s.function, s.line) for s in found] == [
        ("test_a", 6),
        ("test_a", 9),
        ("test_a", 10),
        ("test_a", 11),
    ]
