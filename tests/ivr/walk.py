"""Drive the pure engine in tests: scripted keys, and an exhaustive walk of every input."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ivr import engine
from ivr.flow import Flow

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
