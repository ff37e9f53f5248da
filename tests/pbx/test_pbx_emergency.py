"""Emergencies on a real Asterisk, nobody at the desk answering: after the desk's answer
time the on-call phones are rung (both busy), then the caller is told help is being called
and the resident's emergency contacts are rung in their order: the first never picks up,
the second hears who calls and presses 1 and is joined with the caller. And a caller who,
told help is being called, presses 1 is connected to the emergency number (120, a SIPp
phone behind the same trunk as every other number).

One SIPp plays every phone Yijing rings (`responders_scenario`: each call told apart by
its number). The caller keys 1 (the emergency key) once, inside the hotline menu
(`test_pbx_keypad` has the timing); the tests wait on Yijing's events, never on a clock.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
from pathlib import Path
from typing import Any

from tests.pbx.harness import (
    BUSY,
    NO_ANSWER,
    Pbx,
    Press,
    Yijing,
    free_port,
    responders_scenario,
    sipp,
)
from tests.pbx.steps import call_in, event_named
from tests.pbx.test_pbx_keypad import MENU_AT_MS

ONCALL = ["+8613500000091", "+8613500000092"]
#: a phone that picks up and presses 1 whenever it is asked (presses outside a menu that
#: listens are dropped by Asterisk)
TAKES = [Press("1", 2500)] * 40
RESIDENT_ID = 1  # the caller of `call_in`


def contacts_of(db: Path, resident_id: int) -> list[tuple[int, str]]:
    """(id, phone) of a resident's emergency contacts in their cascade order."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT id, phone FROM emergency_contact WHERE resident_id = ? ORDER BY position, id",
            (resident_id,),
        ).fetchall()
    return [(int(i), str(p)) for i, p in rows]


async def phones_behind_trunk(pbx: Pbx, folder: Path, numbers: list[tuple[str, Any]]) -> Any:
    """Every number Yijing dials now reaches one SIPp doing what `numbers` says."""
    port = free_port(socket.SOCK_DGRAM)
    run = await sipp(responders_scenario(folder, "responders", numbers), port=port)
    pbx.merchants_at(port)
    return run


async def on_duty_but_away(yijing: Yijing) -> None:
    """An operator is logged in (so the desk is rung first) and never answers."""
    await yijing.api("POST", "/operator/state", json={"action": "login"})


async def emergency_of(yijing: Yijing, call_id: Any) -> dict[str, Any]:
    return dict(await yijing.api("GET", f"/calls/{call_id}/emergency", as_user="supervisor"))


async def test_given_nobody_answers_desk_or_oncall_when_contacts_rung_then_first_to_press_1_joined(
    pbx: Pbx, yijing: Yijing, tmp_path: Path
) -> None:
    contacts = contacts_of(tmp_path / "yijing.db", RESIDENT_ID)
    assert len(contacts) >= 2, contacts
    for phone in ONCALL:
        await yijing.api(
            "POST", "/oncall", as_user="demo", json={"phone": phone, "label": "duty"}, expect=201
        )
    # both on-call phones busy; the first contact never picks up, the second takes it
    numbers = [(ONCALL[0], BUSY), (ONCALL[1], BUSY), (contacts[0][1], NO_ANSWER)]
    numbers.append((contacts[1][1], TAKES))
    phones = await phones_behind_trunk(pbx, tmp_path / "phones", numbers)
    await on_duty_but_away(yijing)
    caller = await call_in(pbx, tmp_path / "r", [Press("1", MENU_AT_MS)])

    flagged = await event_named(yijing, "emergency.flagged", reason="key", on_duty=True)
    call_id = flagged["subject_id"]
    await event_named(yijing, "emergency.overflow", subject_id=call_id, within=60)
    # the caller is told help is being called once the contacts are rung
    await event_named(yijing, "emergency.help_called", subject_id=call_id, within=90)
    taken = await event_named(yijing, "emergency.taken", subject_id=call_id, within=180)
    escalation = await emergency_of(yijing, call_id)
    assert escalation["taken_by"] == f"contact:{contacts[1][0]}", (taken, escalation)

    events = [e for e in await yijing.events() if str(e["subject_id"]) == str(call_id)]
    called = [
        (e["data"]["stage"], e["data"]["step"])
        for e in events
        if e["name"] == "emergency.responder_called"
    ]
    # in order, each once: the on-call list, then the contacts up to the one who took it
    assert called == [("oncall", 0), ("oncall", 1), ("contacts", 0), ("contacts", 1)]
    # the caller and the contact who took it are joined on the PBX
    bridged = await event_named(yijing, "call.bridged", subject_id=call_id, within=60)
    assert bridged["data"]["peer"].endswith("-contacts-1"), bridged
    assert caller.process.returncode is None, caller.stats()  # the caller is still on
    await phones.stop()


async def test_given_help_being_called_when_the_caller_presses_1_then_joined_with_120(
    pbx: Pbx, yijing: Yijing, tmp_path: Path
) -> None:
    ambulance = await phones_behind_trunk(
        pbx,
        tmp_path / "phones",
        [("120", [])],  # 120 picks up; every contact is busy
    )
    await on_duty_but_away(yijing)
    # the emergency key in the menu, then 1 again and again: the key for 120 once offered
    caller = await call_in(pbx, tmp_path / "r", [Press("1", MENU_AT_MS)] + [Press("1", 2500)] * 60)

    flagged = await event_named(yijing, "emergency.flagged", reason="key")
    call_id = flagged["subject_id"]
    await event_named(yijing, "emergency.help_called", subject_id=call_id, within=90)
    await event_named(yijing, "emergency.dial_120", subject_id=call_id, within=90)
    await event_named(yijing, "emergency.connected_120", subject_id=call_id, within=90)
    escalation = await emergency_of(yijing, call_id)
    assert escalation["taken_by"] == "120" and escalation["dialled_120"] is True
    bridged = await event_named(yijing, "call.bridged", subject_id=call_id, within=60)
    assert "-120-" in bridged["data"]["peer"], bridged
    assert caller.process.returncode is None, caller.stats()
    await ambulance.stop()
