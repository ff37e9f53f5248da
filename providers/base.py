"""The telephony port: the one interface every backend (memory, asterisk, twilio) implements.

Nothing above `providers/` knows which backend runs. Calls are named by a `ref`:
inbound calls get theirs from the backend, outbound calls get the one the caller of
`originate` chose. That ref doubles as the idempotency key: a backend must never place
two calls for the same ref, across reconnects and retries alike.

Events flow up as plain dataclasses (no AMI or Twilio field names); commands flow down
as async methods.

When the backend cannot be reached at all (the AMI link is down, the Twilio API does not
answer), a command raises `TelephonyUnavailable`: nothing was placed, and an `originate`
refused that way may be asked again with the same ref once `BackendStatus(up=True)` has
arrived. An outbound call the backend lost track of in an outage (it may or may not have
rung) is reported as `OriginateFailed(ref, OriginateFailure.LOST)`; that ref is spent.

Exceptions::

    TelephonyError                 a command could not be carried out
     +-- TelephonyUnavailable      the backend cannot be reached; nothing was done
     +-- UnknownCall               no live call with that ref
     +-- MessagingError            a text could not be handed to the carrier

Optional capabilities: code above `providers/` asks the port for them (`isinstance` on
the protocol, at the composition root), never for a backend class.

- `Messaging`: a backend that can send texts (Twilio's Messages API, the memory PBX's
  simulated handset) implements `send_text`; one that cannot (Asterisk) does not, and
  callers fall back to a phone call.
- `LiveCalls`: the refs of the calls the backend knows are live, for the reconciler's
  lost-call check at start (memory: its calls; Asterisk: the correlator after the
  CoreShowChannels resync; Twilio: the calls this adapter placed or was offered).
- `Simulator`: the phone simulator the console's simulator page drives (memory only).
- `SpeechDetection`: whether the backend reports `CallerSpoke` (speech energy on a
  caller's line, no words) on hotline calls: Asterisk (the dialplan's TALK_DETECT, AMI
  ``ChannelTalkingStart``), Twilio (``<Gather input="dtmf speech">`` on inbound calls),
  memory (the simulator's "speak"). Dispatch judges a high-risk caller silent by keys
  only where it is missing or off.
- `Consult`: a consult (warm) transfer, the caller on hold while their operator talks to
  a colleague first (memory; Asterisk: hold, an Originate of the colleague's desk, AMI
  Bridge; Twilio: the caller's participant held, the colleague added to the desk
  conference). The worker relay does not forward it: the desk refuses a consult there
  (`consult_unsupported`) rather than faking one with a blind transfer.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ivr.flow import Flow


class EndCause(enum.StrEnum):
    """Why a call ended, mapped from Q.850 causes or carrier statuses."""

    NORMAL = "normal"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    CONGESTION = "congestion"
    FAILED = "failed"
    REJECTED = "rejected"
    UNKNOWN = "unknown"


class OriginateFailure(enum.StrEnum):
    """Why an outbound call never got answered."""

    NO_ANSWER = "no_answer"
    BUSY = "busy"
    CONGESTION = "congestion"
    FAILED = "failed"
    #: the backend lost track of the call in an outage: it may never have rung; nobody
    #: was known to be reached, so it tells nothing about the far end
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class CallOffered:
    """An inbound call reached the hotline."""

    ref: str
    caller: str
    dialled: str = ""
    caller_name: str | None = None


@dataclass(frozen=True, slots=True)
class CallRinging:
    """An outbound call is ringing at the far end."""

    ref: str


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """The far end of a call answered (outbound) or the backend took the call (inbound).

    `answered_by`, where the backend can tell (Asterisk `AMD()`, Twilio machine
    detection, the simulator): "human", "machine" or "unknown"; "" when it cannot."""

    ref: str
    answered_by: str = ""


@dataclass(frozen=True, slots=True)
class DigitPressed:
    """A keypad digit arrived on a call."""

    ref: str
    digit: str


@dataclass(frozen=True, slots=True)
class CallerSpoke:
    """Speech energy on a caller's line (talking detected; no words are recognised): the
    caller is not silent. A backend may report it more than once per call."""

    ref: str


@dataclass(frozen=True, slots=True)
class PromptPlayed:
    """The backend started saying a prompt on a call (for the timeline and the simulator)."""

    ref: str
    prompt: str
    text: str


@dataclass(frozen=True, slots=True)
class FlowFinished:
    """An IVR flow run with `run_flow` ended; `outcome` is the flow's result name."""

    ref: str
    flow: str
    outcome: str
    variables: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallBridged:
    """A call is connected to a peer (an operator endpoint or another call)."""

    ref: str
    peer: str


@dataclass(frozen=True, slots=True)
class CallHeld:
    """The backend put a call on hold: the caller hears the hold prompt, the peer waits."""

    ref: str


