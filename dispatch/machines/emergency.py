"""The emergency escalation machine: operators -> on-call -> contacts (and 120) -> taken.

An emergency call rings every available operator at once (`operators`). Unanswered within
the answer time it overflows to the on-call list, rung one phone after another (`oncall`);
nobody takes it within the on-call time (or the list runs out) and the caller is told that
help is being called while the resident's emergency contacts are rung in their cascade
order (`contacts`). Once every list is spent the escalation is `exhausted`: the caller
keeps hearing the holding prompt (with the key for 120) and the supervisor is alerted.
An operator answering, a responder pressing 1, or the caller's 120 call being answered
ends it `taken`; the caller hanging up ends it `ended`.

The machine never does I/O: each transition returns commands, which
`dispatch.effects.Effects.emergency` carries out. Responders are named by their stage and
their step in it; the service gives each (stage, step) one outbound call ref, so a step is
never rung twice, even across a restart.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from dispatch.machines import IllegalTransition


class Stage(enum.StrEnum):
    """Where an escalation is."""

    OPERATORS = "operators"
    ONCALL = "oncall"
    CONTACTS = "contacts"
    EXHAUSTED = "exhausted"
    TAKEN = "taken"
    ENDED = "ended"


#: the stages with someone (or something) still to try
OPEN = frozenset({Stage.OPERATORS, Stage.ONCALL, Stage.CONTACTS, Stage.EXHAUSTED})
#: the "stage" of the caller's own call to the emergency number (120)
EMERGENCY_NUMBER = "120"


@dataclass(frozen=True, slots=True)
class Escalation:
    """An escalation's state: its stage, the step rung in it, and the lists' lengths."""

    stage: Stage
    step: int = 0
    oncall: int = 0
    contacts: int = 0
    #: the caller asked for 120 (its call is placed once)
    dialled_120: bool = False


# -- events ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Start:
    """The call is flagged an emergency; `on_duty`: some operator is logged in."""

    on_duty: bool


@dataclass(frozen=True, slots=True)
class Deadline:
    """The stage's time ran out (the answer time, then the on-call time)."""


@dataclass(frozen=True, slots=True)
class ResponderFailed:
    """A responder's call ended without them taking it (no answer, busy, hung up, no 1)."""

    stage: str
    step: int


@dataclass(frozen=True, slots=True)
class ResponderTook:
    """A responder pressed 1 (or the 120 call was answered): connect them to the caller."""

    stage: str
    step: int


@dataclass(frozen=True, slots=True)
class OperatorAnswered:
    """An operator answered the call at the console."""


@dataclass(frozen=True, slots=True)
class CallerAsked120:
    """The caller pressed the key for the emergency number."""


@dataclass(frozen=True, slots=True)
class CallerLeft:
    """The caller hung up."""


EscalationEvent = (
    Start
    | Deadline
    | ResponderFailed
    | ResponderTook
    | OperatorAnswered
    | CallerAsked120
    | CallerLeft
)


# -- commands --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RingOperators:
    """Offer the call to every available operator at once."""


@dataclass(frozen=True, slots=True)
class AlertSupervisor:
    """Alert the supervisor on the console and the wallboard (with a sound)."""

    why: str


@dataclass(frozen=True, slots=True)
class StartDeadline:
    """Schedule the stage's deadline in `after_s` of the named setting."""

    setting: str


@dataclass(frozen=True, slots=True)
class StopDeadline:
    """Cancel the stage's deadline."""


@dataclass(frozen=True, slots=True)
class CallResponder:
    """Ring one responder: step `step` of stage `stage` (or the emergency number)."""

    stage: str
    step: int


@dataclass(frozen=True, slots=True)
class HangupResponder:
    """Stop ringing (or hang up) a responder who is no longer wanted."""

    stage: str
    step: int


@dataclass(frozen=True, slots=True)
class ConnectResponder:
    """Bridge the caller to the responder who took it."""

    stage: str
    step: int


@dataclass(frozen=True, slots=True)
class TellCaller:
    """Play a holding flow to the caller (help is being called)."""

    flow: str


@dataclass(frozen=True, slots=True)
class Record:
    """Put a step on the call's timeline (`emergency.<name>`)."""

    name: str


EscalationCommand = (
    RingOperators
    | AlertSupervisor
    | StartDeadline
    | StopDeadline
    | CallResponder
    | HangupResponder
    | ConnectResponder
    | TellCaller
    | Record
)

