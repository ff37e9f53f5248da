"""Run one IVR flow with scripted keys on each telephony backend and say what the caller heard.

Every backend is driven through its real surface, on loopback only:

- memory: the simulated PBX, keys pressed with `press`, no input left to its input timer
  (scaled down);
- asterisk: the adapter against the fake AMI server, the channel's side of FastAGI played
  by `FakeAgiChannel` (keys answered to ``WAIT FOR DIGIT``, or in barge-in mode to the
  ``STREAM FILE`` of the menu prompt when the key may interrupt it);
- twilio: the adapter's webhooks on 127.0.0.1, called by `TwilioSide` with real
  signatures, each key posted to the `<Gather>` action of the previous TwiML answer.

Each run gives a `Heard`; the pure engine (`tests.ivr.walk.drive`) gives the reference.
A backend's wire shows what it shows: prompt keys (Asterisk's sound file names, Twilio's
`<Play>` URLs), texts (Twilio's `<Say>`), the slow flag (Twilio's `<prosody>` or
``.slow.wav``); the rest comes from the port's events (`PromptPlayed`, `FlowFinished`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ivr.flow import Flow
from ivr.prompts import CATALOGS, fields, pick_lang, render
from providers.asterisk.config import AsteriskConfig
from providers.base import FlowFinished, PromptPlayed, TelephonyEvent, UnknownCall
from providers.memory.pbx import MemoryPBX
from providers.twilio import TwilioConfig, TwilioTelephony, webhook_app
from tests.ivr.walk import Keys, drive
from tests.providers.asterisk.conftest import Recorder as AmiRecorder
from tests.providers.asterisk.conftest import running
from tests.providers.asterisk.fake_ami import FakeAgiChannel, FakeAMI
from tests.providers.twilio.twilio_fakes import (
    ACCOUNT,
    PLATFORM,
    PUBLIC,
    TOKEN,
    Doc,
    FakeTwilioApi,
    TwilioSide,
)
from tests.providers.twilio.twilio_fakes import Recorder as TwilioRecorder

#: The memory PBX's timers run at this fraction of real time (a 6 s menu waits 120 ms):
#: after a timed-out key the next press must land before the re-asked menu times out too,
#: which 30 ms (0.005) did not always allow on a loaded machine (an extra "no input")
MEMORY_TIME_SCALE = 0.02
#: Recorded prompts for the Twilio `<Play>` mode (only the URL is checked, never fetched).
AUDIO_BASE = "https://care.example.org/prompts"
CALLEE = "+8613900000001"
#: Calls run at once on one backend.
CONCURRENT_CALLS = 20

Said = tuple[tuple[str, str], ...]
Finished = tuple[str, str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True, slots=True)
class Heard:
    """One run as the caller met it: prompts said (key, text), slow flags, the end."""

    said: Said
    #: One flag per prompt said (None where the backend does not show it), or None.
    slow: tuple[bool | None, ...] | None
    #: (flow, outcome, sorted variables) of the FlowFinished; None when none came.
    finished: Finished | None
    #: "hangup" when the flow ended the call, "handed_on" when it handed it on.
    end: str


def variables_of(context: Mapping[str, Any]) -> dict[str, str]:
    """The flow variables a run starts with: the context's values as text. A mapping is a
    rendering option (Asterisk's ``prompt_audio``), not a variable."""
    return {k: str(v) for k, v in context.items() if not isinstance(v, Mapping)}


def sound_file(prompt: str, lang: str, context: Mapping[str, Any]) -> str | None:
    """The built sound file Asterisk should play, less the ``.slow`` of a slow repeat
    (``yijing prompts build`` writes ``<lang>/<prompt>`` under the catalog language); None
    when the call brings its own rendering in ``prompt_audio``."""
    audio = context.get("prompt_audio")
    if isinstance(audio, Mapping) and prompt in audio:
        return None
    return f"yijing/{pick_lang(lang)}/{prompt}"


def twilio_voice(prompt: str, lang: str, *, slow: bool, audio_base: str | None) -> str:
    """How Twilio should voice a prompt: the `<Play>` URL of the built file, or the `<Say>`
    language of the catalog (with the adapter's default English voice)."""
    catalog_lang = pick_lang(lang)
    if audio_base and not fields(CATALOGS[catalog_lang][prompt]):
        return f"{audio_base}/{catalog_lang}/{prompt}{'.slow' if slow else ''}.wav"
    return {"zh-CN": "cmn-CN", "en": "en-GB"}[catalog_lang]


def expected(flow: Flow, context: Mapping[str, Any], keys: Keys, lang: str) -> Heard:
    """What the pure engine says for these keys: the reference every backend must match."""
    call = drive(flow, keys, variables_of(context))
    assert call.finish is not None
    return Heard(
        said=tuple((p, render(p, lang, context)) for p in call.prompts),
        slow=tuple(slow for _, slow in call.played),
        finished=(flow.name, call.finish.outcome, tuple(sorted(call.finish.variables.items()))),
        end="hangup" if call.finish.transfer is None else "handed_on",
    )


def differences(reference: Heard, got: Heard) -> list[str]:
    """How `got` strays from `reference`, one line per part; empty when it agrees."""
    problems = []
    if got.said != reference.said:
        problems.append(
            f"said {[p for p, _ in got.said]}, expected {[p for p, _ in reference.said]}"
            if [p for p, _ in got.said] != [p for p, _ in reference.said]
            else f"texts {got.said}, expected {reference.said}"
        )
    shown = [
        (got_slow, ref_slow)
        for got_slow, ref_slow in zip(got.slow or (), reference.slow or (), strict=False)
        if got_slow is not None
    ]
    if got.slow is not None and any(g != r for g, r in shown):
        problems.append(f"slow flags {got.slow}, expected {reference.slow}")
    if got.finished != reference.finished:
        problems.append(f"finished {got.finished}, expected {reference.finished}")
    if got.end != reference.end:
        problems.append(f"ended by {got.end}, expected {reference.end}")
    return problems


class Renderer(Protocol):
    """One backend rendering flows; `run` plays a whole call with scripted keys."""

    name: str

    async def run(
        self, ref: str, flow: Flow, context: Mapping[str, Any], keys: Keys, lang: str
    ) -> Heard: ...


async def until(check: Callable[[], object], what: str, within: float = 2.0) -> None:
    """Poll `check` briefly until it is truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)


def _events_of(events: Sequence[TelephonyEvent], ref: str) -> list[TelephonyEvent]:
    return [e for e in events if getattr(e, "ref", None) == ref]


def _finished(events: Sequence[TelephonyEvent]) -> Finished | None:
    done = [e for e in events if isinstance(e, FlowFinished)]
    assert len(done) <= 1, f"{len(done)} FlowFinished events"
    if not done:
        return None
    return (done[0].flow, done[0].outcome, tuple(sorted(done[0].variables.items())))


def _said(events: Sequence[TelephonyEvent]) -> Said:
    return tuple((e.prompt, e.text) for e in events if isinstance(e, PromptPlayed))


class MemoryRenderer:
    """The simulated PBX: it runs the engine itself."""

    name = "memory"

    def __init__(self, pbx: MemoryPBX, events: list[TelephonyEvent]) -> None:
        self.pbx = pbx
        self.events = events

    async def run(
        self, ref: str, flow: Flow, context: Mapping[str, Any], keys: Keys, lang: str
    ) -> Heard:
        pbx = self.pbx
        await pbx.originate(ref=ref, number=CALLEE)
        await pbx.answer(ref)
        await pbx.run_flow(ref, flow, context=context, lang=lang)
        call = pbx.calls[ref]
        for i, key in enumerate(keys):
            assert call.run is not None and call.waiting_digits, f"not waiting for key {i}"
            if key is None:
                # no input: the PBX's own (scaled) input timer moves the run on
                def moved(before: object = call.run) -> bool:
                    return call.run is not before

                await until(moved, "the input timer")
            else:
                await pbx.press(ref, key)
        assert call.run is None, f"still waiting at {call.run.step!r} after every key"
        await until(lambda: _finished(_events_of(self.events, ref)), "FlowFinished")
        mine = _events_of(self.events, ref)
        return Heard(
            said=_said(mine),
            slow=None,
            finished=_finished(mine),
            end="hangup" if call.state == "ended" else "handed_on",
        )


class AsteriskRenderer:
    """The Asterisk adapter: FastAGI commands answered by a fake channel."""

    def __init__(self, tel: Any, recorder: AmiRecorder, *, barge_in: bool) -> None:
        self.tel = tel
        self.recorder = recorder
        self.barge_in = barge_in
        self.name = "asterisk-barge-in" if barge_in else "asterisk"
        self._ids = itertools.count(1)

    async def run(
        self, ref: str, flow: Flow, context: Mapping[str, Any], keys: Keys, lang: str
    ) -> Heard:
        n = next(self._ids)
        agi = FakeAgiChannel(
            self.tel.agi_port, ref=ref, channel=f"PJSIP/trunk-{n:08x}", uniqueid=f"1700.{n}"
        )
        await agi.connect()
        pending = list(keys)
        ended: list[str] = []
        prefix = "STREAM FILE "

        def reply(command: str) -> str | None:
            if command.startswith(prefix):
                escape = command.rsplit(" ", 1)[1].strip('"')
                key = pending[0] if pending else None
                if self.barge_in and key is not None and key in escape:
                    pending.pop(0)
                    return f"200 result={ord(key)} endpos=1200"
                return "200 result=0 endpos=8000"
            if command.startswith("WAIT FOR DIGIT "):
                if not pending:
                    return None  # the caller hangs up: keys ran out
                key = pending.pop(0)
                return "200 result=0" if key is None else f"200 result={ord(key)}"
            if command == "HANGUP":
                ended.append("hangup")
            elif command.startswith("SET VARIABLE YIJING_TRANSFER "):
                ended.append("handed_on")
            return "200 result=1"

        try:
            # run_flow knows the call once its AGI session has connected
            for _ in range(500):
                try:
                    await self.tel.run_flow(ref, flow, context=context, lang=lang)
                    break
                except UnknownCall:
                    await asyncio.sleep(0.002)
            await agi.serve(reply, limit=1000)
            assert ended, "the flow waited for a key after the last one (or stopped)"
            await until(lambda: _finished(_events_of(self.recorder.events, ref)), "FlowFinished")
        finally:
            await agi.close()
        assert not pending, f"{len(pending)} keys left over"
        mine = _events_of(self.recorder.events, ref)
        said = _said(mine)
        files = [c[len(prefix) :].split(" ")[0] for c in agi.commands if c.startswith(prefix)]
        assert len(files) == len(said), f"played {files}, events say {said}"
        slow: list[bool | None] = []
        for name, (prompt, _) in zip(files, said, strict=True):
            built = sound_file(prompt, lang, context)
            if built is None:
                assert name == context["prompt_audio"][prompt], name
                slow.append(None)
            else:
                assert name in (built, f"{built}.slow"), f"played {name}, expected {built}"
                slow.append(name.endswith(".slow"))
        return Heard(
            said=said, slow=tuple(slow), finished=_finished(mine), end=ended[0] if ended else "?"
        )


class TwilioRenderer:
    """The Twilio adapter: each turn is a TwiML answer to a signed webhook."""

    def __init__(
        self,
        name: str,
        adapter: TwilioTelephony,
        recorder: TwilioRecorder,
        twilio: TwilioSide,
        api: FakeTwilioApi,
    ) -> None:
        self.name = name
        self.adapter = adapter
        self.recorder = recorder
        self.twilio = twilio
        self.api = api

    async def run(
        self, ref: str, flow: Flow, context: Mapping[str, Any], keys: Keys, lang: str
    ) -> Heard:
        await self.adapter.originate(ref=ref, number=CALLEE)
        sid = self._sid(ref)
        await self.twilio.status(sid, "in-progress", ref=ref)
        await self.adapter.run_flow(ref, flow, context=context, lang=lang)
        doc = await self.twilio.voice(sid, ref=ref)
        docs = [doc]
        for i, key in enumerate(keys):
            assert doc.gather() is not None, f"no <Gather> for key {i}: {doc.xml}"
            doc = await self.twilio.gather(doc, sid, key)
            docs.append(doc)
        assert doc.gather() is None, f"still gathering after every key: {doc.xml}"
        await self.recorder.settle()
        mine = _events_of(self.recorder.events, ref)
        said = _said(mine)
        voiced = [v for d in docs for v in _voiced(d)]
        assert len(voiced) == len(said), f"TwiML voices {voiced}, events say {said}"
        base = self.adapter.config.audio_base_url
        for (how, text, slow), (prompt, said_text) in zip(voiced, said, strict=True):
            wanted = twilio_voice(prompt, lang, slow=slow, audio_base=base)
            assert how == wanted, f"{prompt} voiced by {how}, expected {wanted}"
            assert text is None or text == said_text.strip(), f"TwiML says {text!r}"
        last = doc.verbs()[-1]
        end = {"Hangup": "hangup", "Redirect": "handed_on"}.get(last, last)
        if end == "handed_on":
            assert doc.redirect() == self.adapter.url("voice", ref=ref), doc.xml
        return Heard(
            said=said, slow=tuple(s for _, _, s in voiced), finished=_finished(mine), end=end
        )

    def _sid(self, ref: str) -> str:
        """The CallSid the fake API gave the call placed for `ref` (its Url names the ref;
        the fake records a create and names its call in one step, so the lists pair up)."""
        created = self.api.calls_created()
        mine = [
            i
            for i, r in enumerate(created)
            if parse_qs(urlsplit(r.form.get("Url", "")).query).get("ref") == [ref]
        ]
        assert len(mine) == 1, f"{len(mine)} calls created for {ref}"
        return self.api.sids_created[mine[0]]


def _voiced(doc: Doc) -> list[tuple[str, str | None, bool]]:
    """What a TwiML answer voices, in order: (Say language or Play URL, text, slow)."""
    found: list[tuple[str, str | None, bool]] = []
    for node in doc.root.iter():
        if node.tag == "Say":
            slow = node.find("prosody") is not None
            text = "".join(node.itertext()).strip()
            found.append((node.get("language", ""), text, slow))
        elif node.tag == "Play":
            url = (node.text or "").strip()
            found.append((url, None, url.endswith(".slow.wav")))
    return found


@contextlib.asynccontextmanager
async def _memory() -> AsyncIterator[MemoryRenderer]:
    events: list[TelephonyEvent] = []
    async with MemoryPBX(time_scale=MEMORY_TIME_SCALE, keep_ended=10_000) as pbx:

        async def pump() -> None:
            async for event in pbx.events():
                events.append(event)

        task = asyncio.get_running_loop().create_task(pump())
        try:
            yield MemoryRenderer(pbx, events)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def _asterisk() -> AsyncIterator[list[AsteriskRenderer]]:
    ami = await FakeAMI().start()
    config = AsteriskConfig(
        port=ami.port,
        secret="s3cret",
        agi_port=0,
        agi_wait_s=2.0,
        agi_play_timeout_s=2.0,
        action_timeout_s=0.5,
        connect_timeout_s=0.5,
        backoff_initial_s=0.02,
        backoff_max_s=0.1,
        startup_wait_s=2.0,
    )
    try:
        async with running(config) as (tel, recorder):
            yield [
                AsteriskRenderer(tel, recorder, barge_in=False),
                AsteriskRenderer(tel, recorder, barge_in=True),
            ]
    finally:
        await ami.close()


@contextlib.asynccontextmanager
async def _twilio(
    name: str, api: FakeTwilioApi, audio_base_url: str | None
) -> AsyncIterator[TwilioRenderer]:
    config = TwilioConfig(
        account_sid=ACCOUNT,
        auth_token=TOKEN,
        public_url=PUBLIC,
        from_number=PLATFORM,
        api_base_url=api.url,
        handoff_wait_s=0.0,
        audio_base_url=audio_base_url,
    )
    async with TwilioTelephony(config) as adapter:
        recorder = TwilioRecorder(adapter)
        root = web.Application()
        root.add_subapp("/twilio", webhook_app(adapter))
        client: TestClient[Any, Any] = TestClient(TestServer(root, host="127.0.0.1"))
        await client.start_server()
        try:
            yield TwilioRenderer(name, adapter, recorder, TwilioSide(client), api)
        finally:
            await client.close()
            await recorder.close()


@contextlib.asynccontextmanager
async def backends() -> AsyncIterator[list[Renderer]]:
    """Every backend, started on loopback: memory, Asterisk (two ways of keying), Twilio
    (prompts as `<Say>`, and as `<Play>` of recorded files where a prompt has no fields)."""
    async with contextlib.AsyncExitStack() as stack:
        found: list[Renderer] = [await stack.enter_async_context(_memory())]
        found.extend(await stack.enter_async_context(_asterisk()))
        api = await stack.enter_async_context(FakeTwilioApi())
        found.append(await stack.enter_async_context(_twilio("twilio", api, None)))
        found.append(await stack.enter_async_context(_twilio("twilio-play", api, AUDIO_BASE)))
        yield found


async def run_all(
    renderer: Renderer,
    flow: Flow,
    context: Mapping[str, Any],
    sequences: Sequence[Keys],
    lang: str,
    *,
    tag: str,
) -> list[Heard | str]:
    """Every key sequence on one backend, as calls at the same time (the memory PBX's timers
    are real, only scaled); a run that breaks gives its error as text."""
    gate = asyncio.Semaphore(CONCURRENT_CALLS)

    async def one(i: int, keys: Keys) -> Heard | str:
        ref = f"{renderer.name}-{tag}-{i}"  # refs are never reused on a backend
        try:
            async with gate:
                return await asyncio.wait_for(renderer.run(ref, flow, context, keys, lang), 10.0)
        except (AssertionError, TimeoutError, Exception) as exc:
            return f"{type(exc).__name__}: {exc}"

    return list(await asyncio.gather(*(one(i, keys) for i, keys in enumerate(sequences))))
