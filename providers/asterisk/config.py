"""Settings of the Asterisk backend (the composition root fills them from YIJING_ASTERISK_*)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AsteriskConfig:
    """Where Asterisk is, how to dial out, and how patient to be with it."""

    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "yijing"
    secret: str = ""
    #: ``{number}`` is replaced by the callee: ``PJSIP/{number}@trunk``, ``SIP/trunk/{number}``,
    #: ``Local/{number}@yijing-dialout``.
    dial_template: str = "PJSIP/{number}@trunk"
    #: CallerID shown on outbound calls (the hotline number, never a resident's).
    caller_id: str = '"Yijing" <12349>'
    #: the operator's own device, rung first by a click-to-call (``{endpoint}`` is the
    #: id of ``operator:<id>``): ``PJSIP/{endpoint}``, ``SIP/desk{endpoint}``
    desk_template: str = "PJSIP/{endpoint}"
    #: where a click-to-call's answered desk leg dials the number (extensions.conf)
    callout_context: str = "yijing-callout"
    #: where a consult's colleague's answered desk leg waits to be joined (extensions.conf)
    consult_context: str = "yijing-consult"
    #: how long a consult rings the colleague's desk before the caller goes back
    consult_ring_s: float = 30.0
    hotline_contexts: tuple[str, ...] = ("yijing-hotline",)
    outbound_context: str = "yijing-outbound"
    operators_context: str = "yijing-operators"
    bridge_context: str = "yijing-bridge"
    #: where hold(ref) sends the caller (exten ``caller``) and the operator's leg
    #: (``operator``); transfer(ref) releases the previous operator's leg at ``release``.
    onhold_context: str = "yijing-onhold"
    #: The dialplan sets ``TALK_DETECT(set)`` on hotline calls (the shipped one does;
    #: module func_talkdetect): ``ChannelTalkingStart`` tells a caller who speaks. False
    #: for a dialplan without it: a silent caller is then judged by keys only.
    talk_detect: bool = True
    #: Answering-machine detection: each Originate sets YIJING_AMD=1, the dialplan runs
    #: ``AMD()`` (app_amd) before the flow, and the answer is reported once AMDSTATUS is
    #: set (``CallAnswered.answered_by``: machine, human, unknown).
    amd: bool = False
    #: Channel variable carrying the port's ref (also in manager.conf ``channelvars``).
    ref_var: str = "YIJING_REF"
    #: FastAGI server the dialplan connects to; port 0 picks a free port (tests).
    agi_host: str = "127.0.0.1"
    agi_port: int = 4573
    agi_enabled: bool = True
    #: How long run_flow waits for the call's AGI session to connect.
    agi_wait_s: float = 5.0
    #: How long a channel whose flow finished with STAY waits for the next flow (the
    #: service commits a merchant's "1" in between) before it is hung up.
    agi_stay_s: float = 20.0
    #: Upper bound for one STREAM FILE (a prompt) to finish playing.
    agi_play_timeout_s: float = 120.0
    #: Sound files: ``<prompt_dir>/<lang>/<prompt key>`` (no extension).
    prompt_dir: str = "yijing"
    #: Where `yijing prompts build` wrote the files on this host, which Asterisk sees as
    #: `prompt_dir`. When set, templates play as their built fragments plus the dynamic
    #: values (category, address, name, ...) synthesised at call time into `dyn/`.
    sounds_dir: str = ""
    #: An Originate that fails without a reason (OriginateResponse Reason 0) is held back
    #: this long: Asterisk shutting down hangs up ringing calls that way before it says
    #: so (refusals "Asterisk is shutting down", then the Shutdown event); within the
    #: window such a call is reported lost (an outage), after it failed (the far end).
    originate_failure_grace_s: float = 3.0
    action_timeout_s: float = 5.0
    connect_timeout_s: float = 5.0
    ping_interval_s: float = 10.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    backoff_factor: float = 2.0
    backoff_jitter: float = 0.5
    #: How long __aenter__ waits for the first login before returning (still connecting).
    startup_wait_s: float = 5.0
    #: Raise from __aenter__ when the very first login is refused (else only health says so).
    fail_fast_auth: bool = False
