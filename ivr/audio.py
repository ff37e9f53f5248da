"""Audio prompt builds: every catalog prompt as 8 kHz mono 16-bit WAV for the PBX.

`build_prompts` synthesises each prompt with espeak-ng (zh-CN with the
``cmn-latn-pinyin`` voice: the plain ``cmn`` voice reads tone numbers in English) and
converts it with sox. Prompts residents hear are spoken at a slower rate than the ones
merchants hear, and every prompt also gets a ``.slow.wav`` (sox ``tempo``) for the
engine's slower repeat. A recorded human prompt under ``recorded_dir/<lang>/`` with the
same file stem replaces the synthetic one, file by file.

The build is incremental: ``manifest.json`` keeps a hash of what each file was made from
(text, voice, rate, or the recording's bytes); unchanged files are left alone.

Layout of `out_dir`::

    manifest.json
    zh-CN/hotline.menu.wav, zh-CN/hotline.menu.slow.wav, ...
    zh-CN/offer.intro.part0.wav, zh-CN/offer.intro.part2.wav, ...   (templates)

How dynamic values are voiced: a template such as ``请在{deadline:time}前到达`` is built as
its static fragments (``part0`` = 请在, ``part2`` = 前到达; the index is the fragment's
position). The manifest's ``prompts`` lists, per language and prompt, the files and fields
in speaking order, and `playlist` turns that plus the call's values into a list of
`AudioFile` and `SpeakText` items: a file-playing backend (Asterisk) plays the files and
speaks each `SpeakText` (already in words, e.g. 下午三点半, by `ivr.speech`) with the same
TTS settings at call time; a text backend (Twilio ``<Say>``) speaks `ivr.prompts.render`
output whole and needs no files. A one-time code (the ``digits`` form) is voiced digit by
digit, each digit its own cached file, so no file on disk ever holds a whole code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr import prompts, speech

log = logging.getLogger(__name__)

SAMPLE_RATE = 8000
#: espeak-ng voice per catalog.
VOICES = {"zh-CN": "cmn-latn-pinyin", "en": "en-gb"}
#: espeak-ng words per minute. espeak's Mandarin is already unhurried (175 ~ 3.1 syllables
#: a second); residents, often hard of hearing, get ~2.6 (150), and ~2.1 on a slow repeat.
ELDER_WPM = {"zh-CN": 150, "en": 140}
MERCHANT_WPM = {"zh-CN": 175, "en": 165}
#: Prompts merchants hear; everything else is said at the elder rate.
MERCHANT_PREFIXES = ("offer.", "arrival.", "completion.")
#: The slow variant (the engine's `Play(slow=True)`) is the normal file at this tempo.
SLOW_TEMPO = 0.8
RECORDING_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
MANIFEST = "manifest.json"
#: Spoken forms voiced one item at a time (a one-time code: each digit its own file).
SPOKEN_ONE_BY_ONE = frozenset({"digits"})
_FORMAT_VERSION = 1
_SOX_OUT = ["-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer"]


class AudioToolMissing(RuntimeError):
    """espeak-ng or sox is not installed."""


@dataclass(frozen=True, slots=True)
class AudioFile:
    """Play this file (relative to the prompt build folder)."""

    path: str


@dataclass(frozen=True, slots=True)
class SpeakText:
    """Synthesise these words at call time (a dynamic value, already in spoken form)."""

    text: str
    lang: str


@dataclass(frozen=True, slots=True)
class _Unit:
    """One audio file to make: a whole prompt or a static fragment of a template."""

    lang: str
    prompt: str
    stem: str  # e.g. "offer.intro.part0"
    text: str

    @property
    def rel(self) -> str:
        return f"{self.lang}/{self.stem}.wav"

    @property
    def slow_rel(self) -> str:
        return f"{self.lang}/{self.stem}.slow.wav"


@dataclass(slots=True)
class BuildReport:
    """What a prompt build did; names are ``<lang>/<file stem>``."""

    out_dir: str
    built: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)
    synthetic: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    dynamic_only: list[str] = field(default_factory=list)
    unused_recordings: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every prompt has audio."""
        return not self.missing and not self.errors

    def summary(self) -> str:
        """A few lines for the CLI."""
        lines = [
            f"prompts in {self.out_dir}: {len(self.built)} built, {len(self.unchanged)} unchanged, "
            f"{len(self.removed)} removed; {len(self.recorded)} recorded, "
            f"{len(self.synthetic)} synthetic",
        ]
        if self.missing:
            lines.append(f"no audio for {len(self.missing)}: {', '.join(self.missing)}")
        if self.dynamic_only:
            lines.append(f"spoken at call time only: {', '.join(self.dynamic_only)}")
        if self.unused_recordings:
            lines.append(f"recordings matching no prompt: {', '.join(self.unused_recordings)}")
        for name, error in self.errors.items():
            lines.append(f"error {name}: {error}")
        return "\n".join(lines)


