"""The Asterisk backend of the telephony port: AMI through panoramisk 1.4, IVR through FastAGI.

panoramisk's `Manager` sends actions and matches responses to them; everything around
it is ours, because 1.4 is weak exactly where a care hotline cannot be:

- bytes -> messages goes through `wire.FrameParser` (incremental UTF-8: Chinese caller
  names split across TCP reads arrive whole; junk is skipped, the link kept);
- every action is wrapped in ``asyncio.wait_for`` (a Ping queued while down never resolves);
- a Ping/Pong watchdog aborts a socket Asterisk keeps open without answering;
- reconnects use jittered exponential backoff (panoramisk's is a fixed int);
- actions of a dead connection are never re-sent (panoramisk replays them on
  FullyBooted): every action name is "forgetable", the awaiting list is cleared, and an
  Originate carries the ref as ``YIJING_REF`` and is placed at most once per ref;
- a refused login surfaces in `health()` ("authentication failed"), a BackendStatus event
  and an error log on every attempt, instead of a silent loop;
- after each (re)connect live calls are resynced with CoreShowChannels before new events
  are trusted (see `correlate`).

Hold and transfer at the desk keep the operator's leg up: `hold` moves the caller to
MusicOnHold and the operator's leg to a quiet Wait with one Redirect (ExtraChannel), so
neither side is hung up by the broken bridge; `unhold` joins the two again with the AMI
Bridge action (or rings the operator anew when their leg is gone); `transfer` Redirects
the caller into the new operator's Dial and the old operator's leg out to hang up, again
in one Redirect. A caller who hangs up on hold gets their operator's waiting leg hung up.
The transfer's Dial that ends unanswered (the caller's ``DialEnd`` in the operators
context with NOANSWER, BUSY, CHANUNAVAIL or CONGESTION; the dialplan then sends the caller
back to wait in yijing-hold) is reported as `TransferFailed`.

A consult (the port's `Consult`) holds the caller the same way, then Originates the
colleague's own device into ``yijing-consult`` (see `providers.asterisk.consult`); once
they answer, the AMI Bridge action joins their leg with the first operator's waiting leg
and `ConsultAnswered` is reported (no answer, busy, failed: `ConsultFailed`, the caller
still held). Completing Bridges the caller with the colleague's leg and hangs up the first
operator's; cancelling is `unhold` (the caller back with the first operator, rung again if
their leg is gone) and the colleague's leg hung up. A caller who hangs up meanwhile has
both operator legs hung up; a colleague who hangs up while the operators talk ends the
consult (`ConsultFailed`), and the first operator's leg, which Asterisk hangs up with
that bridge, is rung again to take the caller back.

Outages: while the link is down every command raises ``LinkDown``, a
`TelephonyUnavailable`: an Originate refused that way was never sent and its ref is still
free, so dispatch asks again with the same ref once `BackendStatus(up=True)` arrives. An
Originate sent just before the link died (or left unanswered) is in doubt: its ref is
spent, the resync after reconnecting decides, and when the call is not live it is reported
as `OriginateFailed(LOST)`, never as a failure of the far end.

Exceptions (all `providers.base.TelephonyError`):
``TelephonyError`` <- ``TelephonyUnavailable`` <- ``LinkDown`` (no AMI link right now);
``AuthenticationFailed``, ``ActionFailed`` (Asterisk refused or did not answer an
action); ``UnknownCall``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message as PanoramiskMessage

from ivr.flow import Flow
from providers.asterisk.agi import FlowServer
from providers.asterisk.callout import CalloutTracker
from providers.asterisk.config import AsteriskConfig
from providers.asterisk.consult import CONSULT_FOR_VAR, CONSULT_PREFIX, Consultation, ConsultTracker
from providers.asterisk.correlate import (
    HELD_FOR_VAR,
    OPERATOR_PREFIX,
    ORIGINATE_PREFIX,
    RESYNC_PREFIX,
    Correlator,
    endpoint_of,
)
from providers.asterisk.wire import FrameParser, Message
from providers.base import (
    BackendStatus,
    CallEnded,
    CallHeld,
    CallUnheld,
    ConsultAnswered,
    ConsultFailed,
    Health,
    OriginateFailed,
    OriginateFailure,
    TelephonyError,
    TelephonyEvent,
    TelephonyUnavailable,
    TransferFailed,
    UnknownCall,
)

log = logging.getLogger(__name__)

#: Every action we send: panoramisk must forget them on disconnect, never replay them.
_ACTIONS = (
    "login",
    "ping",
    "originate",
    "redirect",
    "bridge",
    "hangup",
    "setvar",
    "queuestatus",
    "coreshowchannels",
    "logoff",
)
_REF_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_NUMBER_RE = re.compile(r"^[0-9+*#]{1,32}$")
_ENDPOINT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
#: DialEnd statuses of a Dial that never reached the operator (CANCEL: the caller hung up)
_UNREACHED = frozenset({"NOANSWER", "BUSY", "CHANUNAVAIL", "CONGESTION"})


class LinkDown(TelephonyUnavailable):
    """There is no usable AMI link right now."""


class AuthenticationFailed(TelephonyError):
    """Asterisk refused the AMI username or secret."""


class ActionFailed(TelephonyError):
    """Asterisk refused an action or did not answer in time."""


class Backoff:
    """Jittered exponential backoff: initial * factor**n, capped, times a random factor."""

    def __init__(
        self, *, initial_s: float, max_s: float, factor: float, jitter: float, rng: random.Random
    ) -> None:
        self.initial_s, self.max_s, self.factor, self.jitter = initial_s, max_s, factor, jitter
        self.rng = rng
        self.attempt = 0

    def next(self) -> float:
        """The next delay; grows until `max_s`."""
        base = min(self.max_s, self.initial_s * self.factor**self.attempt)
        self.attempt += 1
        return base * (1.0 - self.jitter * self.rng.random())

    def reset(self) -> None:
        """Start again from `initial_s` (after a good connection)."""
        self.attempt = 0


class _Manager(Manager):  # type: ignore[misc]
    """panoramisk's Manager minus its own connect/reconnect/ping machinery."""

    def __init__(self, on_lost: Callable[[BaseException | None], None], **config: Any) -> None:
        super().__init__(**config)
        self._on_lost = on_lost

    def connection_lost(self, exc: BaseException | None) -> None:
        """The protocol lost its socket: tell the supervisor; it decides when to reconnect."""
        self._connected = False
        self.awaiting_actions.clear()
        self._on_lost(exc)

    def ping(self) -> None:
        """Disabled: our watchdog pings and checks the Pong."""


