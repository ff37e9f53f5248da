"""The consult (warm) transfer on a real Asterisk 20: the caller held in the hold class,
the supervisor's desk phone Originated and joined with the first operator's waiting leg
(AMI Bridge), then the caller handed to the supervisor (the first operator's leg released)
or given back to the first operator (the supervisor's leg released)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.pbx.harness import Pbx, Yijing, eventually
from tests.pbx.steps import call_state, connected_call, event_named


def lines(pbx: Pbx) -> list[list[str]]:
    """`core show channels concise`: channel!context!exten!priority!state!application!data!
    callerid!accountcode!peeraccount!amaflags!duration!bridge id!uniqueid."""
    out = pbx.command("core show channels concise")
    return [line.split("!") for line in out.splitlines() if line.count("!") > 12]


def bridge_of(pbx: Pbx, prefix: str) -> str:
    """The bridge id of the live channel whose name starts with `prefix` ('' if none)."""
    for fields in lines(pbx):
        if fields[0].startswith(prefix):
            return fields[12]
    return ""


def caller_in_hold_music(pbx: Pbx) -> bool:
    return any(f[1] == "yijing-onhold" and f[2] == "caller" and f[5] == "MusicOnHold"
               for f in lines(pbx))  # fmt: skip


async def supervisor_id(yijing: Yijing) -> int:
    await yijing.api("POST", "/operator/state", as_user="supervisor", json={"action": "login"})
    people = await yijing.api("GET", "/assignees")
    me = await yijing.api("GET", "/operator/state")
    assert me["state"] == "on_call"
    ids = [p["user_id"] for p in people if p["state"] == "available"]
    assert len(ids) == 1, people
    return int(ids[0])


async def consulting(pbx: Pbx, yijing: Yijing, folder: Path) -> tuple[Any, dict[str, Any], int]:
    """A connected caller; their operator consults the supervisor, whose phone answers."""
    caller, call = await connected_call(pbx, yijing, folder)
    desk, sup = call["operator_id"], await supervisor_id(yijing)
    started = await yijing.api(
        "POST", f"/calls/{call['id']}/consult", json={"to_operator": sup, "note": "请教一下"}
    )
    assert started["state"] == "consult_ringing"
    await event_named(yijing, "call.consult_answered", subject_id=call["id"], within=60)

    async def operators_together() -> bool:
        a, b = bridge_of(pbx, f"SIP/{desk}-"), bridge_of(pbx, f"SIP/{sup}-")
        return bool(a) and a == b and caller_in_hold_music(pbx)

    await eventually(operators_together, what="the two operators bridged, the caller held")
    return caller, call, sup


async def test_given_a_consult_on_asterisk_when_completed_then_the_supervisor_has_the_caller(
    pbx: Pbx, yijing: Yijing, tmp_path: Path
) -> None:
    caller, call, sup = await consulting(pbx, yijing, tmp_path / "r")
    desk = call["operator_id"]

    done = await yijing.api("POST", f"/calls/{call['id']}/consult/complete")
    assert done["operator_id"] == sup
    await event_named(
        yijing, "call.bridged", subject_id=call["id"], peer=f"operator:{sup}", within=60
    )

    async def caller_with_supervisor() -> bool:
        mine = [f for f in lines(pbx) if f[1] == "yijing-onhold" and f[2] == "caller"]
        return bool(mine) and bool(mine[0][12]) and mine[0][12] == bridge_of(pbx, f"SIP/{sup}-")

    await eventually(caller_with_supervisor, what="the caller bridged with the supervisor")

    async def first_leg_gone() -> bool:
        return not any(name.startswith(f"SIP/{desk}-") for name in pbx.channels())

    await eventually(first_leg_gone, what="the first operator's leg released")

    await yijing.api("POST", f"/calls/{call['id']}/hangup", as_user="supervisor")
    await call_state(yijing, call["id"], "wrap_up", "ended")
    assert await caller.wait(60) == 0, caller.stats()


async def test_given_a_consult_on_asterisk_when_cancelled_then_the_caller_is_back_with_a(
    pbx: Pbx, yijing: Yijing, tmp_path: Path
) -> None:
    caller, call, sup = await consulting(pbx, yijing, tmp_path / "r")
    desk = call["operator_id"]

    back = await yijing.api("POST", f"/calls/{call['id']}/consult/cancel")
    assert back["state"] == "connected" and back["operator_id"] == desk

    async def caller_with_first_operator() -> bool:
        mine = [f for f in lines(pbx) if f[1] == "yijing-onhold" and f[2] == "caller"]
        return bool(mine) and bool(mine[0][12]) and mine[0][12] == bridge_of(pbx, f"SIP/{desk}-")

    await eventually(caller_with_first_operator, what="the caller bridged with operator again")

    async def supervisor_leg_gone() -> bool:
        return not any(name.startswith(f"SIP/{sup}-") for name in pbx.channels())

    await eventually(supervisor_leg_gone, what="the supervisor's leg released")
    state = await yijing.api("GET", "/operator/state", as_user="supervisor")
    assert state["state"] == "available"

    await yijing.api("POST", f"/calls/{call['id']}/hangup")
    await call_state(yijing, call["id"], "wrap_up", "ended")
    assert await caller.wait(60) == 0, caller.stats()
