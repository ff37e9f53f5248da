"""TwiML rendering of the pure IVR engine's actions, one HTTP turn at a time. No I/O.

A turn is the list of actions the engine returned for one input (start, a digit or a
timeout). It becomes one TwiML document:

- `Play` -> `<Say language="cmn-CN">` (zh-CN) or `en-GB`/`en-US` (English), or `<Play>` of a
  built prompt file when an audio base URL is configured and the prompt has no
  placeholders (recordings cannot say a name or an address). A slow repeat gets a
  `<Pause>` before it and a `<prosody rate>` hint.
- `Collect` -> `<Gather numDigits="1" actionOnEmptyResult="true">` around the prompt just
  before it, so a caller can key during the menu; no input posts back with no `Digits`,
  which the adapter feeds to `engine.on_timeout`. On a hotline caller's turns (`listen`)
  it is `input="dtmf speech"`: words post back `SpeechResult` with no `Digits`, which the
  adapter takes as "the caller spoke" (never the words) and then as no key.
- `Finish` -> `<Hangup/>`, or a redirect to the hold loop when the flow hands the call on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from string import Formatter
from typing import Any

from twilio.twiml import TwiML
from twilio.twiml.voice_response import Dial, Gather, Say, VoiceResponse

from ivr import engine
from ivr.prompts import DEFAULT_LANG, catalog, pick_lang, render

#: `<Say language>` per catalog language.
SAY_LANGUAGES: dict[str, str] = {"zh-CN": "cmn-CN", "en": "en-GB"}
#: `<Gather language>` (speech recognition) per catalog language.
LISTEN_LANGUAGES: dict[str, str] = {"zh-CN": "cmn-Hans-CN", "en": "en-GB"}


@dataclass(frozen=True, slots=True)
class Speech:
    """How prompts are voiced: Say languages and voices, recorded prompts, slow rate."""

    languages: Mapping[str, str] = field(default_factory=lambda: dict(SAY_LANGUAGES))
    voices: Mapping[str, str] = field(default_factory=dict)
    audio_base_url: str | None = None
    slow_rate: str | None = "85%"
    slow_pause_s: int = 1
    listen_languages: Mapping[str, str] = field(default_factory=lambda: dict(LISTEN_LANGUAGES))

    def listen_language(self, lang: str) -> str:
        """The `<Gather language>` that hears a caller of this catalog language."""
        return self.listen_languages.get(lang) or LISTEN_LANGUAGES[DEFAULT_LANG]

    def say_language(self, lang: str) -> str:
        """The `<Say language>` for a catalog language (zh-CN when unknown)."""
        return self.languages.get(lang) or self.languages.get(DEFAULT_LANG, "cmn-CN")

    def audio_url(self, prompt: str, lang: str, *, slow: bool) -> str | None:
        """The URL of a built prompt file, or None when it must be spoken by `<Say>`."""
        if not self.audio_base_url or _has_placeholders(prompt, lang):
            return None
        suffix = ".slow.wav" if slow else ".wav"
        return f"{self.audio_base_url.rstrip('/')}/{lang}/{prompt}{suffix}"


@dataclass(frozen=True, slots=True)
class Turn:
    """One rendered turn: the TwiML, the prompts it says (prompt, text), and how it ends."""

    twiml: str
    played: list[tuple[str, str]]
    finish: engine.Finish | None = None
    collects: bool = False


def _has_placeholders(prompt: str, lang: str) -> bool:
    template = catalog(lang).get(prompt, "")
    return any(name for _, name, _, _ in Formatter().parse(template))


def _voice(parent: TwiML, action: engine.Play, text: str, lang: str, speech: Speech) -> None:
    if action.slow and speech.slow_pause_s > 0:
        parent.append(_pause(speech.slow_pause_s))
    url = speech.audio_url(action.prompt, lang, slow=action.slow)
    if url is not None:
        parent.append(VoiceResponse().play(url))
        return
    attrs: dict[str, Any] = {"language": speech.say_language(lang)}
    voice = speech.voices.get(lang)
    if voice:
        attrs["voice"] = voice
    if action.slow and speech.slow_rate:
        say = Say(**attrs)
        say.prosody(text, rate=speech.slow_rate)
    else:
        say = Say(text, **attrs)
    parent.append(say)


def _pause(seconds: int) -> TwiML:
    return VoiceResponse().pause(length=seconds)


def render_turn(
    actions: Sequence[engine.Action],
    *,
    lang: str,
    params: Mapping[str, Any],
    speech: Speech,
    gather_url: str,
    hold_url: str,
    listen: bool = False,
) -> Turn:
    """Render one turn of engine actions as a TwiML document; `listen`: its Gather hears
    speech as well as keys (a hotline caller, who may be silent)."""
    # voices and prompt files go by catalog language: "en-GB" is read by the English voice
    lang = pick_lang(lang)
    response = VoiceResponse()
    played: list[tuple[str, str]] = []
    pending: list[tuple[engine.Play, str]] = []
    finish: engine.Finish | None = None
    collects = False

    def flush(into: TwiML, items: list[tuple[engine.Play, str]]) -> None:
        for play, text in items:
            _voice(into, play, text, lang, speech)

    for action in actions:
        if isinstance(action, engine.Play):
            text = render(action.prompt, lang, params)
            pending.append((action, text))
            played.append((action.prompt, text))
        elif isinstance(action, engine.Collect):
            flush(response, pending[:-1])
            heard: dict[str, Any] = {}
            if listen:
                # speech ends the Gather at the caller's first pause, not after the timeout
                heard = {"language": speech.listen_language(lang), "speech_timeout": "auto"}
            gather = Gather(
                input="dtmf speech" if listen else "dtmf",
                num_digits=1,
                timeout=max(1, math.ceil(action.timeout_s)),
                action=gather_url,
                method="POST",
                action_on_empty_result=True,
                finish_on_key="",
                **heard,
            )
            flush(gather, pending[-1:])
            response.append(gather)
            # Only reached if Twilio ignores actionOnEmptyResult: same URL, same turn.
            response.redirect(gather_url, method="POST")
            pending, collects = [], True
            break
        else:
            flush(response, pending)
            pending, finish = [], action
            if action.transfer is None:
                response.hangup()
            else:
                response.redirect(hold_url, method="POST")
            break
    if pending:
        flush(response, pending)
        response.redirect(hold_url, method="POST")
    return Turn(response.to_xml(), played, finish, collects)


def hold(hold_url: str, *, pause_s: int) -> str:
    """Silence for a moment, then ask again: the loop a call waits in for a command."""
    response = VoiceResponse()
    response.pause(length=pause_s)
    response.redirect(hold_url, method="POST")
    return response.to_xml()


def hangup() -> str:
    """End the call."""
    response = VoiceResponse()
    response.hangup()
    return response.to_xml()


def on_hold(hold_url: str, *, lang: str, speech: Speech, pause_s: int = 20) -> str:
    """What a held caller hears (a conference `holdUrl`): the calm hold prompt, a pause,
    and again; only the verbs a hold URL may use (Say/Play, Pause, Redirect)."""
    lang = pick_lang(lang)
    response = VoiceResponse()
    _voice(response, engine.Play("desk.on_hold"), render("desk.on_hold", lang), lang, speech)
    response.pause(length=pause_s)
    response.redirect(hold_url, method="POST")
    return response.to_xml()


@dataclass(frozen=True, slots=True)
class DialTarget:
    """Where `<Dial>` goes: kind is number, client, sip, conference, or desk (the caller's
    own conference with an operator, where hold and transfer work on participants)."""

    kind: str
    address: str


#: the caller's participant label in their desk conference
DESK_CALLER_LABEL = "caller"


def dial(target: DialTarget, *, caller_id: str, action_url: str, wait_url: str = "") -> str:
    """Bridge the call; the far end sees only the platform number (`callerId`)."""
    response = VoiceResponse()
    node = Dial(caller_id=caller_id, action=action_url, method="POST")
    if target.kind == "desk":
        node.conference(
            target.address,
            participant_label=DESK_CALLER_LABEL,
            start_conference_on_enter=True,
            end_conference_on_exit=True,
            beep=False,
            wait_url=wait_url,
            wait_method="POST",
        )
    elif target.kind == "conference":
        node.conference(
            target.address,
            start_conference_on_enter=True,
            end_conference_on_exit=True,
            beep=False,
        )
    elif target.kind == "sip":
        node.sip(target.address)
    elif target.kind == "client":
        node.client(target.address)
    else:
        node.number(target.address)
    response.append(node)
    return response.to_xml()


def callout(
    number: str, *, caller_id: str, action_url: str, status_url: str, events: str, ring_s: int
) -> str:
    """A click-to-call's answered desk leg dials the number; it sees the platform number."""
    response = VoiceResponse()
    node = Dial(caller_id=caller_id, action=action_url, method="POST", timeout=ring_s)
    node.number(
        number,
        status_callback=status_url,
        status_callback_event=events,
        status_callback_method="POST",
    )
    response.append(node)
    return response.to_xml()
