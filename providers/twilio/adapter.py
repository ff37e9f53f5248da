"""The Twilio backend of the telephony port: REST commands down, webhooks up.

Outbound calls are placed with the twilio REST client; Twilio then tells us what happens
through webhooks (`providers.twilio.webhooks`), which call the `on_*` methods here. Each
call's webhook URLs carry our `ref` in the query, so a webhook finds its call even
before `Calls.create` has returned the CallSid. Inbound calls are named by their CallSid.

Handoff between dispatch and the webhooks: dispatch calls `run_flow` / `bridge` when it
sees `CallAnswered` or `CallOffered`, but Twilio fetches the answered call's TwiML at
the same moment. A voice webhook with no command yet waits on the call's event for at
most `handoff_wait_s` (0.3 s: dispatch normally answers within tens of ms, and waiting on
an event costs nothing), then answers with `<Pause>` + `<Redirect>` back to itself and
Twilio asks again a second later. The loop is bounded by `handoff_max_s`, after which the
call is hung up. A call whose flow handed it on (`Transfer`) waits in the same loop,
unbounded, until `bridge` (or `hangup`) gives it its next document. A call that is inside
a `<Gather>` or a `<Dial>` when a new command comes is pulled out with a REST redirect.

Text messages (`send_text`, the port's optional `Messaging` capability) go out through
the Messages API; a ref is sent at most once, like a call.

Operators are met in a conference (the desk): `bridge(ref, peer=<operator>)` adds the
operator as a conference participant over REST (label ``operator-<n>``, its status posted
to `/participant`) and sends the caller into the same room (label ``caller``). That is
what makes hold and transfer possible with the operator's leg up: `hold` updates the
caller's participant (`Hold=true`, `HoldUrl` = our `/hold` TwiML: the calm hold prompt);
`transfer` lets the old operator leave without ending the room, holds the caller, adds the
new operator and completes the old operator's call; the caller is taken off hold when the
new operator answers. An operator who never answers sends the caller back to the hold
loop, where dispatch may bridge again; when that operator was a transfer's, the port
says so with `TransferFailed` (dispatch has the call on their desk already).

The state is in the memory of the process that owns the telephony link (DESIGN 12), which
does every webhook's work (a standby hands its webhooks over: `providers.twilio.webhooks`).
With `keep_state` it is also written to the `twilio_call` table after every change
(`providers.twilio.state`), and loaded when the adapter opens: a process taking over
after kill -9 asks Twilio how each loaded call stands (`_resync`) and carries on.

A consult (the port's `Consult`) is Twilio's warm transfer in that same room: the caller's
participant is held (the hold prompt), the colleague is added as a participant (label
``consult-<n>``, not ending the room on exit) and talks with the first operator; their
answer is `ConsultAnswered`, no answer (or their leaving) `ConsultFailed`. Completing
makes the colleague the room's operator (ending it on exit), lets the first operator
leave, takes the caller off hold and completes the first operator's call; cancelling
completes the colleague's call and takes the caller off hold. A caller who hangs up ends
the room (and the first operator's leg with it); a colleague still ringing is completed.

Outages: a request that never reached Twilio (connection refused, no route, DNS, connect
timeout) or that Twilio answered with a 5xx raises `TelephonyUnavailable`; for `originate`
the ref is released again, so dispatch places the same ref once the link is back. A
`Calls.create` whose answer was lost (read timeout, connection dropped mid-request) may
have placed the call: its ref stays taken (a late webhook for it is hung up) and it is
reported as `OriginateFailed(LOST)`. While the link is down a probe asks the account
resource again with exponential backoff and reports `BackendStatus(up=True)` as soon as
Twilio answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import urlencode

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http import AsyncHttpClient
from twilio.rest import Client

from ivr import engine
from ivr.flow import STAY, Flow
from providers.base import (
    BackendStatus,
    CallBridged,
    CallerSpoke,
    CallHeld,
    CallOffered,
    CallUnheld,
    ConsultAnswered,
    ConsultFailed,
    DigitPressed,
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
from providers.twilio import twiml
from providers.twilio.callout import NUMBER_EVENTS, Callout
from providers.twilio.config import TwilioConfig
from providers.twilio.http import AiohttpTwilioClient
from providers.twilio.state import CallTable, TrackedCall, dump, restore
from providers.twilio.status import Progress, advance, answered_by

log = logging.getLogger(__name__)

#: What we ask Twilio to report about outbound calls.
STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]
#: What we ask Twilio to report about an operator's leg in a desk conference.
PARTICIPANT_EVENTS = ["answered", "completed"]
#: Final statuses of an operator's leg that never reached the operator.
_UNREACHED = frozenset({"busy", "no-answer", "failed", "canceled"})

_LINK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
#: errors raised before the request left this machine: Twilio never saw it
_UNSENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


def _unreachable(exc: BaseException) -> bool:
    """Twilio certainly did not act on the request: never sent, or refused with a 5xx.

    A 5xx is taken as "not done": Twilio documents 500/503 as failures to process, and
    burning a merchant's offer on an API incident is the worse of the two risks (the other
    is a rare second ring of the same merchant).
    """
    if isinstance(exc, TwilioRestException):
        return exc.status >= 500
    return isinstance(exc, _UNSENT)


_Call = TrackedCall

P = ParamSpec("P")
R = TypeVar("R")


def _persisting(
    method: Callable[Concatenate[TwilioTelephony, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[TwilioTelephony, P], Coroutine[Any, Any, R]]:
    """A port command whose changes are written to the call table before it returns."""

    @functools.wraps(method)
    async def run(self: TwilioTelephony, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(self, *args, **kwargs)
        finally:
            await self.persist()

    return run


class TwilioTelephony:
    """The port over Twilio Programmable Voice. An async context manager."""

    name = "twilio"

    def __init__(self, config: TwilioConfig, *, http_client: AsyncHttpClient | None = None) -> None:
        self.config = config
        self.speech = twiml.Speech(
            languages={"zh-CN": "cmn-CN", "en": config.english_language},
            voices=dict(config.voices),
            audio_base_url=config.audio_base_url,
        )
        self._given_http = http_client
        self._http: AsyncHttpClient | None = None
        self._client: Client | None = None
        self._calls: dict[str, _Call] = {}
        self._by_sid: dict[str, str] = {}
        self._texts: dict[str, None] = {}
        self._events: asyncio.Queue[TelephonyEvent] = asyncio.Queue()
        self._open = False
        self._up = False
        self._reported = False
        self._detail = "not started"
        self._prober: asyncio.Task[None] | None = None
        self._chores: set[asyncio.Task[None]] = set()
        # the call state's copy in the database (several processes): see `keep_state`
        self._table: CallTable | None = None
        self._flows: Callable[[str], Flow] | None = None
        self._saved: dict[str, dict[str, Any]] = {}
        self._persist_lock = asyncio.Lock()

    def keep_state(self, table: CallTable, flows: Callable[[str], Flow]) -> None:
        """Keep the call state in `table` as well: loaded when the adapter opens (a
        process taking over carries on the calls of the one that died), written after
        every change. `flows` finds a flow by name for a loaded call."""
        self._table, self._flows = table, flows

    # -- lifecycle ---------------------------------------------------------------------
    async def __aenter__(self) -> TwilioTelephony:
        # Built here, inside the running loop (DESIGN 13).
        self._http = self._given_http or AiohttpTwilioClient(timeout_s=self.config.http_timeout_s)
        self._client = Client(
            self.config.account_sid, self.config.auth_token, http_client=self._http
        )
        if self.config.api_base_url:
            self._client.api.base_url = self.config.api_base_url.rstrip("/")
        self._open = True
        await self._load()
        await self._probe()
        await self._resync()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._open = False
        for task in list(self._chores):
            task.cancel()
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
            self._prober = None
        for call in self._calls.values():
            call.changed.set()
        if self._given_http is None and self._http is not None:
            close = getattr(self._http, "close", None)
            if close is not None:
                await close()
        self._client, self._http = None, None
        self._up = False
        self._detail = "closed"
        self._events.put_nowait(BackendStatus(up=False, detail="closed"))

    @property
    def hears_speech(self) -> bool:
        """`SpeechDetection`: inbound calls' Gathers hear speech (`input="dtmf speech"`)."""
        return True

    def health(self) -> Health:
        """Up when the last REST exchange with Twilio worked."""
        return Health(backend=self.name, up=self._open and self._up, detail=self._detail)

    async def events(self) -> AsyncIterator[TelephonyEvent]:
        """Every event, in order, until the adapter is closed."""
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, BackendStatus) and not event.up and not self._open:
                return

    # -- the port's commands -------------------------------------------------------------
    @_persisting
    async def originate(
        self, *, ref: str, number: str, caller_id: str | None = None, timeout_s: float = 30.0
    ) -> None:
        """Place an outbound call named `ref`; a ref is never placed twice."""
        if ref in self._calls:
            log.info("originate %s ignored: already placed", ref)
            return
        detect = self.config.machine_detection
        await self._create(_Call(ref=ref, outbound=True), number, caller_id, timeout_s, detect)

    @_persisting
    async def call_out(
        self,
        *,
        ref: str,
        desk: str,
        number: str,
        caller_id: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        """Ring the operator's endpoint over REST; once answered its TwiML dials `number`
        (see `providers.twilio.callout`). A ref is never placed twice."""
        if ref in self._calls:
            log.info("call_out %s ignored: already placed", ref)
            return
        ring_s = max(1, round(timeout_s))
        call = _Call(ref=ref, outbound=True, callout=Callout(desk, number, ring_s))
        # the desk sees the platform number calling, as for any call the hotline places
        await self._create(call, self.participant_address(desk), None, timeout_s)

    async def _create(
        self, call: _Call, to: str, caller_id: str | None, timeout_s: float, detect: bool = False
    ) -> None:
        """Place `call` over REST (`Calls.create`); its ref is taken before the request
        (`detect`: with answering-machine detection)."""
        ref = call.ref
        client = self._rest()
        self._calls[ref] = call  # before the first await: a concurrent twin sees it
        # written before the request: a process taking over never places this ref again
        await self.persist()
        extra: dict[str, Any] = {"machine_detection": "Enable"} if detect else {}
        try:
            created = await client.calls.create_async(
                **extra,
                to=to,
                from_=caller_id or self.config.from_number,
                url=self.url("voice", ref=ref),
                method="POST",
                status_callback=self.url("status", ref=ref),
                status_callback_method="POST",
                status_callback_event=STATUS_EVENTS,
                timeout=max(1, round(timeout_s)),
            )
        except (TwilioException, *_LINK_ERRORS) as exc:
            self._link_failed(exc)
            if _unreachable(exc) and not call.seen and call.sid is None:
                # Twilio never placed it: free the ref, dispatch asks again when the link is up
                del self._calls[ref]
                log.warning("originate %s not sent: %s", ref, _describe(exc))
                raise TelephonyUnavailable(f"originate {ref}: {_describe(exc)}") from exc
            log.warning("originate %s failed: %s", ref, _describe(exc))
            # The ref stays taken: a timed-out create may still have placed the call (its
            # webhooks then find it ended and are hung up).
            if not call.ended:
                call.progress = Progress(rank=4)
                reason = (
                    OriginateFailure.FAILED
                    if isinstance(exc, TwilioRestException)
                    else OriginateFailure.LOST
                )
                self._emit(OriginateFailed(ref, reason))
            return
        self._link_ok()
        sid = str(created.sid)
        self._learn_sid(call, sid)
        log.info("originate %s placed as %s", ref, sid)
        if call.hangup:
            await self._complete(call)

    @_persisting
    async def run_flow(
        self, ref: str, flow: Flow, *, context: Mapping[str, Any], lang: str = "zh-CN"
    ) -> None:
        """Start `flow` on a live call; its turns are served as TwiML by the webhooks."""
        call = self._live(ref)
        call.flow, call.context, call.lang = flow, dict(context), lang
        # a mapping is a rendering option (Asterisk's prompt_audio), not a flow variable
        variables = {k: str(v) for k, v in context.items() if not isinstance(v, Mapping)}
        call.run, call.queued = engine.start(flow, variables)
        log.info("run_flow %s: %s", ref, flow.name)
        await self._command(call)

    @_persisting
    async def bridge(self, ref: str, *, peer: str) -> None:
        """Connect a call to an operator endpoint, a number, or another call (conference)."""
        call = self._live(ref)
        other = self._calls.get(peer)
        if other is not None and (other.ended or other.hangup or other.mode == "done"):
            raise UnknownCall(peer)
        if other is call:
            raise TelephonyError(f"cannot bridge {ref} to itself")
        if other is not None:
            room = "yijing-" + "-".join(sorted((ref, peer)))
            target = twiml.DialTarget("conference", room)
            call.dial = (peer, target)
            other.dial = (ref, target)
            log.info("bridge %s with call %s in a conference", ref, peer)
            await self._command(call)
            await self._command(other)
            return
        # an operator (or any endpoint) joins the caller's desk conference as a participant
        await self._add_operator(call, peer)
        call.held, call.unhold_on_answer = False, None
        call.dial = (peer, twiml.DialTarget("desk", self.room(ref)))
        log.info("bridge %s to an endpoint in its desk conference", ref)
        await self._command(call)

    @_persisting
    async def hold(self, ref: str) -> None:
        """Hold the caller's participant: they hear our hold prompt, the operator stays."""
        call = self._at_desk(ref)
        if call.held:
            return
        await self._hold_caller(call, True)
        self._emit(CallHeld(ref))

    @_persisting
    async def unhold(self, ref: str) -> None:
        """Take the caller's participant off hold."""
        call = self._at_desk(ref)
        if not call.held:
            raise TelephonyError(f"{ref} is not on hold")
        await self._hold_caller(call, False)
        call.unhold_on_answer = None
        self._emit(CallUnheld(ref))

    @_persisting
    async def transfer(self, ref: str, *, peer: str) -> None:
        """Swap the operator in the caller's conference; the caller holds until they answer."""
        call = self._at_desk(ref)
        client = self._rest()
        old_label, old_sid = call.operator_label, call.operator_sid
        conference = self._conference(call)
        try:
            if old_label is not None:
                # the old operator may leave without ending the caller's conference
                await conference.participants(old_label).update_async(end_conference_on_exit=False)
            if not call.held:
                await self._hold_caller(call, True)
        except (TwilioException, *_LINK_ERRORS) as exc:
            raise self._refused(exc, f"transfer of {ref} failed: {_describe(exc)}") from exc
        call.held = True
        await self._add_operator(call, peer)
        call.unhold_on_answer = call.operator_label
        if old_sid is not None:
            try:
                await client.calls(old_sid).update_async(status="completed")
            except TwilioRestException as exc:
                log.info("transfer %s: old operator leg already gone (%s)", ref, _describe(exc))
            except (TwilioException, *_LINK_ERRORS) as exc:
                raise self._refused(exc, f"transfer of {ref} failed: {_describe(exc)}") from exc
        self._link_ok()
        log.info("transfer %s: operator %s replaces %s", ref, call.operator_label, old_label)
        self._emit(CallBridged(ref, peer))

    @_persisting
    async def consult(self, ref: str, *, peer: str) -> None:
        """Hold the caller's participant and ring the colleague into the same room."""
        call = self._at_desk(ref)
        if call.consult_label is not None:
            raise TelephonyError(f"{ref}: a consult is under way already")
        to = self.participant_address(peer)
        if not call.held:
            await self._hold_caller(call, True)
            self._emit(CallHeld(ref))
        call.operators += 1
        label = f"consult-{call.operators}"
        try:
            participant = await self._conference(call).participants.create_async(
                from_=self.config.from_number,
                to=to,
                label=label,
                beep="false",
                start_conference_on_enter=True,
                end_conference_on_exit=False,
                status_callback=self.url("participant", ref=call.ref, label=label),
                status_callback_method="POST",
                status_callback_event=PARTICIPANT_EVENTS,
                timeout=self.config.operator_ring_s,
            )
        except (TwilioException, *_LINK_ERRORS) as exc:
            raise self._refused(exc, f"consult for {ref} not placed: {_describe(exc)}") from exc
        self._link_ok()
        call.consult_label, call.consult_sid = label, participant.call_sid
        call.consult_peer, call.consult_answered = peer, False
        log.info("call %s: %s ringing into the desk room to consult", ref, label)

    @_persisting
    async def complete_consult(self, ref: str, *, peer: str) -> None:
        """The colleague becomes the room's operator; the first operator's call ends."""
        call = self._at_desk(ref)
        label = call.consult_label
        if label is None or call.consult_peer != peer or not call.consult_answered:
            raise TelephonyError(f"{ref}: no answered consult with {peer}")
        conference = self._conference(call)
        old_label, old_sid = call.operator_label, call.operator_sid
        try:
            if old_label is not None:
                await conference.participants(old_label).update_async(end_conference_on_exit=False)
            await conference.participants(label).update_async(end_conference_on_exit=True)
        except (TwilioException, *_LINK_ERRORS) as exc:
            raise self._refused(exc, f"consult of {ref} not completed: {_describe(exc)}") from exc
        call.operator_label, call.operator_sid, call.operator_peer = label, call.consult_sid, peer
        self._forget_consult(call)
        await self._hold_caller(call, False)
        if old_sid is not None:
            await self._end_leg(ref, old_sid)
        log.info("call %s: consult completed, %s has the caller", ref, label)
        self._emit(CallUnheld(ref))
        self._emit(CallBridged(ref, peer))

    @_persisting
    async def cancel_consult(self, ref: str, *, peer: str) -> None:
        """The colleague's call ends (ringing or talking); the caller is off hold."""
        call = self._live(ref)
        sid = call.consult_sid
        self._forget_consult(call)
        if sid is not None:
            await self._end_leg(ref, sid)
        if call.held and call.operator_label is not None and call.mode == "bridged":
            await self._hold_caller(call, False)
            self._emit(CallUnheld(ref))
        log.info("call %s: consult with %s cancelled", ref, peer)

    def _forget_consult(self, call: _Call) -> None:
        call.consult_label = call.consult_sid = call.consult_peer = None
        call.consult_answered = False

    async def _end_leg(self, ref: str, sid: str) -> None:
        """Complete an operator's conference leg; one already over is no matter."""
        try:
            await self._rest().calls(sid).update_async(status="completed")
        except TwilioRestException as exc:
            log.info("call %s: operator leg already gone (%s)", ref, _describe(exc))
        except (TwilioException, *_LINK_ERRORS) as exc:
            raise self._refused(exc, f"operator leg of {ref} not ended: {_describe(exc)}") from exc

    async def _end_leg_quietly(self, ref: str, sid: str) -> None:
        try:
            await self._end_leg(ref, sid)
        except TelephonyError as exc:
            log.warning("call %s: consulted operator's leg not ended (%s)", ref, exc)

    def _consult_status(self, call: _Call, status: str) -> None:
        """The colleague's participant answered, never answered, or left."""
        peer = call.consult_peer
        assert peer is not None
        if status == "in-progress" and not call.consult_answered:
            call.consult_answered = True
            self._emit(ConsultAnswered(call.ref, peer))
        elif status in _UNREACHED or status == "completed":
            log.warning("call %s: consulted %s is gone (%s)", call.ref, call.consult_label, status)
            self._forget_consult(call)
            self._emit(ConsultFailed(call.ref, peer))

    @_persisting
    async def hangup(self, ref: str) -> None:
        """Hang up a call (REST status=completed); unknown or ended refs are ignored."""
        call = self._calls.get(ref)
        if call is None or call.ended or call.hangup:
            return
        call.hangup = True
        call.changed.set()
        if call.sid is None:
            log.info("hangup %s deferred until Twilio names the call", ref)
            return
        await self._complete(call)

    async def live_calls(self) -> set[str]:
        """The refs of the calls this adapter placed or was offered that Twilio has not
        reported over (the port's `LiveCalls`). Without `keep_state` a call from before a
        restart is unknown, and lost, since no webhook of it can be served any more; with
        it, the calls loaded from the table count."""
        if not self._open:
            raise TelephonyUnavailable("the Twilio adapter is not open")
        return {ref for ref, call in self._calls.items() if not call.ended}

    async def send_text(self, *, ref: str, number: str, text: str) -> None:
        """Send a text through the Messages API; a ref is never sent twice."""
        if ref in self._texts:
            log.info("text %s ignored: already sent", ref)
            return
        # taken before the first await, and kept on failure: a timed-out create may have sent it
        self._texts[ref] = None
        while len(self._texts) > self.config.keep_texts:
            del self._texts[next(iter(self._texts))]
        try:
            created = await self._rest().messages.create_async(
                to=number, from_=self.config.sms_from or self.config.from_number, body=text
            )
        except (TwilioException, *_LINK_ERRORS) as exc:
            self._link_failed(exc)
            log.warning("text %s failed: %s", ref, _describe(exc))
            raise MessagingError(f"text {ref} not sent: {_describe(exc)}") from exc
        self._link_ok()
        log.info("text %s sent as %s", ref, created.sid)

    # -- the desk conference ---------------------------------------------------------------
    def room(self, ref: str) -> str:
        """The friendly name of a call's desk conference."""
        return f"yijing-desk-{ref}"

    def participant_address(self, peer: str) -> str:
        """The `To` of an operator's conference leg for a bridge peer."""
        target = self.dial_target(peer)
        return f"client:{target.address}" if target.kind == "client" else target.address

    async def _add_operator(self, call: _Call, peer: str) -> None:
        """Ring an operator into the caller's desk conference (created by its name)."""
        client = self._rest()
        call.operators += 1
        label = f"operator-{call.operators}"
        try:
            participant = await client.conferences(
                call.conference_sid or self.room(call.ref)
            ).participants.create_async(
                from_=self.config.from_number,
                to=self.participant_address(peer),
                label=label,
                beep="false",
                start_conference_on_enter=True,
                end_conference_on_exit=True,
                status_callback=self.url("participant", ref=call.ref, label=label),
                status_callback_method="POST",
                status_callback_event=PARTICIPANT_EVENTS,
                timeout=self.config.operator_ring_s,
            )
        except (TwilioException, *_LINK_ERRORS) as exc:
            message = f"operator for {call.ref} not added: {_describe(exc)}"
            raise self._refused(exc, message) from exc
        self._link_ok()
        call.conference_sid = str(participant.conference_sid or "") or call.conference_sid
        call.operator_label, call.operator_sid = label, participant.call_sid
        call.operator_peer = peer
        log.info("call %s: %s ringing into %s", call.ref, label, call.conference_sid)

    def _conference(self, call: _Call) -> Any:
        return self._rest().conferences(call.conference_sid or self.room(call.ref))

    async def _hold_caller(self, call: _Call, hold: bool) -> None:
        participant = self._conference(call).participants(twiml.DESK_CALLER_LABEL)
        try:
            if hold:
                await participant.update_async(
                    hold=True, hold_url=self.url("hold", ref=call.ref), hold_method="POST"
                )
            else:
                await participant.update_async(hold=False)
        except (TwilioException, *_LINK_ERRORS) as exc:
            verb = "hold" if hold else "unhold"
            raise self._refused(exc, f"{verb} of {call.ref} failed: {_describe(exc)}") from exc
        self._link_ok()
        call.held = hold
        log.info("call %s %s", call.ref, "held" if hold else "back from hold")

    def _at_desk(self, ref: str) -> _Call:
        call = self._live(ref)
        if call.operator_label is None or call.mode != "bridged":
            raise TelephonyError(f"{ref} is not with an operator")
        return call

    # -- what the webhooks call ------------------------------------------------------------
    async def on_voice(
        self, params: Mapping[str, str], ref: str | None, *, wait: bool = True
    ) -> str:
        """Voice URL: an inbound call arrives, an outbound call is answered, or a call polls.
        Without `wait` a call with no command yet is told to ask again at once (a webhook
        handed over from another process must not hold the owner's command loop)."""
        sid = params.get("CallSid", "")
        call = self._find(ref, sid)
        if call is None:
            if ref:
                log.warning("voice webhook for unknown ref %s (%s): hanging up", ref, sid)
                return twiml.hangup()
            call = self._offered(params, sid)
        elif call.outbound:
            if call.sid is None and sid:
                self._learn_sid(call, sid)
            self._progress(call, "in-progress", by=params.get("AnsweredBy", ""))
            if call.callout is not None and call.mode == "wait" and not call.hangup:
                # the operator picked up: their leg dials the number
                call.mode = "bridged"
                return twiml.callout(
                    call.callout.number,
                    caller_id=self.config.from_number,
                    action_url=self.url("dial", ref=call.ref),
                    status_url=self.url("callout", ref=call.ref),
                    events=NUMBER_EVENTS,
                    ring_s=call.callout.ring_s,
                )
        document = self._next_document(call)
        if document is None and wait and self.config.handoff_wait_s > 0 and self._open:
            call.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(call.changed.wait(), self.config.handoff_wait_s)
            document = self._next_document(call)
        return document if document is not None else self._hold(call)

    async def on_gather(self, params: Mapping[str, str], ref: str | None, turn: int) -> str:
        """A Gather's action: a digit, or no digit (timeout); answers with the next turn."""
        call = self._find(ref, params.get("CallSid", ""))
        if call is None:
            log.warning("gather webhook for unknown ref %s: hanging up", ref)
            return twiml.hangup()
        if turn in call.answers:  # a retried request: same answer, no second step
            log.info("gather %s turn %s repeated", call.ref, turn)
            return call.answers[turn]
        if turn != call.turn or call.flow is None or call.run is None or call.mode != "flow":
            log.info("gather %s turn %s is stale (now %s)", call.ref, turn, call.turn)
            return self._next_document(call) or self._hold(call)
        digits = params.get("Digits", "")
        if digits:
            digit = digits[0]
            self._emit(DigitPressed(call.ref, digit))
            call.run, call.queued = engine.on_digit(call.flow, call.run, digit)
        else:
            if params.get("SpeechResult") or params.get("Confidence"):
                # the caller spoke (their words are never kept or logged): no key still
                self._emit(CallerSpoke(call.ref))
            call.run, call.queued = engine.on_timeout(call.flow, call.run)
        document = self._next_document(call) or self._hold(call)
        call.answers = {t: a for t, a in call.answers.items() if t > turn - 4}
        call.answers[turn] = document
        return document

    def on_status(self, params: Mapping[str, str], ref: str | None) -> None:
        """Status callback: map CallStatus to port events; retries and late ones are dropped."""
        sid = params.get("CallSid", "")
        status = params.get("CallStatus", "")
        call = self._find(ref, sid)
        if call is None:
            log.info("status %s for unknown call %s ignored", status, sid)
            return
        if call.sid is None and sid:
            self._learn_sid(call, sid)
        key = f"{sid}:{status}"
        if key in call.seen:
            log.debug("status %s for %s repeated", status, call.ref)
            return
        call.seen.add(key)
        self._progress(
            call,
            status,
            sip_code=params.get("SipResponseCode", ""),
            by=params.get("AnsweredBy", ""),
        )

    def on_callout(self, params: Mapping[str, str], ref: str | None) -> None:
        """A click-to-call's `<Number>` progress: the number rings, answers or fails."""
        call = self._find(ref, "")
        if call is None or call.callout is None:
            log.info("callout status for unknown call %s ignored", ref)
            return
        status = params.get("CallStatus", "")
        key = f"number:{params.get('CallSid', '')}:{status}"
        if key in call.seen:
            return
        call.seen.add(key)
        sip_code = params.get("SipResponseCode", "")
        for event in call.callout.number_status(call.ref, status, sip_code=sip_code):
            self._emit(event)

    def on_hold(self, params: Mapping[str, str], ref: str | None) -> str:
        """A conference's hold URL: the hold prompt, again and again, while held."""
        call = self._find(ref, params.get("CallSid", ""))
        lang = call.lang if call is not None else "zh-CN"
        return twiml.on_hold(self.url("hold", ref=ref or ""), lang=lang, speech=self.speech)

    async def on_participant(
        self, params: Mapping[str, str], ref: str | None, label: str | None
    ) -> None:
        """An operator's conference leg answered or ended."""
        call = self._find(ref, "")
        status = params.get("CallStatus", "")
        if call is not None and not call.ended and label and label == call.consult_label:
            self._consult_status(call, status)
            return
        if call is None or call.ended or label != call.operator_label:
            log.info("participant %s of %s is %s: not the current operator", label, ref, status)
            return
        if status == "in-progress" and call.unhold_on_answer == label:
            # a transfer's new operator answered: the caller talks to them now
            call.unhold_on_answer = None
            try:
                await self._hold_caller(call, False)
            except TelephonyError as exc:
                log.warning("call %s: not taken off hold after transfer (%s)", call.ref, exc)
                return
            self._emit(CallUnheld(call.ref))
        elif status in _UNREACHED:
            log.warning("call %s: %s never answered (%s): back to waiting", call.ref, label, status)
            transfer, peer = call.unhold_on_answer == label, call.operator_peer
            call.operator_label = call.operator_sid = call.unhold_on_answer = None
            call.operator_peer = None
            call.held = False
            # the caller leaves the room, which ends it: a next bridge opens a new one by name
            call.conference_sid = None
            await self._back_to_wait(call)
            if transfer and peer is not None:
                self._emit(TransferFailed(call.ref, peer))

    async def _back_to_wait(self, call: _Call) -> None:
        """Pull the caller out of the desk conference into the hold loop (dispatch may
        bridge again)."""
        if call.sid is None or call.mode != "bridged":
            call.mode = "hold"
            return
        call.mode = "hold"
        try:
            await (
                self._rest()
                .calls(call.sid)
                .update_async(url=self.url("voice", ref=call.ref), method="POST")
            )
        except (TwilioException, *_LINK_ERRORS) as exc:
            self._link_failed(exc)
            log.warning("call %s could not be pulled back to wait: %s", call.ref, _describe(exc))
            return
        self._link_ok()

    def on_dial_result(self, params: Mapping[str, str], ref: str | None) -> str:
        """A `<Dial>` ended: hang up after a conversation, else back to the hold loop."""
        call = self._find(ref, params.get("CallSid", ""))
        if call is None:
            return twiml.hangup()
        outcome = params.get("DialCallStatus", "")
        if call.callout is not None:
            # a click-to-call's Dial of the number is over: so is the desk's leg
            for event in call.callout.dial_ended(call.ref, outcome):
                self._emit(event)
            call.mode = "done"
            return twiml.hangup()
        if outcome == "completed" or call.hangup:
            call.mode = "done"
            return twiml.hangup()
        # A bridge that did not connect: the caller waits again; dispatch may bridge anew.
        log.warning("bridge of %s ended with %s: back on hold", call.ref, outcome or "?")
        call.mode = "hold"
        return self._next_document(call) or self._hold(call)

    # -- the call table ------------------------------------------------------------------
    async def persist(self) -> None:
        """Write the calls that changed since the last write (and drop the pruned ones)."""
        if self._table is None:
            return
        async with self._persist_lock:
            changed: dict[str, dict[str, Any]] = {}
            for ref, call in self._calls.items():
                state = dump(call)
                if self._saved.get(ref) != state:
                    changed[ref] = state
            gone = [ref for ref in self._saved if ref not in self._calls]
            if not changed and not gone:
                return
            try:
                await self._table.save(changed, gone)
            except Exception as exc:  # the calls go on from memory; the next change retries
                cause = getattr(exc, "orig", None) or exc
                log.warning("twilio call state not written (%s)", type(cause).__name__)
                return
            self._saved.update(changed)
            for ref in gone:
                del self._saved[ref]

    async def _load(self) -> None:
        """The calls the previous owner left in the table, as it last wrote them."""
        if self._table is None or self._flows is None:
            return
        for state in await self._table.load():
            try:
                call = restore(state, self._flows)
            except Exception as exc:  # one unreadable row must not stop the line
                log.warning("twilio call state unreadable, left out (%s)", type(exc).__name__)
                continue
            self._calls[call.ref] = call
            if call.sid:
                self._by_sid[call.sid] = call.ref
            self._saved[call.ref] = dump(call)
        live = [c.ref for c in self._calls.values() if not c.ended]
        if live:
            log.info("twilio: carrying on %s live calls from the call table", len(live))

    async def _resync(self) -> None:
        """Ask Twilio how each loaded live call stands: what ended or moved on while no
        process served its webhooks is reported now. Not while the API is unreachable
        (each call would wait out its timeout): the calls then stand as the table has them."""
        if not self._up:
            return
        for call in [c for c in self._calls.values() if not c.ended and c.sid]:
            assert call.sid is not None
            try:
                fetched = await self._rest().calls(call.sid).fetch_async()
            except (TwilioException, *_LINK_ERRORS) as exc:
                log.info("call %s not resynced: %s", call.ref, _describe(exc))
                continue
            status = str(fetched.status or "")
            if status and status != "queued":
                self._progress(call, status)
        await self.persist()

    # -- URLs and targets ---------------------------------------------------------------
    def url(self, endpoint: str, **query: str | int) -> str:
        """The public URL of one of our webhooks, as Twilio will request (and sign) it."""
        base = f"{self.config.public_url.rstrip('/')}/{endpoint}"
        return f"{base}?{urlencode(query)}" if query else base

    def dial_target(self, peer: str) -> twiml.DialTarget:
        """What `<Dial>` should ring for a bridge peer that is not one of our calls."""
        address = peer if peer.startswith(("+", "sip:", "client:")) else None
        if address is None:
            # dispatch names operators "operator:<id>"; a Twilio Client identity or a SIP
            # user part has no room for the colon, so {peer} carries it as "operator_<id>"
            address = self.config.operator_endpoint.format(
                peer=peer.replace(":", "_"), id=peer.rsplit(":", 1)[-1]
            )
        if address.startswith("sip:"):
            return twiml.DialTarget("sip", address)
        if address.startswith("client:"):
            return twiml.DialTarget("client", address.removeprefix("client:"))
        return twiml.DialTarget("number", address)

    # -- internals -----------------------------------------------------------------------
    def _rest(self) -> Client:
        if self._client is None:
            raise TelephonyError("twilio adapter is not open")
        return self._client

    def _emit(self, event: TelephonyEvent) -> None:
        self._events.put_nowait(event)

    def _find(self, ref: str | None, sid: str) -> _Call | None:
        if ref:
            return self._calls.get(ref)
        known = self._by_sid.get(sid)
        return self._calls.get(known) if known else None

    def _live(self, ref: str) -> _Call:
        call = self._calls.get(ref)
        if call is None or call.ended or call.hangup or call.mode == "done":
            raise UnknownCall(ref)
        return call

    def _learn_sid(self, call: _Call, sid: str) -> None:
        call.sid = sid
        self._by_sid[sid] = call.ref

    def _offered(self, params: Mapping[str, str], sid: str) -> _Call:
        call = _Call(ref=sid, outbound=False, sid=sid, progress=Progress(rank=3, answered=True))
        self._calls[sid] = call
        self._by_sid[sid] = sid
        log.info("inbound call %s offered", sid)
        self._emit(
            CallOffered(
                sid,
                caller=params.get("From", ""),
                dialled=params.get("To", ""),
                caller_name=params.get("CallerName") or None,
            )
        )
        return call

    def _progress(self, call: _Call, status: str, *, sip_code: str = "", by: str = "") -> None:
        call.progress, events = advance(
            call.progress,
            status,
            ref=call.ref,
            outbound=call.outbound,
            sip_code=sip_code,
            by=answered_by(by),
        )
        if call.callout is not None:
            events = call.callout.desk_events(call.ref, events)
        for event in events:
            self._emit(event)
        if events:
            log.info("call %s (%s) is %s", call.ref, call.sid, status)
        if call.ended:
            call.mode = "done"
            call.changed.set()
            if call.consult_sid is not None:
                # the caller left during a consult: the colleague's leg goes too
                sid = call.consult_sid
                self._forget_consult(call)
                task = asyncio.get_running_loop().create_task(self._end_leg_quietly(call.ref, sid))
                self._chores.add(task)
                task.add_done_callback(self._chores.discard)
            self._prune()

    def _prune(self) -> None:
        ended = [ref for ref, c in self._calls.items() if c.ended]
        for ref in ended[: max(0, len(ended) - self.config.keep_ended)]:
            old = self._calls.pop(ref)
            if old.sid:
                self._by_sid.pop(old.sid, None)

    async def _command(self, call: _Call) -> None:
        """A new command for a call: wake a waiting webhook, or pull the call out of TwiML."""
        call.changed.set()
        if call.mode in ("flow", "bridged") and call.sid and call.progress.answered:
            call.mode = "wait"  # before the await: the redirected request may come first
            try:
                await (
                    self._rest()
                    .calls(call.sid)
                    .update_async(url=self.url("voice", ref=call.ref), method="POST")
                )
            except (TwilioException, *_LINK_ERRORS) as exc:
                message = f"redirect of {call.ref} failed: {_describe(exc)}"
                raise self._refused(exc, message) from exc
            self._link_ok()

    async def _complete(self, call: _Call) -> None:
        assert call.sid is not None
        try:
            await self._rest().calls(call.sid).update_async(status="completed")
        except TwilioRestException as exc:
            if _unreachable(exc):
                raise self._refused(exc, f"hangup of {call.ref} failed: {_describe(exc)}") from exc
            self._link_ok()
            # 404 / 21220: the call is already over; the status callback will say so.
            log.info("hangup %s: twilio says %s", call.ref, _describe(exc))
            return
        except (TwilioException, *_LINK_ERRORS) as exc:
            raise self._refused(exc, f"hangup of {call.ref} failed: {_describe(exc)}") from exc
        self._link_ok()
        log.info("hangup %s (%s) requested", call.ref, call.sid)

    def _next_document(self, call: _Call) -> str | None:
        """The TwiML for the call's pending command, or None when it has none."""
        if call.hangup or call.ended or call.mode == "done":
            call.mode = "done"
            return twiml.hangup()
        if call.dial is not None:
            peer, target = call.dial
            call.dial, call.mode, call.waiting_since = None, "bridged", None
            call.flow, call.run, call.queued = None, None, None
            self._emit(CallBridged(call.ref, peer))
            return twiml.dial(
                target,
                caller_id=self.config.from_number,
                action_url=self.url("dial", ref=call.ref),
                wait_url=self.url("hold", ref=call.ref),
            )
        if call.queued is not None and call.flow is not None:
            return self._render_turn(call, call.queued, call.flow)
        return None

    def _render_turn(self, call: _Call, actions: list[engine.Action], flow: Flow) -> str:
        call.queued, call.waiting_since = None, None
        call.turn += 1
        turn = twiml.render_turn(
            actions,
            lang=call.lang,
            params=call.context,
            speech=self.speech,
            gather_url=self.url("gather", ref=call.ref, turn=call.turn),
            hold_url=self.url("voice", ref=call.ref),
            # a hotline caller's silence matters (a high-risk resident who says nothing)
            listen=not call.outbound,
        )
        for prompt, text in turn.played:
            self._emit(PromptPlayed(call.ref, prompt, text))
        if turn.finish is not None:
            finish = turn.finish
            self._emit(FlowFinished(call.ref, flow.name, finish.outcome, finish.variables))
            call.flow, call.run = None, None
            if finish.transfer == STAY:
                # silent until the service's next flow, hung up after handoff_max_s
                call.mode, call.waiting_since = "wait", None
            else:
                call.mode = "hold" if finish.transfer is not None else "done"
            log.info("flow %s on %s finished: %s", flow.name, call.ref, finish.outcome)
        elif turn.collects:
            call.mode = "flow"
        return turn.twiml

    def _hold(self, call: _Call) -> str:
        """The hold loop; a call that never gets a command is hung up after handoff_max_s."""
        if call.mode == "wait":
            now = time.monotonic()
            if call.waiting_since is None:
                call.waiting_since = now
            elif now - call.waiting_since > self.config.handoff_max_s:
                log.warning(
                    "call %s got no command in %ss: hanging up", call.ref, self.config.handoff_max_s
                )
                call.mode, call.hangup = "done", True
                return twiml.hangup()
        return twiml.hold(self.url("voice", ref=call.ref), pause_s=self.config.hold_pause_s)

    async def _probe(self) -> None:
        try:
            await self._rest().api.v2010.accounts(self.config.account_sid).fetch_async()
        except (TwilioException, *_LINK_ERRORS) as exc:
            self._link_failed(exc)
            return
        self._link_ok()

    async def _probe_until_up(self) -> None:
        """While the link is down: ask Twilio again, backing off, until it answers."""
        delay = self.config.probe_initial_s
        try:
            while self._open and not self._up:
                await asyncio.sleep(delay)
                if not self._open:
                    return
                await self._probe()
                delay = min(self.config.probe_max_s, delay * 2)
        finally:
            self._prober = None

    def _link_ok(self) -> None:
        self._set_link(True, "twilio api reachable")

    def _link_failed(self, exc: BaseException) -> None:
        if isinstance(exc, TwilioRestException) and not _unreachable(exc):
            # An HTTP answer: the link works, unless the account is refused.
            self._set_link(exc.status not in (401, 403), _describe(exc))
        else:
            self._set_link(False, _describe(exc))

    def _refused(self, exc: BaseException, message: str) -> TelephonyError:
        """The error for a failed REST command: `TelephonyUnavailable` when Twilio never
        acted on it."""
        self._link_failed(exc)
        return TelephonyUnavailable(message) if _unreachable(exc) else TelephonyError(message)

    def _set_link(self, up: bool, detail: str) -> None:
        changed = up != self._up or not self._reported
        self._up, self._detail, self._reported = up, detail, True
        if not up and self._open and self._prober is None:
            self._prober = asyncio.get_running_loop().create_task(
                self._probe_until_up(), name="twilio-probe"
            )
        if changed:
            log.log(
                logging.INFO if up else logging.WARNING,
                "twilio link %s: %s",
                "up" if up else "down",
                detail,
            )
            self._emit(BackendStatus(up=up, detail=detail))


def _describe(exc: BaseException) -> str:
    """An error summary without personal data (Twilio messages can quote numbers)."""
    if isinstance(exc, TwilioRestException):
        return f"HTTP {exc.status}, code {exc.code}"
    return type(exc).__name__
