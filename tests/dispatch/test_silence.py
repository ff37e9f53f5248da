"""Silent calls on the memory PBX (both databases): a registered high-risk resident whose
menu runs out is an emergency only when they neither pressed a key nor spoke; one who
spoke (the simulator's "speak", through its API) is a routine caller for an operator, and
the speech is on the call's timeline once however often they speak."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from registry.models import Resident
from tests.conftest import Harness, eventually
from tests.dispatch.test_emergency import resident_phone, timeline


async def queued(h: Harness, ref: str) -> Any:
    """The call on the API once it waits for an operator (waits for it)."""

    async def check() -> Any:
        calls = [c for c in await h.call("GET", "/calls") if c["ref"] == ref]
        return calls[0] if calls and calls[0]["state"] == "queued" else None

    return await eventually(check)


async def high_risk(h: Harness) -> list[Resident]:
    async with h.services.store.read() as session:
        rows = (await session.execute(select(Resident))).scalars().all()
    return [r for r in rows if "孤寡" in r.groups]


async def test_given_a_high_risk_resident_who_speaks_but_presses_nothing_then_routine(
    harness: Harness,
) -> None:
    h = harness
    h.pbx.time_scale = 0.005  # the menu's waits for a key pass quickly
    resident = (await high_risk(h))[0]
    assert resident.id is not None
    ref = await h.pbx.dial_in(resident_phone(resident.id))
    # the phone's user says "喂?" into the greeting (the port's events keep their order:
    # the speech is taken before the menu can run out), then again from the simulator page
    await h.pbx.speak(ref)
    await h.call("POST", f"/sim/calls/{ref}/speak", as_user="demo")
    call = await queued(h, ref)
    assert (call["emergency"], call["emergency_reason"]) == (False, None)
    names = [e["name"] for e in await timeline(h, call["id"])]
    assert names.count("call.speech") == 1
    assert "call.digit" not in names
    assert not any(n.startswith("emergency.") for n in names)


async def test_given_a_high_risk_resident_who_neither_speaks_nor_presses_then_emergency_silent(
    harness: Harness,
) -> None:
    h = harness
    h.pbx.time_scale = 0.005
    resident = (await high_risk(h))[0]
    assert resident.id is not None
    ref = await h.pbx.dial_in(resident_phone(resident.id))
    call = await queued(h, ref)
    assert (call["emergency"], call["emergency_reason"]) == (True, "silent")
    flagged = [e for e in await timeline(h, call["id"]) if e["name"] == "emergency.flagged"]
    # the memory PBX hears speech: the call was silent by keys and by speech
    assert [(e["data"]["reason"], e["data"]["by_speech"]) for e in flagged] == [("silent", True)]


async def test_given_a_caller_talking_with_an_operator_then_nothing_more_on_the_timeline(
    harness: Harness,
) -> None:
    h = harness
    ref = await h.pbx.dial_in(resident_phone(2))

    async def asking() -> bool:
        sim = h.pbx.calls.get(ref)
        return bool(sim and sim.waiting_digits)

    await eventually(asking)
    await h.pbx.press(ref, "0")
    call = await queued(h, ref)
    await h.pbx.speak(ref)  # past the menu: speech no longer counts for anything
    await h.pbx.press(ref, "9")  # a key after it, so the pump has taken the speech

    async def digits() -> list[str]:
        names = [e["name"] for e in await timeline(h, call["id"])]
        return names if names.count("call.digit") == 2 else []

    assert "call.speech" not in await eventually(digits)
