"""Console-only tables: login sessions and merchants' one-time login codes."""

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


class MerchantLoginCode(SQLModel, table=True):
    """A one-time code sent to a merchant's registered phone; only its keyed hash is stored."""

    __tablename__ = "merchant_login_code"

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    merchant_id: int = Field(foreign_key="merchant.id", index=True, sa_type=BigId)
    phone_hash: str = Field(max_length=64, index=True)
    code_hash: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    attempts: int = 0
    used: bool = False