def require_tools() -> dict[str, str]:
    """Paths of espeak-ng and sox; raise `AudioToolMissing` naming what to install."""
    found = {tool: shutil.which(tool) for tool in ("espeak-ng", "sox")}
    absent = [tool for tool, where in found.items() if where is None]
    if absent:
        raise AudioToolMissing(
            f"{' and '.join(absent)} not installed: run `make system` "
            f"(or apt-get install -y {' '.join(absent)}) to build audio prompts"
        )
    return {tool: str(where) for tool, where in found.items()}


def units(
    catalogs: Mapping[str, Mapping[str, str]] | None = None, langs: Iterable[str] | None = None
) -> tuple[list[_Unit], dict[str, dict[str, list[Any]]], list[str]]:
    """The files a build makes, each prompt's playlist layout, and fully dynamic prompts."""
    books = prompts.CATALOGS if catalogs is None else catalogs
    out: list[_Unit] = []
    layout: dict[str, dict[str, list[Any]]] = {}
    dynamic_only: list[str] = []
    for lang in langs or prompts.LANGS:
        book = books.get(lang, {})
        layout[lang] = {}
        for key, template in sorted(book.items()):
            pieces = prompts.fragments(template)
            sequence: list[Any] = []
            if all(isinstance(p, str) for p in pieces):
                unit = _Unit(lang, key, key, template)
                out.append(unit)
                sequence.append(unit.rel)
            else:
                for index, piece in enumerate(pieces):
                    if isinstance(piece, tuple):
                        sequence.append({"field": piece[0], "form": piece[1]})
                    elif _speakable(piece):
                        unit = _Unit(lang, key, f"{key}.part{index}", piece)
                        out.append(unit)
                        sequence.append(unit.rel)
                if not any(isinstance(s, str) for s in sequence):
                    dynamic_only.append(f"{lang}/{key}")
            layout[lang][key] = sequence
    return out, layout, dynamic_only


def _speakable(text: str) -> bool:
    return bool(re.search(r"[0-9A-Za-z\u4e00-\u9fff]", text))


def tts_text(text: str, lang: str) -> str:
    """The text handed to the synthesiser (numerals as Chinese words for zh-CN)."""
    text = " ".join(text.split())
    return speech.spoken_digits_for_tts(text) if lang != "en" else text


def wpm(unit_prompt: str, lang: str) -> int:
    """Speaking rate for a prompt: merchants at the normal rate, everyone else slower."""
    table = MERCHANT_WPM if unit_prompt.startswith(MERCHANT_PREFIXES) else ELDER_WPM
    return table.get(lang, table["en"])


def build_prompts(
    out_dir: Path | str,
    *,
    recorded_dir: Path | str | None = None,
    langs: Sequence[str] = prompts.LANGS,
    catalogs: Mapping[str, Mapping[str, str]] | None = None,
    workers: int | None = None,
) -> BuildReport:
    """Render every prompt of every catalog to 8 kHz mono 16-bit WAV, incrementally."""
    tools = require_tools()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    recorded = Path(recorded_dir) if recorded_dir is not None else None
    report = BuildReport(out_dir=str(out))
    todo, layout, report.dynamic_only = units(catalogs, langs)
    old = _read_manifest(out)
    old_files: dict[str, dict[str, Any]] = old.get("files", {})
    new_files: dict[str, dict[str, Any]] = {}
    jobs: list[tuple[_Unit, Path | None, str]] = []
    used_recordings: set[Path] = set()
    for unit in todo:
        if unit.lang not in VOICES:
            report.missing.append(f"{unit.lang}/{unit.stem}")
            continue
        source = _recording(recorded, unit)
        if source is not None:
            used_recordings.add(source)
        digest = _digest(unit, source)
        entry = {"hash": digest, "source": "recorded" if source else "tts", "text": unit.text}
        name = f"{unit.lang}/{unit.stem}"
        (report.recorded if source else report.synthetic).append(name)
        previous = old_files.get(unit.rel)
        if (
            previous
            and previous.get("hash") == digest
            and (out / unit.rel).is_file()
            and (out / unit.slow_rel).is_file()
        ):
            report.unchanged.append(name)
            new_files[unit.rel] = previous
            continue
        jobs.append((unit, source, digest))
        new_files[unit.rel] = entry

    def make(job: tuple[_Unit, Path | None, str]) -> tuple[_Unit, str | None]:
        unit, source, _ = job
        try:
            _make(tools, out, unit, source)
        except (subprocess.CalledProcessError, OSError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            message = detail.decode(errors="replace").strip() if detail else str(exc)
            return unit, message or str(exc)
        return unit, None

    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 2)) as pool:
        for unit, error in pool.map(make, jobs):
            name = f"{unit.lang}/{unit.stem}"
            if error is None:
                report.built.append(name)
            else:
                report.errors[name] = error
                report.missing.append(name)
                new_files.pop(unit.rel, None)

    for rel in sorted(set(old_files) - set(new_files)):
        if rel in {u.rel for u in todo}:
            continue  # failed this time: keep no stale entry, the file is rebuilt next time
        for path in (out / rel, out / rel.replace(".wav", ".slow.wav")):
            path.unlink(missing_ok=True)
        report.removed.append(rel.removesuffix(".wav"))
    if recorded is not None and recorded.is_dir():
        for path in sorted(recorded.rglob("*")):
            if path.is_file() and path.suffix in RECORDING_SUFFIXES and path not in used_recordings:
                report.unused_recordings.append(str(path.relative_to(recorded)))
    _write_manifest(out, {"version": _FORMAT_VERSION, "files": new_files, "prompts": layout})
    log.info(
        "prompt build in %s: %d built, %d unchanged", out, len(report.built), len(report.unchanged)
    )
    return report


