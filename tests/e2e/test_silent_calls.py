"""The simulator's 🗣 说话 in a real browser: a high-risk resident rings and, instead of
pressing a key, speaks; the phone's transcript shows it, the call's timeline has the
speech, and when the menu runs out the caller waits for an operator as a routine call,
not as a silent emergency."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Pages, shot
from tests.e2e.test_console import sim_call, simulator, staff_api

pytestmark = pytest.mark.e2e

HIGH_RISK_PHONE = "+862354000005"  # demo resident 5 (孤寡)


def test_given_a_high_risk_caller_who_speaks_in_the_simulator_then_a_routine_call(
    pages: Pages,
) -> None:
    sim = simulator(pages)
    sim.fill("#dial-number", HIGH_RISK_PHONE)
    sim.click("#dial")
    card = sim_call(sim, number=HIGH_RISK_PHONE, direction="in")
    speak = card.locator(".speak")
    expect(speak).to_have_text("🗣 说话")
    speak.click()
    expect(
        sim.locator(f"#sim-calls li[data-number='{HIGH_RISK_PHONE}'] .transcript")
    ).to_contain_text("[🗣]")
    shot(sim, "silent-calls-spoke")

    def the_call() -> Any:
        calls = staff_api(sim, "GET", "/calls")["body"]
        return next(c for c in calls if c["resident_id"] == 5)

    # the menu runs out (three asks, ten seconds each): an operator, routine
    sim.wait_for_function(
        """async () => {
            const res = await fetch('/api/v1/calls');
            const calls = await res.json();
            return calls.some((c) => c.resident_id === 5 && c.state === 'queued');
        }""",
        timeout=90_000,
        polling=500,
    )
    call = the_call()
    assert (call["emergency"], call["emergency_reason"]) == (False, None)
    timeline = staff_api(sim, "GET", f"/calls/{call['id']}")["body"]["timeline"]
    assert [e["name"] for e in timeline].count("call.speech") == 1
    assert pages.errors == []
