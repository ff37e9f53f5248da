"""The desk on a real Asterisk: hold (the caller hears the hold class, the operator's leg
waits), resume (the two bridged again, nobody rung anew), transfer to the supervisor desk
(the supervisor's phone rings and takes the caller, the first operator's leg is released)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.pbx.harness import Pbx, Yijing, eventually
from tests.pbx.steps import call_state, connected_call, event_named


async def test_given_a_connected_caller_when_held_resumed_and_transferred_then_pbx_follows(
    pbx: Pbx, yijing: Yijing, tmp_path: Path
) -> None:
    caller, call = await connected_call(pbx, yijing, tmp_path / "r")
    desk = call["operator_id"]

    held = await yijing.api("POST", f"/calls/{call['id']}/hold")
    assert held["state"] == "on_hold"

    def caller_line() -> list[str]:
        # concise: channel!context!exten!priority!state!application!data!...!bridge id!uid
        for line in pbx.command("core show channels concise").splitlines():
            fields = line.split("!")
            if len(fields) > 12 and fields[1] == "yijing-onhold" and fields[2] == "caller":
                return fields
        return []

    async def caller_in_hold_music() -> Any:
        fields = caller_line()
        return fields and fields[5] == "MusicOnHold"

    await eventually(caller_in_hold_music, what="the caller in the hold class")
    # the operator's desk phone was not hung up: it waits for the caller
    assert any(name.startswith(f"SIP/{desk}-") for name in pbx.channels())

    resumed = await yijing.api("POST", f"/calls/{call['id']}/unhold")
    assert resumed["state"] == "connected"
    await event_named(yijing, "call.resumed", subject_id=call["id"])

    async def caller_back_with_operator() -> bool:
        fields = caller_line()
        return bool(fields) and fields[5] != "MusicOnHold" and bool(fields[12])

    await eventually(caller_back_with_operator, what="the caller bridged again")

    await yijing.api("POST", "/operator/state", as_user="supervisor", json={"action": "login"})
    moved = await yijing.api("POST", f"/calls/{call['id']}/transfer", json={"to": "supervisor"})
    await event_named(yijing, "call.transferred", subject_id=call["id"])
    supervisor = moved["operator_id"]
    assert supervisor != desk
    await event_named(
        yijing, "call.bridged", subject_id=call["id"], peer=f"operator:{supervisor}", within=60
    )

    await yijing.api("POST", f"/calls/{call['id']}/hangup", as_user="supervisor")
    await call_state(yijing, call["id"], "wrap_up", "ended")
    assert await caller.wait(60) == 0, caller.stats()
