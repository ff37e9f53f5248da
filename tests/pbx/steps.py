"""What the tier's scenarios do again and again: a resident calling, an operator answering,
an order dispatched; each waits on what Yijing reports (its API), never on a clock."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from tests.pbx.harness import (
    Pbx,
    Press,
    SippRun,
    Yijing,
    answering_scenario,
    eventually,
    free_port,
    resident_scenario,
    sipp,
)

RESIDENT = "+862354000001"  # resident 1 of the demo community (a landline)


async def call_in(
    pbx: Pbx, folder: Path, steps: list[Press], *, caller: str = RESIDENT, **kw: Any
) -> SippRun:
    """A resident phones the hotline and presses `steps`."""
    return await sipp(
        resident_scenario(folder, steps, **kw),
        port=free_port(socket.SOCK_DGRAM),
        target=f"127.0.0.1:{pbx.sip_port}",
        callers=[caller],
    )


def wants_operator() -> list[Press]:
    """Presses 0 (an operator) until the menu hears it: 0 means nothing once the caller
    waits, so the repeats are harmless."""
    return [Press("0", 1500)] + [Press("0", 2500)] * 8


async def calls(app: Yijing) -> list[dict[str, Any]]:
    """The console's call list."""
    return list(await app.api("GET", "/calls"))


async def a_call(app: Yijing, *states: str, within: float = 60) -> dict[str, Any]:
    """The first call in one of `states`."""

    async def check() -> Any:
        return next((c for c in await calls(app) if c["state"] in states), None)

    return dict(await eventually(check, within=within, what=f"a call in {states}"))


async def call_state(app: Yijing, call_id: int, *states: str, within: float = 30) -> Any:
    """Wait for a call to reach one of `states`."""

    async def check() -> Any:
        call = await app.api("GET", f"/calls/{call_id}")
        return call if call["state"] in states else None

    return await eventually(check, within=within, what=f"call {call_id} in {states}")


async def event_named(
    app: Yijing, name: str, *, within: float = 60, subject_id: Any = None, **data: Any
) -> dict[str, Any]:
    """Wait for an event of that name whose data has those values.

    60 s: a merchant's offer call now says who pays before its menu, and the slow voice
    takes about 30 s from the answer to a decline even on a quiet machine (the bound of
    30 s failed once in CI by a second). A bound, not a speed claim."""

    async def check() -> Any:
        for event in await app.events():
            if event["name"] != name:
                continue
            if subject_id is not None and str(event["subject_id"]) != str(subject_id):
                continue
            if all(event["data"].get(k) == v for k, v in data.items()):
                return event
        return None

    return dict(await eventually(check, within=within, what=f"event {name} {data}"))


async def connected_call(pbx: Pbx, app: Yijing, folder: Path) -> tuple[SippRun, dict[str, Any]]:
    """A resident who pressed 0, answered by `operator` and bridged to their desk phone."""
    caller = await call_in(pbx, folder, wants_operator())
    call = await a_call(app, "queued")
    answered = await app.api("POST", f"/calls/{call['id']}/answer")
    await event_named(
        app, "call.bridged", subject_id=call["id"], peer=f"operator:{answered['operator_id']}"
    )
    return caller, answered


async def merchants(pbx: Pbx, folder: Path, name: str, steps: list[Press], **kw: Any) -> SippRun:
    """Every merchant's phone (the trunk of `[yijing-dialout]`) is now this SIPp."""
    port = free_port(socket.SOCK_DGRAM)
    run = await sipp(answering_scenario(folder, name, steps, **kw), port=port)
    pbx.merchants_at(port)
    return run


async def order(app: Yijing, call: dict[str, Any], category: str = "medicine") -> dict[str, Any]:
    """The operator writes the need down and dispatches it."""
    ticket = await app.api(
        "POST",
        "/tickets",
        json={"category": category, "description": "降压药一盒", "call_id": call["id"]},
        expect=201,
    )
    await app.api("POST", f"/tickets/{ticket['id']}/dispatch", json={})
    return dict(ticket)


async def ticket_state(app: Yijing, ticket_id: int, *states: str, within: float = 60) -> Any:
    """Wait for a ticket to reach one of `states`."""

    async def check() -> Any:
        ticket = await app.api("GET", f"/tickets/{ticket_id}")
        return ticket if ticket["state"] in states else None

    return await eventually(check, within=within, what=f"ticket {ticket_id} in {states}")
