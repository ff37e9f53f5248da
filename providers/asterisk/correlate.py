"""AMI messages -> the port's call events. Pure: no I/O, no clock, no panoramisk.

The live adapter and the offline decoder (`decode.py`) feed the same `Correlator`, so a
capture decodes to exactly the events production would have emitted.

How calls are recognised:

- inbound: a non-Local channel created in one of the hotline contexts that is its own
  Linkedid; its ref is ``ast-<Linkedid>`` (stable across reconnects and restarts);
- outbound: a channel carrying the ref variable (``YIJING_REF``), seen through
  ``VarSet`` or a ``ChanVariable`` header (manager.conf ``channelvars``); the
  ``OriginateResponse`` is matched by our ActionID (``yijing-originate/<ref>``), else by
  Uniqueid, else (foreign captures) by the oldest outbound call still waiting for one;
- legs: every other channel with the same Linkedid (Local ``;1``/``;2`` halves, queue
  members, operator phones). Their hangups never end the call.

Speech: ``ChannelTalkingStart`` (raised once the dialplan's ``TALK_DETECT(set)`` is on
a channel: the channel snapshot headers, no more; ``ChannelTalkingStop`` adds
``Duration`` in ms) on a call's primary channel is `CallerSpoke`; on a leg (an
operator's phone) it says nothing about the caller.

Resync: a ``CoreShowChannels`` whose ActionID starts with ``yijing-resync`` opens a
snapshot; until its ``CoreShowChannelsComplete`` other messages are held back, then the
snapshot is applied (calls gone while we were away end, unknown live calls are adopted)
and the held messages are replayed. An outbound call that vanished unanswered while we
were away, or an Originate whose answer the link lost and that the snapshot does not
show, is reported as `OriginateFailed(LOST)`: nothing is known about the far end.
Operator legs waiting for a held caller (in the on-hold context's ``operator``
extension) are named in `held_legs` by the ref they wait for: the ``YIJING_HELD_FOR``
variable set when holding, else their Linkedid.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from providers.asterisk.wire import Message
from providers.base import (
    CallAnswered,
    CallBridged,
    CallEnded,
    CallerSpoke,
    CallOffered,
    CallRinging,
    DigitPressed,
    EndCause,
    OriginateFailed,
    OriginateFailure,
    TelephonyEvent,
)

log = logging.getLogger(__name__)

ORIGINATE_PREFIX = "yijing-originate/"
#: the channel variable a held call's waiting operator leg carries: the ref it waits for
HELD_FOR_VAR = "YIJING_HELD_FOR"
RESYNC_PREFIX = "yijing-resync/"
INBOUND_REF_PREFIX = "ast-"
OPERATOR_PREFIX = "operator:"

#: AMD()'s AMDSTATUS -> `CallAnswered.answered_by`
AMD_STATUS = {"MACHINE": "machine", "HUMAN": "human", "NOTSURE": "unknown", "HANGUP": "unknown"}

#: OriginateResponse Reason (an ast_control_frame_type) -> why the call never got answered.
ORIGINATE_REASONS: dict[str, OriginateFailure] = {
    "0": OriginateFailure.FAILED,  # no such channel / could not dial
    "1": OriginateFailure.NO_ANSWER,  # far end hung up before answering
    "3": OriginateFailure.NO_ANSWER,  # rang until the Originate timeout
    "5": OriginateFailure.BUSY,
    "8": OriginateFailure.CONGESTION,
}

#: Q.850 hangup causes -> EndCause; anything else is UNKNOWN.
HANGUP_CAUSES: dict[str, EndCause] = {
    "16": EndCause.NORMAL,
    "31": EndCause.NORMAL,
    "17": EndCause.BUSY,
    "18": EndCause.NO_ANSWER,
    "19": EndCause.NO_ANSWER,
    "21": EndCause.REJECTED,
    "34": EndCause.CONGESTION,
    "38": EndCause.CONGESTION,
    "41": EndCause.CONGESTION,
    "42": EndCause.CONGESTION,
    "44": EndCause.CONGESTION,
    "1": EndCause.FAILED,
    "2": EndCause.FAILED,
    "3": EndCause.FAILED,
    "20": EndCause.FAILED,
    "22": EndCause.FAILED,
    "27": EndCause.FAILED,
    "28": EndCause.FAILED,
    "29": EndCause.FAILED,
    "47": EndCause.FAILED,
    "58": EndCause.FAILED,
    "88": EndCause.FAILED,
    "127": EndCause.FAILED,
}

_UNKNOWN_VALUES = ("", "<unknown>")
_FINISHED_KEPT = 10_000


def end_cause(cause: str | None) -> EndCause:
    """The EndCause for a Q.850 cause code as AMI writes it."""
    return HANGUP_CAUSES.get((cause or "").strip(), EndCause.UNKNOWN)


def originate_failure(reason: str | None) -> OriginateFailure:
    """The OriginateFailure for an OriginateResponse Reason."""
    return ORIGINATE_REASONS.get((reason or "").strip(), OriginateFailure.FAILED)


def endpoint_of(channel: str) -> str:
    """The endpoint part of a channel name: ``Local/op1001@operators-00000002;1`` -> op1001."""
    rest = channel.partition("/")[2] or channel
    rest = rest.partition(";")[0]
    if "-" in rest:
        rest = rest.rpartition("-")[0]
    return rest.partition("@")[0]


@dataclass(slots=True)
class Channel:
    """One Asterisk channel the correlator tracks."""

    uniqueid: str
    name: str
    linkedid: str
    ref: str | None = None  # set when this channel is a call's primary leg


@dataclass(slots=True)
class Call:
    """One call of the port: a primary channel plus the legs sharing its Linkedid."""

    ref: str
    direction: str  # "in" | "out"
    uniqueid: str | None = None
    channel: str | None = None
    linkedid: str | None = None
    answered: bool = False
    ringing: bool = False
    resolved: bool = False  # outbound: OriginateResponse seen
    hangup_cause: EndCause | None = None
    bridged: set[str] = field(default_factory=set)


class Correlator:
    """Turns AMI messages, in order, into port events."""

    def __init__(
        self,
        *,
        inbound_contexts: Iterable[str] = ("yijing-hotline",),
        ref_vars: Iterable[str] = ("YIJING_REF",),
        onhold_context: str = "yijing-onhold",
    ) -> None:
        self.inbound_contexts = frozenset(inbound_contexts)
        self.onhold_context = onhold_context
        #: ref -> operator leg found waiting on hold by the last resync (the adapter takes them)
        self.held_legs: dict[str, str] = {}
        self.ref_vars = tuple(ref_vars)
        self._chanvar_keys = tuple(f"ChanVariable({v})" for v in self.ref_vars)
        self.channels: dict[str, Channel] = {}
        self.calls: dict[str, Call] = {}
        #: originates whose answer waits for AMD()'s verdict (AMDSTATUS) to be reported
        self.amd_refs: set[str] = set()
        self.by_linkedid: dict[str, str] = {}  # Linkedid -> ref
        self.bridges: dict[str, list[str]] = {}  # BridgeUniqueid -> uniqueids
        self.unknown_originates: set[str] = set()
        #: refs of calls that ended, newest last: a leg that outlives its call (a Local
        #: channel's ``;2`` half inherits YIJING_REF) must not bring the ref back to life
        self.finished: dict[str, None] = {}
        self._snapshot: list[Message] | None = None
        self._held: list[Message] = []
        self._handlers = {
            "Newchannel": self._newchannel,
            "VarSet": self._varset,
            "Newstate": self._newstate,
            "DialState": self._dialstate,
            "OriginateResponse": self._originate_response,
            "DTMFEnd": self._dtmf,
            "ChannelTalkingStart": self._talking,
            "BridgeEnter": self._bridge_enter,
            "BridgeLeave": self._bridge_leave,
            "BridgeDestroy": self._bridge_destroy,
            "Hangup": self._hangup,
        }

    # -- the public surface ------------------------------------------------------------
    def feed(self, msg: Message) -> list[TelephonyEvent]:
        """Take one AMI message; returns the port events it yields (often none)."""
        out: list[TelephonyEvent] = []
        event = msg.get("Event")
        if self._snapshot is not None:
            if event == "CoreShowChannel":
                self._snapshot.append(msg)
            elif event == "CoreShowChannelsComplete":
                self._finish_resync(out)
            else:
                self._held.append(msg)
            return out
        if event is None:
            resync = msg.get("ActionID", "").startswith(RESYNC_PREFIX)
            if resync and msg.get("Response") == "Success":
                self._snapshot, self._held = [], []
            return out
        handler = self._handlers.get(event)
        if handler is not None:
            handler(msg, out)
        elif self._chanvar_keys and event not in ("Cdr", "CoreShowChannel"):
            self._bind_from_chanvars(msg)
        return out

    def link_lost(self) -> None:
        """The AMI link dropped: a half-read snapshot is void; pending originates are in doubt."""
        if self._snapshot is not None:
            self._snapshot, self._held = None, []
        for call in self.calls.values():
            if call.direction == "out" and not call.resolved and call.uniqueid is None:
                self.unknown_originates.add(call.ref)

    def originate_sent(self, ref: str) -> Call:
        """Note an Originate we placed, before Asterisk says anything about it."""
        call = self.calls.get(ref)
        if call is None:
            call = self.calls[ref] = Call(ref=ref, direction="out")
        return call

    def channel_of(self, ref: str) -> str | None:
        """The primary channel name of a live call, if known."""
        call = self.calls.get(ref)
        return call.channel if call is not None else None

    def bridged_leg(self, ref: str) -> str | None:
        """The channel bridged with a call's primary channel that is no call of ours (the
        operator's phone), if the call is in a bridge now."""
        call = self.calls.get(ref)
        if call is None or call.uniqueid is None:
            return None
        for members in self.bridges.values():
            if call.uniqueid not in members:
                continue
            for uid in members:
                chan = self.channels.get(uid)
                if uid != call.uniqueid and chan is not None and chan.ref is None:
                    return chan.name
        return None

    def channel_alive(self, name: str) -> bool:
        """Whether a channel of that name is live (no Hangup seen for it)."""
        return any(chan.name == name for chan in self.channels.values())

    def live_refs(self) -> list[str]:
        """Refs of calls that have not ended."""
        return list(self.calls)

    @property
    def resyncing(self) -> bool:
        """A CoreShowChannels snapshot is being read: the calls known are not settled."""
        return self._snapshot is not None

    # -- handlers ------------------------------------------------------------------------
    def _newchannel(self, msg: Message, out: list[TelephonyEvent]) -> None:
        self._track(msg, out, adopt=False)

    def _track(self, msg: Message, out: list[TelephonyEvent], *, adopt: bool) -> Channel | None:
        uid = msg.get("Uniqueid", "")
        if not uid or uid in self.channels:
            return self.channels.get(uid)
        name = msg.get("Channel", "")
        linkedid = msg.get("Linkedid") or uid
        chan = self.channels[uid] = Channel(uniqueid=uid, name=name, linkedid=linkedid)
        ref = self._ref_var(msg)
        inbound = (
            linkedid == uid
            and msg.get("Context") in self.inbound_contexts
            and not name.startswith("Local/")
        )
        if ref is not None and not (inbound and ref.startswith(INBOUND_REF_PREFIX)):
            self._bind_outbound(chan, ref, out)
        elif inbound:
            ref = INBOUND_REF_PREFIX + uid
            call = self.calls[ref] = Call(
                ref=ref, direction="in", uniqueid=uid, channel=name, linkedid=linkedid
            )
            chan.ref = ref
            self.by_linkedid[linkedid] = ref
            caller = msg.get("CallerIDNum", "")
            caller = "" if caller in _UNKNOWN_VALUES else caller
            cname: str | None = msg.get("CallerIDName", "")
            if cname in _UNKNOWN_VALUES or cname == caller:
                cname = None
            dialled = msg.get("Exten") or msg.get("Extension") or ""
            out.append(CallOffered(ref, caller=caller, dialled=dialled, caller_name=cname))
            log.info("inbound call %s on %s", ref, name)
            if adopt and msg.get("ChannelState") == "6":
                call.answered = True
                out.append(CallAnswered(ref))
        return chan

    def _ref_var(self, msg: Message) -> str | None:
        for key in self._chanvar_keys:
            value = msg.get(key)
            if value:
                return value
        return None

    def _bind_from_chanvars(self, msg: Message) -> None:
        uid = msg.get("Uniqueid")
        if uid is None:
            return
        chan = self.channels.get(uid)
        if chan is None or chan.ref is not None:
            return
        ref = self._ref_var(msg)
        if ref is not None:
            self._bind_outbound(chan, ref, [])

    def _varset(self, msg: Message, out: list[TelephonyEvent]) -> None:
        chan = self.channels.get(msg.get("Uniqueid", ""))
        if chan is None:
            return
        if chan.ref is not None:
            if chan.ref in self.amd_refs and msg.get("Variable") == "AMDSTATUS":
                self.amd_refs.discard(chan.ref)
                call = self.calls.get(chan.ref)
                if call is not None and call.direction == "out" and not call.answered:
                    call.answered = True
                    by = AMD_STATUS.get(msg.get("Value", ""), "unknown")
                    out.append(CallAnswered(call.ref, by))
            return
        if msg.get("Variable", "").lstrip("_") in self.ref_vars and msg.get("Value"):
            self._bind_outbound(chan, msg["Value"], out)

    def _bind_outbound(self, chan: Channel, ref: str, out: list[TelephonyEvent]) -> None:
        if ref in self.finished and ref not in self.calls:
            return  # a leg of a call that is over
        call = self.calls.get(ref)
        if call is None:
            call = self.calls[ref] = Call(ref=ref, direction="out")
        if call.uniqueid is not None:
            return  # a later leg inheriting the variable; the first channel is the call
        call.uniqueid, call.channel, call.linkedid = chan.uniqueid, chan.name, chan.linkedid
        chan.ref = ref
        self.by_linkedid.setdefault(chan.linkedid, ref)
        self.unknown_originates.discard(ref)
        log.info("outbound call %s is channel %s", ref, chan.name)

    def _primary(self, msg: Message) -> Call | None:
        chan = self.channels.get(msg.get("Uniqueid", ""))
        if chan is None or chan.ref is None:
            return None
        return self.calls.get(chan.ref)

    def _newstate(self, msg: Message, out: list[TelephonyEvent]) -> None:
        call = self._primary(msg)
        if call is None:
            return
        state = msg.get("ChannelState")
        if call.direction == "out" and state == "5" and not call.ringing and not call.answered:
            call.ringing = True
            out.append(CallRinging(call.ref))
        elif call.direction == "in" and state == "6" and not call.answered:
            call.answered = True
            out.append(CallAnswered(call.ref))

    def _dialstate(self, msg: Message, out: list[TelephonyEvent]) -> None:
        if msg.get("DialStatus") != "RINGING":
            return
        chan = self.channels.get(msg.get("DestUniqueid", ""))
        call = self.calls.get(chan.ref) if chan is not None and chan.ref else None
        if call is not None and call.direction == "out" and not call.ringing:
            call.ringing = True
            out.append(CallRinging(call.ref))

    def _originate_response(self, msg: Message, out: list[TelephonyEvent]) -> None:
        call = self._originated_call(msg)
        if call is None:
            log.info("OriginateResponse %s matches no call", msg.get("ActionID", ""))
            return
        if call.resolved:
            return
        call.resolved = True
        self.unknown_originates.discard(call.ref)
        if msg.get("Response") == "Success" and msg.get("Reason", "4") == "4":
            if not call.answered and call.ref not in self.amd_refs:  # AMD: at AMDSTATUS
                call.answered = True
                out.append(CallAnswered(call.ref))
            if call.hangup_cause is not None:  # hung up before the response arrived
                self._end(call, call.hangup_cause, out)
            return
        reason = originate_failure(msg.get("Reason"))
        log.info("originate %s failed: reason %s", call.ref, reason)
        out.append(OriginateFailed(call.ref, reason))
        if call.uniqueid is None or call.uniqueid not in self.channels:
            self._forget(call)

    def _originated_call(self, msg: Message) -> Call | None:
        action_id = msg.get("ActionID", "")
        if action_id.startswith(ORIGINATE_PREFIX):
            call = self.calls.get(action_id[len(ORIGINATE_PREFIX) :])
            if call is not None:
                return call
        chan = self.channels.get(msg.get("Uniqueid", ""))
        if chan is not None and chan.ref is not None:
            return self.calls.get(chan.ref)
        # A foreign capture: the oldest outbound call of the same technology still waiting.
        tech = msg.get("Channel", "").partition("/")[0]
        for call in self.calls.values():
            waiting = call.direction == "out" and not call.resolved and call.channel is not None
            if waiting and (call.channel or "").partition("/")[0] == tech:
                return call
        return None

    def _dtmf(self, msg: Message, out: list[TelephonyEvent]) -> None:
        if msg.get("Direction") != "Received":
            return
        call = self._primary(msg)
        if call is not None and msg.get("Digit"):
            out.append(DigitPressed(call.ref, msg["Digit"]))

    def _talking(self, msg: Message, out: list[TelephonyEvent]) -> None:
        call = self._primary(msg)
        if call is not None:
            out.append(CallerSpoke(call.ref))

    def _bridge_enter(self, msg: Message, out: list[TelephonyEvent]) -> None:
        uid = msg.get("Uniqueid", "")
        members = self.bridges.setdefault(msg.get("BridgeUniqueid", ""), [])
        if uid not in members:
            members.append(uid)
        for a in members:
            chan_a = self.channels.get(a)
            call = self.calls.get(chan_a.ref) if chan_a is not None and chan_a.ref else None
            if call is None:
                continue
            for b in members:
                if b == a:
                    continue
                peer = self._peer_label(b)
                if peer is not None and peer not in call.bridged:
                    call.bridged.add(peer)
                    out.append(CallBridged(call.ref, peer))

    def _peer_label(self, uid: str) -> str | None:
        chan = self.channels.get(uid)
        if chan is None:
            return None
        if chan.ref is not None:
            return chan.ref
        return OPERATOR_PREFIX + endpoint_of(chan.name)

    def _bridge_leave(self, msg: Message, out: list[TelephonyEvent]) -> None:
        members = self.bridges.get(msg.get("BridgeUniqueid", ""))
        uid = msg.get("Uniqueid", "")
        if members is not None and uid in members:
            members.remove(uid)
        call = self._primary(msg)
        if call is not None:
            call.bridged.clear()

    def _bridge_destroy(self, msg: Message, out: list[TelephonyEvent]) -> None:
        self.bridges.pop(msg.get("BridgeUniqueid", ""), None)

    def _hangup(self, msg: Message, out: list[TelephonyEvent]) -> None:
        chan = self.channels.pop(msg.get("Uniqueid", ""), None)
        if chan is None or chan.ref is None:
            return
        call = self.calls.get(chan.ref)
        if call is None or call.uniqueid != chan.uniqueid:
            return
        cause = end_cause(msg.get("Cause"))
        if call.direction == "out" and not call.answered:
            if call.resolved:
                self._forget(call)  # OriginateFailed already said it all
            else:
                call.hangup_cause = cause  # wait for the OriginateResponse
            return
        self._end(call, cause, out)

    def _end(self, call: Call, cause: EndCause, out: list[TelephonyEvent]) -> None:
        log.info("call %s ended: %s", call.ref, cause)
        out.append(CallEnded(call.ref, cause))
        self._forget(call)

    def _forget(self, call: Call) -> None:
        self.calls.pop(call.ref, None)
        self.finished[call.ref] = None
        if len(self.finished) > _FINISHED_KEPT:
            del self.finished[next(iter(self.finished))]
        if call.linkedid is not None and self.by_linkedid.get(call.linkedid) == call.ref:
            del self.by_linkedid[call.linkedid]

    # -- resync --------------------------------------------------------------------------
    def _finish_resync(self, out: list[TelephonyEvent]) -> None:
        snapshot, held = self._snapshot or [], self._held
        self._snapshot, self._held = None, []
        live = {m.get("Uniqueid", ""): m for m in snapshot}
        for uid in [u for u in self.channels if u not in live]:
            chan = self.channels.pop(uid)
            call = self.calls.get(chan.ref) if chan.ref else None
            if call is None or call.uniqueid != uid:
                continue
            log.info("call %s vanished while the AMI link was down", call.ref)
            if call.direction == "out" and not call.answered:
                if not call.resolved:
                    # it rang or not while nobody watched: nothing is known of the far end
                    out.append(OriginateFailed(call.ref, OriginateFailure.LOST))
                self._forget(call)
            else:
                self._end(call, call.hangup_cause or EndCause.UNKNOWN, out)
        for uid, row in live.items():
            seen = self.channels.get(uid) or self._track(row, out, adopt=True)
            if seen is None or seen.ref is None:
                continue
            call = self.calls.get(seen.ref)
            up = row.get("ChannelState") == "6"
            if call is not None and call.direction == "out" and not call.answered and up:
                call.answered = call.resolved = True
                out.append(CallAnswered(call.ref))
        for row in live.values():
            self._held_leg(row)
        for ref in list(self.unknown_originates):
            call = self.calls.get(ref)
            if call is not None and call.uniqueid is None and not call.resolved:
                log.warning("originate %s: outcome lost across reconnect", ref)
                out.append(OriginateFailed(ref, OriginateFailure.LOST))
                self._forget(call)
            self.unknown_originates.discard(ref)
        for msg in held:
            out.extend(self.feed(msg))

    def _held_leg(self, row: Message) -> None:
        """Note an operator leg the snapshot shows waiting for a held caller."""
        exten = row.get("Exten") or row.get("Extension")
        if row.get("Context") != self.onhold_context or exten != "operator":
            return
        ref = row.get(f"ChanVariable({HELD_FOR_VAR})") or self.by_linkedid.get(
            row.get("Linkedid", "")
        )
        if ref is None or ref not in self.calls:
            log.info("resync: on-hold leg %s waits for no live call", row.get("Channel"))
            return
        self.held_legs[ref] = row.get("Channel", "")
        log.info("resync: call %s is on hold; operator leg %s waits", ref, row.get("Channel"))