def _recording(recorded: Path | None, unit: _Unit) -> Path | None:
    if recorded is None:
        return None
    for suffix in RECORDING_SUFFIXES:
        path = recorded / unit.lang / f"{unit.stem}{suffix}"
        if path.is_file():
            return path
    return None


def _digest(unit: _Unit, source: Path | None) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([_FORMAT_VERSION, SAMPLE_RATE, SLOW_TEMPO]).encode())
    if source is not None:
        h.update(b"recorded\0" + source.read_bytes())
    else:
        spec = [VOICES[unit.lang], wpm(unit.prompt, unit.lang), tts_text(unit.text, unit.lang)]
        h.update(b"tts\0" + json.dumps(spec, ensure_ascii=False).encode())
    return h.hexdigest()


def _make(tools: Mapping[str, str], out: Path, unit: _Unit, source: Path | None) -> None:
    target = out / unit.rel
    slow = out / unit.slow_rel
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        raw = Path(tmp) / "raw.wav"
        fresh = Path(tmp) / "out.wav"
        fresh_slow = Path(tmp) / "slow.wav"
        if source is None:
            _run(
                [
                    tools["espeak-ng"],
                    "-v",
                    VOICES[unit.lang],
                    "-s",
                    str(wpm(unit.prompt, unit.lang)),
                    "-w",
                    str(raw),
                    "--stdin",
                ],
                stdin=tts_text(unit.text, unit.lang),
            )
            source = raw
        _run([tools["sox"], str(source), *_SOX_OUT, str(fresh), "norm", "-3"])
        _run([tools["sox"], str(fresh), *_SOX_OUT, str(fresh_slow), "tempo", "-s", str(SLOW_TEMPO)])
        os.replace(fresh, target)
        os.replace(fresh_slow, slow)


def _run(argv: list[str], stdin: str | None = None) -> None:
    subprocess.run(
        argv,
        input=stdin.encode("utf-8") if stdin is not None else None,
        check=True,
        capture_output=True,
        timeout=60,
    )


def _read_manifest(out: Path) -> dict[str, Any]:
    try:
        data = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("version") == _FORMAT_VERSION else {}


def _write_manifest(out: Path, data: Mapping[str, Any]) -> None:
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, out / MANIFEST)


def speak_to_file(out_dir: Path | str, text: str, lang: str, *, prompt: str = "") -> str:
    """Synthesise words said at call time into the build folder; returns the file's path
    relative to it. Files are named by a hash of voice, rate and text, so each is made once.
    """
    out = Path(out_dir)
    chosen = prompts.pick_lang(lang)
    rate = wpm(prompt, chosen)
    digest = hashlib.sha256(f"{chosen}|{rate}|{text}".encode()).hexdigest()[:20]
    unit = _Unit(lang=chosen, prompt=prompt, stem=f"dyn/{digest}", text=text)
    if not (out / unit.rel).exists():
        _make(require_tools(), out, unit, None)
    return unit.rel


def read_manifest(out_dir: Path | str) -> dict[str, Any]:
    """The manifest of a prompt build (empty when there is none)."""
    return _read_manifest(Path(out_dir))


def playlist(
    manifest: Mapping[str, Any],
    prompt: str,
    lang: str | None,
    params: Mapping[str, Any] | None = None,
    *,
    slow: bool = False,
) -> list[AudioFile | SpeakText]:
    """What to play for a prompt: its built files, with dynamic values as words to speak."""
    chosen = prompts.pick_lang(lang)
    layout = manifest.get("prompts", {}).get(chosen, {})
    if prompt not in layout:
        return [SpeakText(prompts.render(prompt, chosen, params), chosen)]
    items: list[AudioFile | SpeakText] = []
    for piece in layout[prompt]:
        if isinstance(piece, str):
            items.append(AudioFile(piece.replace(".wav", ".slow.wav") if slow else piece))
        else:
            words = prompts.render_field(piece["field"], piece["form"], chosen, params or {})
            if piece["form"] in SPOKEN_ONE_BY_ONE:
                # one file per digit, made once and reused: no file on disk holds a code
                items.extend(SpeakText(w, chosen) for w in re.split(r"[，,]\s*", words) if w)
            elif words:
                items.append(SpeakText(words, chosen))
    return items
