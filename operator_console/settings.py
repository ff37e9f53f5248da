"""Settings from `YIJING_*` environment variables, passed explicitly to the app factory."""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"", "change-me", "changeme", "secret"}


class Settings(BaseSettings):
    """Everything the process can be told; the defaults are the embedded demo."""

    model_config = SettingsConfigDict(env_prefix="YIJING_", env_file=None, extra="ignore")

    environment: Literal["development", "production", "test"] = "development"
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://127.0.0.1:8080"
    data_dir: Path = Path("var")
    database_url: str = ""
    secret_key: str = ""
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

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir / 'yijing.db'}"
        if self.environment == "production" and self.secret_key in PLACEHOLDER_SECRETS:
            raise ValueError("YIJING_SECRET_KEY must be set to a real secret in production")
        return self

    @property
    def is_sqlite(self) -> bool:
        """True for the embedded SQLite database."""
        return self.database_url.startswith("sqlite")
