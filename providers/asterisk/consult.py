"""Consult (warm) transfers on Asterisk: following the colleague's desk leg. Pure: no I/O.

`AsteriskTelephony.consult` holds the caller as `hold` does (the caller to MusicOnHold
with the hold prompt, the first operator's leg to a quiet Wait, one Redirect), then
Originates the colleague's own device (`AsteriskConfig.desk_template`) into the
``yijing-consult`` context, the Originate's ActionID ``yijing-consult/<ref>`` and the
channel variable ``YIJING_CONSULT_FOR=<ref>`` naming the caller it is about. This tracker
follows that leg:

- ``VarSet YIJING_CONSULT_FOR`` names the colleague's channel while it still rings (a
  cancel hangs it up);
- ``OriginateResponse`` Success (Reason 4) for our ActionID: the colleague answered
  (the adapter then joins their leg with the first operator's waiting leg, AMI Bridge);
  any other ``OriginateResponse`` (no answer, busy, failed): the consult failed;
- the colleague's leg hanging up after answering (they put the phone down while the
  operators talked): the consult failed.

The ``OriginateResponse`` of a consult is ours alone: the correlator never sees it (its
fallback would match it to some merchant call still waiting for its own).

After a Yijing restart the resync's ``CoreShowChannel`` rows bring a consult under way
back: a channel in the consult context carrying ``YIJING_CONSULT_FOR`` (manager.conf
``channelvars``) is the colleague's leg for that ref, answered when it is up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from providers.asterisk.correlate import OPERATOR_PREFIX
from providers.asterisk.wire import Message

CONSULT_PREFIX = "yijing-consult/"
#: the channel variable the colleague's leg carries: the ref of the caller held for them
CONSULT_FOR_VAR = "YIJING_CONSULT_FOR"


def desk_endpoint(channel: str, desk_template: str) -> str | None:
    """The operator endpoint of a desk channel: ``SIP/desk9-0000002a`` with the template
    ``SIP/desk{endpoint}`` is ``9``; None when the channel is no desk of that template."""
    name = channel.rpartition("-")[0] if "-" in channel.partition("/")[2] else channel
    prefix, _, suffix = desk_template.partition("{endpoint}")
    if not name.startswith(prefix) or not name.endswith(suffix):
        return None
    endpoint = name[len(prefix) : len(name) - len(suffix)]
    return endpoint or None


@dataclass(slots=True)
class Consultation:
    """One consult: the held caller's ref, the colleague's endpoint and their leg."""

    ref: str
    peer: str
    channel: str | None = None
    uniqueid: str | None = None
    answered: bool = False


Outcome = tuple[Literal["answered", "failed", "orphan"], Consultation]


class ConsultTracker:
    """The consults of one adapter, by the held caller's ref."""

    def __init__(self) -> None:
        self.by_ref: dict[str, Consultation] = {}

    def placed(self, ref: str, peer: str) -> Consultation:
        """A consult's Originate is being sent."""
        consult = self.by_ref[ref] = Consultation(ref=ref, peer=peer)
        return consult

    def of_leg(self, uniqueid: str) -> Consultation | None:
        """The consult whose colleague's leg has that Uniqueid."""
        for consult in self.by_ref.values():
            if consult.uniqueid == uniqueid:
                return consult
        return None

    def resynced(
        self, row: Message, context: str, desk_template: str, live: set[str]
    ) -> Consultation | None:
        """A CoreShowChannel row of a colleague's leg from before a restart, if it is one."""
        ref = row.get(f"ChanVariable({CONSULT_FOR_VAR})", "")
        if row.get("Context") != context or not ref or ref not in live or ref in self.by_ref:
            return None
        channel = row.get("Channel", "")
        endpoint = desk_endpoint(channel, desk_template)
        if endpoint is None:
            return None
        consult = self.by_ref[ref] = Consultation(
            ref=ref,
            peer=OPERATOR_PREFIX + endpoint,
            channel=channel or None,
            uniqueid=row.get("Uniqueid") or None,
            answered=row.get("ChannelState") == "6",
        )
        return consult

    def claims(self, msg: Message) -> bool:
        """Whether the message is a consult's OriginateResponse (kept from the correlator)."""
        return msg.get("Event") == "OriginateResponse" and msg.get("ActionID", "").startswith(
            CONSULT_PREFIX
        )

    def feed(self, msg: Message) -> Outcome | None:
        """Take one AMI message; what it means for a consult, if anything."""
        event = msg.get("Event")
        if event == "VarSet":
            if msg.get("Variable", "").lstrip("_") == CONSULT_FOR_VAR:
                consult = self.by_ref.get(msg.get("Value", ""))
                if consult is not None and consult.uniqueid is None:
                    consult.channel = msg.get("Channel") or None
                    consult.uniqueid = msg.get("Uniqueid") or None
            return None
        if event == "OriginateResponse" and self.claims(msg):
            ref = msg["ActionID"][len(CONSULT_PREFIX) :]
            consult = self.by_ref.get(ref)
            answered = msg.get("Response") == "Success" and msg.get("Reason", "4") == "4"
            if consult is None or consult.answered:
                # cancelled (or its ref ended) before the colleague answered: their leg goes
                if answered and msg.get("Channel"):
                    return "orphan", Consultation(ref=ref, peer="", channel=msg["Channel"])
                return None
            if answered:
                consult.answered = True
                consult.channel = msg.get("Channel") or consult.channel
                consult.uniqueid = msg.get("Uniqueid") or consult.uniqueid
                return "answered", consult
            del self.by_ref[ref]
            return "failed", consult
        if event == "Hangup":
            consult = self.of_leg(msg.get("Uniqueid", ""))
            if consult is None:
                return None
            if consult.answered:
                del self.by_ref[consult.ref]
                return "failed", consult
            # still ringing: the OriginateResponse that follows says why
            consult.channel = consult.uniqueid = None
        return None
