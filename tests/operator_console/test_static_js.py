"""Every script the console serves parses as the ES module the pages load it as.

A syntax error in one shared module (a merge that closed a table twice) stops every page
that imports it, and only the browser tests noticed, each by timing out at the login. This
check names the file and the line in a second. Node.js is on this project's machines (the
browser tests' kind); without it the check fails and says so, it is never skipped."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "operator_console" / "static"
SCRIPTS = sorted(STATIC.glob("*.js"))


def test_there_are_scripts_to_check() -> None:
    assert len(SCRIPTS) >= 5


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_each_console_script_parses_as_a_module(script: Path, tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node, "Node.js (node) is needed to check the console's scripts: apt-get install nodejs"
    module = tmp_path / (script.stem + ".mjs")  # checked as what the page loads: a module
    module.write_bytes(script.read_bytes())
    result = subprocess.run(
        [node, "--check", str(module)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr.replace(str(module), script.name)
