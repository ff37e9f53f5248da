"""Console-only tables: login sessions."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from registry.db import BigId, UTCDateTime, utcnow


class LoginSession(SQLModel, table=True):
    """A logged-in browser or API client; only the token's hash is stored."""

    __tablename__ = "login_session"

    token_hash: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="user.id", index=True, sa_type=BigId)
    csrf: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
