"""Logins, sessions and roles.

A session is a random token: browsers carry it in an HttpOnly cookie (and must send the
session's CSRF token in `X-CSRF-Token` on every unsafe request); API clients send it as
`Authorization: Bearer`. Only the token's SHA-256 is stored. Passwords use argon2.

Argon2 is slow on purpose (about 0.15 s of CPU and 64 MiB a hash here), so it never runs
on the event loop: `hash_password_async` / `verify_password_async` hand it to a worker
thread of lowered priority, which the operating system lets the event loop's thread
pre-empt; a flood of wrong passwords then costs spare CPU, not the console's latency.
There are two such threads, two lanes: `KNOWN` (logins from addresses someone logged in
from lately, and staff actions; niceness 10) and `OTHERS` (niceness 19). Password logins
themselves (throttles, the failed-login record) are `operator_console.password_login`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from eventlog.db import utcnow
from operator_console.errors import Forbidden, Unauthorized
from operator_console.models import LoginSession
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


#: the hashing lanes: one for logins from addresses known to have logged in (and staff
#: actions), one for everyone else, so that a flood from new addresses queues behind
#: itself only
KNOWN, OTHERS = "known", "others"
#: how much lower than the event loop's each lane's thread priority is (Linux niceness):
#: the other lane only ever runs when nothing else wants the CPU much
HASH_NICENESS = {KNOWN: 10, OTHERS: 19}
_pool_lock = threading.Lock()
_pools: dict[str, ThreadPoolExecutor] = {}


def _lower_priority(niceness: int) -> None:
    # Linux: a thread's niceness is its own (and its children's, libargon2's lanes)
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)


def _hash_pool(lane: str) -> ThreadPoolExecutor:
    """The argon2 worker thread of a lane (one hash at a time in each)."""
    with _pool_lock:
        if lane not in _pools:
            _pools[lane] = ThreadPoolExecutor(
                max_workers=1,
                thread_name_prefix=f"argon2-{lane}",
                initializer=_lower_priority,
                initargs=(HASH_NICENESS[lane],),
            )
        return _pools[lane]


async def hash_password_async(password: str) -> str:
    """`hash_password` off the event loop (a staff action: the known lane)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_hash_pool(KNOWN), hash_password, password)


async def verify_password_async(stored: str | None, password: str, *, lane: str = OTHERS) -> bool:
    """`verify_password` off the event loop; with no stored hash (no such user) a dummy one
    is checked, so that an unknown username takes as long as a wrong password."""
    loop = asyncio.get_running_loop()
    if stored is None:
        await loop.run_in_executor(_hash_pool(lane), verify_password, _dummy_hash(), password)
        return False
    return await loop.run_in_executor(_hash_pool(lane), verify_password, stored, password)


@cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def digest(token: str) -> str:
    """What is stored of a session token: its SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


async def open_session(session: AsyncSession, *, user: User) -> tuple[str, str]:
    """Start a session for a user already identified; returns the token and CSRF token."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    now = utcnow()
    await session.execute(delete(LoginSession).where(col(LoginSession.expires_at) < now))
    assert user.id is not None
    session.add(
        LoginSession(
            token_hash=digest(token),
            user_id=user.id,
            csrf=csrf,
            created_at=now,
            expires_at=now + SESSION_TTL,
        )
    )
    return token, csrf


async def logout(session: AsyncSession, *, token: str) -> None:
    """End a session."""
    await session.execute(delete(LoginSession).where(col(LoginSession.token_hash) == digest(token)))


async def resolve(session: AsyncSession, *, token: str) -> tuple[User, LoginSession] | None:
    """The user and session behind a token, if it is valid."""
    row = await session.get(LoginSession, digest(token))
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
    if role_allows(user.role, roles):
        return user
    raise Forbidden(f"role {user.role.value} may not do this")


def role_allows(role: Role, roles: tuple[Role, ...]) -> bool:
    """Whether `role` may do what `roles` may (none named: any role; staff ranks include
    the ones below them)."""
    if not roles or role in roles:
        return True
    staff = [r for r in roles if r in RANKS]
    return role in RANKS and bool(staff) and RANKS[role] >= min(RANKS[r] for r in staff)


def roles_included(roles: tuple[Role, ...]) -> list[str]:
    """Every role `roles` lets in, by name (operator: operator, supervisor, admin)."""
    return [r.value for r in Role if role_allows(r, roles)]


def user_public(user: User) -> dict[str, Any]:
    """What the API shows about a user."""
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "role": user.role.value,
        "merchant_id": user.merchant_id,
    }