class _Protocol(AMIProtocol):  # type: ignore[misc]
    """panoramisk's protocol with our parser: each message goes to the sink, then to panoramisk."""

    def __init__(self, sink: Callable[[Message], None], on_shutdown: Callable[[], None]) -> None:
        super().__init__()
        self._sink = sink
        self._on_shutdown = on_shutdown
        self._parser = FrameParser()

    def data_received(self, data: bytes) -> None:
        """Parse bytes incrementally; never lets one bad message kill the link."""
        for msg in self._parser.feed(data):
            try:
                self._sink(msg)
                if "ActionID" in msg:
                    self.handle_message(PanoramiskMessage(msg))
            except Exception:
                log.exception("AMI message %s not handled", msg.get("Event") or msg.get("Response"))
            if msg.get("Event") == "Shutdown":
                log.warning("Asterisk is shutting down")
                self._on_shutdown()
                self.transport.close()
        if self._parser.version is not None:
            self.version: str | None = self._parser.version


class AsteriskTelephony:
    """The port on Asterisk. Use as ``async with AsteriskTelephony(config) as tel: ...``."""

    name = "asterisk"

    def __init__(self, config: AsteriskConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self.correlator = Correlator(
            inbound_contexts=config.hotline_contexts,
            ref_vars=(config.ref_var,),
            onhold_context=config.onhold_context,
        )
        self._rng = rng or random.Random()
        self._events: asyncio.Queue[TelephonyEvent] = asyncio.Queue()
        self._placed: set[str] = set()
        self._up = False
        self._detail = "not started"
        self._closing = False
        self._manager: _Manager | None = None
        self._protocol: _Protocol | None = None
        self._lost: asyncio.Future[BaseException | None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._first_attempt: asyncio.Future[None] | None = None
        self._inflight: set[asyncio.Future[Any]] = set()
        self._agi: FlowServer | None = None
        self._resyncs = 0
        self._lost_detail = ""
        self.connections = 0
        #: ref -> the operator's leg (channel name) waiting while the caller is on hold
        self._held: dict[str, str] = {}
        #: ref -> the operator endpoint a transfer is ringing, until its Dial ends
        self._transfers: dict[str, str] = {}
        self._releases: set[asyncio.Task[None]] = set()
        #: click-to-calls: the desk's leg seen as the port promises (`callout`)
        self._callouts = CalloutTracker()
        #: ref -> the pending report of an Originate that failed without a reason
        self._doubtful: dict[str, asyncio.TimerHandle] = {}
        #: consult transfers: the colleague's desk leg, by the held caller's ref
        self._consults = ConsultTracker()
        self._consult_rows: list[Message] = []

    # -- lifecycle -------------------------------------------------------------------
    async def __aenter__(self) -> AsteriskTelephony:
        loop = asyncio.get_running_loop()
        self._closing = False
        if self.config.agi_enabled:
            self._agi = FlowServer(self.config, self._emit)
            await self._agi.start()
        self._first_attempt = loop.create_future()
        self._supervisor = loop.create_task(self._supervise(), name="asterisk-ami")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._first_attempt), self.config.startup_wait_s)
        if self.config.fail_fast_auth and self._detail == "authentication failed":
            await self.__aexit__(None, None, None)
            raise AuthenticationFailed(f"AMI login refused for user {self.config.username!r}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing = True
        for handle in self._doubtful.values():
            handle.cancel()
        self._doubtful.clear()
        for task in list(self._releases):
            task.cancel()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        self._drop_link()
        if self._agi is not None:
            await self._agi.close()
            self._agi = None
        self._set_status(False, "closed")

    @property
    def hears_speech(self) -> bool:
        """`SpeechDetection`: as the dialplan is set up (`AsteriskConfig.talk_detect`)."""
        return self.config.talk_detect

    def health(self) -> Health:
        """Up once logged in and resynced; the detail says why not otherwise."""
        return Health(backend=self.name, up=self._up, detail=self._detail)

    async def events(self) -> AsyncIterator[TelephonyEvent]:
        """Every event, in order, until the backend is closed."""
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, BackendStatus) and not event.up and self._closing:
                return

    async def live_calls(self) -> set[str]:
        """The refs of the calls Asterisk has live, as the last resync and the events since
        show them (the port's `LiveCalls`); `LinkDown` while the link is down or a resync
        is under way: then nothing is known about any call."""
        if not self._up or self.correlator.resyncing:
            raise LinkDown(f"AMI link is not synchronised: {self._detail}")
        return set(self.correlator.live_refs())

    @property
    def agi_port(self) -> int:
        """The FastAGI port actually listened on (0 when AGI is disabled)."""
        return self._agi.port if self._agi is not None else 0

    # -- the port's commands -------------------------------------------------------------
    async def originate(
        self, *, ref: str, number: str, caller_id: str | None = None, timeout_s: float = 30.0
    ) -> None:
        """Place an outbound call named `ref` at most once, whatever happens to the link."""
        if not _REF_RE.match(ref):
            raise TelephonyError(f"unusable ref {ref!r}")
        if not _NUMBER_RE.match(number):
            raise TelephonyError(f"unusable number for {ref}")
        if ref in self._placed:
            log.info("originate %s ignored: already placed", ref)
            return
        # before the ref is taken: a refusal here sent nothing, the same ref may come again
        self._require_up()
        self._placed.add(ref)
        self.correlator.originate_sent(ref)
        if self.config.amd:
            self.correlator.amd_refs.add(ref)
        action = {
            "Action": "Originate",
            "ActionID": ORIGINATE_PREFIX + ref,
            "Channel": self.config.dial_template.format(number=number),
            "Context": self.config.outbound_context,
            "Exten": "s",
            "Priority": "1",
            "CallerID": caller_id or self.config.caller_id,
            "Timeout": str(int(timeout_s * 1000)),
            # several variables: comma separated, as Asterisk reads them
            "Variable": f"{self.config.ref_var}={ref}"
            + (",YIJING_AMD=1" if self.config.amd else ""),
            "Async": "true",
        }
        try:
            resp = await self._send(action, as_list=False)
        except (ActionFailed, LinkDown) as exc:
            # Maybe placed, maybe not: never send it again; the next resync decides (a call
            # it does not find is reported as OriginateFailed(LOST)).
            log.warning("originate %s: outcome unknown (%s)", ref, exc)
            self.correlator.unknown_originates.add(ref)
            return
        if not resp.success:
            message = resp.get("Message", "")
            log.warning("originate %s refused: %s", ref, message)
            self.correlator.calls.pop(ref, None)
            if "shutting down" in message.lower():
                # an outage, not the merchant's failure: nothing was placed, the ref is free
                self._placed.discard(ref)
                self._outage("Asterisk is shutting down")
                raise LinkDown(f"originate {ref}: Asterisk is shutting down")
            self._emit(OriginateFailed(ref, OriginateFailure.FAILED))

    async def call_out(
        self,
        *,
        ref: str,
        desk: str,
        number: str,
        caller_id: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        """Ring the operator's device, then dial `number` from the dialplan (one Originate,
        placed at most once per ref); see `providers.asterisk.callout`."""
        if not _REF_RE.match(ref):
            raise TelephonyError(f"unusable ref {ref!r}")
        if not _NUMBER_RE.match(number):
            raise TelephonyError(f"unusable number for {ref}")
        endpoint = self._endpoint(ref, desk)
        if ref in self._placed:
            log.info("call_out %s ignored: already placed", ref)
            return
        self._require_up()
        self._placed.add(ref)
        self.correlator.originate_sent(ref)
        self._callouts.placed(ref, desk)
        ring_s = str(max(1, round(timeout_s)))
        action: dict[str, Any] = {
            "Action": "Originate",
            "ActionID": ORIGINATE_PREFIX + ref,
            "Channel": self.config.desk_template.format(endpoint=endpoint),
            "Context": self.config.callout_context,
            "Exten": "s",
            "Priority": "1",
            "CallerID": caller_id or self.config.caller_id,
            "Timeout": str(int(timeout_s * 1000)),
            "Variable": [
                f"{self.config.ref_var}={ref}",
                f"YIJING_CALLOUT_DIAL={self.config.dial_template.format(number=number)}",
                f"YIJING_CALLOUT_RING_S={ring_s}",
            ],
            "Async": "true",
        }
        try:
            resp = await self._send(action, as_list=False)
        except (ActionFailed, LinkDown) as exc:
            log.warning("call_out %s: outcome unknown (%s)", ref, exc)
            self.correlator.unknown_originates.add(ref)
            return
        if not resp.success:
            log.warning("call_out %s refused: %s", ref, resp.get("Message", ""))
            self.correlator.calls.pop(ref, None)
            self._callouts.calls.pop(ref, None)
            self._emit(OriginateFailed(ref, OriginateFailure.FAILED))
        else:
            log.info("call_out %s: ringing operator %s", ref, endpoint)

    async def run_flow(
        self, ref: str, flow: Flow, *, context: Mapping[str, Any], lang: str = "zh-CN"
    ) -> None:
        """Play `flow` on the call through its FastAGI session; FlowFinished reports the end."""
        if self._agi is None:
            raise TelephonyError("FastAGI is disabled in the Asterisk config")
        if ref not in self.correlator.calls and ref not in self._agi.sessions:
            raise UnknownCall(ref)
        await self._agi.start_flow(ref, flow, context, lang)

    async def bridge(self, ref: str, *, peer: str) -> None:
        """Send a call to an operator endpoint, or join two calls without showing numbers."""
        channel = self._channel(ref)
        if peer.startswith(OPERATOR_PREFIX):
            await self._to_operator(ref, channel, peer)
            return
        other = self._channel(peer)
        # The dialplan replaces this call's caller ID with the hotline's before Bridge(),
        # so the peer (a merchant) only ever sees the hotline number.
        await self._expect_success(
            {
                "Action": "Setvar",
                "Channel": channel,
                "Variable": "YIJING_PEER_CHANNEL",
                "Value": other,
            },
            ref,
        )
        await self._expect_success(
            {
                "Action": "Redirect",
                "Channel": channel,
                "Context": self.config.bridge_context,
                "Exten": "s",
                "Priority": "1",
            },
            ref,
        )

    async def hold(self, ref: str) -> None:
        """Caller to MusicOnHold, operator's leg to a quiet Wait: one Redirect for both."""
        channel = self._channel(ref)
        if ref in self._held:
            return
        leg = self.correlator.bridged_leg(ref)
        if leg is None:
            raise TelephonyError(f"{ref} is not bridged to an operator: nothing to hold")
        context = self.config.onhold_context
        # the waiting leg names its caller, so a restarted Yijing finds it (resync)
        await self._expect_success(
            {"Action": "Setvar", "Channel": leg, "Variable": HELD_FOR_VAR, "Value": ref}, ref
        )
        await self._expect_success(
            {
                "Action": "Redirect",
                "Channel": channel,
                "Context": context,
                "Exten": "caller",
                "Priority": "1",
                "ExtraChannel": leg,
                "ExtraContext": context,
                "ExtraExten": "operator",
                "ExtraPriority": "1",
            },
            ref,
        )
        self._held[ref] = leg
        log.info("call %s on hold; operator leg %s waits", ref, leg)
        self._emit(CallHeld(ref))

    async def unhold(self, ref: str) -> None:
        """Bridge the held caller and the waiting operator leg again (AMI Bridge)."""
        channel = self._channel(ref)
        leg = self._held.get(ref)
        if leg is None:
            raise TelephonyError(f"{ref} is not on hold")
        bridged = False
        if self.correlator.channel_alive(leg):
            try:
                await self._expect_success(
                    {"Action": "Bridge", "Channel1": channel, "Channel2": leg, "Tone": "no"},
                    ref,
                )
                bridged = True
            except ActionFailed as exc:
                log.warning("call %s: operator leg could not be bridged (%s)", ref, exc)
        if not bridged:
            # the operator's phone dropped while the caller waited: ring it again
            await self._to_operator(ref, channel, OPERATOR_PREFIX + endpoint_of(leg))
        self._held.pop(ref, None)
        self._emit(CallUnheld(ref))

    async def transfer(self, ref: str, *, peer: str) -> None:
        """Caller into the new operator's Dial, the old operator's leg out: one Redirect."""
        channel = self._channel(ref)
        endpoint = self._endpoint(ref, peer)
        was_held = ref in self._held
        old = self._held.get(ref) or self.correlator.bridged_leg(ref)
        action = {
            "Action": "Redirect",
            "Channel": channel,
            "Context": self.config.operators_context,
            "Exten": endpoint,
            "Priority": "1",
        }
        if old is not None and self.correlator.channel_alive(old):
            action |= {
                "ExtraChannel": old,
                "ExtraContext": self.config.onhold_context,
                "ExtraExten": "release",
                "ExtraPriority": "1",
            }
        await self._expect_success(action, ref)
        self._held.pop(ref, None)
        self._transfers[ref] = endpoint
        log.info("call %s transferred to operator %s", ref, endpoint)
        if was_held:
            self._emit(CallUnheld(ref))

    async def consult(self, ref: str, *, peer: str) -> None:
        """Hold the caller (if not held) and ring the colleague's desk device `peer`."""
        self._channel(ref)
        endpoint = self._endpoint(ref, peer)
        if ref in self._consults.by_ref:
            raise TelephonyError(f"{ref}: a consult is under way already")
        await self.hold(ref)
        self._consults.placed(ref, peer)
        action: dict[str, Any] = {
            "Action": "Originate",
            "ActionID": CONSULT_PREFIX + ref,
            "Channel": self.config.desk_template.format(endpoint=endpoint),
            "Context": self.config.consult_context,
            "Exten": "s",
            "Priority": "1",
            "CallerID": self.config.caller_id,
            "Timeout": str(int(self.config.consult_ring_s * 1000)),
            "Variable": f"{CONSULT_FOR_VAR}={ref}",
            "Async": "true",
        }
        try:
            await self._expect_success(action, ref)
        except TelephonyError:
            self._consults.by_ref.pop(ref, None)
            raise
        log.info("call %s: consulting operator %s, the caller on hold", ref, endpoint)

    async def complete_consult(self, ref: str, *, peer: str) -> None:
        """The held caller to the consulted colleague (AMI Bridge); the first operator's
        leg is hung up."""
        channel = self._channel(ref)
        consult = self._consults.by_ref.get(ref)
        if consult is None or consult.peer != peer or not consult.answered or not consult.channel:
            raise TelephonyError(f"{ref}: no answered consult with {peer}")
        await self._expect_success(
            {"Action": "Bridge", "Channel1": channel, "Channel2": consult.channel, "Tone": "no"},
            ref,
        )
        del self._consults.by_ref[ref]
        leg = self._held.pop(ref, None)
        if leg is not None:
            await self._release_leg(ref, leg)
        log.info("call %s: consult completed, the caller with %s", ref, peer)
        self._emit(CallUnheld(ref))

    async def cancel_consult(self, ref: str, *, peer: str) -> None:
        """The caller back with the first operator; the colleague's leg (ringing or
        talking) hung up."""
        consult = self._consults.by_ref.pop(ref, None)
        if ref in self._held:
            await self.unhold(ref)
        if consult is not None and consult.channel is not None:
            await self._release_leg(ref, consult.channel)
        log.info("call %s: consult with %s cancelled", ref, peer)

    def _consult_message(self, msg: Message) -> None:
        """What an AMI message means for a consult under way."""
        outcome = self._consults.feed(msg)
        if outcome is None:
            return
        kind, consult = outcome
        if kind == "failed":
            log.warning("call %s: consulted %s did not answer or left", consult.ref, consult.peer)
            self._emit(ConsultFailed(consult.ref, consult.peer))
        elif kind == "orphan" and consult.channel is not None:
            self._spawn(self._release_leg(consult.ref, consult.channel))
        elif kind == "answered":
            self._spawn(self._join_consult(consult))

    def _consult_resync(self, msg: Message) -> None:
        """Consults under way when Yijing restarted: colleague legs the snapshot lists,
        taken once it is applied (their callers must be live calls)."""
        if msg.get("Event") == "CoreShowChannel":
            if msg.get("Context") == self.config.consult_context:
                self._consult_rows.append(msg)
            return
        rows, self._consult_rows = self._consult_rows, []
        for row in rows:
            found = self._consults.resynced(
                row,
                self.config.consult_context,
                self.config.desk_template,
                set(self.correlator.calls),
            )
            if found is not None:
                log.info("resync: call %s is consulting %s", found.ref, found.peer)

    async def _join_consult(self, consult: Consultation) -> None:
        """The colleague answered: their leg and the first operator's waiting leg, joined."""
        ref, leg = consult.ref, self._held.get(consult.ref)
        assert consult.channel is not None
        try:
            if leg is None or not self.correlator.channel_alive(leg):
                raise TelephonyError(f"{ref}: the first operator's leg is gone")
            await self._expect_success(
                {"Action": "Bridge", "Channel1": leg, "Channel2": consult.channel, "Tone": "no"},
                ref,
            )
        except TelephonyError as exc:
            log.warning("call %s: consult legs not joined (%s)", ref, exc)
            if self._consults.by_ref.get(ref) is consult:
                del self._consults.by_ref[ref]
                await self._release_leg(ref, consult.channel)
                self._emit(ConsultFailed(ref, consult.peer))
            return
        if self._consults.by_ref.get(ref) is consult:
            self._emit(ConsultAnswered(ref, consult.peer))

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _release_leg(self, ref: str, leg: str) -> None:
        """The caller hung up on hold: hang up the operator's leg still waiting for them."""
        try:
            await self._expect_success(
                {"Action": "Hangup", "Channel": leg, "Cause": "16"}, ref, missing_ok=True
            )
        except TelephonyError as exc:
            log.warning("call %s: waiting operator leg not released (%s)", ref, exc)

    def _endpoint(self, ref: str, peer: str) -> str:
        if not peer.startswith(OPERATOR_PREFIX):
            raise TelephonyError(f"{ref}: {peer!r} is not an operator endpoint")
        endpoint = peer[len(OPERATOR_PREFIX) :]
        if not _ENDPOINT_RE.match(endpoint):
            raise TelephonyError(f"unusable operator endpoint for {ref}")
        return endpoint

    async def _to_operator(self, ref: str, channel: str, peer: str) -> None:
        await self._expect_success(
            {
                "Action": "Redirect",
                "Channel": channel,
                "Context": self.config.operators_context,
                "Exten": self._endpoint(ref, peer),
                "Priority": "1",
            },
            ref,
        )

    async def hangup(self, ref: str) -> None:
        """Hang up a live call; unknown refs are ignored."""
        channel = self.correlator.channel_of(ref)
        if channel is None:
            log.info("hangup %s ignored: no live channel", ref)
            return
        await self._expect_success(
            {"Action": "Hangup", "Channel": channel, "Cause": "16"}, ref, missing_ok=True
        )

    async def queue_status(self, queue: str | None = None) -> list[dict[str, str]]:
        """QueueStatus as plain dicts (QueueParams, QueueMember, QueueEntry rows)."""
        action = {"Action": "QueueStatus"}
        if queue:
            action["Queue"] = queue
        rows = await self._send(action)
        items = rows if isinstance(rows, list) else [rows]
        return [dict(m) for m in items if m.get("Event")]

    # -- internals: sending ------------------------------------------------------------
    def _require_up(self) -> None:
        if not self._up or self._manager is None:
            raise LinkDown(f"AMI link is down: {self._detail}")

    def _channel(self, ref: str) -> str:
        channel = self.correlator.channel_of(ref)
        if channel is None:
            raise UnknownCall(ref)
        return channel

    async def _expect_success(
        self, action: dict[str, str], ref: str, *, missing_ok: bool = False
    ) -> None:
        self._require_up()
        resp = await self._send(action, as_list=False)
        if not resp.success:
            message = resp.get("Message", "")
            if missing_ok and "No such channel" in message:
                return
            raise ActionFailed(f"{action['Action']} for {ref} refused: {message}")

    async def _send(
        self, action: dict[str, Any], *, as_list: bool | None = None, login: bool = False
    ) -> Any:
        manager = self._manager
        if manager is None or (not self._up and not login):
            raise LinkDown(f"AMI link is down: {self._detail}")
        future = manager.send_action(dict(action), as_list=as_list)
        self._inflight.add(future)
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.config.action_timeout_s)
        except TimeoutError:
            raise ActionFailed(f"no answer to {action['Action']} in time") from None
        finally:
            self._inflight.discard(future)
            if not future.done():
                future.cancel()

    # -- internals: the link ---------------------------------------------------------------
    def _emit(self, event: TelephonyEvent) -> None:
        self._events.put_nowait(event)

    def _on_message(self, msg: Message) -> None:
        if msg.get("Event") == "DialEnd" and self._transfers:
            self._transfer_dial_ended(msg)
        if self._consults.by_ref or self._consults.claims(msg):
            self._consult_message(msg)
            if self._consults.claims(msg):
                return
        dialled: list[TelephonyEvent] = []
        if msg.get("Event") in ("DialState", "DialEnd") and self._callouts.calls:
            chan = self.correlator.channels.get(msg.get("Uniqueid", ""))
            if chan is not None and chan.ref is not None:
                dialled = self._callouts.dial_message(chan.ref, msg)
        events = dialled + [
            out for event in self.correlator.feed(msg) for out in self._callouts.rewrite(event)
        ]
        if msg.get("Event") in ("CoreShowChannel", "CoreShowChannelsComplete"):
            self._consult_resync(msg)
        if self.correlator.held_legs:
            # operator legs a resync found waiting on hold (after a Yijing restart)
            for ref, leg in self.correlator.held_legs.items():
                self._held.setdefault(ref, leg)
            self.correlator.held_legs.clear()
        for event in events:
            if (
                isinstance(event, OriginateFailed)
                and event.reason == OriginateFailure.FAILED
                and self.config.originate_failure_grace_s > 0
            ):
                self._hold_failure(event.ref)
                continue
            self._emit(event)
            if isinstance(event, CallEnded):
                self._transfers.pop(event.ref, None)
                # the caller left during a consult: the colleague's leg goes too
                consult = self._consults.by_ref.pop(event.ref, None)
                if consult is not None and consult.channel is not None:
                    self._spawn(self._release_leg(event.ref, consult.channel))
            if isinstance(event, CallEnded) and event.ref in self._held:
                self._spawn(self._release_leg(event.ref, self._held.pop(event.ref)))

    def _hold_failure(self, ref: str) -> None:
        """Report a reasonless Originate failure only once no outage explains it."""
        if ref in self._doubtful:
            return
        loop = asyncio.get_running_loop()
        self._doubtful[ref] = loop.call_later(
            self.config.originate_failure_grace_s, self._release_failure, ref
        )

    def _release_failure(self, ref: str) -> None:
        if self._doubtful.pop(ref, None) is not None:
            self._emit(OriginateFailed(ref, OriginateFailure.FAILED))

    def _outage(self, detail: str) -> None:
        """The PBX is going away: calls that just failed for no reason were lost with it,
        and nothing is sent until the link is back (and resynced)."""
        for ref, handle in list(self._doubtful.items()):
            handle.cancel()
            del self._doubtful[ref]
            log.warning("originate %s: lost with the PBX (%s)", ref, detail)
            self._emit(OriginateFailed(ref, OriginateFailure.LOST))
        if self._up:
            self._set_status(False, detail)

    def _transfer_dial_ended(self, msg: Message) -> None:
        """The caller's Dial of a transfer's operator ended: answered, or never reached."""
        chan = self.correlator.channels.get(msg.get("Uniqueid", ""))
        ref = chan.ref if chan is not None else None
        endpoint = self._transfers.get(ref or "")
        if ref is None or endpoint is None:
            return
        if msg.get("Context") != self.config.operators_context or msg.get("Exten") != endpoint:
            return
        status = msg.get("DialStatus", "")
        del self._transfers[ref]
        if status in _UNREACHED:
            log.warning(
                "call %s: operator %s never answered the transfer (%s)", ref, endpoint, status
            )
            self._emit(TransferFailed(ref, OPERATOR_PREFIX + endpoint))

    def _shutdown_seen(self) -> None:
        self._lost_detail = "Asterisk is shutting down"
        self._outage(self._lost_detail)

    def _set_status(self, up: bool, detail: str) -> None:
        changed = up != self._up or detail != self._detail
        self._up, self._detail = up, detail
        if changed:
            self._emit(BackendStatus(up=up, detail=detail))

    def _on_lost(self, exc: BaseException | None) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(exc)
        for future in list(self._inflight):
            if not future.done():
                future.set_exception(LinkDown("AMI link lost"))

    def _drop_link(self) -> None:
        if not self._closing:
            self._outage(self._lost_detail or "connection lost")
        protocol, self._protocol = self._protocol, None
        if protocol is not None and not protocol.closed:
            protocol.closed = True
            protocol.transport.abort()
        for future in list(self._inflight):
            if not future.done():
                future.set_exception(LinkDown("AMI link lost"))
        self._inflight.clear()
        if self._manager is not None:
            self._manager.awaiting_actions.clear()
        self.correlator.link_lost()

    async def _supervise(self) -> None:
        backoff = Backoff(
            initial_s=self.config.backoff_initial_s,
            max_s=self.config.backoff_max_s,
            factor=self.config.backoff_factor,
            jitter=self.config.backoff_jitter,
            rng=self._rng,
        )
        while not self._closing:
            self._lost_detail = ""
            try:
                await self._connect_once(backoff)
                detail = self._lost_detail or "connection lost"
            except AuthenticationFailed:
                detail = "authentication failed"
                log.error(
                    "AMI login to %s:%s as %r refused: authentication failed",
                    self.config.host,
                    self.config.port,
                    self.config.username,
                )
                backoff.attempt = max(backoff.attempt, 64)  # no hammering: straight to max
            except (OSError, TimeoutError, TelephonyError) as exc:
                detail = f"cannot reach AMI at {self.config.host}:{self.config.port}: {exc}"
                log.warning("AMI link: %s", detail)
            self._drop_link()
            self._set_status(False, detail)
            if self._first_attempt is not None and not self._first_attempt.done():
                self._first_attempt.set_result(None)
            if self._closing:
                return
            delay = backoff.next()
            log.info("AMI reconnect in %.2f s", delay)
            await asyncio.sleep(delay)

    async def _connect_once(self, backoff: Backoff) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config
        self._lost = loop.create_future()
        manager = self._manager
        if manager is None:
            manager = self._manager = _Manager(
                self._on_lost,
                host=cfg.host,
                port=cfg.port,
                loop=loop,
                forgetable_actions=_ACTIONS,
                log=log,
            )
        _, protocol = await asyncio.wait_for(
            loop.create_connection(
                lambda: _Protocol(self._on_message, self._shutdown_seen), cfg.host, cfg.port
            ),
            cfg.connect_timeout_s,
        )
        self.connections += 1
        self._protocol = protocol
        # What panoramisk's Manager.connection_made would do, minus its auto-login/pinger.
        protocol.factory = manager
        protocol.log = log
        protocol.config = manager.config
        protocol.encoding = manager.encoding = "utf-8"
        manager.protocol = protocol
        manager.responses = protocol.responses
        manager.awaiting_actions.clear()
        resp = await self._send(
            {
                "Action": "Login",
                "Username": cfg.username,
                "Secret": cfg.secret,
                "Events": "on",
            },
            as_list=False,
            login=True,
        )
        if not resp.success:
            raise AuthenticationFailed(resp.get("Message", "authentication failed"))
        self._resyncs += 1
        await self._send(
            {"Action": "CoreShowChannels", "ActionID": f"{RESYNC_PREFIX}{self._resyncs}"},
            login=True,
        )
        backoff.reset()
        log.info("AMI link up to %s:%s (resynced)", cfg.host, cfg.port)
        self._set_status(True, f"connected to {cfg.host}:{cfg.port}")
        if self._first_attempt is not None and not self._first_attempt.done():
            self._first_attempt.set_result(None)
        watchdog = loop.create_task(self._watchdog(protocol))
        try:
            await self._lost
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog

    async def _watchdog(self, protocol: _Protocol) -> None:
        while True:
            await asyncio.sleep(self.config.ping_interval_s)
            try:
                resp = await self._send({"Action": "Ping"}, as_list=False)
            except (ActionFailed, LinkDown):
                resp = None
            if resp is None or not resp.success:
                log.warning(
                    "AMI Ping unanswered within %.1f s: dropping the link",
                    self.config.action_timeout_s,
                )
                self._lost_detail = "AMI not answering Ping"
                protocol.transport.abort()
                return
