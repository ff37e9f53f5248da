"""What happens: calls, operators, tickets and offers, as tables (the event log is
`eventlog.models.Event`).

Every row that a state machine owns carries a `version`; writers compare-and-set on it
so two operators or two merchants racing on one subject get a clear refusal.
"""

from __future__ import annotations

from datetime import date, datetime, time

from sqlalchemy import Column, Index
from sqlmodel import Field, SQLModel

from dispatch.machines.call import CallState
from dispatch.machines.emergency import Stage
from dispatch.machines.incident import IncidentState
from dispatch.machines.offer import OfferState
from dispatch.machines.operator import OperatorState
from dispatch.machines.ticket import TicketState
from eventlog.db import BigId, EnumText, JSONType, UTCDateTime, utcnow


class Call(SQLModel, table=True):
    """A phone call, inbound (hotline) or outbound (offer, survey, callback)."""

    # the queue, the call list and the lost-call check read the unfinished calls by state
    # (a few live ones among every call ever made); the figures read a period by start
    __table_args__ = (
        Index("ix_call_direction_state", "direction", "state"),
        Index("ix_call_started_at", "started_at"),
        # a resident's recent calls: the outbound engine's dedupe, a wellbeing check-in
        Index("ix_call_resident_started", "resident_id", "started_at"),
    )

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    ref: str = Field(unique=True, max_length=64)
    direction: str = Field(max_length=4)
    purpose: str = Field(default="hotline", max_length=16)
    state: CallState = Field(default=CallState.RINGING, sa_type=EnumText(CallState))
    number: str = Field(default="", max_length=32)
    resident_id: int | None = Field(default=None, foreign_key="resident.id", sa_type=BigId)
    registered: bool = False
    ticket_id: int | None = Field(default=None, sa_type=BigId)
    offer_id: int | None = Field(default=None, sa_type=BigId)
    operator_id: int | None = Field(default=None, sa_type=BigId)
    emergency: bool = False
    #: a click-to-call placed from the desk during this other call (the emergency panel)
    parent_call_id: int | None = Field(default=None, sa_type=BigId)
    #: why the call is an emergency: key (the hotline's emergency key), silent (a
    #: high-risk resident who said and pressed nothing), repeat (rang again soon after an
    #: unanswered call); None for a routine call
    emergency_reason: str | None = Field(default=None, max_length=16)
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    queued_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    answered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    #: when the operator put the caller on hold (None while not on hold)
    held_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    #: outbound: when the backend accepted the originate; None while the call waits for
    #: the phone line (placed again, same ref, when the backend is back)
    dialed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    cause: str | None = Field(default=None, max_length=32)
    #: outbound: who the backend says picked up (human, machine, unknown; None: it cannot
    #: tell, or nobody did); a machine is no check-in (dispatch.outbound_engine)
    answered_by: str | None = Field(default=None, max_length=8)
    version: int = 0