#: the deadline settings (`DispatchConfig` field names)
ANSWER_S = "emergency_answer_s"
ONCALL_S = "emergency_oncall_s"
#: the flow the caller hears once help is being called (with the key for 120)
HELP_FLOW = "emergency_help"

Result = tuple[Escalation, list[EscalationCommand]]


def _oncall(state: Escalation) -> Result:
    if state.oncall == 0:
        return _contacts(state)
    # the deadline first: a responder skipped at once (gone from the list) moves the stage
    # on, and stops the deadline, before the outer commands end
    return replace(state, stage=Stage.ONCALL, step=0), [
        Record("overflow"),
        StartDeadline(ONCALL_S),
        CallResponder(Stage.ONCALL, 0),
    ]


def _contacts(state: Escalation) -> Result:
    told: list[EscalationCommand] = [StopDeadline(), Record("help_called"), TellCaller(HELP_FLOW)]
    if state.contacts == 0:
        return _exhausted(state, told)
    return replace(state, stage=Stage.CONTACTS, step=0), [*told, CallResponder(Stage.CONTACTS, 0)]


def _exhausted(state: Escalation, before: list[EscalationCommand]) -> Result:
    return replace(state, stage=Stage.EXHAUSTED, step=0), [
        *before,
        Record("exhausted"),
        AlertSupervisor("nobody_answered"),
    ]


def _ringing(state: Escalation) -> list[EscalationCommand]:
    """Stop the responder rung now (taken by someone else, or the caller left)."""
    if state.stage in (Stage.ONCALL, Stage.CONTACTS):
        return [HangupResponder(state.stage, state.step)]
    return []


def _ringing_120(state: Escalation, unless: str = "") -> list[EscalationCommand]:
    if state.dialled_120 and unless != EMERGENCY_NUMBER:
        return [HangupResponder(EMERGENCY_NUMBER, 0)]
    return []


def transition(state: Escalation, event: EscalationEvent) -> Result:
    """The next state of an escalation and what to do about it."""
    match state.stage, event:
        case Stage.OPERATORS, Start(on_duty=True):
            return state, [
                Record("ringing_all"),
                RingOperators(),
                AlertSupervisor("emergency_call"),
                StartDeadline(ANSWER_S),
            ]
        case Stage.OPERATORS, Start(on_duty=False):
            # nobody on duty: straight to the on-call list (the operators' queue stays)
            after, commands = _oncall(state)
            return after, [Record("after_hours"), AlertSupervisor("after_hours"), *commands]
        case Stage.OPERATORS, Deadline():
            return _oncall(state)
        case Stage.ONCALL, Deadline():
            after, commands = _contacts(state)
            return after, [HangupResponder(Stage.ONCALL, state.step), *commands]
        case ((Stage.ONCALL | Stage.CONTACTS), ResponderFailed(stage=stage, step=step)) if (
            stage == state.stage and step == state.step
        ):
            total = state.oncall if state.stage == Stage.ONCALL else state.contacts
            if step + 1 < total:
                return replace(state, step=step + 1), [CallResponder(state.stage, step + 1)]
            if state.stage == Stage.ONCALL:
                return _contacts(state)
            return _exhausted(state, [])
        case stage, ResponderFailed() if stage in OPEN:
            return state, []  # an earlier step's late report, or the 120 call not answered
        case stage, ResponderTook(stage=by, step=step) if stage in OPEN:
            current = [] if (by, step) == (state.stage, state.step) else _ringing(state)
            return replace(state, stage=Stage.TAKEN), [
                StopDeadline(),
                *current,
                *_ringing_120(state, by),
                ConnectResponder(by, step),
                Record("taken"),
            ]
        case stage, OperatorAnswered() if stage in OPEN:
            return replace(state, stage=Stage.TAKEN), [
                StopDeadline(),
                *_ringing(state),
                *_ringing_120(state),
                Record("taken"),
            ]
        case stage, CallerAsked120() if stage in OPEN:
            if state.dialled_120:
                return state, []
            return replace(state, dialled_120=True), [
                Record("dial_120"),
                CallResponder(EMERGENCY_NUMBER, 0),
            ]
        case stage, CallerLeft() if stage in OPEN:
            return replace(state, stage=Stage.ENDED), [
                StopDeadline(),
                *_ringing(state),
                *_ringing_120(state),
                Record("caller_left"),
            ]
        case (
            (Stage.TAKEN | Stage.ENDED),
            (ResponderFailed() | ResponderTook() | OperatorAnswered() | CallerLeft() | Deadline()),
        ):
            return state, []
    raise IllegalTransition("emergency", state.stage, event)
