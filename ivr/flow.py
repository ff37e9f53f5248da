"""IVR flows as data: a small set of step kinds wired by step names.

A flow never does I/O; `ivr.engine` walks it. Backends render the engine's actions
(memory PBX directly, Asterisk through the channel, Twilio as TwiML).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Say:
    """Say a prompt, then go on to `next`; `slow`: always the slower rendering (news the
    caller must not miss, such as an outage announcement)."""

    prompt: str
    next: str
    slow: bool = False


@dataclass(frozen=True, slots=True)
class Ask:
    """Say a prompt and wait for one digit; `choices` maps digits to the next step.

    No input or a wrong key repeats the prompt (slower), up to `retries` more times,
    then the flow goes to `on_fail`. `repeat` is a digit that replays the prompt
    without using up a retry. A run enters (or repeats) the step at most `max_visits`
    times; after that it goes to `on_fail`, so menus that lead back to themselves
    ("press 9 to hear it again") cannot loop forever.
    """

    prompt: str
    choices: Mapping[str, str]
    on_fail: str
    timeout_s: float = 8.0
    retries: int = 2
    repeat: str | None = None
    store: str | None = None
    max_visits: int = 3


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


#: the transfer target that keeps the call on the line, silent, for the service's next
#: flow (a merchant's "1" is committed before they hear the code word); every backend
#: hangs up a call left there without a next flow for too long
STAY = "stay"


@dataclass(frozen=True, slots=True)
class Transfer:
    """Hand the call to a target (an operator queue, or `STAY`); ends the flow."""

    target: str
    outcome: str = "transfer"


@dataclass(frozen=True, slots=True)
class Hangup:
    """End the flow (and the call) with an outcome."""

    outcome: str
    prompt: str | None = None


Step = Say | Ask | Set | Branch | Transfer | Hangup

#: Bounds an Ask must keep: old ears need time, but no caller waits forever.
MAX_RETRIES = 5
MAX_VISITS = 5
MAX_TIMEOUT_S = 30.0
#: Prompts the engine itself plays on a retry.
ENGINE_PROMPTS = ("ivr.no_input", "ivr.wrong_key")


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


def outcomes(flow: Flow) -> set[str]:
    """Every outcome a run of the flow can finish with."""
    found = set()
    for step in flow.steps.values():
        if isinstance(step, Transfer | Hangup):
            found.add(step.outcome)
    return found


def auto_successors(step: Step) -> list[str]:
    """Steps a step can lead to without waiting for a key (an Ask's are its `on_fail`)."""
    if isinstance(step, Ask):
        return [step.on_fail]
    return successors(step)


def validate(
    flow: Flow,
    prompts: Mapping[str, str] | None = None,
    *,
    catalogs: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Raise `FlowError` for a flow that could strand or loop a caller.

    Checks: the start and every target exist; every prompt is in `prompts` and in
    every catalog of `catalogs`; every step is reachable; Ask bounds (retries, visits,
    timeout, digits); no cycle a run could walk without waiting for a key.
    """
    if flow.start not in flow.steps:
        raise FlowError(flow.name, flow.start, "start step does not exist")
    books: dict[str, Mapping[str, str]] = dict(catalogs or {})
    if prompts is not None:
        books.setdefault("", prompts)
    asks = False
    for name, step in flow.steps.items():
        for target in successors(step):
            if target not in flow.steps:
                raise FlowError(flow.name, name, f"leads to unknown step {target!r}")
        prompt = getattr(step, "prompt", None)
        if prompt is not None:
            _check_prompt(flow, name, prompt, books)
        if isinstance(step, Ask):
            asks = True
            _check_ask(flow, name, step)
    if asks:
        for prompt in ENGINE_PROMPTS:
            _check_prompt(flow, flow.start, prompt, books)
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
    _check_no_silent_cycle(flow)


def _check_prompt(
    flow: Flow, step: str, prompt: str, books: Mapping[str, Mapping[str, str]]
) -> None:
    for lang, book in books.items():
        if prompt not in book:
            where = f" in the {lang} catalog" if lang else ""
            raise FlowError(flow.name, step, f"prompt {prompt!r} is missing{where}")


def _check_ask(flow: Flow, name: str, step: Ask) -> None:
    if not step.choices:
        raise FlowError(flow.name, name, "asks with no choices")
    for digit in [*step.choices, step.repeat or "0"]:
        if len(digit) != 1 or digit not in "0123456789*#":
            raise FlowError(flow.name, name, f"{digit!r} is not a key")
    if step.repeat is not None and step.repeat in step.choices:
        raise FlowError(flow.name, name, f"repeat key {step.repeat!r} is also a choice")
    if not 0 <= step.retries <= MAX_RETRIES:
        raise FlowError(flow.name, name, f"retries must be 0..{MAX_RETRIES}")
    if not 1 <= step.max_visits <= MAX_VISITS:
        raise FlowError(flow.name, name, f"max_visits must be 1..{MAX_VISITS}")
    if not 0 < step.timeout_s <= MAX_TIMEOUT_S:
        raise FlowError(flow.name, name, f"timeout_s must be in (0, {MAX_TIMEOUT_S:g}]")


def _check_no_silent_cycle(flow: Flow) -> None:
    """A cycle of steps walked without a key press (Say, Set, Branch, exhausted Ask) loops."""
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for nxt in auto_successors(flow.steps[name]):
            if state.get(nxt) == 1:
                loop = " -> ".join([*path[path.index(nxt) :], name, nxt]) if nxt in path else nxt
                raise FlowError(flow.name, name, f"loops without waiting for a key: {loop}")
            if nxt not in state:
                visit(nxt, [*path, name])
        state[name] = 2

    for name in flow.steps:
        if name not in state:
            visit(name, [])


def input_bound(flow: Flow) -> int:
    """The most key presses or timeouts any run of a valid flow can take before finishing."""
    return sum(
        step.max_visits * (step.retries + 1)
        for step in flow.steps.values()
        if isinstance(step, Ask)
    )


def keypad_paths(flow: Flow, *, var: str = "category") -> dict[str, str]:
    """The shortest keys a caller presses from the start to set `var` to each value.

    The hotline flow is where keys meet needs ("2" medicine, "5 1" water); the catalog and
    the console show what is derived here, so the two can never disagree. Values set only
    behind a `Branch` (such as "same as last time") have no fixed keys and are left out;
    a branch is walked by its default.
    """
    found: dict[str, str] = {}
    seen: set[str] = set()
    frontier: list[tuple[str, tuple[str, ...]]] = [(flow.start, ())]
    while frontier:
        following: list[tuple[str, tuple[str, ...]]] = []
        for name, keys in frontier:
            if name in seen or name not in flow.steps:
                continue
            seen.add(name)
            step = flow.steps[name]
            match step:
                case Set(var=v, value=value, next=nxt):
                    if v == var and value and value not in found:
                        found[value] = " ".join(keys)
                    following.append((nxt, keys))
                case Say(next=nxt):
                    following.append((nxt, keys))
                case Branch(default=default):
                    # the way with the variable unset (no outage announced, say)
                    following.append((default, keys))
                case Ask(choices=choices):
                    following.extend((target, (*keys, d)) for d, target in choices.items())
        frontier = following
    return found
