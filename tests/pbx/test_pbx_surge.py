"""A surge of 100 calls at 10 a second: every one reaches the console's live feed; the
INVITE-to-WebSocket figures stand in the tier's summary (measured, not asserted)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.pbx.harness import Pbx, Yijing
from tests.pbx.summary import FIGURES
from tests.pbx.surge import surge


async def test_given_100_calls_at_10_a_second_when_they_ring_then_every_one_is_offered(
    pbx: Pbx, yijing: Yijing, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    figures = await surge(pbx, yijing, tmp_path / "surge", calls=100, rate=10.0)
    record_property(FIGURES, figures.line())
    assert figures.offered == figures.calls, figures.line()
