"""Staff logins by username and password: the use case, with its throttles.

Every attempt is throttled twice, by the account (the name as typed, whether or not it
is an account: a throttle that only existing names get would tell which names exist)
and by the client address, within a sliding window. Past either limit the answer is
`TooManyAttempts` (429 with `Retry-After`), decided by two counts on indexed columns
before any password is hashed, so a flood mostly costs two small queries a request.

The window lives in the database (`LoginAttempt`), as the merchant login's does: a
restart forgets nothing, and an admin sees the failed logins (`GET /login-failures`).
An attempt is written *before* its password is checked (state ``checking``) and counts
at once, so a burst of concurrent attempts cannot slip past the limit while the hashes
are running; the check of the limits and that write happen as one step (a lock in the
process; on PostgreSQL, an advisory lock across processes).

No database connection is held while argon2 runs (`auth.verify_password_async`, off the
event loop): the attempt is written and the stored hash read in one short session, the
password is checked with none open, and a second short session records the outcome or
opens the login session. Logins waiting for the hashing thread are bounded: past
`max_waiting` a new one is turned away (`Busy`, 503 with `Retry-After`) rather than
queued without end.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from dispatch.events import Store
from operator_console import auth
from operator_console.errors import Busy, TooManyAttempts, Unauthorized
from operator_console.models import LoginAttempt
from registry.models import User

log = logging.getLogger(__name__)

#: an arbitrary constant: the PostgreSQL advisory lock that serialises login reservations
_PG_LOCK = 7_349_012
#: failed logins older than this are deleted (on a successful login)
RETAIN = timedelta(days=90)


@dataclass(frozen=True, slots=True)
class LoginLimits:
    """The throttles of password logins."""

    #: the sliding window, and the most counted attempts in it per account and per client
    window_s: int = 900
    per_account: int = 10
    per_client: int = 30
    #: logins waiting for (or in) the hashing thread beyond which new ones get `Busy`
    max_waiting: int = 16


class PasswordLogin:
    """Check staff passwords with throttles; record the failures."""

    def __init__(self, *, store: Store, secret: str, limits: LoginLimits | None = None) -> None:
        self.store = store
        self.clock = store.clock
        self.limits = limits or LoginLimits()
        self._secret = (secret or "yijing-dev").encode()
        self._reserve = asyncio.Lock()
        self._waiting = 0

    def account_key(self, username: str) -> str:
        """The keyed hash the account throttle counts by."""
        name = username.strip().casefold()
        return hmac.new(self._secret, b"account|" + name.encode(), hashlib.sha256).hexdigest()

    async def login(self, *, username: str, password: str, client: str) -> tuple[User, str, str]:
        """The user, a new session token and its CSRF token for a right password.

        Raises `TooManyAttempts` past a limit, `Busy` when too many logins wait for the
        hashing thread, `Unauthorized` for a wrong name or password or a disabled login.
        """
        key = self.account_key(username)
        client = client[:64]
        now = self.clock.now()
        async with self.store.read() as session:  # refuse cheaply, writing nothing
            await self._check(session, key, client, now)
        if self._waiting >= self.limits.max_waiting:
            log.warning("password logins busy: %d waiting to be checked", self._waiting)
            raise Busy("too many logins are being checked right now; try again in a moment")
        self._waiting += 1
        try:
            attempt_id, user_id, stored = await self._start(key, username, client, now)
            right = await auth.verify_password_async(stored, password)
        finally:
            self._waiting -= 1
        if right:
            opened = await self._succeed(attempt_id, key, user_id)
            if opened is not None:
                return opened
        await self._fail(attempt_id, key, client, user_id, stored is not None and right)
        raise Unauthorized("wrong username or password")

    async def clear(self, username: str) -> None:
        """Stop an account's failures from counting (an admin set a new password)."""
        async with self.store.read() as session:
            await session.execute(
                update(LoginAttempt)
                .where(col(LoginAttempt.account_key) == self.account_key(username))
                .values(counts=False)
            )

    # -- internals -------------------------------------------------------------------------
    async def _check(self, session: AsyncSession, key: str, client: str, now: datetime) -> None:
        since = now - timedelta(seconds=self.limits.window_s)
        for column, value, limit in (
            (LoginAttempt.account_key, key, self.limits.per_account),
            (LoginAttempt.client, client, self.limits.per_client),
        ):
            count, oldest = (
                await session.execute(
                    select(func.count(col(LoginAttempt.id)), func.min(col(LoginAttempt.at))).where(
                        col(column) == value,
                        col(LoginAttempt.counts).is_(True),
                        col(LoginAttempt.at) > since,
                    )
                )
            ).one()
            if count >= limit:
                free_at = oldest + timedelta(seconds=self.limits.window_s)
                retry = max(1, math.ceil((free_at - now).total_seconds()))
                raise TooManyAttempts(
                    f"too many failed logins; try again in {retry} s", retry_after_s=retry
                )

    async def _start(
        self, key: str, username: str, client: str, now: datetime
    ) -> tuple[int, int | None, str | None]:
        """Check the limits and write the attempt as one step; read the stored hash."""
        async with self._reserve, self.store.read() as session:
            connection = await session.connection()
            if connection.dialect.name == "postgresql":
                await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
            await self._check(session, key, client, now)
            user = (
                (await session.execute(select(User).where(col(User.username) == username)))
                .scalars()
                .first()
            )
            attempt = LoginAttempt(
                account_key=key,
                username=user.username if user is not None else "",
                user_id=user.id if user is not None else None,
                client=client,
                at=now,
            )
            session.add(attempt)
            await session.flush()
            assert attempt.id is not None
            if user is None:
                return attempt.id, None, None
            return attempt.id, user.id, user.password_hash

    async def _succeed(
        self, attempt_id: int, key: str, user_id: int | None
    ) -> tuple[User, str, str] | None:
        """Open the session (None if the login was disabled meanwhile)."""
        async with self.store.read() as session:
            user = await session.get(User, user_id) if user_id is not None else None
            if user is None or not user.active:
                return None
            await session.execute(delete(LoginAttempt).where(col(LoginAttempt.id) == attempt_id))
            await session.execute(
                update(LoginAttempt)
                .where(col(LoginAttempt.account_key) == key, col(LoginAttempt.counts).is_(True))
                .values(counts=False)
            )
            await session.execute(
                delete(LoginAttempt).where(col(LoginAttempt.at) < self.clock.now() - RETAIN)
            )
            token, csrf = await auth.open_session(session, user=user)
        log.info("user %s logged in", user.id)
        return user, token, csrf

    async def _fail(
        self, attempt_id: int, key: str, client: str, user_id: int | None, disabled: bool
    ) -> None:
        """Record the outcome; say once in the log when a throttle starts."""
        outcome = "disabled" if disabled else "wrong_password" if user_id else "unknown_user"
        now = self.clock.now()
        async with self.store.read() as session:
            await session.execute(
                update(LoginAttempt)
                .where(col(LoginAttempt.id) == attempt_id)
                .values(outcome=outcome)
            )
            counts = await self._counts(session, key, client, now)
        who = f"user {user_id}" if user_id else "an unknown username"
        log.info("login failed for %s from %s (%s)", who, client, outcome)
        if counts[0] == self.limits.per_account:
            log.warning("logins for %s throttled: %d failures in the window", who, counts[0])
        if counts[1] == self.limits.per_client:
            log.warning("logins from %s throttled: %d failures in the window", client, counts[1])

    async def _counts(
        self, session: AsyncSession, key: str, client: str, now: datetime
    ) -> tuple[int, int]:
        since = now - timedelta(seconds=self.limits.window_s)
        out: list[int] = []
        for column, value in ((LoginAttempt.account_key, key), (LoginAttempt.client, client)):
            out.append(
                (
                    await session.execute(
                        select(func.count(col(LoginAttempt.id))).where(
                            col(column) == value,
                            col(LoginAttempt.counts).is_(True),
                            col(LoginAttempt.at) > since,
                        )
                    )
                ).scalar_one()
            )
        return out[0], out[1]


def attempt_public(row: LoginAttempt) -> dict[str, Any]:
    """A failed login as the admin page lists it."""
    return {
        "id": row.id,
        "at": row.at.isoformat(),
        "username": row.username,
        "user_id": row.user_id,
        "client": row.client,
        "outcome": row.outcome,
        "counts": row.counts,
    }
