"""Drive the pure engine in tests: scripted keys, and an exhaustive walk of every input."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ivr import engine
from ivr.flow import Ask, Flow

KEYS = tuple("0123456789*#")
TIMEOUT = None


@dataclass
class Call:
    """What a caller heard and how the flow ended."""

    played: list[tuple[str, bool]] = field(default_factory=list)
    finish: engine.Finish | None = None
    run: engine.Run | None = None

    @property
    def prompts(self) -> list[str]:
        return [p for p, _ in self.played]


def drive(flow: Flow, keys: Iterable[str | None], context: Mapping[str, str] | None = None) -> Call:
    """Feed keys (None = timeout) until the flow finishes; fail if keys run out or are left."""
    call = Call()
    run, actions = engine.start(flow, context)
    pending = list(keys)
    while True:
        for action in actions:
            if isinstance(action, engine.Play):
                call.played.append((action.prompt, action.slow))
            elif isinstance(action, engine.Finish):
                call.finish, call.run = action, run
                assert not pending, f"flow finished with keys left over: {pending}"
                return call
        assert pending, f"flow {flow.name} still waiting at {run.step!r} after all keys"
        key = pending.pop(0)
        run, actions = (
            engine.on_timeout(flow, run) if key is None else engine.on_digit(flow, run, key)
        )


def _key(run: engine.Run) -> tuple[object, ...]:
    return (
        run.step,
        run.attempt,
        tuple(sorted(run.visits.items())),
        tuple(sorted(run.variables.items())),
    )


@dataclass
class Walk:
    """The result of trying every key and timeout from every reachable waiting state."""

    states: int
    longest: int
    outcomes: set[tuple[str, str | None, tuple[tuple[str, str], ...]]]


def walk(flow: Flow, context: Mapping[str, str] | None = None, *, bound: int) -> Walk:
    """Try every input sequence; fail on a path that needs more than `bound` inputs or loops.

    The engine is deterministic, so two paths reaching the same run state continue alike:
    memoising on the state explores every sequence without enumerating them one by one.
    """
    longest: dict[tuple[object, ...], int] = {}
    outcomes: set[tuple[str, str | None, tuple[tuple[str, str], ...]]] = set()
    on_path: set[tuple[object, ...]] = set()

    def finish_of(actions: list[engine.Action]) -> engine.Finish | None:
        done = [a for a in actions if isinstance(a, engine.Finish)]
        assert len(done) <= 1 and (not done or actions[-1] is done[0])
        return done[0] if done else None

    def explore(run: engine.Run, actions: list[engine.Action], depth: int) -> int:
        assert depth <= bound, f"{flow.name}: a path needs more than {bound} inputs"
        done = finish_of(actions)
        if done is not None:
            extra = {k: v for k, v in done.variables.items() if k not in (context or {})}
            outcomes.add((done.outcome, done.transfer, tuple(sorted(extra.items()))))
            return 0
        assert isinstance(actions[-1], engine.Collect), f"{flow.name}: dead end at {run.step}"
        key = _key(run)
        if key in longest:
            return longest[key]
        assert key not in on_path, f"{flow.name}: loops back to {run.step!r}"
        on_path.add(key)
        worst = 0
        for digit in (*KEYS, TIMEOUT):
            nxt, acts = (
                engine.on_timeout(flow, run) if digit is None else engine.on_digit(flow, run, digit)
            )
            worst = max(worst, 1 + explore(nxt, acts, depth + 1))
        on_path.discard(key)
        longest[key] = worst
        return worst

    run, actions = engine.start(flow, context)
    most = explore(run, actions, 0)
    return Walk(states=len(longest), longest=most, outcomes=outcomes)


Keys = tuple[str | None, ...]


def _inputs(flow: Flow, run: engine.Run) -> list[tuple[str, str | None]]:
    """The inputs worth telling apart at a waiting run: each choice, the repeat key, one
    wrong key and no input, as (label, key)."""
    step = flow.step(run.step)
    assert isinstance(step, Ask)
    keys = [*sorted(step.choices), *([step.repeat] if step.repeat else [])]
    wrong = next(k for k in KEYS if k not in keys)
    return [*((k, k) for k in keys), ("wrong", wrong), ("timeout", TIMEOUT)]


def _feed(flow: Flow, run: engine.Run, key: str | None) -> tuple[engine.Run, list[engine.Action]]:
    return engine.on_timeout(flow, run) if key is None else engine.on_digit(flow, run, key)


def _landing(run: engine.Run, actions: list[engine.Action]) -> str:
    last = actions[-1]
    return f"finish:{last.outcome}" if isinstance(last, engine.Finish) else run.step


def cover(flow: Flow, context: Mapping[str, str] | None = None) -> list[Keys]:
    """Key sequences (None = no input) that together take every edge of the flow's menus.

    An edge is (waiting step, input, where it lands): every choice, the repeat key, a wrong
    key and no input, told apart by whether they retry or exhaust the retries, so "no input
    until the retries run out" and "9 once too often" are edges too. Each edge is reached
    by the shortest prefix (breadth first) and finished by the shortest way out. Always
    included: no input at all, and ``*`` / ``#`` at the first menu.
    """
    run, actions = engine.start(flow, context)
    if isinstance(actions[-1], engine.Finish):
        return [()]
    # breadth first over run states: the first prefix to take an edge is a shortest one
    prefixes: dict[tuple[str, str, str], Keys] = {}
    seen = {_key(run)}
    frontier: list[tuple[engine.Run, Keys]] = [(run, ())]
    while frontier:
        deeper: list[tuple[engine.Run, Keys]] = []
        for state, keys in frontier:
            for label, key in _inputs(flow, state):
                nxt, acts = _feed(flow, state, key)
                prefixes.setdefault((state.step, label, _landing(nxt, acts)), (*keys, key))
                if not isinstance(acts[-1], engine.Finish) and _key(nxt) not in seen:
                    seen.add(_key(nxt))
                    deeper.append((nxt, (*keys, key)))
        frontier = deeper
    exits: dict[tuple[object, ...], Keys] = {}

    def shortest_exit(start_run: engine.Run) -> Keys:
        """The fewest inputs from a waiting run to the end of the flow."""
        known = exits.get(_key(start_run))
        if known is not None:
            return known
        level: list[tuple[engine.Run, Keys]] = [(start_run, ())]
        visited = {_key(start_run)}
        while level:
            deeper: list[tuple[engine.Run, Keys]] = []
            for state, keys in level:
                for _, key in _inputs(flow, state):
                    nxt, acts = _feed(flow, state, key)
                    if isinstance(acts[-1], engine.Finish):
                        exits[_key(start_run)] = (*keys, key)
                        return (*keys, key)
                    if _key(nxt) not in visited:
                        visited.add(_key(nxt))
                        deeper.append((nxt, (*keys, key)))
            level = deeper
        raise AssertionError(f"{flow.name}: no way out from {start_run.step!r}")

    sequences: dict[Keys, None] = {}
    timeouts: list[str | None] = []
    state, acts = run, actions
    while not isinstance(acts[-1], engine.Finish):
        timeouts.append(TIMEOUT)
        state, acts = engine.on_timeout(flow, state)
    sequences[tuple(timeouts)] = None
    for key in ("*", "#"):  # keys no menu uses, pressed by mistake at the first one
        state, acts = _feed(flow, run, key)
        done = isinstance(acts[-1], engine.Finish)
        sequences[(key,) if done else (key, *shortest_exit(state))] = None
    for keys in prefixes.values():
        state, acts = run, actions
        for key in keys:
            state, acts = _feed(flow, state, key)
        done = isinstance(acts[-1], engine.Finish)
        sequences[keys if done else (*keys, *shortest_exit(state))] = None
    return list(sequences)
