"""Console-only tables: login sessions, merchants' one-time login codes and code requests."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from eventlog.db import BigId, UTCDateTime, utcnow


class LoginSession(SQLModel, table=True):
    """A logged-in browser or API client; only the token's hash is stored."""

    __tablename__ = "login_session"

    token_hash: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="user.id", index=True, sa_type=BigId)
    csrf: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)


class MerchantLoginCode(SQLModel, table=True):
    """A one-time code (and login link) sent to a merchant's registered phone.

    Only keyed hashes are stored: of the phone, the code and the link's token. The code
    and the link are one credential: using either spends both (`used`).
    """

    __tablename__ = "merchant_login_code"

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    merchant_id: int = Field(foreign_key="merchant.id", index=True, sa_type=BigId)
    phone_hash: str = Field(max_length=64, index=True)
    code_hash: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    attempts: int = 0
    used: bool = False
    #: how it was delivered: "voice" (a phone call reads it) or "sms"
    channel: str = Field(default="voice", max_length=8)
    link_hash: str | None = Field(default=None, max_length=64, unique=True, index=True)


class MerchantLoginRequest(SQLModel, table=True):
    """One accepted request for a login code, registered phone or not: the rate limits'
    window. Keyed hashes only: of the phone as typed (normalised) and of the client address.
    """

    __tablename__ = "merchant_login_request"

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    phone_hash: str = Field(max_length=64, index=True)
    client_hash: str = Field(max_length=64, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)


class LoginAttempt(SQLModel, table=True):
    """A password login: being checked, failed or succeeded; the throttles' window, the
    failed logins an admin sees, and the addresses known to have logged in.

    `account_key` is a keyed hash of the name as typed, account or not, so the throttle
    tells nobody which names exist; `username` is kept only when the name is an account's
    (a name that is none may be a password typed into the wrong box). A right password
    marks its row `ok` and stops that account's earlier failures from counting; they stay
    listed.
    """

    __tablename__ = "login_attempt"

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    account_key: str = Field(max_length=64, index=True)
    username: str = Field(default="", max_length=64)
    user_id: int | None = Field(default=None, sa_type=BigId)
    #: the client address (the peer, or behind a trusted proxy the one it saw)
    client: str = Field(default="", max_length=64, index=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    #: checking (the hash is being compared), ok, wrong_password, unknown_user, disabled
    outcome: str = Field(default="checking", max_length=16)
    #: False once a right password (or an admin's new password) cleared the account
    counts: bool = True
