"""Merchant login by a one-time code or link delivered to a registered phone: the use case.

A merchant asks for a code for one of their registered phones. A 6-digit code and the
token of a one-time login link are made; only keyed hashes of them (and of the phone)
are stored. The code and the link are one credential: using either spends both.

Delivery, after the answer has gone out:

- **voice**, on every backend: an outbound call named ``login-<code id>`` (the ref is the
  idempotency key: one code request is never called twice) runs the ``login_code`` flow,
  which reads the code slowly, digit by digit, repeats it on * or 1 and says how long it
  stays valid. Between the request and the answer the code waits in this process's
  memory only, never in the database, the event log or a log line; a call answered after
  the code expired says nothing.
- **sms**, when the backend has the port's `Messaging` capability and the merchant asks
  for a text: the code and the link ``{public_url}/merchant/login#token=...`` (a fragment:
  browsers never send it, so no server or proxy log ever holds a live token). A text the
  carrier refuses falls back to a call.

Abuse controls: code requests are limited per phone and per client address within a
window, registered phone or not, and the answer is the same either way (delivery runs
after the answer, so not even its time tells); every wrong code counts against each live
code of that phone and `attempts` wrong ones spend them; code and link are spent with a
compare-and-set, so two clicks of one link, or a code raced with its link, log in once.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import hmac
import logging
import math
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from dispatch.models import Call
from dispatch.outbound import FlowStart, Outbound
from eventlog.store import Tx
from ivr.prompts import pick_lang
from operator_console.models import MerchantLoginCode, MerchantLoginRequest
from providers.base import Messaging, TelephonyError
from registry.models import Merchant
from registry.phones import try_normalize

log = logging.getLogger(__name__)

#: the outbound call purpose and the flow it runs
PURPOSE = "login_code"
FLOW = "login_code"
#: an arbitrary constant: the PostgreSQL advisory lock that serialises code requests
_PG_LOCK = 7_349_011

#: the text message, per language (the link opens the merchant page's one-click login)
TEXTS = {
    "zh-CN": "【医敬】商家登录验证码：{code}，{minutes}分钟内有效。也可打开链接直接登录"
    "（只能用一次）：{link} 请不要把验证码告诉任何人。",
    "en": "Yijing merchant login code: {code}, valid for {minutes} minutes. Or log in once "
    "with this link: {link} Do not tell anyone this code.",
}


class Channel(enum.StrEnum):
    """How a code reaches the merchant."""

    VOICE = "voice"
    SMS = "sms"


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    """Lifetimes and limits of login codes."""

    code_ttl_s: int = 600
    #: the rate limits' window, and the most code requests in it per phone and per client
    window_s: int = 900
    per_phone: int = 3
    per_client: int = 10
    #: wrong codes that spend a code
    attempts: int = 5


class RateLimited(Exception):
    """Too many code requests from this phone or client; try again after `retry_after_s`."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many login code requests; try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class LoginRefused(Exception):
    """A wrong, spent or expired code or link (one answer for all of them)."""


@dataclass(frozen=True, slots=True)
class Requested:
    """The answer to every code request, registered phone or not."""

    channel: Channel
    expires_in_s: int


@dataclass(frozen=True, slots=True)
class _Delivery:
    """What the background delivery of one code needs (memory only)."""

    code_id: int
    merchant_id: int
    channel: Channel
    number: str
    code: str
    token: str
    lang: str
    expires_at: datetime

    @property
    def ref(self) -> str:
        return f"login-{self.code_id}"

    def payload(self) -> dict[str, Any]:
        """As JSON, to hand the delivery to the process that owns the PBX link."""
        return {
            "code_id": self.code_id,
            "merchant_id": self.merchant_id,
            "channel": self.channel.value,
            "number": self.number,
            "code": self.code,
            "token": self.token,
            "lang": self.lang,
            "expires_at": self.expires_at.isoformat(),
        }

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> _Delivery:
        return cls(
            int(data["code_id"]),
            int(data["merchant_id"]),
            Channel(data["channel"]),
            str(data["number"]),
            str(data["code"]),
            str(data["token"]),
            str(data["lang"]),
            datetime.fromisoformat(data["expires_at"]),
        )


