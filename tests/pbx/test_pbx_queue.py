"""Waiting for an operator on a real Asterisk: the place announcement and the call-back
offer really play (`[yijing-hold]` keeps the caller in a FastAGI session), and a prompt
whose sound file is missing is spoken instead of hanging the caller up."""

from __future__ import annotations

from pathlib import Path

from tests.pbx.harness import Pbx, Press, Yijing
from tests.pbx.steps import a_call, call_in, call_state, event_named, wants_operator


async def test_given_a_queued_caller_when_the_announcement_plays_then_1_asks_a_call_back(
    pbx: Pbx, yijing: Yijing, tmp_path: Path
) -> None:
    await yijing.stop()
    yijing.settings["YIJING_QUEUE_ANNOUNCE_S"] = "3"
    await yijing.start()
    # 0 until the menu hears it, then 1 until the call-back offer does
    presses = [Press("0", 1500)] + [Press("0", 2500)] * 5 + [Press("1", 2000)] * 25
    caller = await call_in(pbx, tmp_path / "r", presses)
    call = await a_call(yijing, "queued")
    # only the announcement's menu takes a 1: its outcome is the proof it played
    await event_named(yijing, "call.callback_requested", subject_id=call["id"], within=90)
    await call_state(yijing, call["id"], "callback", "ended", "abandoned")
    assert await caller.wait(60) == 0, caller.stats()  # the flow said goodbye and hung up


async def test_given_a_missing_sound_file_when_the_menu_plays_then_spoken_not_hung_up(
    pbx: Pbx, yijing: Yijing, tmp_path: Path
) -> None:
    missing = pbx.prompts_dir / "zh-CN" / "hotline.menu.wav"
    kept = tmp_path / "hotline.menu.wav"
    missing.rename(kept)
    try:
        await call_in(pbx, tmp_path / "r", wants_operator())
        # the menu (and its 0) still works: the caller reaches the queue
        await a_call(yijing, "queued", within=90)
    finally:
        kept.rename(missing)
    log = yijing.log_path.read_text()
    assert "sound file yijing/zh-CN/hotline.menu missing" in log