@dataclass(frozen=True, slots=True)
class CallUnheld:
    """A held call is back with its peer."""

    ref: str


@dataclass(frozen=True, slots=True)
class TransferFailed:
    """The operator endpoint a caller was transferred to never answered (no answer, busy,
    unreachable). The caller is no longer with any operator: they wait, hearing the hold
    prompt or music, until a new `bridge` (or `hangup`)."""

    ref: str
    peer: str


@dataclass(frozen=True, slots=True)
class ConsultAnswered:
    """The colleague rung by `Consult.consult` answered: they talk with the caller's
    operator; the caller stays on hold."""

    ref: str
    peer: str


@dataclass(frozen=True, slots=True)
class ConsultFailed:
    """The colleague rung by `Consult.consult` never answered (no answer, busy, failed);
    the caller is still on hold with their operator, waiting for `unhold`."""

    ref: str
    peer: str


@dataclass(frozen=True, slots=True)
class CallWaiting:
    """The PBX holds the caller for an operator with no flow of ours on the call (the
    dialplan's fallback, reported each time its hold asks us in): after a flow that asked
    for an operator, and after a menu cut off by our own restart, which nobody else reports."""

    ref: str


@dataclass(frozen=True, slots=True)
class CallEnded:
    """A call hung up."""

    ref: str
    cause: EndCause = EndCause.NORMAL


@dataclass(frozen=True, slots=True)
class OriginateFailed:
    """An outbound call was never answered."""

    ref: str
    reason: OriginateFailure


@dataclass(frozen=True, slots=True)
class BackendStatus:
    """The backend link went up or down."""

    up: bool
    detail: str = ""


TelephonyEvent = (
    CallOffered
    | CallRinging
    | CallAnswered
    | DigitPressed
    | CallerSpoke
    | PromptPlayed
    | FlowFinished
    | CallBridged
    | CallHeld
    | CallUnheld
    | TransferFailed
    | ConsultAnswered
    | ConsultFailed
    | CallWaiting
    | CallEnded
    | OriginateFailed
    | BackendStatus
)


@dataclass(frozen=True, slots=True)
class Health:
    """What `/healthz` reports for the telephony backend."""

    backend: str
    up: bool
    detail: str = ""


class TelephonyError(Exception):
    """A command could not be carried out by the backend."""


class TelephonyUnavailable(TelephonyError):
    """The backend cannot be reached right now; nothing was placed or changed.

    An `originate` refused with it may be retried with the same ref after
    `BackendStatus(up=True)`: the ref was not taken.
    """


class UnknownCall(TelephonyError):
    """The backend knows no live call with that ref."""


