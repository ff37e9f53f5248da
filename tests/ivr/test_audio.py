"""The audio prompt build: real espeak-ng and sox, 8 kHz mono 16-bit WAV, incremental.

These tests need espeak-ng and sox (`make system` installs them). When they are missing
the tests fail and say so: a prompt build nobody can run must not pass unnoticed.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import wave
from pathlib import Path

import pytest

from ivr import audio
from ivr.prompts import CATALOGS


@pytest.fixture(scope="module")
def tools() -> dict[str, str]:
    try:
        return audio.require_tools()
    except audio.AudioToolMissing as exc:
        pytest.fail(f"{exc} (the prompt build tests do not skip)")


@pytest.fixture(scope="module")
def first_build(
    tools: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, audio.BuildReport]:
    out = tmp_path_factory.mktemp("prompts")
    return out, audio.build_prompts(out)


@pytest.fixture
def built(first_build: tuple[Path, audio.BuildReport], tmp_path: Path) -> Path:
    out = tmp_path / "prompts"
    shutil.copytree(first_build[0], out)
    return out


def _format(path: Path) -> tuple[int, int, int, int]:
    with wave.open(str(path), "rb") as w:
        return w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()


def test_a_build_makes_valid_8khz_mono_16bit_audio_for_every_prompt(
    first_build: tuple[Path, audio.BuildReport],
) -> None:
    out, report = first_build
    assert report.ok, report.summary()
    assert report.unchanged == [] and report.missing == []
    names = set(report.built)
    for lang, book in CATALOGS.items():
        assert f"{lang}/survey.thanks" in names
        assert f"{lang}/offer.intro.part0" in names  # a template's first static fragment
        assert len([n for n in names if n.startswith(f"{lang}/")]) >= len(book)
    for name in report.built:
        for suffix in (".wav", ".slow.wav"):
            rate, channels, width, frames = _format(out / f"{name}{suffix}")
            assert (rate, channels, width) == (8000, 1, 2), name
            assert frames > 8000 * 0.3, f"{name}{suffix} is too short to be speech"


def test_the_slow_variant_is_longer_and_residents_hear_a_slower_rate(
    first_build: tuple[Path, audio.BuildReport],
) -> None:
    out, _ = first_build
    normal = _format(out / "zh-CN/survey.thanks.wav")[3]
    slow = _format(out / "zh-CN/survey.thanks.slow.wav")[3]
    assert slow > normal * 1.15
    assert audio.wpm("survey.thanks", "zh-CN") < audio.wpm("offer.menu", "zh-CN")


def test_a_second_build_rebuilds_nothing(built: Path) -> None:
    report = audio.build_prompts(built)
    assert report.built == [] and report.removed == []
    assert len(report.unchanged) == len(report.synthetic)


def test_a_changed_text_rebuilds_one_file(built: Path) -> None:
    before = (built / "zh-CN/survey.thanks.wav").read_bytes()
    other = (built / "zh-CN/survey.menu.wav").stat().st_mtime_ns
    catalogs = copy.deepcopy(CATALOGS)
    catalogs["zh-CN"]["survey.thanks"] = "谢谢您的评价，再见。"
    report = audio.build_prompts(built, catalogs=catalogs)
    assert report.built == ["zh-CN/survey.thanks"]
    assert (built / "zh-CN/survey.thanks.wav").read_bytes() != before
    assert (built / "zh-CN/survey.menu.wav").stat().st_mtime_ns == other
    manifest = audio.read_manifest(built)
    assert manifest["files"]["zh-CN/survey.thanks.wav"]["text"] == "谢谢您的评价，再见。"


def test_a_deleted_file_is_rebuilt_and_a_dropped_prompt_removed(built: Path) -> None:
    (built / "en/survey.menu.slow.wav").unlink()
    catalogs = copy.deepcopy(CATALOGS)
    for book in catalogs.values():
        del book["status.none"]
    report = audio.build_prompts(built, catalogs=catalogs)
    assert report.built == ["en/survey.menu"]
    assert sorted(report.removed) == ["en/status.none", "zh-CN/status.none"]
    assert not (built / "zh-CN/status.none.wav").exists()


def test_a_recorded_prompt_wins_file_by_file(
    built: Path, tools: dict[str, str], tmp_path: Path
) -> None:
    recorded = tmp_path / "recorded"
    (recorded / "zh-CN").mkdir(parents=True)
    # a 2-second stereo 44.1 kHz "recording": nothing like the synthetic prompt
    subprocess.run(
        [
            tools["sox"],
            "-n",
            "-r",
            "44100",
            "-c",
            "2",
            str(recorded / "zh-CN/survey.thanks.wav"),
            "synth",
            "2",
            "sine",
            "440",
        ],
        check=True,
    )
    (recorded / "zh-CN/typo.wav").write_bytes((recorded / "zh-CN/survey.thanks.wav").read_bytes())
    report = audio.build_prompts(built, recorded_dir=recorded)
    assert report.built == ["zh-CN/survey.thanks"]
    assert report.recorded == ["zh-CN/survey.thanks"]
    assert "zh-CN/survey.thanks" not in report.synthetic
    assert report.unused_recordings == ["zh-CN/typo.wav"]
    rate, channels, width, frames = _format(built / "zh-CN/survey.thanks.wav")
    assert (rate, channels, width) == (8000, 1, 2)
    assert abs(frames - 16000) < 200  # the recording's 2 s, not the synthetic length
    assert _format(built / "zh-CN/survey.thanks.slow.wav")[3] > 16000 * 1.2
    assert _format(built / "en/survey.thanks.wav")[3] != frames  # English keeps its own
    assert audio.build_prompts(built, recorded_dir=recorded).built == []
    # the recording withdrawn: the synthetic prompt comes back
    (recorded / "zh-CN/survey.thanks.wav").unlink()
    assert audio.build_prompts(built, recorded_dir=recorded).built == ["zh-CN/survey.thanks"]


def test_prompts_with_no_audio_are_reported(tools: dict[str, str], tmp_path: Path) -> None:
    catalogs = {"zh-CN": {"a": "您好。", "b": "{name}"}, "fr": {"a": "Bonjour."}}
    report = audio.build_prompts(tmp_path, langs=("zh-CN", "fr"), catalogs=catalogs)
    assert report.missing == ["fr/a"]
    assert report.dynamic_only == ["zh-CN/b"]
    assert not report.ok
    assert "no audio for 1: fr/a" in report.summary()


def test_the_manifest_gives_backends_a_playlist_with_dynamic_parts_in_words(
    first_build: tuple[Path, audio.BuildReport],
) -> None:
    out, _ = first_build
    manifest = json.loads((out / audio.MANIFEST).read_text(encoding="utf-8"))
    order = {"category": "送药", "merchant": "和平药房", "deadline": "10:00"}
    items = audio.playlist(manifest, "status.accepted", "zh-CN", order)
    assert items == [
        audio.AudioFile("zh-CN/status.accepted.part0.wav"),
        audio.SpeakText("送药", "zh-CN"),
        audio.AudioFile("zh-CN/status.accepted.part2.wav"),
        audio.SpeakText("和平药房", "zh-CN"),
        audio.AudioFile("zh-CN/status.accepted.part4.wav"),
        audio.SpeakText("上午十点", "zh-CN"),
        audio.AudioFile("zh-CN/status.accepted.part6.wav"),
    ]
    slow = audio.playlist(manifest, "survey.thanks", "en", slow=True)
    assert slow == [audio.AudioFile("en/survey.thanks.slow.wav")]
    for item in items:
        if isinstance(item, audio.AudioFile):
            assert (out / item.path).is_file()


def test_a_login_code_is_built_and_voiced_digit_by_digit_so_no_file_holds_the_code(
    first_build: tuple[Path, audio.BuildReport], built: Path
) -> None:
    _, report = first_build
    for lang in CATALOGS:  # `yijing prompts build` covers the login call's prompts
        for name in ("login_code.intro", "login_code.goodbye", "login_code.code.part0"):
            assert f"{lang}/{name}" in report.built
    manifest = json.loads((built / audio.MANIFEST).read_text(encoding="utf-8"))
    items = audio.playlist(manifest, "login_code.code", "zh-CN", {"code": "204913", "minutes": 10})
    spoken = [item.text for item in items if isinstance(item, audio.SpeakText)]
    digits = ["二", "零", "四", "九", "幺", "三"]
    assert spoken == [*digits, *digits, "十分钟"]
    assert isinstance(items[0], audio.AudioFile) and items[0].path.endswith("part0.wav")
    # each digit is synthesised once into its own file, shared by every code
    files = {audio.speak_to_file(built, word, "zh-CN", prompt="login_code.code") for word in spoken}
    assert len(files) == 7
    again = audio.speak_to_file(built, "幺", "zh-CN", prompt="login_code.code")
    assert again in files
    en = audio.playlist(manifest, "login_code.code", "en", {"code": "204913", "minutes": 10})
    assert [i.text for i in en if isinstance(i, audio.SpeakText)][:6] == list("204913")


def test_missing_tools_are_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(
        audio.AudioToolMissing, match="espeak-ng and sox not installed: run `make system`"
    ):
        audio.build_prompts(tmp_path / "out")