class OutboundJob(SQLModel, table=True):
    """One paced outbound call in the queue of due calls (dispatch.outbound_engine): its
    call row exists from the start (undialed); the job says when it may be placed and
    whether it was. `queued` -> `placed` (in the unit of work that hands it to the
    backend: never twice) or `dropped` (no longer wanted)."""

    __tablename__ = "outbound_queue"
    __table_args__ = (Index("ix_outbound_queue_due", "state", "priority", "due_at"),)

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    ref: str = Field(unique=True, max_length=64)
    purpose: str = Field(max_length=16)
    #: the campaign it belongs to (dedupe: two sources do not ring one resident within
    #: minutes of each other; one source's own retries keep their pace)
    source: str = Field(max_length=48)
    #: lower first: emergency callback 0, wellbeing 1, reminder 2, notice 3, survey 4
    priority: int = 3
    resident_id: int | None = Field(default=None, sa_type=BigId)
    due_at: datetime = Field(sa_type=UTCDateTime)
    state: str = Field(default="queued", max_length=8)
    ring_s: float | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    placed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Ticket(SQLModel, table=True):
    """A need (工单) from intake to closure."""

    # "same as last time" and the usual merchant look up a resident's tickets by category
    __table_args__ = (
        Index("ix_ticket_resident_category", "resident_id", "category_code"),
        # the matching statistics read a merchant's recent ratings
        Index("ix_ticket_merchant_rated", "merchant_id", "rated_at"),
    )

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    resident_id: int | None = Field(default=None, foreign_key="resident.id", sa_type=BigId)
    call_id: int | None = Field(default=None, sa_type=BigId)
    category_code: str = Field(foreign_key="service_category.code", max_length=32)
    description: str = Field(default="", max_length=1000)
    urgency: str = Field(default="routine", max_length=16)
    state: TicketState = Field(default=TicketState.NEW, index=True, sa_type=EnumText(TicketState))
    escalated: bool = False
    escalation_reason: str | None = Field(default=None, max_length=200)
    #: 0 not late, 1 the operator on duty was told, 2 the supervisor was told
    escalation_level: int = 0
    #: a "not satisfied" rating opened a follow-up a supervisor must close
    follow_up: bool = False
    #: the order this one repeats ("same as last time")
    repeat_of: int | None = Field(default=None, sa_type=BigId)
    #: "resident" or "family" (an emergency contact rated on the resident's behalf)
    rated_by: str | None = Field(default=None, max_length=16)
    deadline_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    #: the ranked merchant ids the cascade walks, fixed when dispatch starts
    plan: list[int] = Field(default_factory=list, sa_column=Column(JSONType))
    merchant_id: int | None = Field(default=None, foreign_key="merchant.id", sa_type=BigId)
    code_word: str = Field(default="", max_length=16)
    rating: str | None = Field(default=None, max_length=32)
    survey_attempts: int = 0
    created_by: str = Field(default="system", max_length=64)
    #: the operator who looks after the ticket now (the desk that made it, or whom it was
    #: reassigned to); None for one the hotline or a job made until someone takes it
    assigned_to: int | None = Field(default=None, sa_type=BigId)
    #: the category asked for the resident's consent when the ticket was made: it is not
    #: dispatched until `consented_at` is set (who consented: `consent_by`)
    needs_consent: bool = False
    consent_by: str | None = Field(default=None, max_length=64)
    consented_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    #: a booked visit (`dispatch.booking`): the local date and time window in Asia/Shanghai
    #: ("doctor on Thursday morning"); None: as soon as possible
    booked_on: date | None = None
    booked_from: time | None = None
    booked_until: time | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    accepted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    arrived_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    rated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    version: int = 0


class Offer(SQLModel, table=True):
    """One offer of a ticket to one merchant, carried by one outbound call."""

    __table_args__ = (
        Index("ix_offer_ticket", "ticket_id"),
        # the matching statistics read a merchant's recent offers
        Index("ix_offer_merchant_placed", "merchant_id", "placed_at"),
    )

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", sa_type=BigId)
    merchant_id: int = Field(foreign_key="merchant.id", sa_type=BigId)
    rank: int = 0
    state: OfferState = Field(default=OfferState.PLACED, sa_type=EnumText(OfferState))
    call_ref: str = Field(max_length=64)
    phone: str = Field(max_length=32)
    placed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    version: int = 0


class OperatorStatus(SQLModel, table=True):
    """An operator's live state, one row per console user who takes calls."""

    __tablename__ = "operator_status"

    user_id: int = Field(primary_key=True, foreign_key="user.id", sa_type=BigId)
    state: OperatorState = Field(default=OperatorState.LOGGED_OUT, sa_type=EnumText(OperatorState))
    reason: str | None = Field(default=None, max_length=64)
    call_id: int | None = Field(default=None, sa_type=BigId)
    since: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    version: int = 0


class Timer(SQLModel, table=True):
    """One pending deadline of the `Timers` port: a key and when it fires.

    APScheduler holds one persistent job per time bucket, not per key; the bucket's job
    fires every row whose `fire_at` has passed.
    """

    key: str = Field(primary_key=True, max_length=128)
    fire_at: datetime = Field(sa_type=UTCDateTime, index=True)


# -- incidents: many calls, one outage (dispatch.incidents) ----------------------------------
class Incident(SQLModel, table=True):
    """One water, power or gas fault in one grid, many callers: one ticket, one callback round."""

    __table_args__ = (Index("ix_incident_grid_category", "grid_code", "category_code", "state"),)

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    grid_code: str = Field(foreign_key="grid.code", max_length=32)
    category_code: str = Field(foreign_key="service_category.code", max_length=32)
    state: IncidentState = Field(default=IncidentState.OPEN, sa_type=EnumText(IncidentState))
    #: the one ticket that went to the utility
    ticket_id: int | None = Field(default=None, sa_type=BigId, index=True)
    opened_by: str = Field(default="system", max_length=64)
    opened_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    dispatched_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    fixed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    fixed_by: str | None = Field(default=None, max_length=64)
    done_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    version: int = 0


