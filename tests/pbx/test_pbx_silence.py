"""Silent callers on a real Asterisk: the shipped dialplan sets TALK_DETECT on hotline
calls. Two high-risk residents ring at once and press nothing: one says something (SIPp
plays a second of voice-band tone, twice), the other stays silent. When the menu runs out
the first waits for an operator as a routine call, the speech on the call's timeline; the
second is flagged an emergency, `silent`, with speech listened for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.pbx.harness import SPEECH, Pbx, Press, Yijing, eventually
from tests.pbx.steps import call_in, calls, event_named

SPEAKS = (5, "+862354000005")  # demo residents 5 and 10 (孤寡), their landlines
SILENT = (10, "+862354000010")


async def call_of(yijing: Yijing, resident_id: int, *states: str) -> dict[str, Any]:
    """The resident's call once it is in one of `states`."""

    async def check() -> Any:
        return next(
            (
                c
                for c in await calls(yijing)
                if c["resident_id"] == resident_id and c["state"] in states
            ),
            None,
        )

    found = await eventually(check, within=300, what=f"resident {resident_id}'s call in {states}")
    return dict(found)


async def test_given_two_high_risk_callers_pressing_nothing_when_one_speaks_then_one_is_silent(
    pbx: Pbx, yijing: Yijing, tmp_path: Path
) -> None:
    # the menu, read three times (the last two slowly) with its waits, takes two minutes
    stay = {"wait_bye_ms": 400_000}
    speech = [Press(SPEECH, 3000), Press(SPEECH, 6000)]
    speaks = await call_in(pbx, tmp_path / "speaks", speech, caller=SPEAKS[1], **stay)
    silent = await call_in(pbx, tmp_path / "silent", [], caller=SILENT[1], **stay)

    flagged = await event_named(yijing, "emergency.flagged", reason="silent", within=300)
    emergency = await call_of(yijing, SILENT[0], "queued")
    assert str(flagged["subject_id"]) == str(emergency["id"])
    assert flagged["data"]["by_speech"] is True

    routine = await call_of(yijing, SPEAKS[0], "queued")
    assert (routine["emergency"], routine["emergency_reason"]) == (False, None)
    await event_named(yijing, "call.speech", subject_id=routine["id"], within=10)
    timeline = [
        e["name"] for e in await yijing.events() if str(e["subject_id"]) == str(routine["id"])
    ]
    assert "call.digit" not in timeline and "emergency.flagged" not in timeline
    # both still on the line, waiting
    assert speaks.process.returncode is None and silent.process.returncode is None
