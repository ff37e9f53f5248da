"""Typed timer keys: what a deadline in the `Timers` port is about.

The port keeps plain strings (`offer:12`, `deadline:7`, `reconcile:periodic`), the format
persisted in the `timer` table since the first release, so existing databases keep
working. Dispatch code never builds or splits those strings by hand: it makes a
`TimerKey` (`TimerKey.offer(12)`), and the router (`dispatch.routing`) parses what fires
and looks its kind up in a table of handlers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.StrEnum):
    """What a timer is about; the prefix of its key."""

    #: an offer's timeout (subject: offer id)
    OFFER = "offer"
    #: an undialed call waits for the end of the quiet hours (call id)
    REDIAL = "redial"
    #: a ticket's deadline (ticket id)
    DEADLINE = "deadline"
    #: a late ticket goes to the supervisor (ticket id)
    ESCALATE = "escalate"
    #: the next survey call of a completed ticket (ticket id)
    SURVEY = "survey"
    #: a completed ticket's survey window ends (ticket id)
    CLOSE = "close"
    #: a waiting caller hears their place in the queue (call id)
    QUEUE = "queue"
    #: an operator's timed wrap-up ends (user id)
    WRAPUP = "wrapup"
    #: a call offered to an operator rings out (user id)
    RING = "ring"
    #: an emergency's stage runs out of time (call id)
    EMERGENCY = "emergency"
    #: the periodic reconciliation ("periodic")
    RECONCILE = "reconcile"
    #: a fixed incident's next batch of callbacks (incident id)
    INCIDENT = "incident"
    #: a campaign's next round of calls (campaign id)
    CAMPAIGN = "campaign"
    #: a resident's wellbeing call: the day's round, its next try, a contact's report (resident id)
    WELLBEING = "wellbeing"
    #: the (next) call telling the resident who accepted their order (ticket id)
    TOLD = "told"
    #: a ticket's family notices that are due: now, or when the quiet hours end (ticket id)
    FAMILY = "family"
    #: the family notices of an emergency flagged on a call (call id)
    FAMILY_EMERGENCY = "family_em"
    #: a resident's reminder: its next call, a retry, a look at a call under way (reminder id)
    REMINDER = "reminder"
    #: the outbound engine's next look at its queue: a call falls due, a second's calls
    #: are spent (the one subject "0")
    OUTBOUND = "outbound"


@dataclass(frozen=True, slots=True)
class TimerKey:
    """A timer's kind and subject; `str()` is the key the `Timers` port stores."""

    kind: Kind
    subject: str

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.subject}"

    @property
    def id(self) -> int:
        """The subject as a row id (every kind but `reconcile`)."""
        return int(self.subject)

    @classmethod
    def parse(cls, key: str) -> TimerKey | None:
        """The key of a stored timer string, or None for one this version does not know."""
        kind, sep, subject = key.partition(":")
        if not sep or not subject:
            return None
        try:
            known = Kind(kind)
        except ValueError:
            return None
        if known != Kind.RECONCILE and not subject.isdigit():
            return None
        return cls(known, subject)

    @classmethod
    def of(cls, kind: Kind, subject: int | None) -> TimerKey:
        """The key about row `subject` (an id that has been flushed, never None)."""
        assert subject is not None, f"a {kind} timer needs a subject id"
        return cls(kind, str(subject))

    @classmethod
    def offer(cls, offer_id: int | None) -> TimerKey:
        """An offer's timeout."""
        return cls.of(Kind.OFFER, offer_id)

    @classmethod
    def redial(cls, call_id: int | None) -> TimerKey:
        """An undialed call's next try."""
        return cls.of(Kind.REDIAL, call_id)

    @classmethod
    def deadline(cls, ticket_id: int | None) -> TimerKey:
        """A ticket's deadline."""
        return cls.of(Kind.DEADLINE, ticket_id)

    @classmethod
    def escalate(cls, ticket_id: int | None) -> TimerKey:
        """A late ticket's supervisor timer."""
        return cls.of(Kind.ESCALATE, ticket_id)

    @classmethod
    def survey(cls, ticket_id: int | None) -> TimerKey:
        """A completed ticket's next survey call."""
        return cls.of(Kind.SURVEY, ticket_id)

    @classmethod
    def close(cls, ticket_id: int | None) -> TimerKey:
        """The end of a completed ticket's survey window."""
        return cls.of(Kind.CLOSE, ticket_id)

    @classmethod
    def queue(cls, call_id: int | None) -> TimerKey:
        """A waiting caller's next announcement."""
        return cls.of(Kind.QUEUE, call_id)

    @classmethod
    def wrapup(cls, user_id: int | None) -> TimerKey:
        """An operator's wrap-up timeout."""
        return cls.of(Kind.WRAPUP, user_id)

    @classmethod
    def ring(cls, user_id: int | None) -> TimerKey:
        """A call offered to an operator rings out."""
        return cls.of(Kind.RING, user_id)

    @classmethod
    def incident(cls, incident_id: int | None) -> TimerKey:
        """A fixed incident's next batch of callbacks."""
        return cls.of(Kind.INCIDENT, incident_id)

    @classmethod
    def campaign(cls, campaign_id: int | None) -> TimerKey:
        """A campaign's next round of calls."""
        return cls.of(Kind.CAMPAIGN, campaign_id)

    @classmethod
    def wellbeing(cls, resident_id: int | None) -> TimerKey:
        """A resident's next wellbeing step (the day's call, a retry, a contact's report)."""
        return cls.of(Kind.WELLBEING, resident_id)

    @classmethod
    def told(cls, ticket_id: int | None) -> TimerKey:
        """The (next) call telling the resident who accepted their order."""
        return cls.of(Kind.TOLD, ticket_id)

    @classmethod
    def family(cls, ticket_id: int | None) -> TimerKey:
        """A ticket's family notices that are due."""
        return cls.of(Kind.FAMILY, ticket_id)

    @classmethod
    def family_emergency(cls, call_id: int | None) -> TimerKey:
        """The family notices of an emergency call."""
        return cls.of(Kind.FAMILY_EMERGENCY, call_id)

    @classmethod
    def reminder(cls, reminder_id: int | None) -> TimerKey:
        """A reminder's next step (its next call, a retry)."""
        return cls.of(Kind.REMINDER, reminder_id)

    @classmethod
    def outbound(cls) -> TimerKey:
        """The outbound engine's next look at its queue of due calls."""
        return cls(Kind.OUTBOUND, "0")

    @classmethod
    def emergency(cls, call_id: int | None) -> TimerKey:
        """An emergency's stage deadline (answer time, on-call time)."""
        return cls.of(Kind.EMERGENCY, call_id)


#: the periodic reconciliation's one key
RECONCILE_PERIODIC = TimerKey(Kind.RECONCILE, "periodic")

#: every timer of a ticket (cancelled together when it is cancelled)
TICKET_KINDS = (Kind.DEADLINE, Kind.ESCALATE, Kind.SURVEY, Kind.CLOSE, Kind.TOLD)
