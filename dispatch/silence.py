"""Whether a hotline caller stayed silent: no key pressed, and no speech heard where the
backend can hear it.

A registered high-risk resident whose menu ends for an operator (the greeting's timeout)
in silence is an emergency (`dispatch.emergency`, reason `silent`); one who spoke but
pressed nothing is a routine caller for an operator. Backends report speech energy (no
words) as `CallerSpoke`; `providers.base.SpeechDetection` says whether they do (Asterisk's
TALK_DETECT, Twilio's speech Gather, the simulator's "speak"). The first speech heard in a
caller's menu goes on the call's timeline as `call.speech`; where the backend cannot hear
speech, keys alone decide, and the emergency says so (`by_speech` false).
"""

from __future__ import annotations

import logging

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from dispatch.core import Core
from dispatch.machines import call as cm
from dispatch.models import Call
from eventlog.models import Event
from providers.base import SpeechDetection

log = logging.getLogger(__name__)

#: what a caller did in the menu that makes them not silent
SOUNDS = ("call.digit", "call.speech")
#: refs whose speech is on the timeline already (a cache: the log is the record)
_KEPT = 5_000


class Silence:
    """Speech heard on hotline calls, and the verdict "silent" for the emergency rule."""

    def __init__(self, core: Core, speech: SpeechDetection | None = None) -> None:
        self.core = core
        self.speech = speech
        self._heard: dict[str, None] = {}

    @property
    def listens(self) -> bool:
        """Whether the backend hears callers speak now (else silence is judged by keys)."""
        return self.speech is not None and self.speech.hears_speech

    async def spoke(self, ref: str) -> None:
        """`CallerSpoke`: the first speech in a caller's menu goes on the call's timeline
        (a caller talking to an operator later changes nothing, and writes nothing)."""
        if ref in self._heard:
            return
        core = self.core
        async with core.store.read() as session:
            call = (
                (await session.execute(select(Call).where(col(Call.ref) == ref))).scalars().first()
            )
            if call is None or call.id is None or call.direction != "in":
                return
            if call.state != cm.CallState.IVR:
                self._keep(ref)  # past the menu: what the caller says no longer counts
                return
        async with core.store.tx() as tx:
            if await self._count(tx.session, call.id, ("call.speech",)):
                self._keep(ref)
                return
            tx.emit("call.speech", "call", call.id)
        self._keep(ref)
        log.info("call %s: the caller spoke", ref)

    async def silent(self, session: AsyncSession, call: Call) -> bool:
        """No key pressed and no speech heard on the call so far."""
        assert call.id is not None
        return await self._count(session, call.id, SOUNDS) == 0

    async def _count(self, session: AsyncSession, call_id: int, names: tuple[str, ...]) -> int:
        found = await session.execute(
            select(func.count()).where(
                col(Event.name).in_(names),
                col(Event.subject) == "call",
                col(Event.subject_id) == str(call_id),
            )
        )
        return int(found.scalar_one())

    def _keep(self, ref: str) -> None:
        self._heard[ref] = None
        if len(self._heard) > _KEPT:
            del self._heard[next(iter(self._heard))]
