"""The shape of `operator_console/`: one module per resource stays small, and the routes'
roles are declared in the route table only (the auth middleware enforces them)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = ROOT / "operator_console"
#: a module past this is more than one idea (issue 12)
MAX_LINES = 600
#: data, not code: the console's words in two languages, one entry a line
CATALOGS = {"operator_console/i18n.py"}


def modules() -> list[Path]:
    return sorted(p for p in CONSOLE.rglob("*.py") if "migrations" not in p.parts)


def test_given_the_console_then_no_module_passes_600_lines() -> None:
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines()) for p in modules()}
    assert "operator_console/api.py" in sizes
    too_long = {n: size for n, size in sizes.items() if size > MAX_LINES and n not in CATALOGS}
    assert too_long == {}


def test_given_a_route_module_then_no_handler_checks_roles_itself() -> None:
    # `openapi.py` is the table itself: `Access.check` is what the middleware runs
    route_modules = [
        p for p in modules() if "@API.route(" in p.read_text() and p.name != "openapi.py"
    ]
    assert len(route_modules) >= 10
    checks = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in route_modules
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if "need(request" in line or "auth.require(" in line
    ]
    assert checks == []
