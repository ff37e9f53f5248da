"""run_flow over FastAGI: the fake Asterisk plays the channel's side of the AGI session."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

from ivr.audio import build_prompts
from ivr.flows import MERCHANT_ACCEPTED, MERCHANT_OFFER, SURVEY
from providers.asterisk.config import AsteriskConfig
from providers.base import FlowFinished, PromptPlayed
from tests.providers.asterisk.conftest import eventually, running
from tests.providers.asterisk.fake_ami import FakeAgiChannel, FakeAMI, channel_event

CONTEXT = {"category": "送药", "description": "降压药", "address": "白公路", "deadline": "10:00"}


async def test_given_merchant_presses_1_then_the_call_waits_for_the_accept_then_hears_the_code(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    async with running(config) as (tel, rec):
        await ami.send(
            channel_event("Newchannel", "PJSIP/trunk-05", "500.5", Context="yijing-outbound",
                          ChanVariable="YIJING_REF=offer-5")
        )  # fmt: skip
        await eventually(lambda: tel.correlator.channel_of("offer-5"))
        agi = FakeAgiChannel(
            tel.agi_port, ref="offer-5", channel="PJSIP/trunk-05", uniqueid="500.5"
        )
        await agi.connect()

        def reply(command: str) -> str:
            if "offer.menu" in command:
                return "200 result=49 endpos=4000"  # '1' pressed during the menu prompt
            return "200 result=0 endpos=8000" if command.startswith("STREAM") else "200 result=1"

        await tel.run_flow("offer-5", MERCHANT_OFFER, context=CONTEXT, lang="zh-CN")
        serving = asyncio.create_task(agi.serve(reply))
        await eventually(lambda: rec.of(FlowFinished))
        finished = rec.of(FlowFinished)[0]
        assert finished == FlowFinished("offer-5", "merchant_offer", "accepted", finished.variables)
        await asyncio.wait_for(serving, 5)
        # nothing is said while the service commits the acceptance: no code word yet
        assert agi.commands == [
            'STREAM FILE yijing/zh-CN/offer.intro ""',
            'STREAM FILE yijing/zh-CN/offer.menu "129"',
            "SET VARIABLE YIJING_TRANSFER stay",
        ]
        await tel.run_flow("offer-5", MERCHANT_ACCEPTED, context={"code_word": "4827"})
        await asyncio.wait_for(agi.serve(reply), 5)
        assert agi.commands[3:] == ['STREAM FILE yijing/zh-CN/offer.accepted ""', "HANGUP"]
        prompts = [e.prompt for e in rec.of(PromptPlayed)]  # type: ignore[attr-defined]
        assert prompts == ["offer.intro", "offer.menu", "offer.accepted"]
        assert "降压药" in rec.of(PromptPlayed)[0].text  # type: ignore[attr-defined]
        assert [e.flow for e in rec.of(FlowFinished)] == [  # type: ignore[attr-defined]
            "merchant_offer",
            "merchant_accepted",
        ]
        await agi.close()


async def test_given_a_flow_left_waiting_with_no_next_flow_then_the_channel_is_hung_up(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    async with running(config, agi_stay_s=0.3) as (tel, _rec):
        agi = FakeAgiChannel(tel.agi_port, ref="offer-6", channel="PJSIP/trunk-06", uniqueid="6.1")
        await agi.connect()
        await eventually(lambda: "offer-6" in tel._agi.sessions)  # type: ignore[union-attr]

        def reply(command: str) -> str:
            if "offer.menu" in command:
                return "200 result=49 endpos=4000"
            return "200 result=0 endpos=8000" if command.startswith("STREAM") else "200 result=1"

        await tel.run_flow("offer-6", MERCHANT_OFFER, context=CONTEXT)
        await asyncio.wait_for(agi.serve(reply), 5)
        assert agi.commands[-1] == "SET VARIABLE YIJING_TRANSFER stay"
        await asyncio.wait_for(agi.serve(reply), 5)  # nothing comes: hung up
        assert agi.commands[-1] == "HANGUP"
        assert not any("offer.accepted" in c for c in agi.commands)
        await agi.close()


async def test_given_survey_digit_after_prompt_then_rating_recorded(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    async with running(config) as (tel, rec):
        agi = FakeAgiChannel(tel.agi_port, ref="survey-1", channel="PJSIP/trunk-06", uniqueid="6.6")
        await agi.connect()
        played = "200 result=0 endpos=1"
        answers = iter([played, played, "200 result=0",  # intro, menu, nothing pressed
                        played, played, "200 result=50",  # no_input, menu again, '2'
                        played, "200 result=1"])  # thanks, HANGUP  # fmt: skip
        await eventually(lambda: "survey-1" in tel._agi.sessions)  # type: ignore[union-attr]
        await tel.run_flow("survey-1", SURVEY, context={"category": "送水"}, lang="en")
        await agi.serve(lambda _command: next(answers))
        await eventually(lambda: rec.of(FlowFinished))
        menu = SURVEY.steps["menu"]
        wait_ms = int(menu.timeout_s * 1000)  # type: ignore[union-attr]
        assert agi.commands[2] == f"WAIT FOR DIGIT {wait_ms}"  # first wait: nothing pressed
        assert agi.commands[3] == 'STREAM FILE yijing/en/ivr.no_input ""'
        assert agi.commands[-1] == "HANGUP"
        finished = rec.of(FlowFinished)[0]
        assert finished.outcome == "rated"  # type: ignore[attr-defined]
        assert finished.variables["rating"] == "basically_satisfied"  # type: ignore[attr-defined]
        await agi.close()


async def test_given_caller_hangs_up_mid_flow_then_no_flow_finished(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    async with running(config) as (tel, rec):
        agi = FakeAgiChannel(tel.agi_port, ref="offer-9", channel="PJSIP/trunk-09", uniqueid="9.9")
        await agi.connect()
        await eventually(lambda: "offer-9" in tel._agi.sessions)  # type: ignore[union-attr]
        await tel.run_flow("offer-9", MERCHANT_OFFER, context=CONTEXT)
        await agi.serve(lambda c: "200 result=0 endpos=1" if "intro" in c else None)
        await eventually(lambda: "offer-9" not in tel._agi.sessions)  # type: ignore[union-attr]
        assert not rec.of(FlowFinished)
        assert len(rec.of(PromptPlayed)) == 2
        await agi.close()


async def test_given_a_prompt_build_when_a_template_plays_then_fragments_and_values_are_heard(
    ami: FakeAMI, config: AsteriskConfig, tmp_path: Path
) -> None:
    # a build of the intro only: its static fragments become files; the rest of the flow's
    # prompts, and the order's category and address, are spoken at call time into dyn/
    from ivr.prompts import CATALOGS

    build_prompts(
        tmp_path,
        langs=("zh-CN",),
        catalogs={"zh-CN": {"offer.intro": CATALOGS["zh-CN"]["offer.intro"]}},
    )
    async with running(config, sounds_dir=str(tmp_path)) as (tel, rec):
        agi = FakeAgiChannel(tel.agi_port, ref="offer-9", channel="PJSIP/trunk-09", uniqueid="9.9")
        await agi.connect()
        await eventually(lambda: "offer-9" in tel._agi.sessions)  # type: ignore[union-attr]

        def reply(command: str) -> str:
            if command.startswith("STREAM") and '"129"' in command:
                return "200 result=50 endpos=10"  # '2' during the menu: decline
            return "200 result=0 endpos=8000" if command.startswith("STREAM") else "200 result=1"

        await tel.run_flow("offer-9", MERCHANT_OFFER, context=CONTEXT, lang="zh-CN")
        await agi.serve(reply)
        await eventually(lambda: rec.of(FlowFinished))
        streams = [c.split()[2] for c in agi.commands if c.startswith("STREAM FILE")]
        assert streams[0] == "yijing/zh-CN/offer.intro.part0"
        spoken = [s for s in streams if s.startswith("yijing/zh-CN/dyn/")]
        assert len(spoken) >= 3  # category, description, address (and the menu itself)
        for name in spoken:
            with wave.open(str(tmp_path / (name.removeprefix("yijing/") + ".wav"))) as wav:
                assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
        assert rec.of(FlowFinished)[0].outcome == "declined"  # type: ignore[attr-defined]
        await agi.close()


async def test_given_a_login_call_when_the_code_plays_then_each_digit_is_its_own_sound_file(
    ami: FakeAMI, config: AsteriskConfig, tmp_path: Path
) -> None:
    # the login code is spoken at call time one digit at a time: the files made are one per
    # digit (shared by every code), so no sound file on the Asterisk host holds a code
    from ivr.flows import LOGIN_CODE
    from ivr.prompts import CATALOGS

    book = {k: v for k, v in CATALOGS["zh-CN"].items() if k.startswith("login_code.")}
    build_prompts(tmp_path, langs=("zh-CN",), catalogs={"zh-CN": book})
    async with running(config, sounds_dir=str(tmp_path)) as (tel, rec):
        agi = FakeAgiChannel(tel.agi_port, ref="login-7", channel="PJSIP/trunk-07", uniqueid="7.7")
        await agi.connect()
        await eventually(lambda: "login-7" in tel._agi.sessions)  # type: ignore[union-attr]
        waits: list[str] = []

        def reply(command: str) -> str:
            if command.startswith("WAIT FOR DIGIT"):
                waits.append(command)
                # * (42) at the first wait: hear it again; then nothing
                return "200 result=42" if len(waits) == 1 else "200 result=0"
            return "200 result=0 endpos=8000" if command.startswith("STREAM") else "200 result=1"

        context = {"code": "204913", "minutes": 10}
        await tel.run_flow("login-7", LOGIN_CODE, context=context, lang="zh-CN")
        await agi.serve(reply)
        await eventually(lambda: rec.of(FlowFinished))
        streams = [c.split()[2] for c in agi.commands if c.startswith("STREAM FILE")]
        assert streams[0] == "yijing/zh-CN/login_code.intro"
        spoken = [s for s in streams if s.startswith("yijing/zh-CN/dyn/")]
        # twice six digits and the minutes, heard twice (the * repeat)
        assert len(spoken) == 2 * (2 * 6 + 1)
        assert len(set(spoken)) == 6 + 1  # 2 0 4 9 1 3 and 十分钟
        assert "yijing/zh-CN/login_code.code.part0.slow" in streams  # the repeat is slower
        assert streams[-1] == "yijing/zh-CN/login_code.goodbye"
        assert rec.of(FlowFinished)[0].outcome == "heard"  # type: ignore[attr-defined]
        texts = [e.text for e in rec.of(PromptPlayed)]  # type: ignore[attr-defined]
        assert "二，零，四，九，幺，三" in texts[1]
        await agi.close()


async def test_given_an_accept_when_the_next_flow_comes_before_the_pbx_answers_then_it_plays(
    ami: FakeAMI, config: AsteriskConfig
) -> None:
    # The service starts the code word's flow as soon as it has committed the acceptance
    # that `FlowFinished` reported; Asterisk may not have answered the STAY's SET VARIABLE
    # yet (a loaded PBX). The channel must take the next flow all the same.
    async with running(config) as (tel, rec):
        agi = FakeAgiChannel(tel.agi_port, ref="offer-7", channel="PJSIP/trunk-07", uniqueid="7.1")
        await agi.connect()
        await eventually(lambda: "offer-7" in tel._agi.sessions)  # type: ignore[union-attr]

        def reply(command: str) -> str:
            if "offer.menu" in command:
                return "200 result=49 endpos=4000"
            return "200 result=0 endpos=8000" if command.startswith("STREAM") else "200 result=1"

        await tel.run_flow("offer-7", MERCHANT_OFFER, context=CONTEXT, lang="zh-CN")
        await asyncio.wait_for(agi.serve(reply, limit=2), 5)  # the SET VARIABLE waits
        await eventually(lambda: rec.of(FlowFinished))
        await tel.run_flow("offer-7", MERCHANT_ACCEPTED, context={"code_word": "4827"})
        await asyncio.wait_for(agi.serve(reply), 5)  # the PBX answers the STAY now
        await asyncio.wait_for(agi.serve(reply), 5)
        assert agi.commands == [
            'STREAM FILE yijing/zh-CN/offer.intro ""',
            'STREAM FILE yijing/zh-CN/offer.menu "129"',
            "SET VARIABLE YIJING_TRANSFER stay",
            'STREAM FILE yijing/zh-CN/offer.accepted ""',
            "HANGUP",
        ]
        await agi.close()
