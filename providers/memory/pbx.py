"""The simulated PBX: an in-process telephony backend with scriptable far ends.

It is the embedded default (demo, tests, benchmarks) and what the console's phone
simulator drives: a person "calls" the hotline, answers as a merchant and presses keys.
It runs IVR flows with the same pure engine the other backends render, so what is said
and accepted here is what a real PBX says and accepts. It also receives text messages
(`send_text`): they land in `texts`, the simulated handsets' inbox the simulator shows.

Operator endpoints answer at once, unless a test or the simulator scripts a desk
(`script_desk`): a transfer to a desk scripted "no_answer", "busy" or "fail" holds the
caller while it rings, then reports `TransferFailed` and leaves the caller waiting.
A click-to-call (`call_out`) rings the desk the same way (state `desk_ringing`), then
the number, whose phone is played like any outbound call's (`answer`, `reject`,
`party_hangup`, or a `script` for the number); once answered it is bridged to the desk.
A consult (`consult`, the port's `Consult` capability) holds the caller and rings the
colleague's desk the same way: it answers at once unless scripted, and the two operators'
desk legs are then bridged (`consults`) until the consult is completed or cancelled.

An outage can be simulated (`set_link(False)`, also from the simulator page): the link
reports `BackendStatus(up=False)`, every command raises `TelephonyUnavailable` and the
live calls are dropped, as when a real PBX or its trunk goes away. When the link is back
(`set_link(True)`) the dropped calls are reported the way a real backend reports what it
finds after reconnecting: unanswered outbound calls as `OriginateFailed(LOST)` (nobody can
tell whether they rang), the others as `CallEnded(FAILED)`; then `BackendStatus(up=True)`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import logging
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ivr import engine
from ivr.flow import Flow
from ivr.prompts import render
from providers.base import (
    BackendStatus,
    CallAnswered,
    CallBridged,
    CallEnded,
    CallerSpoke,
    CallHeld,
    CallOffered,
    CallRinging,
    CallUnheld,
    ConsultAnswered,
    ConsultFailed,
    DigitPressed,
    EndCause,
    FlowFinished,
    Health,
    MessagingError,
    OriginateFailed,
    OriginateFailure,
    PromptPlayed,
    TelephonyError,
    TelephonyEvent,
    TelephonyUnavailable,
    TransferFailed,
    UnknownCall,
)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Script:
    """What a scripted far end does when called: answer after a delay and press keys.

    `action` is "answer", "machine" (an answering machine picks up: the simulator tells,
    as Asterisk `AMD()` or Twilio machine detection do), "busy", "no_answer" or "fail";
    `digits` are pressed one by one whenever the flow waits for input.
    """

    action: str = "answer"
    answer_after_s: float = 0.0
    digits: str = ""


@dataclass(frozen=True, slots=True)
class SimText:
    """A text message as the simulated handset received it."""

    ref: str
    number: str
    text: str


@dataclass(slots=True)
class SimCall:
    """One call as the simulator sees it."""

    ref: str
    direction: str  # "in" or "out"
    number: str  # the far end: caller for inbound, callee for outbound
    state: str  # one of providers.base.SIM_STATES
    peer: str | None = None
    flow: Flow | None = None
    run: engine.Run | None = None
    lang: str = "zh-CN"
    context: dict[str, Any] = field(default_factory=dict)
    transcript: list[str] = field(default_factory=list)
    waiting_digits: frozenset[str] = frozenset()
    script: Script | None = None
    timer: asyncio.TimerHandle | None = None
    cause: str | None = None
    #: the number the called phone sees calling (outbound: the hotline unless told)
    caller_id: str | None = None

    def public(self) -> dict[str, Any]:
        """A JSON-ready view for the simulator page."""
        return {
            "ref": self.ref,
            "direction": self.direction,
            "number": self.number,
            "state": self.state,
            "peer": self.peer,
            "flow": self.flow.name if self.flow else None,
            "waiting_for": sorted(self.waiting_digits),
            "transcript": self.transcript[-12:],
            "cause": self.cause,
        }


@dataclass(slots=True)
class SimConsult:
    """A consult under way: the colleague's desk rings or talks to the caller's operator."""

    peer: str
    answered: bool = False
    timer: asyncio.TimerHandle | None = None


class MemoryPBX:
    """The in-memory backend. `time_scale` shrinks every wait (tests use 0.01)."""

    name = "memory"

    def __init__(
        self,
        *,
        time_scale: float = 1.0,
        ring_timeout_s: float = 30.0,
        hotline: str = "12349",
        keep_ended: int = 50,
        keep_texts: int = 20,
    ) -> None:
        self.time_scale = time_scale
        self.ring_timeout_s = ring_timeout_s
        self.hotline = hotline
        self.keep_ended = keep_ended
        self.calls: dict[str, SimCall] = {}
        self.placed: set[str] = set()
        self.scripts: dict[str, Script] = {}
        #: operator endpoints ("operator:<id>") that do not pick up a transferred caller
        self.desks: dict[str, Script] = {}
        #: consults under way, by the held caller's ref
        self.consults: dict[str, SimConsult] = {}
        #: texts received, newest first
        self.texts: collections.deque[SimText] = collections.deque(maxlen=keep_texts)
        self.texted: set[str] = set()
        #: numbers that cannot receive texts (landlines): `send_text` to them fails
        self.landlines: set[str] = set()
        self._events: asyncio.Queue[TelephonyEvent] = asyncio.Queue()
        self._ids = itertools.count(1)
        #: a fresh prefix per simulator: refs stay unique on a database kept across restarts
        self._boot = secrets.token_hex(4)
        self._up = False
        self._open = False
        #: a simulated outage: the link is down while the PBX is open
        self._outage = False
        #: calls dropped by the outage, reported when the link is back: (ref, event)
        self._dropped: list[TelephonyEvent] = []
        #: the last event of a closed PBX (an outage's down event does not end the stream)
        self._closed: BackendStatus | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -----------------------------------------------------------------
    async def __aenter__(self) -> MemoryPBX:
        self._open, self._up, self._outage, self._closed = True, True, False, None
        self._emit(BackendStatus(up=True, detail="memory"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._open = self._up = False
        for call in self.calls.values():
            if call.timer:
                call.timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        self._closed = BackendStatus(up=False, detail="closed")
        self._events.put_nowait(self._closed)

    @property
    def hears_speech(self) -> bool:
        """`SpeechDetection`: the simulator's phones speak (`speak`)."""
        return True

    def health(self) -> Health:
        """Up while open, unless an outage is being simulated."""
        detail = "simulated outage" if self._outage else "simulated PBX"
        return Health(backend=self.name, up=self._up, detail=detail)

    async def events(self) -> AsyncIterator[TelephonyEvent]:
        """Every event, in order, until the PBX is closed (an outage does not end them)."""
        while True:
            event = await self._events.get()
            yield event
            if event is self._closed:
                return

    def set_link(self, up: bool) -> None:
        """Simulate the link going down (live calls are dropped) or coming back."""
        if not self._open or up == self._up:
            return
        if not up:
            self._up, self._outage = False, True
            for call in self.calls.values():
                if call.state == "ended":
                    continue
                answered = call.direction == "in" or call.state not in ("ringing", "desk_ringing")
                if answered:
                    self._dropped.append(CallEnded(call.ref, EndCause.FAILED))
                else:
                    self._dropped.append(OriginateFailed(call.ref, OriginateFailure.LOST))
                self._end(call, EndCause.FAILED, emit=False)
                call.cause = "link_lost"
            log.warning("memory PBX: simulated outage, %s live calls dropped", len(self._dropped))
            self._emit(BackendStatus(up=False, detail="simulated outage"))
            return
        self._up, self._outage = True, False
        dropped, self._dropped = self._dropped, []
        for event in dropped:
            self._emit(event)
        log.info("memory PBX: link back, %s dropped calls reported", len(dropped))
        self._emit(BackendStatus(up=True, detail="memory"))

    def _require_link(self, what: str) -> None:
        if not self._up:
            raise TelephonyUnavailable(f"{what}: the simulated PBX link is down")

    # -- the port's commands ---------------------------------------------------------
    async def originate(
        self, *, ref: str, number: str, caller_id: str | None = None, timeout_s: float = 30.0
    ) -> None:
        """Ring `number`; the same ref is never placed twice."""
        # before the ref is taken: refused while down, the same ref may be asked again
        self._require_link(f"originate {ref}")
        if ref in self.placed:
            log.info("originate %s ignored: already placed", ref)
            return
        self.placed.add(ref)
        call = SimCall(
            ref=ref, direction="out", number=number, state="ringing",
            caller_id=caller_id or self.hotline,
        )  # fmt: skip
        self.calls[ref] = call
        self._ring(call, timeout_s)

    async def call_out(
        self,
        *,
        ref: str,
        desk: str,
        number: str,
        caller_id: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        """Ring the operator's desk, then `number`; the same ref is never placed twice.

        The simulator's desks answer at once unless scripted (`script_desk`): "no_answer"
        rings for `ring_timeout_s`, "busy" and "fail" give up after `answer_after_s`.
        """
        self._require_link(f"call_out {ref}")
        if ref in self.placed:
            log.info("call_out %s ignored: already placed", ref)
            return
        self.placed.add(ref)
        call = SimCall(
            ref=ref, direction="out", number=number, state="desk_ringing", peer=desk,
            caller_id=caller_id or self.hotline,
        )  # fmt: skip
        self.calls[ref] = call
        script = self.desks.get(desk)
        if script is None or script.action == "answer":
            delay = script.answer_after_s if script is not None else 0.0
            call.timer = self._later(delay, self._desk_answered, ref, timeout_s)
            return
        reasons = {"busy": OriginateFailure.BUSY, "fail": OriginateFailure.FAILED}
        reason = reasons.get(script.action, OriginateFailure.NO_ANSWER)
        delay = self.ring_timeout_s if script.action == "no_answer" else script.answer_after_s
        call.timer = self._later(delay, self._desk_unanswered, ref, reason)

    def _desk_answered(self, ref: str, timeout_s: float) -> None:
        call = self.calls.get(ref)
        if call is None or call.state != "desk_ringing" or call.peer is None:
            return
        call.timer = None
        call.state = "ringing"
        self._emit(CallBridged(ref, call.peer))
        self._ring(call, timeout_s)

    def _desk_unanswered(self, ref: str, reason: OriginateFailure) -> None:
        call = self.calls.get(ref)
        if call is None or call.state != "desk_ringing":
            return
        call.timer = None
        self._emit(OriginateFailed(ref, reason))
        self._end(call, EndCause(reason.value), emit=False)

    def _ring(self, call: SimCall, timeout_s: float) -> None:
        """The far end of an outbound call rings, and does what its script says."""
        ref, number = call.ref, call.number
        template = self.scripts.get(number)
        call.script = dataclasses.replace(template) if template else None
        self._emit(CallRinging(ref))
        timeout = min(timeout_s, self.ring_timeout_s)
        call.timer = self._later(timeout, self._ring_timeout, ref)
        script = call.script
        if script is not None:
            if script.action in ("answer", "machine"):
                by = "machine" if script.action == "machine" else ""
                self._later(script.answer_after_s, self._answer_now, ref, by)
            elif script.action in ("busy", "fail"):
                reason = (
                    OriginateFailure.BUSY if script.action == "busy" else OriginateFailure.FAILED
                )
                self._later(script.answer_after_s, self._fail_now, ref, reason)

    async def run_flow(
        self, ref: str, flow: Flow, *, context: Mapping[str, Any], lang: str = "zh-CN"
    ) -> None:
        """Run `flow` on a live call, saying prompts into the call's transcript."""
        self._require_link(f"run_flow {ref}")
        call = self._live(ref)
        call.flow, call.context, call.lang = flow, dict(context), lang
        # a mapping is a rendering option (Asterisk's prompt_audio), not a flow variable
        variables = {k: str(v) for k, v in context.items() if not isinstance(v, Mapping)}
        call.run, actions = engine.start(flow, variables)
        self._perform(call, actions)

    async def bridge(self, ref: str, *, peer: str) -> None:
        """Connect a call to a peer (an operator or another call)."""
        self._require_link(f"bridge {ref}")
        call = self._live(ref)
        call.state, call.peer = "bridged", peer
        self._cancel_timer(call)
        # a prompt still playing to a waiting caller stops when they are connected
        call.flow, call.run, call.waiting_digits = None, None, frozenset()
        self._emit(CallBridged(ref, peer))
        other = self.calls.get(peer)
        if other is not None and other.state != "ended":
            other.state, other.peer = "bridged", ref
            self._emit(CallBridged(peer, ref))

    async def hold(self, ref: str) -> None:
        """The caller hears the hold prompt; the operator stays on the line."""
        self._require_link(f"hold {ref}")
        call = self._live(ref)
        if call.state == "held":
            return
        if call.state != "bridged" or call.peer is None:
            raise TelephonyError(f"{ref} is not bridged: nothing to hold")
        call.state = "held"
        self._say_hold(call)
        self._emit(CallHeld(ref))

    async def unhold(self, ref: str) -> None:
        """Back to the operator who held the call."""
        self._require_link(f"unhold {ref}")
        call = self._live(ref)
        if call.state != "held":
            raise TelephonyError(f"{ref} is not on hold")
        call.state = "bridged"
        self._emit(CallUnheld(ref))

    async def transfer(self, ref: str, *, peer: str) -> None:
        """Hand a connected or held caller to another operator endpoint."""
        self._require_link(f"transfer {ref}")
        call = self._live(ref)
        if call.state not in ("bridged", "held") or call.peer is None:
            raise TelephonyError(f"{ref} is not with an operator: nothing to transfer")
        desk = self.desks.get(peer)
        if desk is not None and desk.action != "answer":
            # the new operator's phone rings unanswered; the caller holds meanwhile
            if call.state != "held":
                self._say_hold(call)
            call.state, call.peer = "held", peer
            delay = self.ring_timeout_s if desk.action == "no_answer" else desk.answer_after_s
            call.timer = self._later(delay, self._transfer_unanswered, ref, peer)
            return
        if call.state == "held":
            self._emit(CallUnheld(ref))
        call.state, call.peer = "bridged", peer
        self._emit(CallBridged(ref, peer))

    async def consult(self, ref: str, *, peer: str) -> None:
        """Hold the caller and ring the colleague's desk `peer` (as scripted, or at once)."""
        self._require_link(f"consult {ref}")
        call = self._live(ref)
        if call.state not in ("bridged", "held") or call.peer is None:
            raise TelephonyError(f"{ref} is not with an operator: nothing to consult about")
        if ref in self.consults:
            raise TelephonyError(f"{ref}: a consult is under way already")
        if call.state != "held":
            call.state = "held"
            self._say_hold(call)
            self._emit(CallHeld(ref))
        consult = self.consults[ref] = SimConsult(peer)
        desk = self.desks.get(peer)
        if desk is None or desk.action == "answer":
            delay = desk.answer_after_s if desk is not None else 0.0
            consult.timer = self._later(delay, self._consult_answered, ref, peer)
        else:
            delay = self.ring_timeout_s if desk.action == "no_answer" else desk.answer_after_s
            consult.timer = self._later(delay, self._consult_unanswered, ref, peer)

    async def complete_consult(self, ref: str, *, peer: str) -> None:
        """The held caller goes to the consulted colleague; their operator's leg is released."""
        self._require_link(f"complete_consult {ref}")
        call = self._live(ref)
        consult = self.consults.get(ref)
        if consult is None or consult.peer != peer or not consult.answered:
            raise TelephonyError(f"{ref}: no answered consult with {peer}")
        del self.consults[ref]
        call.state, call.peer = "bridged", peer
        self._emit(CallUnheld(ref))
        self._emit(CallBridged(ref, peer))

    async def cancel_consult(self, ref: str, *, peer: str) -> None:
        """Release the colleague's desk leg; the caller is back with their operator."""
        self._require_link(f"cancel_consult {ref}")
        call = self._live(ref)
        consult = self.consults.pop(ref, None)
        if consult is not None and consult.timer is not None:
            consult.timer.cancel()
        if call.state == "held":
            call.state = "bridged"
            self._emit(CallUnheld(ref))

    def _consult_answered(self, ref: str, peer: str) -> None:
        consult = self.consults.get(ref)
        if consult is None or consult.peer != peer or consult.answered:
            return
        consult.answered, consult.timer = True, None
        self._emit(ConsultAnswered(ref, peer))

    def _consult_unanswered(self, ref: str, peer: str) -> None:
        consult = self.consults.get(ref)
        if consult is None or consult.peer != peer or consult.answered:
            return
        del self.consults[ref]
        # the caller stays on hold with their operator until the unhold
        self._emit(ConsultFailed(ref, peer))

    async def hangup(self, ref: str) -> None:
        """Hang up from the platform's side; unknown or ended refs are ignored, even while
        the link is down (an outage has dropped every live call already)."""
        call = self.calls.get(ref)
        if call is not None and call.state != "ended":
            self._require_link(f"hangup {ref}")
            self._end(call, EndCause.NORMAL)

    async def send_text(self, *, ref: str, number: str, text: str) -> None:
        """Deliver a text to the simulated handset; the same ref is never sent twice."""
        if not self._up:
            raise MessagingError(f"text {ref}: the simulated PBX link is down")
        if ref in self.texted:
            log.info("text %s ignored: already sent", ref)
            return
        self.texted.add(ref)
        if number in self.landlines:
            raise MessagingError(f"text {ref}: the number cannot receive texts")
        self.texts.appendleft(SimText(ref, number, text))
        log.info("text %s delivered", ref)

    # -- the far end: what the simulator page and tests do ------------------------------
    async def dial_in(self, caller: str, *, dialled: str | None = None) -> str:
        """A phone calls the hotline; returns the new call's ref."""
        ref = f"sim-{self._boot}-{next(self._ids)}"
        self.calls[ref] = SimCall(ref=ref, direction="in", number=caller, state="answered")
        self._emit(CallOffered(ref, caller=caller, dialled=dialled or self.hotline))
        return ref

    def reachable(self) -> None:
        """Raise `TelephonyUnavailable` while a simulated outage lasts (the simulator's
        phones cannot reach a hotline whose PBX is gone)."""
        self._require_link("the hotline")

    async def answer(self, ref: str, *, machine: bool = False) -> None:
        """The called party picks up (`machine`: their answering machine does)."""
        call = self._live(ref)
        if call.direction != "out" or call.state != "ringing":
            raise UnknownCall(f"{ref} is not ringing")
        self._answer_now(ref, "machine" if machine else "")

    async def reject(self, ref: str, reason: OriginateFailure = OriginateFailure.BUSY) -> None:
        """The called party is busy or the call fails."""
        call = self._live(ref)
        if call.state != "ringing":
            raise UnknownCall(f"{ref} is not ringing")
        self._fail_now(ref, reason)

    async def press(self, ref: str, digit: str) -> None:
        """The far end presses a key."""
        call = self._live(ref)
        self._emit(DigitPressed(ref, digit))
        self._press(call, digit)

    async def speak(self, ref: str) -> None:
        """The far end says something: `CallerSpoke` (a menu waiting for a key still waits:
        speech is no key)."""
        call = self._live(ref)
        if call.state not in ("answered", "bridged", "held"):
            raise UnknownCall(f"{ref} is not answered")
        call.transcript.append("[🗣]")
        self._emit(CallerSpoke(ref))

    async def party_hangup(self, ref: str) -> None:
        """The far end hangs up."""
        call = self._live(ref)
        if call.state == "desk_ringing":
            raise UnknownCall(f"{ref} is not dialled yet (the operator's desk rings)")
        if call.state == "ringing":
            self._fail_now(ref, OriginateFailure.NO_ANSWER)
        else:
            self._end(call, EndCause.NORMAL)

    def script(self, number: str, script: Script) -> None:
        """Make every future call to `number` behave as `script` says."""
        self.scripts[number] = script

    def script_desk(self, peer: str, script: Script) -> None:
        """Make every future transfer or consult to the operator endpoint `peer` behave as
        `script` says: "no_answer" rings for `ring_timeout_s`, "busy" and "fail" give up after
        `answer_after_s`; "answer" (or no script) takes the caller at once."""
        self.desks[peer] = script

    async def live_calls(self) -> set[str]:
        """The refs of the calls not ended (the port's `LiveCalls` capability)."""
        return {ref for ref, call in self.calls.items() if call.state != "ended"}

    def snapshot(self) -> list[dict[str, Any]]:
        """Live calls first, then the most recent ended ones."""
        calls = list(self.calls.values())
        live = [c.public() for c in calls if c.state != "ended"]
        ended = [c.public() for c in calls if c.state == "ended"][-10:]
        return live + ended

    # -- internals ---------------------------------------------------------------------
    def _emit(self, event: TelephonyEvent) -> None:
        self._events.put_nowait(event)

    def _later(self, seconds: float, fn: Any, *args: Any) -> asyncio.TimerHandle:
        loop = asyncio.get_running_loop()
        return loop.call_later(max(0.0, seconds * self.time_scale), fn, *args)

    def _live(self, ref: str) -> SimCall:
        call = self.calls.get(ref)
        if call is None or call.state == "ended":
            raise UnknownCall(ref)
        return call

    def _cancel_timer(self, call: SimCall) -> None:
        if call.timer is not None:
            call.timer.cancel()
            call.timer = None

    def _answer_now(self, ref: str, answered_by: str = "") -> None:
        call = self.calls.get(ref)
        if call is None or call.state != "ringing":
            return
        self._cancel_timer(call)
        # a click-to-call's far end talks with the operator's desk at once
        call.state = "bridged" if call.peer is not None else "answered"
        self._emit(CallAnswered(ref, answered_by))

    def _fail_now(self, ref: str, reason: OriginateFailure) -> None:
        call = self.calls.get(ref)
        if call is None or call.state != "ringing":
            return
        self._cancel_timer(call)
        self._emit(OriginateFailed(ref, reason))
        self._end(call, EndCause(reason.value), emit=False)

    def _say_hold(self, call: SimCall) -> None:
        text = render("desk.on_hold", call.lang)
        call.transcript.append(text)
        self._emit(PromptPlayed(call.ref, "desk.on_hold", text))

    def _transfer_unanswered(self, ref: str, peer: str) -> None:
        call = self.calls.get(ref)
        if call is None or call.state != "held" or call.peer != peer:
            return
        call.timer = None
        # back to waiting, as after dialling in: the next bridge connects the caller
        call.state, call.peer = "answered", None
        self._emit(TransferFailed(ref, peer))

    def _ring_timeout(self, ref: str) -> None:
        self._fail_now(ref, OriginateFailure.NO_ANSWER)

    def _end(self, call: SimCall, cause: EndCause, *, emit: bool = True) -> None:
        self._cancel_timer(call)
        # a caller gone during a consult: the colleague's desk leg goes too
        consult = self.consults.pop(call.ref, None)
        if consult is not None and consult.timer is not None:
            consult.timer.cancel()
        call.state, call.cause, call.waiting_digits = "ended", cause.value, frozenset()
        if emit:
            self._emit(CallEnded(call.ref, cause))
        ended = [r for r, c in self.calls.items() if c.state == "ended"]
        for old in ended[: max(0, len(ended) - self.keep_ended)]:
            del self.calls[old]

    def _press(self, call: SimCall, digit: str) -> None:
        if call.flow is None or call.run is None or not call.waiting_digits:
            return
        self._cancel_timer(call)
        call.transcript.append(f"[{digit}]")
        call.run, actions = engine.on_digit(call.flow, call.run, digit)
        self._perform(call, actions)

    def _input_timeout(self, ref: str) -> None:
        call = self.calls.get(ref)
        if call is None or call.flow is None or call.run is None or call.state == "ended":
            return
        call.timer = None
        call.run, actions = engine.on_timeout(call.flow, call.run)
        self._perform(call, actions)

    def _perform(self, call: SimCall, actions: list[engine.Action]) -> None:
        flow = call.flow
        assert flow is not None
        call.waiting_digits = frozenset()
        for action in actions:
            if isinstance(action, engine.Play):
                text = render(action.prompt, call.lang, call.context)
                call.transcript.append(text)
                self._emit(PromptPlayed(call.ref, action.prompt, text))
            elif isinstance(action, engine.Collect):
                call.waiting_digits = action.digits
                call.timer = self._later(action.timeout_s, self._input_timeout, call.ref)
                self._feed_script(call)
            else:
                self._emit(FlowFinished(call.ref, flow.name, action.outcome, action.variables))
                call.flow, call.run = None, None
                if action.transfer is None:
                    self._end(call, EndCause.NORMAL)

    def _feed_script(self, call: SimCall) -> None:
        script = call.script
        if script is None or not script.digits:
            return
        digit, script.digits = script.digits[0], script.digits[1:]
        task = asyncio.get_running_loop().create_task(self._press_soon(call.ref, digit))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _press_soon(self, ref: str, digit: str) -> None:
        await asyncio.sleep(0)
        with contextlib.suppress(UnknownCall):
            await self.press(ref, digit)