@dataclass(frozen=True, slots=True)
class _Waiting:
    """A code waiting for its call to be answered."""

    code: str
    lang: str
    expires_at: datetime


class MerchantLogin:
    """Request, deliver and check merchants' one-time login codes and links."""

    def __init__(
        self,
        *,
        outbound: Outbound,
        secret: str,
        public_url: str,
        messaging: Messaging | None = None,
        policy: LoginPolicy | None = None,
        forward: Callable[[dict[str, Any]], Awaitable[bool]] | None = None,
    ) -> None:
        self.outbound = outbound
        #: on a standby process: hands a delivery to the owner (True when it did); the code
        #: must be read out by the process whose PBX link answers the call
        self.forward = forward
        self.store = outbound.core.store
        self.clock = outbound.core.clock
        self.messaging = messaging
        self.public_url = public_url.rstrip("/")
        self.policy = policy or LoginPolicy()
        self._secret = (secret or "yijing-dev").encode()
        self._waiting: dict[str, _Waiting] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        outbound.serve_flows(PURPOSE, answered=self._answered, wanted=self._still_waiting)

    # -- what the API calls --------------------------------------------------------------
    @property
    def can_text(self) -> bool:
        """True when the backend can send text messages."""
        return self.messaging is not None

    def channel_for(self, asked: Channel) -> Channel:
        """The channel a request gets: a text only where the backend can send one."""
        return Channel.SMS if asked == Channel.SMS and self.messaging is not None else Channel.VOICE

    async def request(
        self, *, phone: str, client: str, channel: Channel = Channel.VOICE, lang: str = "zh-CN"
    ) -> Requested:
        """Make and send a code if `phone` is a merchant's; the answer never says whether.

        Raises `RateLimited` (for any phone, registered or not) when the window is full.
        """
        chosen = self.channel_for(channel)
        answer = Requested(chosen, self.policy.code_ttl_s)
        number = try_normalize(phone)
        phone_key = self._keyed("phone", number or re.sub(r"\D", "", phone))
        client_key = self._keyed("client", client)
        now = self.clock.now()
        async with self.store.tx() as tx:
            await self._serialise(tx)
            await self._check_limits(tx, phone_key, client_key, now)
            tx.session.add(
                MerchantLoginRequest(phone_hash=phone_key, client_hash=client_key, created_at=now)
            )
            if number is None:
                return answer
            merchant = await _merchant_for_phone(tx.session, number)
            if merchant is None or merchant.id is None:
                return answer
            code = f"{secrets.randbelow(1_000_000):06d}"
            token = secrets.token_urlsafe(24)
            expires_at = now + timedelta(seconds=self.policy.code_ttl_s)
            row = MerchantLoginCode(
                merchant_id=merchant.id,
                phone_hash=phone_key,
                code_hash=self._keyed("code", number, code),
                link_hash=self._keyed("link", token),
                created_at=now,
                expires_at=expires_at,
                channel=chosen.value,
            )
            tx.session.add(row)
            await tx.session.flush()
            assert row.id is not None
            delivery = _Delivery(
                row.id, merchant.id, chosen, number, code, token, pick_lang(lang), expires_at
            )
            if chosen == Channel.VOICE:
                ref = delivery.ref
                self.outbound.record(tx, ref=ref, number=number, purpose=PURPOSE)
            # the audit trail says a code went out and how, never the code or the number
            tx.emit(
                "merchant.login_code_sent",
                "merchant",
                merchant.id,
                code_id=row.id,
                channel=chosen.value,
            )
            tx.after_commit(partial(self._start, delivery))
        log.info("login code %s for merchant %s goes by %s", row.id, merchant.id, chosen.value)
        return answer

    async def verify_code(self, *, phone: str, code: str) -> int:
        """The merchant id for a right code, which is spent; `LoginRefused` otherwise.

        A wrong code counts against every live code of the phone and is committed before
        the refusal; `policy.attempts` wrong ones spend them.
        """
        number = try_normalize(phone)
        if number is None or not re.fullmatch(r"[0-9]{6}", code):
            raise LoginRefused()
        now = self.clock.now()
        wanted = self._keyed("code", number, code)
        merchant_id: int | None = None
        async with self.store.tx() as tx:
            rows = (
                (
                    await tx.session.execute(
                        select(MerchantLoginCode)
                        .where(
                            col(MerchantLoginCode.phone_hash) == self._keyed("phone", number),
                            col(MerchantLoginCode.used).is_(False),
                            col(MerchantLoginCode.expires_at) > now,
                        )
                        .order_by(col(MerchantLoginCode.id).desc())
                    )
                )
                .scalars()
                .all()
            )
            match = next((r for r in rows if hmac.compare_digest(r.code_hash, wanted)), None)
            if match is not None:
                if await self._spend(tx, match, count_attempt=True):
                    merchant_id = match.merchant_id
                    tx.emit("merchant.login_code_used", "merchant", merchant_id, code_id=match.id)
            elif rows:
                attempts = col(MerchantLoginCode.attempts)
                await tx.session.execute(
                    update(MerchantLoginCode)
                    .where(
                        col(MerchantLoginCode.id).in_([r.id for r in rows]),
                        col(MerchantLoginCode.used).is_(False),
                    )
                    .values(attempts=attempts + 1, used=attempts + 1 >= self.policy.attempts)
                )
                tx.emit(
                    "merchant.login_code_wrong",
                    "merchant",
                    rows[0].merchant_id,
                    code_ids=[r.id for r in rows],
                    spent=[r.id for r in rows if r.attempts + 1 >= self.policy.attempts],
                )
        if merchant_id is None:
            raise LoginRefused()
        return merchant_id

    async def use_link(self, *, token: str) -> int:
        """The merchant id for a live link, which is spent (with its code); `LoginRefused`
        for an unknown, used or expired one."""
        if not 10 <= len(token) <= 64:
            raise LoginRefused()
        now = self.clock.now()
        merchant_id: int | None = None
        async with self.store.tx() as tx:
            row = (
                (
                    await tx.session.execute(
                        select(MerchantLoginCode).where(
                            col(MerchantLoginCode.link_hash) == self._keyed("link", token)
                        )
                    )
                )
                .scalars()
                .first()
            )
            if (
                row is not None
                and not row.used
                and row.expires_at > now
                and await self._spend(tx, row, count_attempt=False)
            ):
                merchant_id = row.merchant_id
                tx.emit("merchant.login_link_used", "merchant", merchant_id, code_id=row.id)
        if merchant_id is None:
            raise LoginRefused()
        return merchant_id

    async def drain(self) -> None:
        """Wait until every delivery started so far has been handed to the backend."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Let running deliveries finish (briefly), then stop them."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drain(), timeout_s)
        for task in list(self._tasks):
            task.cancel()
        self._waiting.clear()

    # -- internals -------------------------------------------------------------------------
    def _keyed(self, *parts: str) -> str:
        return hmac.new(self._secret, "|".join(parts).encode(), hashlib.sha256).hexdigest()

    async def _serialise(self, tx: Tx) -> None:
        """Count and insert as one step across processes too (one lock per transaction)."""
        connection = await tx.session.connection()
        if connection.dialect.name == "postgresql":
            await tx.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})

    async def _check_limits(self, tx: Tx, phone_key: str, client_key: str, now: datetime) -> None:
        since = now - timedelta(seconds=self.policy.window_s)
        for column, key, limit in (
            (MerchantLoginRequest.phone_hash, phone_key, self.policy.per_phone),
            (MerchantLoginRequest.client_hash, client_key, self.policy.per_client),
        ):
            count, oldest = (
                await tx.session.execute(
                    select(
                        func.count(col(MerchantLoginRequest.id)),
                        func.min(col(MerchantLoginRequest.created_at)),
                    ).where(col(column) == key, col(MerchantLoginRequest.created_at) > since)
                )
            ).one()
            if count >= limit:
                free_at = oldest + timedelta(seconds=self.policy.window_s)
                raise RateLimited(max(1, math.ceil((free_at - now).total_seconds())))

    async def _spend(self, tx: Tx, row: MerchantLoginCode, *, count_attempt: bool) -> bool:
        """Mark a code used unless someone else did first (or it ran out of attempts)."""
        values: dict[str, Any] = {"used": True}
        where = [col(MerchantLoginCode.id) == row.id, col(MerchantLoginCode.used).is_(False)]
        if count_attempt:
            values["attempts"] = col(MerchantLoginCode.attempts) + 1
            where.append(col(MerchantLoginCode.attempts) < self.policy.attempts)
        result = await tx.session.execute(update(MerchantLoginCode).where(*where).values(**values))
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def _start(self, delivery: _Delivery) -> None:
        """Deliver in the background: the request's answer must not wait for (or time) it."""
        task = asyncio.get_running_loop().create_task(
            self._deliver(delivery), name=f"login-code-{delivery.code_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def take(self, payload: Mapping[str, Any]) -> None:
        """The owner's side of `forward`: deliver a code a standby made."""
        await self._start(_Delivery.from_payload(payload))

    async def _deliver(self, d: _Delivery) -> None:
        try:
            if self.forward is not None and await self.forward(d.payload()):
                return
            if d.channel == Channel.SMS and self.messaging is not None:
                try:
                    await self.messaging.send_text(
                        ref=f"{d.ref}-sms", number=d.number, text=self._text(d)
                    )
                    return
                except TelephonyError:
                    log.warning("login code %s: the text was refused; calling instead", d.code_id)
                    await self._reroute_to_voice(d)
            self._prune()
            self._waiting[d.ref] = _Waiting(d.code, d.lang, d.expires_at)
            await self.outbound.place_call(d.ref, d.number)
        except Exception as exc:  # a delivery runs alone: say what failed, without the number
            log.error("login code %s: delivery failed (%s)", d.code_id, type(exc).__name__)

    async def _reroute_to_voice(self, d: _Delivery) -> None:
        async with self.store.tx() as tx:
            self.outbound.record(tx, ref=d.ref, number=d.number, purpose=PURPOSE)
            await tx.session.execute(
                update(MerchantLoginCode)
                .where(col(MerchantLoginCode.id) == d.code_id)
                .values(channel=Channel.VOICE.value)
            )
            tx.emit(
                "merchant.login_code_sent",
                "merchant",
                d.merchant_id,
                code_id=d.code_id,
                channel=Channel.VOICE.value,
                rerouted=True,
            )

    def _text(self, d: _Delivery) -> str:
        minutes = max(1, self.policy.code_ttl_s // 60)
        link = f"{self.public_url}/merchant/login#token={d.token}"
        return TEXTS[d.lang].format(code=d.code, minutes=minutes, link=link)

    def _prune(self) -> None:
        now = self.clock.now()
        for ref in [r for r, w in self._waiting.items() if w.expires_at <= now]:
            del self._waiting[ref]

    def _still_waiting(self, call: Call) -> bool:
        """A login call that waited for the phone line is placed only while its code lives
        (a merchant must not be rung for a code that expired meanwhile)."""
        waiting = self._waiting.get(call.ref)
        return waiting is not None and waiting.expires_at > self.clock.now()

    def _answered(self, call: Call) -> FlowStart | None:
        """The flow for an answered login call; the code leaves this process's memory."""
        waiting = self._waiting.pop(call.ref, None)
        self._prune()
        now = self.clock.now()
        if waiting is None or waiting.expires_at <= now:
            log.info("call %s answered with no code left to read", call.ref)
            return None
        minutes = max(1, math.ceil((waiting.expires_at - now).total_seconds() / 60))
        return FlowStart(FLOW, {"code": waiting.code, "minutes": minutes}, waiting.lang)


async def _merchant_for_phone(session: AsyncSession, number: str) -> Merchant | None:
    rows = (await session.execute(select(Merchant).order_by(col(Merchant.id)))).scalars()
    return next((m for m in rows if number in (m.phones or [])), None)
