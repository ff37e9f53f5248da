"""IVR on Asterisk: a FastAGI server that drives the pure `ivr.engine` on a live channel.

Why FastAGI and not AMI-driven dialplan: the engine decides every next step in Python
(digit -> next prompt, retries, slow repeats). FastAGI gives one ordered, synchronous
conversation per channel (``STREAM FILE`` returns the key that interrupted it,
``WAIT FOR DIGIT`` returns the key or a timeout), so `engine.on_digit`/`on_timeout` map
one to one onto AGI replies. Driving the same from AMI would need a Redirect into a
generated dialplan step per prompt plus UserEvents back, and would race DTMF events
against Redirects. AMI stays the source of call facts (offered, answered, digits, ended);
AGI only plays and listens.

How a call gets here: the shipped dialplan (``conf/extensions.conf``) sends every hotline
call and every answered outbound call to ``AGI(agi://<host>:<port>/yijing,${YIJING_REF})``.
The session waits (silently) until `run_flow` names its ref, then plays the flow. A
finished flow without transfer hangs up (as the memory PBX does); with a transfer the
session sets ``YIJING_TRANSFER`` and returns the channel to the dialplan (hold / queue).
A flow that finishes with transfer ``stay`` (`ivr.flow.STAY`) keeps the session open for
the service's next flow (a merchant's "1" is committed before the code word is said);
none within `agi_stay_s`, the channel is hung up.
A Redirect (`bridge`) or a hangup ends the session; the AMI side reports what happened.

Prompts are sound files ``<prompt_dir>/<lang>/<prompt key>`` (e.g.
``yijing/zh-CN/offer.intro``), built by ``yijing prompts build``. Dynamic parameters
(``{category}``, ``{address}`` ...) cannot live in a fixed file: a caller may pass
``context["prompt_audio"] = {"offer.intro": "yijing/dyn/<order>/offer.intro"}`` to play a
per-call rendering instead. A slow repeat (``Play.slow``) plays the build's
``<prompt key>.slow`` file, as Twilio's ``<Play>`` does; a per-call file has no slow
variant and is played as it is. Not done yet: building those per-call files (TTS at
dispatch time).

panoramisk's `fast_agi.Request` sends the commands; its `Application.handler` is not used
because it loops forever when Asterisk closes the socket before the blank line, and no
command has a timeout there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from panoramisk.fast_agi import Request

from ivr import engine
from ivr.flow import STAY, Flow
from ivr.prompts import pick_lang, render
from providers.asterisk.config import AsteriskConfig
from providers.asterisk.correlate import INBOUND_REF_PREFIX
from providers.base import (
    CallWaiting,
    FlowFinished,
    PromptPlayed,
    TelephonyEvent,
    UnknownCall,
)

log = logging.getLogger(__name__)

_REF_RE = re.compile(r"^[A-Za-z0-9_.:/-]{1,80}$")
_SAFE_ARG = re.compile(r"^[A-Za-z0-9_.:/@-]{1,200}$")
_CLASS_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: the second AGI argument of a caller waiting for an operator (``[yijing-hold]``)
WAIT_ARG = "wait"


class AgiHangup(Exception):
    """The channel went away (or the socket did) while a flow was running."""


class AgiAppError(AgiHangup):
    """``200 result=-1``: a hangup, or (STREAM FILE) a file Asterisk cannot open."""


@dataclass(slots=True)
class FlowRequest:
    """What run_flow asks a session to play."""

    flow: Flow
    context: dict[str, Any]
    lang: str


@dataclass(slots=True)
class Session:
    """One channel parked in our FastAGI script."""

    ref: str
    channel: str
    request: Request
    asked: asyncio.Future[FlowRequest] = field(default_factory=asyncio.Future)
    #: the music-on-hold class of a caller waiting for an operator (``[yijing-hold]``):
    #: it plays whenever no flow does
    wait_class: str | None = None


class FlowServer:
    """The FastAGI listener plus the sessions waiting for a flow."""

    def __init__(self, config: AsteriskConfig, emit: Callable[[TelephonyEvent], None]) -> None:
        self.config = config
        self._emit = emit
        self._server: asyncio.Server | None = None
        self.sessions: dict[str, Session] = {}
        self._waiters: dict[str, list[asyncio.Future[Session]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen for Asterisk's FastAGI connections."""
        self._server = await asyncio.start_server(
            self._handle, self.config.agi_host, self.config.agi_port
        )
        log.info("FastAGI listening on %s:%s", self.config.agi_host, self.port)

    @property
    def port(self) -> int:
        """The port actually bound (differs from the config when it asked for 0)."""
        if self._server is None or not self._server.sockets:
            return self.config.agi_port
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and drop every session."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def start_flow(self, ref: str, flow: Flow, context: Mapping[str, Any], lang: str) -> None:
        """Hand a flow to the call's session, waiting a little for it to connect."""
        session = self.sessions.get(ref)
        if session is None:
            waiter: asyncio.Future[Session] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(ref, []).append(waiter)
            try:
                session = await asyncio.wait_for(waiter, self.config.agi_wait_s)
            except TimeoutError:
                raise UnknownCall(f"{ref}: no AGI session on this call") from None
            finally:
                waiters = self._waiters.get(ref, [])
                if waiter in waiters:
                    waiters.remove(waiter)
                if not waiters:
                    self._waiters.pop(ref, None)
        if session.asked.done():
            raise UnknownCall(f"{ref}: a flow is already running on this call")
        # sound files are built per catalog language ("en-GB" plays from yijing/en/)
        session.asked.set_result(FlowRequest(flow, dict(context), pick_lang(lang)))

    # -- one FastAGI connection -------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        session: Session | None = None
        try:
            try:
                raw = await asyncio.wait_for(
                    reader.readuntil(b"\n\n"), self.config.action_timeout_s
                )
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                log.warning("FastAGI connection without a complete AGI environment dropped")
                return
            headers: dict[str, str] = {}
            for line in raw.decode("utf-8", "replace").splitlines():
                key, sep, value = line.partition(": ")
                if sep:
                    headers[key] = value
            ref = headers.get("agi_arg_1") or INBOUND_REF_PREFIX + headers.get("agi_uniqueid", "")
            if not _REF_RE.match(ref):
                log.warning("FastAGI session with an unusable ref dropped")
                return
            request = Request(app=None, headers=headers, reader=reader, writer=writer)
            session = Session(ref=ref, channel=headers.get("agi_channel", ""), request=request)
            if headers.get("agi_arg_2") == WAIT_ARG:
                music = headers.get("agi_arg_3") or "default"
                session.wait_class = music if _CLASS_RE.match(music) else "default"
            self.sessions[ref] = session
            for waiter in self._waiters.pop(ref, []):
                if not waiter.done():
                    waiter.set_result(session)
            log.info("AGI session for %s on %s", ref, session.channel)
            if session.wait_class is not None:
                try:
                    await self._music(session, True)
                except AgiHangup as exc:
                    log.info("waiting call %s went away: %s", ref, exc)
                    return
                # the only word that a menu cut off by our restart left the caller here
                self._emit(CallWaiting(ref))
            if not await self._next_flow(session, reader, None):
                log.info("AGI session for %s ended before any flow", ref)
                return
            try:
                # a flow that finishes with STAY keeps the channel here for the next one
                # (`_drive` has made the fresh `asked` it may come in on)
                while await self._drive(session, session.asked.result()):
                    if not await self._next_flow(session, reader, self.config.agi_stay_s):
                        if not session.asked.done():
                            log.info("no next flow for %s: hanging up", ref)
                            await self._command(session, "HANGUP", self.config.action_timeout_s)
                        return
            except AgiHangup as exc:
                log.info("flow on %s stopped: %s", ref, exc)
        finally:
            if session is not None and self.sessions.get(session.ref) is session:
                del self.sessions[session.ref]
            if session is not None and not session.asked.done():
                session.asked.cancel()
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _next_flow(
        self, session: Session, reader: asyncio.StreamReader, timeout_s: float | None
    ) -> bool:
        """Wait for `run_flow` to name this channel; False when the channel went away (the
        socket closed) or, with a timeout, nothing came in time."""
        gone: asyncio.Future[Any] = asyncio.ensure_future(reader.readline())
        asked: asyncio.Future[Any] = session.asked
        try:
            await asyncio.wait(
                {asked, gone}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not gone.done():
                gone.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await gone
        if gone.done() and not gone.cancelled() and not asked.done():
            asked.cancel()  # "HANGUP" or EOF: nobody may start a flow here any more
        return asked.done() and not asked.cancelled()

    async def _command(self, session: Session, command: str, timeout_s: float) -> int:
        try:
            result = await asyncio.wait_for(session.request.send_command(command), timeout_s)
        except TimeoutError:
            raise AgiHangup(f"no AGI reply to {command.split(' ', 2)[:2]}") from None
        except (ConnectionError, ValueError, asyncio.IncompleteReadError) as exc:
            raise AgiHangup(f"AGI socket closed ({type(exc).__name__})") from None
        if result.get("error") == "AGIAppError":
            raise AgiAppError(command.split(" ", 1)[0])
        if "error" in result:
            raise AgiHangup(str(result.get("error")))
        try:
            return int(result["result"][0])
        except (KeyError, ValueError, IndexError, TypeError):
            raise AgiHangup(f"unreadable AGI reply {result!r}") from None

    async def _music(self, session: Session, on: bool) -> None:
        """Music on hold under a waiting caller while no flow plays (and off for one)."""
        command = f"SET MUSIC ON {session.wait_class}" if on else "SET MUSIC OFF"
        await self._command(session, command, self.config.action_timeout_s)

    async def _stream(
        self, session: Session, sound: str, escape: str, action: engine.Play, req: FlowRequest
    ) -> int:
        """STREAM FILE one sound: the key that cut it short, 0 when it played out.

        Asterisk answers ``200 result=-1`` both for a hangup and for a file it cannot
        open; only a hangup ends the flow. A missing file is logged and the prompt is
        spoken from its text instead (the same voice as the build) when the build folder
        is known, else skipped: a caller is never hung up for a missing file.
        """
        try:
            return await self._command(
                session, f'STREAM FILE {sound} "{escape}"', self.config.agi_play_timeout_s
            )
        except AgiAppError:
            pass
        await self._alive(session)
        log.warning("call %s: sound file %s missing: prompt %s", session.ref, sound, action.prompt)
        if not self.config.sounds_dir or sound.startswith(f"{self.config.prompt_dir}/dyn/"):
            return 0
        from ivr.audio import speak_to_file

        text = render(action.prompt, req.lang, req.context)
        try:
            rel = await asyncio.to_thread(
                speak_to_file,
                self.config.sounds_dir,
                text,
                pick_lang(req.lang),
                prompt=action.prompt,
            )
        except Exception as exc:  # no TTS here: the caller still gets the next step
            log.warning("call %s: prompt %s not spoken (%s)", session.ref, action.prompt, exc)
            return 0
        spoken = f"{self.config.prompt_dir}/{rel.removesuffix('.wav')}"
        if not _SAFE_ARG.match(spoken):
            return 0
        try:
            return await self._command(
                session, f'STREAM FILE {spoken} "{escape}"', self.config.agi_play_timeout_s
            )
        except AgiAppError:
            await self._alive(session)
            log.warning("call %s: spoken prompt %s unplayable", session.ref, action.prompt)
            return 0

    async def _alive(self, session: Session) -> None:
        """Raise `AgiHangup` unless the channel is still there."""
        try:
            await self._command(session, "CHANNEL STATUS", self.config.action_timeout_s)
        except AgiAppError:
            raise AgiHangup("channel gone") from None

    def _sound(self, prompt: str, lang: str, context: Mapping[str, Any], *, slow: bool) -> str:
        audio = context.get("prompt_audio")
        if isinstance(audio, Mapping) and isinstance(audio.get(prompt), str):
            name = str(audio[prompt])
        else:
            name = f"{self.config.prompt_dir}/{lang}/{prompt}{'.slow' if slow else ''}"
        if not _SAFE_ARG.match(name):
            raise AgiHangup(f"unsafe sound file name for prompt {prompt}")
        return name

    async def _sounds(self, action: engine.Play, req: FlowRequest) -> list[str]:
        """The files to play for a prompt: one built file, or fragments and spoken values."""
        lang = pick_lang(req.lang)
        audio = req.context.get("prompt_audio")
        overridden = isinstance(audio, Mapping) and isinstance(audio.get(action.prompt), str)
        if not self.config.sounds_dir or overridden:
            return [self._sound(action.prompt, lang, req.context, slow=action.slow)]
        from ivr.audio import AudioFile, playlist, read_manifest, speak_to_file

        folder = self.config.sounds_dir
        manifest = await asyncio.to_thread(read_manifest, folder)
        names: list[str] = []
        for item in playlist(manifest, action.prompt, lang, req.context, slow=action.slow):
            if isinstance(item, AudioFile):
                rel = item.path
            else:
                rel = await asyncio.to_thread(
                    speak_to_file, folder, item.text, item.lang, prompt=action.prompt
                )
            name = f"{self.config.prompt_dir}/{rel.removesuffix('.wav')}"
            if not _SAFE_ARG.match(name):
                raise AgiHangup(f"unsafe sound file name for prompt {action.prompt}")
            names.append(name)
        return names

    async def _drive(self, session: Session, req: FlowRequest) -> bool:
        """Play a flow on the channel; True when it finished with `STAY` (the channel
        waits here for the next flow)."""
        flow, ref, cfg = req.flow, session.ref, self.config
        if session.wait_class is not None:
            await self._music(session, False)
        variables = {k: str(v) for k, v in req.context.items() if not isinstance(v, Mapping)}
        run, actions = engine.start(flow, variables)
        while True:
            pressed: str | None = None
            for i, action in enumerate(actions):
                if isinstance(action, engine.Play):
                    text = render(action.prompt, req.lang, req.context)
                    self._emit(PromptPlayed(ref, action.prompt, text))
                    nxt = actions[i + 1] if i + 1 < len(actions) else None
                    escape = "".join(sorted(nxt.digits)) if isinstance(nxt, engine.Collect) else ""
                    code = 0
                    for sound in await self._sounds(action, req):
                        code = await self._stream(session, sound, escape, action, req)
                        if code != 0:
                            break
                    if code > 0:
                        pressed = chr(code)  # barge-in: the key that cut the prompt short
                        break
                elif isinstance(action, engine.Collect):
                    ms = int(action.timeout_s * 1000)
                    code = await self._command(
                        session, f"WAIT FOR DIGIT {ms}", action.timeout_s + cfg.action_timeout_s
                    )
                    pressed = chr(code) if code > 0 else None
                    break
                else:
                    if action.transfer == STAY:
                        # the next flow may be started as soon as this outcome is known,
                        # before the PBX has answered what follows: it must find the
                        # channel free for it (else the merchant's code word was lost)
                        session.asked = asyncio.get_running_loop().create_future()
                    self._emit(FlowFinished(ref, flow.name, action.outcome, action.variables))
                    log.info("flow %s on %s finished: %s", flow.name, ref, action.outcome)
                    if action.transfer == STAY:
                        # said to the dialplan too: should this session die before the
                        # next flow (our process crashed), the channel hangs up rather than
                        # wait for an operator (``[yijing-hold] stay``)
                        await self._command(
                            session, f"SET VARIABLE YIJING_TRANSFER {STAY}", cfg.action_timeout_s
                        )
                        return True
                    if action.transfer is None:
                        await self._command(session, "HANGUP", cfg.action_timeout_s)
                    else:
                        await self._command(
                            session,
                            f"SET VARIABLE YIJING_TRANSFER {action.transfer}",
                            cfg.action_timeout_s,
                        )
                    return False
            if pressed is not None:
                run, actions = engine.on_digit(flow, run, pressed)
            else:
                run, actions = engine.on_timeout(flow, run)
