"""`providers.asterisk.install`: the files the install notes (and the real-PBX tier) use."""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.asterisk.install import InstallOptions, install, render


def test_given_site_values_when_rendering_then_globals_and_ami_carry_them() -> None:
    files = render(
        InstallOptions(
            ami_secret="s3cr3t-value", agi_port=4600, dialout_tech="SIP", trunk="carrier"
        ),
        hold_dir=Path("/var/lib/asterisk/sounds/yijing-hold"),
    )
    dialplan = files["extensions_yijing.conf"]
    assert "YIJING_AGI=agi://127.0.0.1:4600/yijing" in dialplan
    assert "YIJING_DIALOUT_TECH=SIP\n" in dialplan and "YIJING_TRUNK=carrier\n" in dialplan
    # our numbers are E.164: the dial-out context must match a leading +
    assert "exten => _+X.,1,Dial(${YIJING_DIALOUT_TECH}/${EXTEN}@${YIJING_TRUNK})" in dialplan
    manager = files["manager_yijing.conf"]
    assert "secret = s3cr3t-value" in manager and "CHANGE-ME" not in manager
    assert "channelvars = YIJING_REF,YIJING_HELD_FOR,YIJING_CONSULT_FOR" in manager
    assert "directory = /var/lib/asterisk/sounds/yijing-hold" in files["musiconhold_yijing.conf"]


def test_given_a_prompt_build_when_installing_then_it_is_linked_not_copied(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    (prompts / "zh-CN").mkdir(parents=True)
    (prompts / "zh-CN" / "desk.on_hold.wav").write_bytes(b"RIFF")
    sounds = tmp_path / "sounds"
    install(
        InstallOptions(ami_secret="x-1"),
        etc_dir=tmp_path / "etc",
        sounds_dir=sounds,
        prompts_dir=prompts,
    )
    assert (sounds / "yijing").is_symlink() and (sounds / "yijing").resolve() == prompts
    # what is synthesised at call time into the build is seen by Asterisk at once
    (prompts / "dyn").mkdir()
    assert (sounds / "yijing" / "dyn").is_dir()
    hold = sounds / "yijing-hold" / "00-desk.on_hold.wav"
    assert hold.is_symlink() and hold.read_bytes() == b"RIFF"


def test_given_an_unusable_value_when_rendering_then_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        render(InstallOptions(ami_secret="two words\n[evil]"), hold_dir=Path("/x"))
