"""Every ticket and offer transition, table-driven: the legal ones and their commands, and
every other (state, event) pair refused."""

from __future__ import annotations

import itertools

import pytest

from dispatch.machines import IllegalTransition
from dispatch.machines import offer as om
from dispatch.machines import ticket as tm

T = tm.TicketState
O = om.OfferState  # noqa: E741

TICKET_EVENTS: list[tm.TicketEvent] = [
    tm.StartMatching(),
    tm.OffersPlaced(),
    tm.NobodyAvailable(),
    tm.MerchantAccepted(3),
    tm.Arrived(),
    tm.Completed(),
    tm.NoShow(),
    tm.Rated("satisfied"),
    tm.Close(),
    tm.Cancel("resident cancelled"),
    tm.TaskDone(),
]

#: (state, event type) -> (next state, command types)
TICKET_TABLE: dict[tuple[T, type], tuple[T, list[type]]] = {
    (T.NEW, tm.StartMatching): (T.MATCHING, []),
    (T.UNASSIGNED, tm.StartMatching): (T.MATCHING, []),
    (T.MATCHING, tm.OffersPlaced): (T.OFFERING, []),
    (T.OFFERING, tm.OffersPlaced): (T.OFFERING, []),
    (T.UNASSIGNED, tm.OffersPlaced): (T.OFFERING, []),
    (T.MATCHING, tm.NobodyAvailable): (T.UNASSIGNED, [tm.AlertOperators]),
    (T.OFFERING, tm.NobodyAvailable): (T.UNASSIGNED, [tm.AlertOperators]),
    (T.OFFERING, tm.MerchantAccepted): (
        T.ACCEPTED,
        [tm.WithdrawOtherOffers, tm.TellResident, tm.TellFamily],
    ),
    (T.ACCEPTED, tm.Arrived): (T.IN_SERVICE, [tm.TellFamily]),
    (T.ACCEPTED, tm.Completed): (T.COMPLETED, [tm.ScheduleSurvey, tm.TellFamily]),
    (T.IN_SERVICE, tm.Completed): (T.COMPLETED, [tm.ScheduleSurvey, tm.TellFamily]),
    (T.ACCEPTED, tm.NoShow): (T.OFFERING, [tm.Redispatch, tm.TellFamily]),
    (T.COMPLETED, tm.Rated): (T.RATED, []),
    (T.RATED, tm.Close): (T.CLOSED, []),
    (T.COMPLETED, tm.Close): (T.CLOSED, []),
    **{(s, tm.Cancel): (T.CANCELLED, []) for s in tm.OPEN},
    (T.NEW, tm.TaskDone): (T.CLOSED, []),
}


@pytest.mark.parametrize(
    ("state", "event"),
    list(itertools.product(list(T), TICKET_EVENTS)),
    ids=lambda v: v.value if isinstance(v, T) else type(v).__name__,
)
def test_ticket_transition_matches_the_table(state: T, event: tm.TicketEvent) -> None:
    expected = TICKET_TABLE.get((state, type(event)))
    if expected is None:
        with pytest.raises(IllegalTransition):
            tm.transition(state, event)
        return
    new_state, commands = tm.transition(state, event)
    assert new_state == expected[0]
    assert [type(c) for c in commands] == expected[1]


OFFER_EVENTS: list[om.OfferEvent] = [
    om.Ringing(),
    om.Answered(),
    om.Accept(),
    om.Decline(),
    om.Unreached(O.NO_ANSWER),
    om.Unreached(O.BUSY),
    om.Unreached(O.FAILED),
    om.Expire(),
    om.Withdraw(),
    om.NoShow(),
]


def _offer_expected(state: O, event: om.OfferEvent) -> tuple[O, list[type]] | None:
    live = state in om.LIVE
    match event:
        case om.Ringing() if state == O.PLACED:
            return O.RINGING, []
        case om.Answered() if state in (O.PLACED, O.RINGING):
            return O.ANSWERED, []
        case om.Accept() if live:
            return O.ACCEPTED, []
        case om.Decline() if live:
            return O.DECLINED, [om.HangupCall, om.NextCandidate]
        case om.Unreached(outcome=outcome) if live:
            return outcome, [om.NextCandidate]
        case om.Expire() if live:
            return O.EXPIRED, [om.HangupCall, om.NextCandidate]
        case om.Withdraw() if live:
            return O.WITHDRAWN, [om.HangupCall]
        case om.NoShow() if state == O.ACCEPTED:
            return O.NO_SHOW, []
    return None


@pytest.mark.parametrize(
    ("state", "event"),
    list(itertools.product(list(O), OFFER_EVENTS)),
    ids=lambda v: v.value if isinstance(v, O) else repr(v),
)
def test_offer_transition_matches_the_table(state: O, event: om.OfferEvent) -> None:
    expected = _offer_expected(state, event)
    if expected is None:
        with pytest.raises(IllegalTransition):
            om.transition(state, event)
        return
    new_state, commands = om.transition(state, event)
    assert (new_state, [type(c) for c in commands]) == expected


def test_the_tables_cover_every_legal_ticket_transition() -> None:
    legal = 0
    for state, event in itertools.product(list(T), TICKET_EVENTS):
        try:
            tm.transition(state, event)
            legal += 1
        except IllegalTransition:
            pass
    assert legal == len(TICKET_TABLE)
