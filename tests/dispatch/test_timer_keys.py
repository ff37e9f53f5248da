"""Typed timer keys: the stored strings keep their format (databases from before keep
working), unknown ones are refused, and the router has a handler for every kind."""

from __future__ import annotations

import pytest

from dispatch.timer_keys import RECONCILE_PERIODIC, Kind, TimerKey
from tests.conftest import Harness


@pytest.mark.parametrize(
    ("stored", "key"),
    [
        ("offer:12", TimerKey.offer(12)),
        ("redial:3", TimerKey.redial(3)),
        ("deadline:7", TimerKey.deadline(7)),
        ("escalate:7", TimerKey.escalate(7)),
        ("survey:7", TimerKey.survey(7)),
        ("close:7", TimerKey.close(7)),
        ("queue:44", TimerKey.queue(44)),
        ("wrapup:2", TimerKey.wrapup(2)),
        ("ring:2", TimerKey.ring(2)),
        ("wellbeing:5", TimerKey.wellbeing(5)),
        ("reconcile:periodic", RECONCILE_PERIODIC),
    ],
)
def test_given_a_stored_key_then_it_parses_to_its_kind_and_prints_back(
    stored: str, key: TimerKey
) -> None:
    assert TimerKey.parse(stored) == key
    assert str(key) == stored


@pytest.mark.parametrize("stored", ["", "offer", "offer:", "offer:abc", "bucket:12", "x:1"])
def test_given_a_key_this_version_does_not_know_then_none(stored: str) -> None:
    assert TimerKey.parse(stored) is None


def test_given_a_key_about_an_unsaved_row_then_refused() -> None:
    with pytest.raises(AssertionError):
        TimerKey.offer(None)


async def test_given_the_router_then_every_kind_has_a_handler(harness: Harness) -> None:
    assert set(harness.services.dispatch.router.timers) == set(Kind)


async def test_given_an_unknown_key_fires_then_it_is_ignored(harness: Harness) -> None:
    await harness.services.dispatch.router.on_timer("bucket:99")  # logged, nothing raised
