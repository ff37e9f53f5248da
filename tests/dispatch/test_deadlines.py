"""The late-ticket decisions: no-show at the deadline, operator first, supervisor later."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dispatch import deadlines as dl
from dispatch.machines.ticket import TicketState as T


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (T.NEW, [dl.Escalate, dl.ScheduleSupervisor]),
        (T.OFFERING, [dl.Escalate, dl.ScheduleSupervisor]),
        (T.UNASSIGNED, [dl.Escalate, dl.ScheduleSupervisor]),
        (T.ACCEPTED, [dl.DeclareNoShow, dl.Escalate, dl.ScheduleSupervisor]),
        (T.IN_SERVICE, [dl.Escalate, dl.ScheduleSupervisor]),
        (T.COMPLETED, []),
        (T.RATED, []),
        (T.CLOSED, []),
        (T.CANCELLED, []),
    ],
)
def test_given_a_state_when_the_deadline_passes_then_the_decisions_follow(
    state: T, expected: list[type]
) -> None:
    decisions = dl.on_deadline(state, 0)
    assert [type(d) for d in decisions] == expected
    escalations = [d for d in decisions if isinstance(d, dl.Escalate)]
    assert all(d.level == dl.Level.OPERATOR and d.reason for d in escalations)


def test_given_an_escalated_ticket_when_the_deadline_fires_again_then_nothing_happens() -> None:
    assert dl.on_deadline(T.ACCEPTED, 1) == []
    assert dl.on_deadline(T.OFFERING, 2) == []


def test_given_a_late_ticket_when_the_supervisor_timer_fires_then_it_goes_up_once() -> None:
    [decision] = dl.on_supervisor_timer(T.OFFERING, 1)
    assert isinstance(decision, dl.Escalate) and decision.level == dl.Level.SUPERVISOR
    assert dl.on_supervisor_timer(T.OFFERING, 2) == []
    assert dl.on_supervisor_timer(T.COMPLETED, 1) == []


def test_the_supervisor_hears_half_a_window_after_the_deadline() -> None:
    created = datetime(2026, 1, 1, 8, tzinfo=UTC)
    assert dl.supervisor_at(created, created + timedelta(minutes=60)) == created + timedelta(
        minutes=90
    )
