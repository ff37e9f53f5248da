"""Staff logins by username and password: the use case, with its throttles.

Every attempt is throttled twice, by the account (the name as typed, whether or not it
is an account: a throttle that only existing names get would tell which names exist)
and by the client address, within a sliding window. Past either limit the answer is
`TooManyAttempts` (429 with `Retry-After`), decided by two counts on indexed columns
before any password is hashed, so a flood mostly costs two small queries a request.

The window lives in the database (`LoginAttempt`), as the merchant login's does: a
restart forgets nothing, and an admin sees the failed logins (`GET /login-failures`).
An attempt is written *before* its password is checked (outcome ``checking``) and counts
at once, so a burst of concurrent attempts cannot slip past the limit while the hashes
are running; the check of the limits and that write happen as one step (a lock in the
process; on PostgreSQL, an advisory lock across processes).

No database connection is held while argon2 runs (`auth.verify_password_async`, off the
event loop): the attempt is written and the stored hash read in one short session, the
password is checked with none open, and a second short session records the outcome or
opens the login session. An address someone logged in from in the last 30 days has its
logins checked in a hashing lane of its own, so a flood from addresses never seen to
succeed delays only itself; there, at most `others_per_s` passwords are checked a second.
Logins waiting in a lane are bounded too: past either bound a new one is turned away
(`Busy`, 503 with `Retry-After`) rather than queued without end.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from eventlog.store import Store
from operator_console import auth
from operator_console.errors import Busy, TooManyAttempts, Unauthorized
from operator_console.models import LoginAttempt
from registry.models import User

log = logging.getLogger(__name__)

#: an arbitrary constant: the PostgreSQL advisory lock that serialises login reservations
_PG_LOCK = 7_349_012
#: attempts older than this are deleted (on a successful login)
RETAIN = timedelta(days=90)
#: an address someone logged in from within this long is a known one: its logins are
#: checked in a lane of their own, ahead of a flood from addresses never seen to succeed
KNOWN_FOR = timedelta(days=30)
#: the outcome of a right password (the row stays: the address becomes a known one)
OK = "ok"


@dataclass(frozen=True, slots=True)
class LoginLimits:
    """The throttles of password logins."""

    #: the sliding window, and the most counted attempts in it per account and per client
    window_s: int = 900
    per_account: int = 10
    per_client: int = 30
    #: logins waiting for (or in) a lane's hashing thread beyond which new ones get `Busy`
    max_waiting: int = 16
    #: passwords checked a second, at most, for addresses not known to have logged in
    #: (a bucket of `others_burst`); past it `Busy`: a flood from ever new addresses,
    #: which no throttle catches, costs a bounded share of a CPU
    others_per_s: float = 4.0
    others_burst: int = 8


@dataclass(frozen=True, slots=True)
class _Started:
    """An attempt written and ready to be checked."""

    attempt_id: int
    user_id: int | None
    stored: str | None
    lane: str
    #: counted attempts in the window, this one included: by account, by client
    counts: tuple[int, int]


class PasswordLogin:
    """Check staff passwords with throttles; record the attempts."""

    def __init__(self, *, store: Store, secret: str, limits: LoginLimits | None = None) -> None:
        self.store = store
        self.clock = store.clock
        self.limits = limits or LoginLimits()
        self._secret = (secret or "yijing-dev").encode()
        self._reserve = asyncio.Lock()
        self._waiting = {auth.KNOWN: 0, auth.OTHERS: 0}
        self._tokens = float(self.limits.others_burst)
        self._filled_at = time.monotonic()

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
        started = await self._start(key, username, client, self.clock.now())
        try:
            right = await auth.verify_password_async(started.stored, password, lane=started.lane)
        finally:
            self._waiting[started.lane] -= 1
        if right:
            opened = await self._succeed(started, key)
            if opened is not None:
                return opened
        await self._fail(started, client, disabled=started.stored is not None and right)
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
    async def _window(
        self, session: AsyncSession, column: Any, value: str, since: datetime
    ) -> tuple[int, datetime | None]:
        count, oldest = (
            await session.execute(
                select(func.count(col(LoginAttempt.id)), func.min(col(LoginAttempt.at))).where(
                    col(column) == value,
                    col(LoginAttempt.counts).is_(True),
                    col(LoginAttempt.at) > since,
                )
            )
        ).one()
        return int(count), oldest

    async def _start(self, key: str, username: str, client: str, now: datetime) -> _Started:
        """Check the limits and write the attempt as one step; read the stored hash.

        Nothing is written for an attempt refused here (429 past a limit, 503 when its
        lane of the hashing thread is full).
        """
        since = now - timedelta(seconds=self.limits.window_s)
        async with self._reserve, self.store.read() as session:
            connection = await session.connection()
            if connection.dialect.name == "postgresql":
                await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
            counts = []
            for column, value, limit in (
                (LoginAttempt.account_key, key, self.limits.per_account),
                (LoginAttempt.client, client, self.limits.per_client),
            ):
                count, oldest = await self._window(session, column, value, since)
                if count >= limit and oldest is not None:
                    free_at = oldest + timedelta(seconds=self.limits.window_s)
                    retry = max(1, math.ceil((free_at - now).total_seconds()))
                    raise TooManyAttempts(
                        f"too many failed logins; try again in {retry} s", retry_after_s=retry
                    )
                counts.append(count + 1)
            lane = auth.KNOWN if await self._known(session, client, now) else auth.OTHERS
            if self._waiting[lane] >= self.limits.max_waiting or not self._admit(lane):
                log.debug("password logins busy: %d waiting (%s)", self._waiting[lane], lane)
                raise Busy("too many logins are being checked right now; try again in a moment")
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
            self._waiting[lane] += 1
            return _Started(
                attempt.id,
                user.id if user is not None else None,
                user.password_hash if user is not None else None,
                lane,
                (counts[0], counts[1]),
            )

    def _admit(self, lane: str) -> bool:
        """Take a token from the other lane's bucket (the known lane needs none)."""
        if lane == auth.KNOWN:
            return True
        at = time.monotonic()
        rate, burst = self.limits.others_per_s, self.limits.others_burst
        self._tokens = min(float(burst), self._tokens + (at - self._filled_at) * rate)
        self._filled_at = at
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    async def _known(self, session: AsyncSession, client: str, now: datetime) -> bool:
        """Whether someone logged in from this address lately (its logins go first)."""
        if not client:
            return False
        row = (
            await session.execute(
                select(col(LoginAttempt.id))
                .where(
                    col(LoginAttempt.client) == client,
                    col(LoginAttempt.outcome) == OK,
                    col(LoginAttempt.at) > now - KNOWN_FOR,
                )
                .limit(1)
            )
        ).first()
        return row is not None

    async def _succeed(self, started: _Started, key: str) -> tuple[User, str, str] | None:
        """Open the session (None if the login was disabled meanwhile)."""
        async with self.store.read() as session:
            uid = started.user_id
            user = await session.get(User, uid) if uid is not None else None
            if user is None or not user.active:
                return None
            # the account's earlier failures stop counting; this row says who logged in
            # from where (and makes the address a known one)
            await session.execute(
                update(LoginAttempt)
                .where(col(LoginAttempt.account_key) == key, col(LoginAttempt.counts).is_(True))
                .values(counts=False)
            )
            await session.execute(
                update(LoginAttempt)
                .where(col(LoginAttempt.id) == started.attempt_id)
                .values(outcome=OK, counts=False)
            )
            await session.execute(
                delete(LoginAttempt).where(col(LoginAttempt.at) < self.clock.now() - RETAIN)
            )
            token, csrf = await auth.open_session(session, user=user)
        log.info("user %s logged in", user.id)
        return user, token, csrf

    async def _fail(self, started: _Started, client: str, *, disabled: bool) -> None:
        """Record the outcome; say once in the log when a throttle starts."""
        uid = started.user_id
        outcome = "disabled" if disabled else "wrong_password" if uid else "unknown_user"
        async with self.store.read() as session:
            await session.execute(
                update(LoginAttempt)
                .where(col(LoginAttempt.id) == started.attempt_id)
                .values(outcome=outcome)
            )
        who = f"user {uid}" if uid else "an unknown username"
        by_account, by_client = started.counts
        log.info("login failed for %s from %s (%s)", who, client or "?", outcome)
        if by_account == self.limits.per_account:
            log.warning("logins for %s throttled: %d failures in the window", who, by_account)
        if by_client == self.limits.per_client:
            log.warning("logins from %s throttled: %d failures in the window", client, by_client)


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
