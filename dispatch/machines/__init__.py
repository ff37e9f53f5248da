"""Pure state machines: state + event -> new state + commands. Nothing here does I/O."""

from __future__ import annotations


class IllegalTransition(Exception):
    """An event that the current state does not accept (an API answers 409)."""

    def __init__(self, machine: str, state: str, event: object) -> None:
        super().__init__(f"{machine}: {type(event).__name__} not allowed in state {str(state)!r}")
        self.machine = machine
        self.state = state
        self.event = event
