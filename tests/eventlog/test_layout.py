"""The event log is the bottom: `eventlog` imports no other package of the project,
`registry` imports nothing above it, and registry writes are the registry's use cases'
(no console handler emits a registry event or tells matching to forget its merchants)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("eventlog", "registry", "dispatch", "ivr", "providers", "operator_console")


def imported(folder: str) -> dict[str, set[str]]:
    """Project packages each module of `folder` imports."""
    out: dict[str, set[str]] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        out[path.relative_to(ROOT).as_posix()] = names & set(PROJECT)
    assert out, f"no modules in {folder}"
    return out


def test_given_eventlog_then_it_imports_no_other_package_of_the_project() -> None:
    found = {m: names - {"eventlog"} for m, names in imported("eventlog").items()}
    assert {m: n for m, n in found.items() if n} == {}


def test_given_registry_then_it_imports_only_itself_and_the_event_log() -> None:
    found = {m: names - {"eventlog", "registry"} for m, names in imported("registry").items()}
    assert {m: n for m, n in found.items() if n} == {}


def test_given_the_console_then_no_handler_writes_registry_events_or_invalidates_matching() -> None:
    registry_events = (
        "resident.",
        "merchant.created",
        "merchant.updated",
        "merchant.contract",
        "category.",
        "grid.",
        "user.",
        "registry.imported",
    )
    found = []
    for path in sorted((ROOT / "operator_console").rglob("*.py")):
        text = path.read_text()
        for n, line in enumerate(text.splitlines(), 1):
            if "invalidate_merchants(" in line:
                found.append(f"{path.name}:{n}: {line.strip()}")
            if "emit(" in line:
                window = "\n".join(text.splitlines()[n - 1 : n + 2])
                if any(f'"{name}' in window for name in registry_events):
                    found.append(f"{path.name}:{n}: {line.strip()}")
    assert found == []