class IncidentCall(SQLModel, table=True):
    """A call linked to an incident, and the callback its caller gets once it is fixed."""

    __tablename__ = "incident_call"
    __table_args__ = (Index("ix_incident_call_incident", "incident_id"),)

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    incident_id: int = Field(foreign_key="incident.id", sa_type=BigId)
    #: a call belongs to one incident at most
    call_id: int = Field(sa_type=BigId, unique=True)
    resident_id: int | None = Field(default=None, sa_type=BigId)
    #: the number the caller rang from: where the news goes (never shown to a merchant)
    number: str = Field(max_length=32)
    linked_by: str = Field(default="system", max_length=64)
    linked_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    #: the callback's call ref, set in the unit of work that records the call (placed once)
    callback_ref: str | None = Field(default=None, max_length=64, unique=True)
    #: told, unanswered or failed (after the last try), lost (a restart cut it off: it
    #: may have rung, so it is not placed again), or same_number (another linked call)
    callback_outcome: str | None = Field(default=None, max_length=16)
    #: callbacks placed so far; an unanswered one is tried again at `retry_at`
    attempts: int = 0
    retry_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class EmergencyEscalation(SQLModel, table=True):
    """One emergency call's escalation (`dispatch.machines.emergency`), one row per call.

    `plan` is fixed when it starts: the on-call phone ids and the resident's emergency
    contact ids, in the order they are rung. Each (stage, step) has one outbound call
    (`responder_ref`), so a restart never rings the same step twice.
    """

    __tablename__ = "emergency_escalation"

    call_id: int = Field(primary_key=True, foreign_key="call.id", sa_type=BigId)
    call_ref: str = Field(max_length=64)
    reason: str = Field(max_length=16)
    stage: Stage = Field(default=Stage.OPERATORS, sa_type=EnumText(Stage), index=True)
    step: int = 0
    plan: dict[str, list[int]] = Field(default_factory=dict, sa_column=Column(JSONType))
    dialled_120: bool = False
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    overflow_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    #: who took it: "operator:<user id>", "oncall:<id>", "contact:<id>" or "120"
    taken_by: str | None = Field(default=None, max_length=32)
    taken_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    version: int = 0


class OnCallPhone(SQLModel, table=True):
    """One phone of the on-call list (community duty phone, supervisors' mobiles), rung in
    `position` order when an emergency overflows."""

    __tablename__ = "oncall_phone"

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    label: str = Field(default="", max_length=64)
    phone: str = Field(max_length=32)
    position: int = 0
    active: bool = True


