"""IVR flows as data: a small set of step kinds wired by step names.

A flow never does I/O; `ivr.engine` walks it. Backends render the engine's actions
(memory PBX directly, Asterisk through the channel, Twilio as TwiML).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Say:
    """Say a prompt, then go on to `next`."""

    prompt: str
    next: str


@dataclass(frozen=True, slots=True)
class Ask:
    """Say a prompt and wait for one digit; `choices` maps digits to the next step.

    No input or a wrong key repeats the prompt (slower), up to `retries` more times,
    then the flow goes to `on_fail`. `repeat` is a digit that replays the prompt
    without using up a retry.
    """

    prompt: str
    choices: Mapping[str, str]
    on_fail: str
    timeout_s: float = 8.0
    retries: int = 2
    repeat: str | None = None
    store: str | None = None


@dataclass(frozen=True, slots=True)
class Set:
    """Set a flow variable, then go on to `next`."""

    var: str
    value: str
    next: str


@dataclass(frozen=True, slots=True)
class Branch:
    """Go to the step named for a variable's value, or to `default`."""

    var: str
    cases: Mapping[str, str]
    default: str


@dataclass(frozen=True, slots=True)
class Transfer:
    """Hand the call to a target (an operator queue); ends the flow."""

    target: str
    outcome: str = "transfer"


@dataclass(frozen=True, slots=True)
class Hangup:
    """End the flow (and the call) with an outcome."""

    outcome: str
    prompt: str | None = None


Step = Say | Ask | Set | Branch | Transfer | Hangup


@dataclass(frozen=True, slots=True)
class Flow:
    """A named graph of steps with a start step."""

    name: str
    start: str
    steps: Mapping[str, Step] = field(default_factory=dict)

    def step(self, name: str) -> Step:
        """The step called `name`."""
        try:
            return self.steps[name]
        except KeyError:
            raise FlowError(self.name, name, "unknown step") from None


class FlowError(ValueError):
    """A flow is malformed; names the flow and the step."""

    def __init__(self, flow: str, step: str, reason: str) -> None:
        super().__init__(f"flow {flow!r}, step {step!r}: {reason}")
        self.flow = flow
        self.step = step
        self.reason = reason


def successors(step: Step) -> list[str]:
    """Names of the steps a step can lead to."""
    match step:
        case Say(next=nxt) | Set(next=nxt):
            return [nxt]
        case Ask(choices=choices, on_fail=on_fail):
            return [*choices.values(), on_fail]
        case Branch(cases=cases, default=default):
            return [*cases.values(), default]
        case Transfer() | Hangup():
            return []
    raise AssertionError(step)


def validate(flow: Flow, prompts: Mapping[str, str] | None = None) -> None:
    """Raise `FlowError` for unknown targets, missing prompts or unreachable steps."""
    if flow.start not in flow.steps:
        raise FlowError(flow.name, flow.start, "start step does not exist")
    for name, step in flow.steps.items():
        for target in successors(step):
            if target not in flow.steps:
                raise FlowError(flow.name, name, f"leads to unknown step {target!r}")
        prompt = getattr(step, "prompt", None)
        if prompts is not None and prompt is not None and prompt not in prompts:
            raise FlowError(flow.name, name, f"prompt {prompt!r} is missing")
    seen: set[str] = set()
    todo = [flow.start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(successors(flow.steps[name]))
    for name in flow.steps:
        if name not in seen:
            raise FlowError(flow.name, name, "unreachable")
