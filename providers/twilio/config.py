"""What the Twilio backend needs to know; the composition root fills it from Settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TwilioConfig:
    """Account, public webhook URL, platform number, operator endpoint and voice options.

    `public_url` is where Twilio reaches `webhook_app` from outside, e.g.
    ``https://care.example.org/twilio``; signatures are checked against it, never
    against the URL the request arrived on behind a proxy. `operator_endpoint` turns a
    `bridge` peer into a dial target: ``client:{peer}``, ``sip:{peer}@pbx.example.org``
    or ``+86...`` (one fixed operator line); {peer} is ``operator_<id>`` for dispatch's
    ``operator:<id>``, and {id} the bare id (``sip:desk{id}@pbx``). `api_base_url`
    points the REST client elsewhere (tests use a loopback server). `sms_from` sends
    text messages (default: `from_number`, which must then be able to send texts).
    """

    account_sid: str
    auth_token: str
    public_url: str
    from_number: str
    operator_endpoint: str = "client:{peer}"
    audio_base_url: str | None = None
    english_language: str = "en-GB"
    voices: Mapping[str, str] = field(default_factory=dict)
    api_base_url: str | None = None
    sms_from: str | None = None
    http_timeout_s: float = 10.0
    handoff_wait_s: float = 0.3
    handoff_max_s: float = 30.0
    hold_pause_s: int = 1
    #: answering-machine detection on outbound calls (`MachineDetection=Enable`): the
    #: answer waits for Twilio's verdict and says who picked up (`AnsweredBy`)
    machine_detection: bool = False
    #: how long an operator's conference leg rings before it counts as unanswered
    operator_ring_s: int = 30
    keep_ended: int = 500
    keep_texts: int = 10_000
    #: while the API is unreachable: first wait before asking again, doubled up to the max
    probe_initial_s: float = 1.0
    probe_max_s: float = 30.0
