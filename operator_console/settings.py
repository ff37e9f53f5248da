"""Settings from `YIJING_*` environment variables, passed explicitly to the app factory."""

from __future__ import annotations

import difflib
import os
from datetime import time
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"", "change-me", "changeme", "secret"}

#: `YIJING_` variables that are not settings of the process but are allowed next to them
#: (the test suite's PostgreSQL); every field of `Settings` is known by itself
OTHER_VARIABLES: frozenset[str] = frozenset({"YIJING_TEST_PG"})


def is_placeholder(secret: str) -> bool:
    """Whether a secret is empty or one of the placeholders the examples use (any case)."""
    return secret.strip().lower() in PLACEHOLDER_SECRETS


class UnknownVariables(ValueError):
    """`YIJING_` variables in the environment that nothing reads (a typo, a stale doc)."""


class Settings(BaseSettings):
    """Everything the process can be told; the defaults are the embedded demo."""

    model_config = SettingsConfigDict(env_prefix="YIJING_", env_file=None, extra="ignore")

    environment: Literal["development", "production", "test"] = "development"
    host: str = "127.0.0.1"
    port: int = 8080
    #: the console's public origin; by default http://HOST:PORT (127.0.0.1 for 0.0.0.0)
    public_url: str = ""
    data_dir: Path = Path("var")
    database_url: str = ""
    #: `auto`: migrate the database at start (SQLite's default: the embedded single
    #: process); `check`: refuse to start unless `yijing db upgrade` brought it to this
    #: Yijing's revision (PostgreSQL's default: several processes, migrated once per deploy)
    migrate: Literal["auto", "check"] = "auto"
    secret_key: str = ""
    #: by default on exactly when the public URL is https
    secure_cookies: bool = False
    telephony: Literal["memory", "asterisk", "twilio"] = "memory"
    memory_time_scale: float = 1.0
    seed_demo: bool = True
    demo_password: str = ""
    language: str = "zh-CN"
    hotline_number: str = "12349"
    offer_timeout_s: float = 90.0
    ring_timeout_s: float = 30.0
    survey_delay_s: float = 30.0
    wrap_up_s: float = 60.0
    #: no survey calls in the night (local time); a demo or test may narrow the window
    quiet_start: time = time(21, 0)
    quiet_end: time = time(8, 30)
    parallel_offers_urgent: int = Field(default=2, ge=1, le=10)
    scheduler: bool = True
    #: false: registered residents go straight to an operator (no keypad menu)
    hotline_menu: bool = True
    queue_announce_s: float = 30.0
    #: incidents: calls about one outage in one grid within this window are proposed as one
    incident_window_s: float = Field(default=1800.0, ge=60)
    incident_propose_min: int = Field(default=3, ge=2, le=100)
    #: incidents: callbacks placed at a time after the fix, and the pause between batches
    incident_callback_batch: int = Field(default=2, ge=1, le=50)
    incident_callback_gap_s: float = Field(default=5.0, ge=0)
    #: incidents: tries of a callback nobody answers, and the wait before the next try
    incident_callback_tries: int = Field(default=2, ge=1, le=5)
    incident_callback_retry_s: float = Field(default=1800.0, ge=60)
    #: wellbeing calls: tries of the day's call and the pause between them; a contact who
    #: went to see is called back after `wellbeing_report_s` to report
    wellbeing_tries: int = Field(default=3, ge=1, le=10)
    wellbeing_retry_s: float = Field(default=300.0, ge=60, le=3600)
    wellbeing_report_s: float = Field(default=1800.0, ge=300, le=6 * 3600)
    #: a merchant's acceptance is told to the resident by a short call (who, by when, the
    #: code word); a call nobody answers is tried once more after the retry wait
    tell_resident: bool = True
    tell_resident_retry_s: float = Field(default=600.0, ge=60)
    #: each emergency contact is told what they chose (accepted, arrived, completed, late,
    #: no-show, emergency) by text or call, not at night (dispatch.family)
    tell_family: bool = True
    #: the outbound engine's pace (dispatch.outbound_engine); unset: the backend's default
    #: (memory 10/s and 30 channels, asterisk 5/s and 20, twilio 1/s and 10)
    outbound_cps: float | None = Field(default=None, gt=0, le=100)
    outbound_channels: int | None = Field(default=None, ge=1, le=1000)
    #: lines always kept free for the hotline, of `trunk_lines` (unset: channels + reserved)
    inbound_reserved_lines: int | None = Field(default=None, ge=0, le=100)
    trunk_lines: int | None = Field(default=None, ge=0, le=2000)
    #: one resident is not rung for two campaigns within this long
    outbound_dedupe_s: float = Field(default=600.0, ge=0, le=86400)
    #: the public emergency number (ambulance) the emergency panel rings
    emergency_number: str = Field(default="120", pattern=r"^\+?[0-9]{2,20}$")
    # Emergencies (issue 14): ring-all, then the on-call list, then contacts and 120
    #: an emergency nobody at the console answers in this time goes to the on-call list
    emergency_answer_s: float = Field(default=15.0, gt=0, le=300)
    #: nobody on call takes it in this time: the resident's contacts are rung, 120 offered
    emergency_oncall_s: float = Field(default=60.0, gt=0, le=600)
    #: the emergency number a caller may ask to be connected to
    #: the on-call list's first entries (comma separated), seeded into an empty list once
    oncall_phones: str = ""
    #: the desk's hours (local time): outside them with nobody logged in, a routine caller
    #: hears when it opens and gets a callback task
    desk_open: time = time(8, 0)
    desk_close: time = time(20, 0)
    flows_dir: Path | None = None
    prompts_dir: Path = Path("var/prompts")
    recorded_prompts_dir: Path | None = None
    #: behind a reverse proxy: the client address is the last X-Forwarded-For entry
    trust_proxy: bool = False
    #: several processes on one PostgreSQL (Asterisk): how often a standby tries to take
    #: over and the owner checks its lock; how long a standby waits for the owner to carry
    #: out one adapter call before the call counts as "line unavailable"
    takeover_poll_s: float = Field(default=1.0, gt=0, le=30)
    relay_timeout_s: float = Field(default=10.0, gt=0, le=120)

    # Merchant login codes (read out by a phone call, or sent as a text where possible)
    merchant_code_ttl_s: int = Field(default=600, ge=60, le=3600)
    merchant_login_window_s: int = Field(default=900, ge=60)
    merchant_login_per_phone: int = Field(default=3, ge=1)
    merchant_login_per_client: int = Field(default=10, ge=1)
    merchant_code_attempts: int = Field(default=5, ge=1, le=10)

    # Staff password logins: failed attempts allowed per account and per client address
    # in the window (then 429 until the oldest one leaves the window)
    login_window_s: int = Field(default=900, ge=60)
    login_per_account: int = Field(default=10, ge=1)
    login_per_client: int = Field(default=30, ge=1)

    # Asterisk (YIJING_TELEPHONY=asterisk)
    asterisk_host: str = "127.0.0.1"
    asterisk_port: int = 5038
    asterisk_username: str = "yijing"
    asterisk_secret: str = ""
    asterisk_dial_template: str = "PJSIP/{number}@trunk"
    #: the operator's desk device a click-to-call rings first ({endpoint}: the operator id)
    asterisk_desk_template: str = "PJSIP/{endpoint}"
    #: how long a consult (先咨询) rings the colleague's desk before the caller goes back
    asterisk_consult_ring_s: float = Field(default=30.0, gt=0)
    #: answering-machine detection on outbound calls (app_amd's AMD() in the dialplan)
    asterisk_amd: bool = False
    asterisk_agi_host: str = "127.0.0.1"
    asterisk_agi_port: int = 4573
    #: how long an AMI action may go unanswered, and how often the link is pinged
    asterisk_action_timeout_s: float = Field(default=5.0, gt=0)
    asterisk_ping_interval_s: float = Field(default=10.0, gt=0)
    #: the prompt build folder as this host sees it (Asterisk reads it as sounds/yijing)
    asterisk_sounds_dir: str = ""

    # Twilio (YIJING_TELEPHONY=twilio)
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_from_number: str = ""
    twilio_public_url: str = ""
    twilio_operator_endpoint: str = "client:{peer}"
    twilio_audio_base_url: str | None = None
    #: answering-machine detection on outbound calls (`MachineDetection=Enable`)
    twilio_machine_detection: bool = False
    #: the REST API's base URL; only a proxy or a test server needs another one
    twilio_api_base_url: str | None = None
    #: false when the number cannot send texts: login codes then always go by phone call
    twilio_sms: bool = True
    #: the number that sends texts, when not `twilio_from_number`
    twilio_sms_from: str | None = None

    @classmethod
    def known_variables(cls) -> frozenset[str]:
        """Every `YIJING_` variable the process reads."""
        return frozenset("YIJING_" + name.upper() for name in cls.model_fields) | OTHER_VARIABLES

    @classmethod
    def from_environment(cls) -> Settings:
        """The settings of the `yijing` command: the environment's `YIJING_` variables,
        refusing any it does not know (ignored silently, a misspelt secret or timeout would
        leave a default in force that nobody chose)."""
        known = cls.known_variables()
        unknown = sorted(
            k for k in os.environ if k.upper().startswith("YIJING_") and k.upper() not in known
        )
        if unknown:
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name.upper(), known, n=1)
                hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
            raise UnknownVariables("unknown configuration variables: " + ", ".join(hints))
        return cls()

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir / 'yijing.db'}"
        if "migrate" not in self.model_fields_set:
            self.migrate = "auto" if self.is_sqlite else "check"
        if not self.public_url:
            host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
            host = f"[{host}]" if ":" in host else host
            self.public_url = f"http://{host}:{self.port}"
        self.public_url = self.public_url.rstrip("/")
        if "secure_cookies" not in self.model_fields_set:
            self.secure_cookies = self.public_url.lower().startswith("https://")
        if self.environment == "production" and is_placeholder(self.secret_key):
            raise ValueError("YIJING_SECRET_KEY must be set to a real secret in production")
        if self.environment == "production" and self.telephony == "memory":
            # the memory PBX is the demo's simulated phone network: its simulator reads out
            # every call, merchants' login codes included
            raise ValueError(
                "YIJING_ENVIRONMENT=production needs a real phone system: "
                "set YIJING_TELEPHONY=asterisk or twilio (memory is the demo's simulator)"
            )
        if self.telephony == "twilio":
            missing = [
                name
                for name in ("twilio_account_sid", "twilio_auth_token", "twilio_from_number")
                if is_placeholder(getattr(self, name))
            ]
            if missing:
                raise ValueError(
                    "YIJING_TELEPHONY=twilio needs "
                    + ", ".join("YIJING_" + m.upper() for m in missing)
                )
            if not self.twilio_public_url:
                self.twilio_public_url = self.public_url.rstrip("/") + "/twilio"
        if self.telephony == "asterisk" and is_placeholder(self.asterisk_secret):
            raise ValueError("YIJING_TELEPHONY=asterisk needs YIJING_ASTERISK_SECRET")
        return self

    @property
    def simulator(self) -> bool:
        """Whether the phone simulator may run: the memory PBX, outside production."""
        return self.telephony == "memory" and self.environment != "production"

    @property
    def is_sqlite(self) -> bool:
        """True for the embedded SQLite database."""
        return self.database_url.startswith("sqlite")
