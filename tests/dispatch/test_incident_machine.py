"""The incident machine: open -> dispatched -> fixed -> callbacks_done, nothing else."""

from __future__ import annotations

import pytest

from dispatch.machines import IllegalTransition
from dispatch.machines import incident as im

S = im.IncidentState


def test_given_an_open_incident_when_dispatched_then_fixed_then_callbacks_start_once() -> None:
    state, commands = im.transition(S.OPEN, im.Dispatch(7))
    assert (state, commands) == (S.DISPATCHED, [])
    state, commands = im.transition(state, im.Fixed())
    assert (state, commands) == (S.FIXED, [im.StartCallbacks()])
    state, commands = im.transition(state, im.CallbacksFinished())
    assert (state, commands) == (S.CALLBACKS_DONE, [])


def test_given_an_open_incident_when_fixed_without_a_ticket_then_callbacks_start() -> None:
    assert im.transition(S.OPEN, im.Fixed()) == (S.FIXED, [im.StartCallbacks()])


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (S.DISPATCHED, im.Dispatch(8)),  # one ticket per incident
        (S.FIXED, im.Dispatch(8)),
        (S.FIXED, im.Fixed()),  # fixed twice would call everyone twice
        (S.CALLBACKS_DONE, im.Fixed()),
        (S.OPEN, im.CallbacksFinished()),
        (S.DISPATCHED, im.CallbacksFinished()),
        (S.CALLBACKS_DONE, im.CallbacksFinished()),
        (S.CALLBACKS_DONE, im.Dispatch(8)),
    ],
)
def test_given_any_other_pair_when_transitioning_then_refused(
    state: im.IncidentState, event: im.IncidentEvent
) -> None:
    with pytest.raises(IllegalTransition):
        im.transition(state, event)


def test_given_each_state_then_calls_link_only_while_the_fault_lasts() -> None:
    assert {s for s in S if im.can_link(s)} == {S.OPEN, S.DISPATCHED}
