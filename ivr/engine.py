"""The pure flow engine: (flow, state, input) -> (state, actions). No I/O, no clocks.

A backend starts a run with `start`, renders the actions it gets back (say a prompt,
wait for a digit, finish), and feeds what happened (`on_digit`, `on_timeout`) until it
gets a `Finish`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ivr.flow import Ask, Branch, Flow, FlowError, Hangup, Say, Set, Step, Transfer

#: A flow that walks this many steps without waiting for input is looping.
_MAX_AUTO_STEPS = 64


@dataclass(frozen=True, slots=True)
class Play:
    """Say a prompt; `slow` asks for the slower rendering (a repeat)."""

    prompt: str
    slow: bool = False


@dataclass(frozen=True, slots=True)
class Collect:
    """Wait up to `timeout_s` for one of `digits`."""

    digits: frozenset[str]
    timeout_s: float


@dataclass(frozen=True, slots=True)
class Finish:
    """The flow ended with an outcome; `transfer` names a target when it hands the call on."""

    outcome: str
    variables: Mapping[str, str]
    transfer: str | None = None


Action = Play | Collect | Finish


@dataclass(frozen=True, slots=True)
class Run:
    """Where a flow run stands: the current step, the attempt on it, the variables.

    `visits` counts how often each Ask step was entered, which bounds every menu.
    """

    flow: str
    step: str
    attempt: int = 0
    variables: Mapping[str, str] = field(default_factory=dict)
    finished: bool = False
    visits: Mapping[str, int] = field(default_factory=dict)


def start(flow: Flow, variables: Mapping[str, str] | None = None) -> tuple[Run, list[Action]]:
    """Begin a run of `flow` with initial variables."""
    run = Run(flow=flow.name, step=flow.start, variables=dict(variables or {}))
    return _advance(flow, run, [])


def on_digit(flow: Flow, run: Run, digit: str) -> tuple[Run, list[Action]]:
    """Feed one pressed digit to a run waiting on an `Ask`."""
    step = _waiting(flow, run)
    if step.repeat is not None and digit == step.repeat:
        count = run.visits.get(run.step, 0)
        if count >= step.max_visits:
            return _retry(flow, run, step, "ivr.wrong_key")
        run = replace(run, attempt=0, visits={**run.visits, run.step: count + 1})
        return run, [Play(step.prompt, slow=True), Collect(_digits(step), step.timeout_s)]
    target = step.choices.get(digit)
    if target is None:
        return _retry(flow, run, step, "ivr.wrong_key")
    variables = dict(run.variables)
    if step.store:
        variables[step.store] = digit
    return _advance(flow, replace(run, step=target, attempt=0, variables=variables), [])


def on_timeout(flow: Flow, run: Run) -> tuple[Run, list[Action]]:
    """Tell a run waiting on an `Ask` that no digit came in time."""
    step = _waiting(flow, run)
    return _retry(flow, run, step, "ivr.no_input")


def _waiting(flow: Flow, run: Run) -> Ask:
    if run.finished:
        raise FlowError(flow.name, run.step, "run already finished")
    step = flow.step(run.step)
    if not isinstance(step, Ask):
        raise FlowError(flow.name, run.step, "not waiting for input")
    return step


def _digits(step: Ask) -> frozenset[str]:
    extra = {step.repeat} if step.repeat else set()
    return frozenset(step.choices) | extra


def _retry(flow: Flow, run: Run, step: Ask, notice: str) -> tuple[Run, list[Action]]:
    if run.attempt >= step.retries:
        return _advance(flow, replace(run, step=step.on_fail, attempt=0), [])
    run = replace(run, attempt=run.attempt + 1)
    return run, [Play(notice), Play(step.prompt, slow=True), Collect(_digits(step), step.timeout_s)]


def _advance(flow: Flow, run: Run, actions: list[Action]) -> tuple[Run, list[Action]]:
    for _ in range(_MAX_AUTO_STEPS):
        step: Step = flow.step(run.step)
        match step:
            case Say(prompt=prompt, next=nxt, slow=slow):
                # Said again (the caller asked to hear it again): say it slower.
                count = run.visits.get(run.step, 0)
                actions.append(Play(prompt, slow=slow or count > 0))
                run = replace(run, step=nxt, attempt=0, visits={**run.visits, run.step: count + 1})
            case Set(var=var, value=value, next=nxt):
                run = replace(run, step=nxt, variables={**run.variables, var: value})
            case Branch(var=var, cases=cases, default=default):
                run = replace(run, step=cases.get(run.variables.get(var, ""), default))
            case Ask(on_fail=on_fail, max_visits=max_visits):
                count = run.visits.get(run.step, 0)
                if count >= max_visits:
                    run = replace(run, step=on_fail, attempt=0)
                    continue
                run = replace(run, visits={**run.visits, run.step: count + 1})
                actions.append(Play(step.prompt, slow=run.attempt > 0 or count > 0))
                actions.append(Collect(_digits(step), step.timeout_s))
                return run, actions
            case Transfer(target=target, outcome=outcome):
                actions.append(Finish(outcome, dict(run.variables), transfer=target))
                return replace(run, finished=True), actions
            case Hangup(outcome=outcome, prompt=prompt):
                if prompt:
                    actions.append(Play(prompt))
                actions.append(Finish(outcome, dict(run.variables)))
                return replace(run, finished=True), actions
    raise FlowError(flow.name, run.step, "loops without waiting for input")
