"""The satisfaction survey on a real Asterisk: after the visit the resident's phone is
called through `[yijing-dialout]` and their 1 rates the order."""

from __future__ import annotations

from pathlib import Path

from tests.pbx.harness import Pbx, Press, Yijing
from tests.pbx.steps import connected_call, event_named, merchants, order, ticket_state

PRESSES_1 = [Press("1", 2000)] * 30  # 1 until the menu hears it (then the call ends)


async def test_given_a_completed_order_when_the_resident_presses_1_then_rated(
    pbx: Pbx, yijing: Yijing, tmp_path: Path
) -> None:
    await yijing.stop()
    # the tier runs at any hour: no quiet night for this survey, and no long delay
    yijing.settings |= {
        "YIJING_QUIET_START": "23:59:59",
        "YIJING_QUIET_END": "00:00:00",
        "YIJING_SURVEY_DELAY_S": "1",
    }
    await yijing.start()
    merchant = await merchants(pbx, tmp_path / "m", "accepts", PRESSES_1)
    _, call = await connected_call(pbx, yijing, tmp_path / "r")
    ticket = await order(yijing, call)
    await ticket_state(yijing, ticket["id"], "accepted")
    await merchant.stop()
    # the operator hangs up: the outbound engine never rings a resident who is on a call
    # with us (the visit is done later, in life)
    await yijing.api("POST", f"/calls/{call['id']}/hangup")
    await event_named(yijing, "call.ended", subject_id=call["id"])
    # the survey rings the resident's own number: now a phone that answers with 1
    resident = await merchants(pbx, tmp_path / "s", "rates", PRESSES_1)
    await yijing.api("POST", f"/tickets/{ticket['id']}/complete")
    rated = await ticket_state(yijing, ticket["id"], "rated", "closed", within=120)
    assert rated["rating"] == "satisfied"
    await resident.stop()
