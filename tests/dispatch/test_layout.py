"""The shape of `dispatch/`, checked: one room per idea stays small, every transition's
commands reach the interpreter, only the interpreter talks to the adapters, and nothing
outside the composition root asks for a backend class."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DISPATCH = ROOT / "dispatch"
#: a module past this is more than one idea (issue 12)
MAX_LINES = 600


def modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if ".venv" not in p.parts)


def test_given_dispatch_then_no_module_passes_600_lines() -> None:
    sizes = {
        p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines()) for p in modules(DISPATCH)
    }
    assert sizes, "no dispatch modules found"
    too_long = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert too_long == {}


def test_given_dispatch_then_no_transition_result_is_thrown_away() -> None:
    thrown = re.compile(r",\s*_\s*\)?\s*=\s*[\w.]*transition\(")
    found = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in modules(DISPATCH)
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if thrown.search(line)
    ]
    assert found == []


def _transition_results(
    tree: ast.AST,
) -> list[tuple[ast.FunctionDef | ast.AsyncFunctionDef, str, int]]:
    """(function, name of the commands variable, line) of every `a, b = x.transition(...)`."""
    out = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            if not isinstance(node, ast.Assign) or not isinstance(node.value, ast.Call):
                continue
            func = node.value.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name != "transition":
                continue
            (target,) = node.targets
            assert isinstance(target, ast.Tuple), f"line {node.lineno}: unpack the result"
            commands = target.elts[1]
            assert isinstance(commands, ast.Name), f"line {node.lineno}: name the commands"
            out.append((fn, commands.id, node.lineno))
    return out


def test_given_dispatch_then_every_transitions_commands_are_used() -> None:
    unused = []
    calls = 0
    for path in modules(DISPATCH):
        if "machines" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        for fn, name, line in _transition_results(tree):
            calls += 1
            loads = [
                n
                for n in ast.walk(fn)
                if isinstance(n, ast.Name)
                and n.id == name
                and isinstance(n.ctx, ast.Load)
                and n.lineno > line
            ]
            if name == "_" or not loads:
                unused.append(f"{path.relative_to(ROOT)}:{line}")
    assert calls >= 30  # the check sees the service's transitions
    assert unused == []


#: command methods of the adapters; only the interpreter calls them
ADAPTER_COMMANDS = re.compile(
    r"\b(?:telephony|timers)\.(?:originate|run_flow|bridge|hold|unhold|transfer|hangup|"
    r"schedule|schedule_many|cancel)\("
)


def test_given_dispatch_then_only_the_interpreter_calls_adapters_for_commands() -> None:
    found = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for p in modules(DISPATCH)
        if p.name not in ("effects.py", "timers.py")
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if ADAPTER_COMMANDS.search(line)
    ]
    assert found == []


def test_given_the_packages_then_no_backend_class_is_asked_for_outside_the_root() -> None:
    backend = re.compile(
        r"isinstance\([^)]*\b(?:MemoryPBX|AsteriskTelephony|TwilioTelephony)\b"
        r"|from providers\.(?:memory|asterisk|twilio)\b"
    )
    root = ROOT / "operator_console" / "app.py"
    found = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for folder in ("dispatch", "operator_console", "registry", "ivr")
        for p in modules(ROOT / folder)
        if p != root
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if backend.search(line)
    ]
    # the CLI runs the offline AMI capture decoder (a tool, not the running service)
    assert [f for f in found if not f.startswith("operator_console/cli.py")] == []
