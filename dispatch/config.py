"""The timings and policies of the dispatch service (filled from `Settings` at the root)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time


@dataclass(slots=True)
class DispatchConfig:
    """Timings and policies of the dispatch service."""

    offer_timeout_s: float = 90.0
    ring_timeout_s: float = 30.0
    parallel_offers: int = 1
    parallel_offers_urgent: int = 2
    wrap_up_s: float = 60.0
    survey_delay_s: float = 60.0
    survey_retry_s: float = 1800.0
    survey_attempts: int = 2
    survey_window_s: float = 3 * 24 * 3600.0
    quiet_start: time = time(21, 0)
    quiet_end: time = time(8, 30)
    caller_id: str = ""
    match_seed: int | None = None
    #: False: registered residents go straight to an operator, no menu
    hotline_menu: bool = True
    #: how often a waiting caller hears their place and the call-back offer
    queue_announce_s: float = 30.0
    #: a caller who rang within this window before moves up the queue
    repeat_window_s: float = 600.0
    #: how long a waiting call is offered to one operator before it goes to the next
    ring_operator_s: float = 20.0
    #: an operator who lets this many offered calls go within an hour is paused
    missed_to_pause: int = 3
    #: score distance within which eligible merchants count as comparable (fair rotation)
    match_band: float = 0.5
    #: how far back acceptance, ratings and no-shows are read for the ranking
    stats_window_days: int = 90
    #: how long the in-memory merchant index is trusted before it is read again
    index_ttl_s: float = 300.0
    #: how long a merchant's cached record (acceptance, ratings...) is trusted unchanged
    stats_ttl_s: float = 300.0
    #: how often the reconciler compares open tickets and offers with the timers
    reconcile_every_s: float = 300.0
    #: call the first emergency contact when the resident never answers the survey
    survey_family: bool = True
    #: incidents: how far back calls about one fault in one grid are proposed as one
    incident_window_s: float = 1800.0
    #: incidents: how many such calls make a proposal
    incident_propose_min: int = 3
    #: incidents: callbacks placed at a time once fixed, and the pause between batches
    incident_callback_batch: int = 2
    incident_callback_gap_s: float = 5.0
    #: incidents: tries of a callback nobody answers, and the wait before the next one
    incident_callback_tries: int = 2
    incident_callback_retry_s: float = 1800.0
    #: a merchant's acceptance is told to the resident by a short call (dispatch.notify);
    #: off unless the root turns it on (`YIJING_TELL_RESIDENT`, on by default there)
    tell_resident: bool = False
    #: tries of that call when nobody answers, and the wait before the next one
    tell_resident_tries: int = 2
    tell_resident_retry_s: float = 600.0
    #: masked calls between a merchant and the resident of an open order (dispatch.masked):
    #: how many one ticket may have within an hour, whoever asks
    masked_per_hour: int = 4
    #: how long the second leg rings: the first one waits on the line meanwhile, and
    #: Asterisk hangs up a channel left waiting for its next flow after `agi_stay_s` (20 s)
    masked_ring_s: float = 18.0
    #: the resident's contacts are told what they chose to hear (dispatch.family); off
    #: unless the root turns it on (`YIJING_TELL_FAMILY`, on by default there)
    tell_family: bool = False

    # -- wellbeing calls (dispatch.wellbeing) ---------------------------------------------
    #: tries of a resident's wellbeing call, and the pause after one nobody answered
    wellbeing_tries: int = 3
    wellbeing_retry_s: float = 300.0
    #: a care-circle contact who said they would go and see is called back after this
    wellbeing_report_s: float = 1800.0

    # -- the outbound engine (dispatch.outbound_engine) ---------------------------------
    #: calls handed to the backend per second at most, and outbound calls at once at most
    #: (every outbound call counts; only the paced purposes wait for a free one); the root
    #: sets the backend's own (`outbound_engine.BACKEND_PACING`), these are the simulator's
    outbound_cps: float = 10.0
    outbound_channels: int = 30
    #: lines always left free for the hotline: outbound calls stop while inbound + outbound
    #: would leave fewer free on the trunk (`trunk_lines`; 0: channels + reserved)
    inbound_reserved_lines: int = 2
    trunk_lines: int = 0
    #: one resident is not rung for two campaigns within this long
    outbound_dedupe_s: float = 600.0

    # -- emergencies (dispatch.emergency) ---------------------------------------------------
    #: an emergency nobody at the console answers in this time goes to the on-call list
    emergency_answer_s: float = 15.0
    #: nobody on the on-call list takes it in this time: contacts are rung, 120 offered
    emergency_oncall_s: float = 60.0
    #: the number an emergency caller may ask to be connected to (120, the ambulance)
    emergency_number: str = "120"
    #: how often an emergency caller hears the holding prompt again
    emergency_announce_s: float = 10.0
    #: a caller ringing again this soon after an unanswered call is an emergency
    emergency_repeat_s: float = 300.0
    #: residents in these groups are high-risk: a silent call from them is an emergency
    high_risk_groups: tuple[str, ...] = ("孤寡", "残疾", "高风险")
    #: an emergency ticket (a clinic, the family doctor): offers at once, short rings and
    #: a short timeout, so the cascade reaches someone within its minutes
    parallel_offers_emergency: int = 3
    emergency_ring_s: float = 15.0
    emergency_offer_timeout_s: float = 45.0
    #: the desk's hours (local time): outside them, with nobody on duty, a routine caller
    #: hears when it opens; open all day unless the root says (`YIJING_DESK_OPEN`/`_CLOSE`)
    desk_open: time = time(0, 0)
    desk_close: time = time.max
