"""A resident's wellbeing call settings on the API: operators and supervisors set them,
merchants may not, bad input is a 422 naming what is wrong."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Harness

PLAN: dict[str, Any] = {
    "enabled": True,
    "days": [1, 3, 5],
    "window_start": "09:00",
    "window_end": "09:30",
    "language": "zh-CN",
    "away": [{"from": "2026-12-01", "until": "2026-12-05", "reason": "住院"}],
}


async def test_given_nothing_set_when_read_then_off_with_no_rounds(harness: Harness) -> None:
    body = await harness.call("GET", "/residents/2/wellbeing")
    assert (body["enabled"], body["days"], body["rounds"]) == (False, [], [])


async def test_given_an_operator_and_a_supervisor_when_setting_then_it_is_kept(
    harness: Harness,
) -> None:
    h = harness
    body = await h.call("PUT", "/residents/2/wellbeing", json=PLAN)
    assert (body["days"], body["window_start"], body["window_end"]) == ([1, 3, 5], "09:00", "09:30")
    assert body["away"] == PLAN["away"] and body["updated_by"] == "operator"
    assert "wellbeing:2" in h.timers.pending
    off = {**PLAN, "enabled": False}
    body = await h.call("PUT", "/residents/2/wellbeing", json=off, as_user="supervisor")
    assert body["enabled"] is False and body["updated_by"] == "supervisor"
    assert "wellbeing:2" not in h.timers.pending
    assert (await h.call("GET", "/residents/2/wellbeing"))["enabled"] is False


async def test_given_a_merchant_then_refused(harness: Harness) -> None:
    await harness.call("GET", "/residents/2/wellbeing", as_user="merchant1", expect=403)
    await harness.call("PUT", "/residents/2/wellbeing", as_user="merchant1", json=PLAN, expect=403)


async def test_given_no_such_resident_then_404(harness: Harness) -> None:
    await harness.call("GET", "/residents/99999/wellbeing", expect=404)
    await harness.call("PUT", "/residents/99999/wellbeing", json=PLAN, expect=404)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"window_end": "08:00"}, "window_end must be after window_start"),
        ({"days": [0, 8]}, "ISO weekdays"),
        ({"days": []}, "ISO weekdays"),
        ({"days": [1, 1]}, "repeat"),
        ({"window_start": "25:00"}, "window_start"),
        ({"language": "fr"}, "language"),
        ({"away": [{"from": "2026-12-05", "until": "2026-12-01"}]}, "until must not be before"),
        ({"bogus": 1}, "bogus"),
        ({"window_start": "20:30", "window_end": "21:30"}, "quiet hours (21:00-08:30)"),
    ],
)
async def test_given_bad_settings_then_422_with_a_clear_error(
    harness: Harness, change: dict[str, Any], words: str
) -> None:
    body = await harness.call("PUT", "/residents/2/wellbeing", json={**PLAN, **change}, expect=422)
    assert body["error_id"] == "invalid_input"
    assert words in str(body), body