class Campaign(SQLModel, table=True):
    """An outbound round to many residents (a notice to grids, with an optional question):
    paced, retried, never in the quiet hours, each recipient called once per try."""

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    kind: str = Field(default="notice", max_length=16)
    title: str = Field(max_length=64)
    #: what the voice reads at call time
    text: str = Field(max_length=500)
    #: the yes/no question after it ("1 yes, 2 no"), empty for none
    question: str = Field(default="", max_length=200)
    grid_codes: list[str] = Field(default_factory=list, sa_type=JSONType)
    groups: list[str] = Field(default_factory=list, sa_type=JSONType)
    #: running, done or cancelled
    state: str = Field(default="running", max_length=16)
    #: no longer read: the outbound engine paces every campaign (dispatch.outbound_engine)
    batch: int = 10
    gap_s: float = 30.0
    #: tries per recipient, and the wait before the next one
    tries: int = 2
    retry_s: float = 1800.0
    created_by: str = Field(default="system", max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    done_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class CampaignCall(SQLModel, table=True):
    """One recipient of a campaign: their tries and what came of them."""

    __tablename__ = "campaign_call"
    __table_args__ = (
        Index("ix_campaign_call_campaign", "campaign_id"),
        Index("ix_campaign_call_resident", "resident_id"),
    )

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", sa_type=BigId)
    resident_id: int = Field(sa_type=BigId)
    number: str = Field(max_length=32)
    #: the current try's call ref, set in the unit of work that records the call
    ref: str | None = Field(default=None, max_length=64, unique=True)
    attempts: int = 0
    retry_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    #: heard, unanswered or failed (after the last try), lost (cut off by a restart: it may
    #: have rung, not placed again), no_phone
    outcome: str | None = Field(default=None, max_length=16)
    #: the key's meaning when the notice asked: yes, no
    answer: str | None = Field(default=None, max_length=16)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class WellbeingPlan(SQLModel, table=True):
    """A resident's daily wellbeing call (`dispatch.wellbeing`): on which days, in which
    window, in which language, and the periods they are away (no call then)."""

    __tablename__ = "wellbeing_plan"

    resident_id: int = Field(primary_key=True, foreign_key="resident.id", sa_type=BigId)
    enabled: bool = True
    #: ISO weekdays the call is due (1 Monday .. 7 Sunday)
    days: list[int] = Field(default_factory=list, sa_column=Column(JSONType))
    #: a hotline call from the resident in the window is their check-in; at its end,
    #: without one, the service calls (local time)
    window_start: time = time(9, 0)
    window_end: time = time(10, 0)
    #: the call's language; None: the resident's own
    language: str | None = Field(default=None, max_length=16)
    #: [{"from": "YYYY-MM-DD", "until": "YYYY-MM-DD", "reason": "..."}], local days included
    away: list[dict[str, str]] = Field(default_factory=list, sa_column=Column(JSONType))
    updated_by: str = Field(default="system", max_length=64)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    version: int = 0


class WellbeingRound(SQLModel, table=True):
    """One resident's wellbeing check on one day: the tries, then the care circle.

    `call_ref` is the call under way (set in the unit of work that records it, cleared by
    its outcome), so a restart never places it twice; `contacts` is fixed when the care
    circle is alerted, in cascade order.
    """

    __tablename__ = "wellbeing_round"
    __table_args__ = (Index("ux_wellbeing_round_day", "resident_id", "day", unique=True),)

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    resident_id: int = Field(foreign_key="resident.id", sa_type=BigId)
    day: date
    #: calling, checked_in, away, operator, alerting, taken, closed
    state: str = Field(default="calling", max_length=16)
    #: checked_in: key or hotline; closed: well, help, unreached, no_report
    outcome: str | None = Field(default=None, max_length=16)
    due_at: datetime = Field(sa_type=UTCDateTime)
    attempts: int = 0
    call_ref: str | None = Field(default=None, max_length=64, unique=True)
    #: the next try (or the report call) is due then
    retry_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    #: the last try failed: the care circle is alerted
    missed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    contacts: list[int] = Field(default_factory=list, sa_column=Column(JSONType))
    contact_step: int = 0
    taken_by: int | None = Field(default=None, sa_type=BigId)
    taken_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    report_tries: int = 0
    #: the operator task opened when nobody took it or help is needed
    ticket_id: int | None = Field(default=None, sa_type=BigId)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    version: int = 0


class Dispute(SQLModel, table=True):
    """A merchant's objection to a rating or a no-show on one of their tickets, and the
    supervisor's decision on it. One per ticket, kind and merchant: a decision is final."""

    __table_args__ = (
        Index("ux_dispute_ticket_kind_merchant", "ticket_id", "kind", "merchant_id", unique=True),
        # the supervisor's list reads the open ones; the scorecard a merchant's
        Index("ix_dispute_state", "state"),
        Index("ix_dispute_merchant", "merchant_id"),
    )

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", sa_type=BigId)
    merchant_id: int = Field(foreign_key="merchant.id", sa_type=BigId)
    #: "rating" or "no_show"
    kind: str = Field(max_length=16)
    #: "open", "upheld" (the rating or no-show stands) or "overturned" (it stops counting)
    state: str = Field(default="open", max_length=16)
    reason: str = Field(max_length=300)
    opened_by: int | None = Field(default=None, sa_type=BigId)
    opened_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    decided_by: int | None = Field(default=None, sa_type=BigId)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    note: str = Field(default="", max_length=300)


class Reminder(SQLModel, table=True):
    """A resident's medication or appointment reminder (`dispatch.reminders`): what the
    voice reads, at what local time, on which weekdays (medication) or for which one
    date (an appointment: a call the day before and an hour before).

    The occurrence under way lives on the row: `due_at` (which one), `call_ref` (its call,
    set in the unit of work that records it: placed once), `attempts`, `retry_at`;
    `done_through` is the last occurrence settled (confirmed, missed, to an operator).
    """

    __tablename__ = "reminder"

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    resident_id: int = Field(foreign_key="resident.id", sa_type=BigId, index=True)
    #: a booked visit's reminder (kind `visit`, `dispatch.booking`): the ticket it is about
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", sa_type=BigId, index=True)
    #: a booked visit's reminder to its merchant (the day before; 2 cancels it), not the resident
    merchant_id: int | None = Field(default=None, foreign_key="merchant.id", sa_type=BigId)
    #: medication, appointment or visit
    kind: str = Field(max_length=16)
    #: what the voice reads
    text: str = Field(max_length=200)
    #: local time of day: the medication's time, or the appointment's
    at: time
    #: ISO weekdays (1 Monday .. 7 Sunday) of a repeating reminder
    days: list[int] = Field(default_factory=list, sa_column=Column(JSONType))
    #: the appointment's local date (then `days` is empty)
    on_date: date | None = None
    enabled: bool = True
    #: the call's language; None: the resident's own
    language: str | None = Field(default=None, max_length=16)
    due_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    call_ref: str | None = Field(default=None, max_length=64, unique=True)
    attempts: int = 0
    retry_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    done_through: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_by: str = Field(default="system", max_length=64)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    version: int = 0
