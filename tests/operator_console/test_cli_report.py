"""`yijing report --by day`: the figures of each local day of the period as a table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert

from eventlog.clock import LOCAL_TZ
from eventlog.models import Event
from operator_console.cli import main
from tests import history as hist


def test_given_the_history_when_reporting_by_day_then_one_row_per_day_and_the_total(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "yijing.db"
    monkeypatch.setenv("YIJING_DATABASE_URL", f"sqlite+aiosqlite:///{db}")
    monkeypatch.setenv("YIJING_DATA_DIR", str(tmp_path))
    assert main(["db", "upgrade"]) == 0
    now = datetime.now(UTC)
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(insert(Event), hist.history(now).events)
    engine.dispose()
    today = now.astimezone(LOCAL_TZ).date()
    first = (today - timedelta(days=6)).isoformat()
    capsys.readouterr()

    assert main(["report", "--from", first, "--to", today.isoformat(), "--by", "day"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split()[1:3] for line in lines[2:10] if line.strip()}
    days = [(today - timedelta(days=n)).isoformat() for n in range(6, -1, -1)]
    assert list(rows) == [*days, "total"]
    assert [tuple(map(int, rows[d])) for d in days] == hist.WEEK_BY_DAY
    assert rows["total"] == [str(hist.WEEK["received"]), str(hist.WEEK["closed"])]

    assert main(["report", "--from", first, "--to", today.isoformat(), "--by", "day", "--csv"]) == 0
    csv_lines = capsys.readouterr().out.splitlines()
    assert len(csv_lines) == 1 + 7 + 1 and csv_lines[1].startswith(f"{first},")
