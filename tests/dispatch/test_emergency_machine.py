"""The emergency escalation machine, pure: every stage, what each event does there, and the
commands it returns (no I/O)."""

from __future__ import annotations

import pytest

from dispatch.machines import IllegalTransition
from dispatch.machines import emergency as em

S = em.Stage


def state(stage: em.Stage, step: int = 0, oncall: int = 2, contacts: int = 2) -> em.Escalation:
    return em.Escalation(stage=stage, step=step, oncall=oncall, contacts=contacts)


def test_given_operators_on_duty_when_started_then_all_ring_and_the_answer_clock_runs() -> None:
    after, commands = em.transition(state(S.OPERATORS), em.Start(on_duty=True))
    assert after.stage == S.OPERATORS
    assert em.RingOperators() in commands and em.StartDeadline(em.ANSWER_S) in commands
    assert em.AlertSupervisor("emergency_call") in commands


def test_given_nobody_on_duty_when_started_then_straight_to_the_first_oncall_phone() -> None:
    after, commands = em.transition(state(S.OPERATORS), em.Start(on_duty=False))
    assert (after.stage, after.step) == (S.ONCALL, 0)
    assert em.CallResponder(S.ONCALL, 0) in commands
    assert em.RingOperators() not in commands
    assert em.AlertSupervisor("after_hours") in commands


def test_given_no_oncall_list_when_the_answer_time_ends_then_contacts_and_the_help_prompt() -> None:
    after, commands = em.transition(state(S.OPERATORS, oncall=0), em.Deadline())
    assert (after.stage, after.step) == (S.CONTACTS, 0)
    assert em.TellCaller(em.HELP_FLOW) in commands and em.CallResponder(S.CONTACTS, 0) in commands


def test_given_oncall_phones_failing_then_each_in_turn_then_the_contacts() -> None:
    s, commands = em.transition(state(S.ONCALL, 0), em.ResponderFailed(S.ONCALL, 0))
    assert (s.stage, s.step, commands) == (S.ONCALL, 1, [em.CallResponder(S.ONCALL, 1)])
    s, commands = em.transition(s, em.ResponderFailed(S.ONCALL, 1))
    assert (s.stage, s.step) == (S.CONTACTS, 0)
    s, commands = em.transition(s, em.ResponderFailed(S.CONTACTS, 0))
    s, commands = em.transition(s, em.ResponderFailed(S.CONTACTS, 1))
    assert s.stage == S.EXHAUSTED and em.AlertSupervisor("nobody_answered") in commands


def test_given_a_late_report_of_an_earlier_step_then_nothing_moves() -> None:
    s = state(S.ONCALL, 1)
    assert em.transition(s, em.ResponderFailed(S.ONCALL, 0)) == (s, [])


def test_given_the_oncall_time_out_then_the_phone_ringing_stops_and_contacts_are_rung() -> None:
    after, commands = em.transition(state(S.ONCALL, 1), em.Deadline())
    assert after.stage == S.CONTACTS
    assert commands[0] == em.HangupResponder(S.ONCALL, 1)
    assert em.StopDeadline() in commands


def test_given_a_contact_takes_it_then_connected_and_the_others_stop() -> None:
    ringing = em.Escalation(S.CONTACTS, 1, 2, 3, dialled_120=True)
    after, commands = em.transition(ringing, em.ResponderTook(S.CONTACTS, 1))
    assert after.stage == S.TAKEN
    assert em.ConnectResponder(S.CONTACTS, 1) in commands
    assert em.HangupResponder(em.EMERGENCY_NUMBER, 0) in commands  # 120 no longer needed
    assert em.HangupResponder(S.CONTACTS, 1) not in commands  # the one who took it stays


def test_given_an_operator_answers_mid_oncall_then_the_oncall_phone_stops() -> None:
    after, commands = em.transition(state(S.ONCALL, 0), em.OperatorAnswered())
    assert after.stage == S.TAKEN
    assert em.HangupResponder(S.ONCALL, 0) in commands and em.StopDeadline() in commands


def test_given_the_caller_asks_for_120_then_it_is_dialled_once() -> None:
    s, commands = em.transition(state(S.CONTACTS), em.CallerAsked120())
    assert s.dialled_120 and em.CallResponder(em.EMERGENCY_NUMBER, 0) in commands
    assert em.transition(s, em.CallerAsked120()) == (s, [])


def test_given_the_caller_hangs_up_then_ended_and_nobody_rung_any_more() -> None:
    after, commands = em.transition(state(S.CONTACTS, 1), em.CallerLeft())
    assert after.stage == S.ENDED
    assert em.HangupResponder(S.CONTACTS, 1) in commands


def test_given_a_taken_escalation_then_late_events_change_nothing_and_start_is_refused() -> None:
    taken = state(S.TAKEN)
    for event in (em.Deadline(), em.CallerLeft(), em.ResponderFailed(S.ONCALL, 0)):
        assert em.transition(taken, event) == (taken, [])
    with pytest.raises(IllegalTransition):
        em.transition(taken, em.Start(on_duty=True))