@runtime_checkable
class Telephony(Protocol):
    """The port. Implementations are async context managers that own their link."""

    name: str

    async def __aenter__(self) -> Telephony: ...

    async def __aexit__(self, *exc: object) -> None: ...

    def events(self) -> AsyncIterator[TelephonyEvent]:
        """Yield every call event, in order, for as long as the backend is open."""
        ...

    async def originate(
        self, *, ref: str, number: str, caller_id: str | None = None, timeout_s: float = 30.0
    ) -> None:
        """Place an outbound call named `ref`; a second call with the same ref is a no-op."""
        ...

    async def call_out(
        self,
        *,
        ref: str,
        desk: str,
        number: str,
        caller_id: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        """Click-to-call: ring the operator endpoint `desk` ("operator:<id>") first, and once
        it answers dial `number` and connect the two. One call named `ref`, which is the
        idempotency key as for `originate` (a second call_out with it is a no-op;
        `TelephonyUnavailable` leaves the ref free).

        What follows, in order: `CallBridged(ref, desk)` when the desk answered (the number
        is being dialled), `CallRinging(ref)` when the number rings, `CallAnswered(ref)`
        when it answers (desk and number talk). `OriginateFailed(ref, reason)` when the
        desk or the number never answered (whether `CallBridged` came first tells which);
        nothing follows it. `CallEnded(ref, cause)` when either side hangs up after the
        answer. `hangup(ref)` ends both legs at any point.
        """
        ...

    async def run_flow(
        self, ref: str, flow: Flow, *, context: Mapping[str, Any], lang: str = "zh-CN"
    ) -> None:
        """Run an IVR flow on a live call; `FlowFinished` reports its outcome."""
        ...

    async def bridge(self, ref: str, *, peer: str) -> None:
        """Connect a live call to a peer: an operator endpoint or another call's ref."""
        ...

    async def hold(self, ref: str) -> None:
        """Put a call bridged to an operator on hold; `CallHeld` follows.

        The caller hears the hold prompt and music; the operator's leg stays up, so
        `unhold` reconnects them without ringing the operator again. A caller who hangs up
        on hold ends the call (`CallEnded`) and the operator's waiting leg is released.
        """
        ...

    async def unhold(self, ref: str) -> None:
        """Reconnect a held call to the operator it was bridged to; `CallUnheld` follows."""
        ...

    async def transfer(self, ref: str, *, peer: str) -> None:
        """Move a live caller, connected or on hold, from their operator to another endpoint.

        A separate command rather than a second `bridge`, because every backend must also
        release the previous operator's leg, which a first bridge never has:
        memory re-points the call; Asterisk redirects the caller into the new operator's
        Dial and the old operator's leg out to hang up (one Redirect with ExtraChannel);
        Twilio adds the new operator to the caller's conference and completes the old
        operator's call. `CallBridged(ref, peer)` follows; the caller is no longer held.
        When the new operator never answers, `TransferFailed(ref, peer)` follows instead
        (or after) and the caller waits for the next `bridge`.
        """
        ...

    async def hangup(self, ref: str) -> None:
        """Hang up a live call; unknown refs are ignored."""
        ...

    def health(self) -> Health:
        """The link's current state."""
        ...


class MessagingError(TelephonyError):
    """A text message could not be handed to the carrier."""


@runtime_checkable
class Messaging(Protocol):
    """The optional text-message capability of a backend."""

    async def send_text(self, *, ref: str, number: str, text: str) -> None:
        """Send `text` to `number`; a second send with the same ref is a no-op.

        Raises `MessagingError` when the carrier refuses or cannot be reached.
        """
        ...


@runtime_checkable
class LiveCalls(Protocol):
    """The optional capability to say which calls are live on the backend now."""

    async def live_calls(self) -> set[str]:
        """The refs of every call the backend knows is not over.

        Raises `TelephonyUnavailable` when it cannot tell right now (the link is down, a
        resync is under way): then nothing may be concluded about any call.
        """
        ...


@runtime_checkable
class SpeechDetection(Protocol):
    """The optional capability to hear a caller speak (`CallerSpoke` events)."""

    @property
    def hears_speech(self) -> bool:
        """Whether `CallerSpoke` is reported for hotline callers now (False: the backend is
        not set up for it, or this process does not own the link)."""
        ...


@runtime_checkable
class Consult(Protocol):
    """The optional consult (warm) transfer capability.

    The caller stays on hold (hearing the hold prompt) from `consult` until
    `complete_consult` or `cancel_consult`, or until they hang up (`CallEnded`; the
    backend then releases the colleague's leg as well).
    """

    async def consult(self, ref: str, *, peer: str) -> None:
        """Hold the caller `ref` (if not held) and ring the operator endpoint `peer` for the
        caller's operator; `ConsultAnswered(ref, peer)` or `ConsultFailed(ref, peer)` follows."""
        ...

    async def complete_consult(self, ref: str, *, peer: str) -> None:
        """Connect the held caller to the consulted `peer`; the first operator's leg is
        released. `CallUnheld(ref)` and `CallBridged(ref, peer)` follow."""
        ...

    async def cancel_consult(self, ref: str, *, peer: str) -> None:
        """Release the consulted `peer` (ringing or talking) and reconnect the caller to
        their operator; `CallUnheld(ref)` follows."""
        ...


class SimulatedText(Protocol):
    """A text message a simulated handset received."""

    @property
    def ref(self) -> str: ...

    @property
    def number(self) -> str: ...

    @property
    def text(self) -> str: ...


#: a simulated call's states, as the simulator page shows them (words: `sim_st_<state>`)
SIM_STATES = ("desk_ringing", "ringing", "answered", "bridged", "held", "ended")


@runtime_checkable
class Simulator(Protocol):
    """The optional phone simulator: play the residents' and merchants' phones."""

    @property
    def texts(self) -> Sequence[SimulatedText]:
        """Texts the simulated handsets received, newest first."""
        ...

    def snapshot(self) -> list[dict[str, Any]]:
        """Live and recent calls as the phones see them (JSON-ready)."""
        ...

    def reachable(self) -> None:
        """Raise `TelephonyUnavailable` while the simulated link is down."""
        ...

    def set_link(self, up: bool) -> None:
        """Take the simulated link down (an outage) or bring it back."""
        ...

    async def dial_in(self, caller: str, *, dialled: str | None = None) -> str:
        """A phone calls the hotline; returns the new call's ref."""
        ...

    async def answer(self, ref: str, *, machine: bool = False) -> None:
        """The called phone picks up (`machine`: its answering machine does)."""
        ...

    async def reject(self, ref: str, reason: OriginateFailure = OriginateFailure.BUSY) -> None:
        """The called phone is busy, does not answer, or the call fails."""
        ...

    async def press(self, ref: str, digit: str) -> None:
        """The phone presses a key."""
        ...

    async def speak(self, ref: str) -> None:
        """The phone's user says something (speech energy, `CallerSpoke`; no key)."""
        ...

    async def party_hangup(self, ref: str) -> None:
        """The phone hangs up."""
        ...
