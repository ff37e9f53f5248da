"""Logins, sessions and roles.

A session is a random token: browsers carry it in an HttpOnly cookie (and must send the
session's CSRF token in `X-CSRF-Token` on every unsafe request); API clients send it as
`Authorization: Bearer`. Only the token's SHA-256 is stored. Passwords use argon2.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from operator_console.errors import Forbidden, Unauthorized
from operator_console.models import LoginSession
from registry.db import utcnow
from registry.models import Role, User

COOKIE = "yijing_session"
SESSION_TTL = timedelta(hours=12)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

#: roles that include others: an admin may do what a supervisor may, who may do what an
#: operator may. Merchants stand apart.
RANKS = {Role.OPERATOR: 1, Role.SUPERVISOR: 2, Role.ADMIN: 3}

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """An argon2 hash."""
    return _hasher.hash(password)


def verify_password(stored: str, password: str) -> bool:
    """Check a password against its hash."""
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def login(session: AsyncSession, *, username: str, password: str) -> tuple[User, str, str]:
    """Check credentials; returns the user, a new session token and its CSRF token."""
    user = (
        (await session.execute(select(User).where(col(User.username) == username)))
        .scalars()
        .first()
    )
    if user is None or not user.active or not verify_password(user.password_hash, password):
        raise Unauthorized("wrong username or password")
    token, csrf = await open_session(session, user=user)
    return user, token, csrf


async def open_session(session: AsyncSession, *, user: User) -> tuple[str, str]:
    """Start a session for a user already identified; returns the token and CSRF token."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    now = utcnow()
    await session.execute(delete(LoginSession).where(col(LoginSession.expires_at) < now))
    assert user.id is not None
    session.add(
        LoginSession(
            token_hash=_digest(token),
            user_id=user.id,
            csrf=csrf,
            created_at=now,
            expires_at=now + SESSION_TTL,
        )
    )
    return token, csrf


async def logout(session: AsyncSession, *, token: str) -> None:
    """End a session."""
    await session.execute(
        delete(LoginSession).where(col(LoginSession.token_hash) == _digest(token))
    )


async def resolve(session: AsyncSession, *, token: str) -> tuple[User, LoginSession] | None:
    """The user and session behind a token, if it is valid."""
    row = await session.get(LoginSession, _digest(token))
    if row is None or row.expires_at < utcnow():
        return None
    user = await session.get(User, row.user_id)
    if user is None or not user.active:
        return None
    return user, row


def check_csrf(method: str, *, via_cookie: bool, sent: str | None, expected: str) -> None:
    """Unsafe cookie-authenticated requests must carry the session's CSRF token."""
    if method in SAFE_METHODS or not via_cookie:
        return
    if not sent or not hmac.compare_digest(sent, expected):
        raise Forbidden("missing or wrong CSRF token")


def require(user: User | None, *roles: Role) -> User:
    """The user if their role allows the action; 401 without login, 403 otherwise."""
    if user is None:
        raise Unauthorized("login required")
    if not roles:
        return user
    if user.role in roles:
        return user
    staff = [r for r in roles if r in RANKS]
    if user.role in RANKS and staff and RANKS[user.role] >= min(RANKS[r] for r in staff):
        return user
    raise Forbidden(f"role {user.role.value} may not do this")


def user_public(user: User) -> dict[str, Any]:
    """What the API shows about a user."""
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "role": user.role.value,
        "merchant_id": user.merchant_id,
    }
