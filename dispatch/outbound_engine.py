"""The one outbound engine: wellbeing calls, reminders, notices and surveys wait in one
queue of due calls in the database and are handed to the backend by priority, at the
backend's pace.

A feature records its call as usual (`Outbound.record`); `Outbound.place` puts a call of a
paced purpose (`PRIORITY`) in the queue (an `OutboundJob`, in the same unit of work)
instead of handing it to the backend. The engine then places the due jobs:

- by priority: an emergency callback first (0: emergencies, offers and click-to-calls are
  never queued), then wellbeing (1), reminder (2), notice (3), survey (4), so a survey
  never delays a wellbeing call;
- at the backend's pace (`Pacing`): at most `outbound_cps` calls a second (a token bucket
  on the service's clock) and `outbound_channels` outbound calls at once, every outbound
  call counted; and never so many that fewer than `inbound_reserved_lines` of the trunk
  stay free for the hotline;
- one resident is not rung for two campaigns within `outbound_dedupe_s`: a job whose
  resident was rung that recently for another campaign as or more important waits (no
  try is spent), and one whose resident is on a call now waits a minute; a less important
  campaign never holds a more important one, one campaign's own retries keep their pace;
- never in the quiet hours, for the purposes that keep them;
- restart safety: a job turns `placed` in the unit of work whose commit hands its call to
  the backend (its ref the backend's idempotency key), so no restart places it twice; the
  queue is in the database, so none is forgotten: the engine wakes on the phone line's
  `telephony.up`, on its `outbound:` timer (which the reconciler keeps), on each call
  queued, and on each call ending (a channel freed).

Answering machines: where the backend can tell (`CallAnswered.answered_by`), the call's
`answered_by` says who picked up, and a purpose with a `machine` hook (wellbeing) treats a
machine as not reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from dispatch.config import DispatchConfig
from dispatch.core import Core, quiet_until
from dispatch.effects import PlaceCall, ScheduleTimer
from dispatch.machines import call as cm
from dispatch.models import Call, OutboundJob
from dispatch.outbound import Outbound
from dispatch.timer_keys import TimerKey
from eventlog.store import Tx

log = logging.getLogger(__name__)

#: the paced purposes and their priority (lower goes first); any other purpose is placed
#: at once and counts as the most important (`IMMEDIATE`)
PRIORITY: dict[str, int] = {
    "wellbeing": 1,
    "reminder": 2,
    "campaign": 3,
    "survey": 4,
    "survey_family": 4,
}
IMMEDIATE = 0
QUEUED, PLACED, DROPPED = "queued", "placed", "dropped"
#: a resident on the phone with us now is tried again this soon
BUSY_HOLD_S = 60.0
#: what frees a channel or brings the line back: the engine looks at its queue again
WAKE_EVENTS = frozenset(
    {
        "call.ended",
        "call.abandoned",
        "call.failed",
        "call.lost",
        "call.wrapped_up",
        "telephony.up",
        "call.redialed",
        # calls queued (by any process: the one with the PBX link places them)
        "outbound.queued",
    }
)
#: states that hold no line (the caller hung up; the operator wraps up)
OFF_LINE = cm.FINAL | {cm.CallState.WRAP_UP}


@dataclass(frozen=True, slots=True)
class Pacing:
    """How fast and how wide one backend's trunk may be used for outbound calls."""

    cps: float
    channels: int
    inbound_reserved: int
    #: the trunk's lines (0: channels + reserved)
    trunk_lines: int = 0

    @property
    def trunk(self) -> int:
        """Every line of the trunk, inbound and outbound."""
        return self.trunk_lines or self.channels + self.inbound_reserved

    @classmethod
    def of(cls, config: DispatchConfig) -> Pacing:
        """The pacing a configuration sets."""
        return cls(
            config.outbound_cps,
            config.outbound_channels,
            config.inbound_reserved_lines,
            config.trunk_lines,
        )


#: defaults per backend, each overridden by its setting: the simulator is quick; an
#: Asterisk SIP trunk is commonly sold by the channel; a Twilio account places one call a
#: second unless its limit was raised
BACKEND_PACING: dict[str, Pacing] = {
    "memory": Pacing(cps=10.0, channels=30, inbound_reserved=2),
    "asterisk": Pacing(cps=5.0, channels=20, inbound_reserved=4),
    "twilio": Pacing(cps=1.0, channels=10, inbound_reserved=2),
}


def pacing_for(
    backend: str,
    *,
    cps: float | None = None,
    channels: int | None = None,
    inbound_reserved: int | None = None,
    trunk_lines: int | None = None,
) -> dict[str, Any]:
    """The `DispatchConfig` fields of a backend's pacing: its defaults, then the settings."""
    base = BACKEND_PACING.get(backend, BACKEND_PACING["asterisk"])
    return {
        "outbound_cps": base.cps if cps is None else cps,
        "outbound_channels": base.channels if channels is None else channels,
        "inbound_reserved_lines": base.inbound_reserved
        if inbound_reserved is None
        else inbound_reserved,
        "trunk_lines": base.trunk_lines if trunk_lines is None else trunk_lines,
    }


@dataclass(frozen=True, slots=True)
class _Rung:
    """A call a resident had lately or has now, as dedupe sees it."""

    ref: str
    inbound: bool
    source: str
    priority: int
    started_at: datetime
    live: bool


class OutboundEngine:
    """The queue of due outbound calls and the pace at which they are placed."""

    def __init__(self, core: Core, outbound: Outbound) -> None:
        self.core = core
        self.outbound = outbound
        outbound.pacer = self
        self._lock = asyncio.Lock()
        self._again = False
        self._kick: asyncio.Task[int] | None = None
        self._kicked: weakref.WeakSet[Tx] = weakref.WeakSet()
        #: the token bucket (None until the first look: full)
        self._tokens: float | None = None
        self._filled_at: datetime | None = None
        #: when the `outbound:` timer is set for (None: not by this process)
        self._timer_at: datetime | None = None
        #: calls this engine handed to the backend, and the CPU its looks took
        self.placed = 0
        self.cpu_s = 0.0
        #: False in a process without the PBX link (a standby): it queues, never places
        self.active = True
        #: a call it handed over waits for the phone line (`call.deferred`): nothing more
        #: is placed until the line is back (`telephony.up`, a call redialled)
        self._line_trouble = False
        core.store.bus.listen(self._follow, subjects=("call", "system"))

    def pause(self) -> None:
        """Stop placing calls (a process without the PBX link still queues them)."""
        self.active = False

    def start(self) -> None:
        """Place calls (this process holds the PBX link): a look at the queue at once."""
        self.active = True
        self.kick()

    async def stop(self) -> None:
        """Stop placing calls and let a look under way finish (the link is closing)."""
        self.active = False
        kick, self._kick = self._kick, None
        if kick is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await kick

    @property
    def pacing(self) -> Pacing:
        """The pace the configuration sets."""
        return Pacing.of(self.core.config)

    def paces(self, purpose: str) -> bool:
        """Whether calls of this purpose wait in the queue."""
        return purpose in PRIORITY

    # -- the queue -----------------------------------------------------------------------
    def enqueue(
        self, tx: Tx, call: Call, *, ring_s: float | None = None, due_at: datetime | None = None
    ) -> OutboundJob:
        """Queue a call recorded in `tx` (undialed); it is placed when due and the pace
        allows, once `tx` has committed."""
        now = self.core.now()
        job = OutboundJob(
            ref=call.ref,
            purpose=call.purpose,
            source=self.outbound.source(call),
            priority=PRIORITY.get(call.purpose, IMMEDIATE),
            resident_id=call.resident_id,
            due_at=due_at or now,
            ring_s=ring_s,
            created_at=now,
        )
        tx.session.add(job)
        timer = self._timer_at
        if job.due_at > now and (timer is None or timer <= now or job.due_at < timer):
            self._timer_at = job.due_at  # a later call: the engine's timer for it
            self.core.fx.after_commit(tx, ScheduleTimer(TimerKey.outbound(), job.due_at))
        if tx not in self._kicked:
            self._kicked.add(tx)
            tx.emit("outbound.queued", "system", "outbound")
            tx.after_commit(self.pump)
        return job

    async def withdraw(self, tx: Tx, refs: list[str]) -> set[str]:
        """Take calls still waiting in the queue out of it (their calls end undialed);
        returns the refs taken out (the others were placed, or never queued)."""
        if not refs:
            return set()
        jobs = (
            await tx.session.execute(
                select(OutboundJob).where(
                    col(OutboundJob.ref).in_(refs), col(OutboundJob.state) == QUEUED
                )
            )
        ).scalars()
        out: set[str] = set()
        for job in jobs:
            call = await self.core.call_by_ref(tx, job.ref)
            await self._drop(tx, job, call)
            out.add(job.ref)
        return out

    async def _drop(self, tx: Tx, job: OutboundJob, call: Call | None) -> None:
        job.state = DROPPED
        if call is None or call.state in cm.FINAL:
            return
        state, commands = cm.transition(call.state, cm.Hangup(inbound=False))
        await self.core.cas(tx, call, state=state, ended_at=self.core.now(), cause="not_dialed")
        tx.emit("call.ended", "call", call.id, cause="not_dialed", ticket_id=call.ticket_id)
        await self.core.fx.call(tx, call, commands)

    async def queued(self, tx: Tx, ref: str) -> bool:
        """Whether the call `ref` still waits in the queue (the phone line's resume leaves
        it to the engine)."""
        state = (
            await tx.session.execute(
                select(col(OutboundJob.state)).where(col(OutboundJob.ref) == ref)
            )
        ).scalar()
        return state == QUEUED

    async def wanted_timers(self) -> dict[TimerKey, datetime]:
        """For the reconciler: the engine's timer at the first due call, if any waits."""
        async with self.core.store.read() as session:
            first = (
                await session.execute(
                    select(func.min(col(OutboundJob.due_at))).where(
                        col(OutboundJob.state) == QUEUED
                    )
                )
            ).scalar()
        return {TimerKey.outbound(): first} if first is not None else {}

    async def waiting(self) -> dict[str, int]:
        """How many calls wait in the queue, by purpose (the console's and the bench's)."""
        async with self.core.store.read() as session:
            rows = await session.execute(
                select(col(OutboundJob.purpose), func.count())
                .where(col(OutboundJob.state) == QUEUED)
                .group_by(col(OutboundJob.purpose))
            )
            return {str(p): int(n) for p, n in rows}

    # -- waking ----------------------------------------------------------------------------
    def _follow(self, event: dict[str, Any]) -> None:
        """A bus listener: a call ended (a channel is free) or the line is back."""
        name = event["name"]
        if name == "call.deferred":
            self._line_trouble = True
        elif name in ("telephony.up", "call.redialed"):
            self._line_trouble = False
        if name in WAKE_EVENTS:
            self.kick()

    def kick(self) -> None:
        """Look at the queue soon (from a listener: outside any unit of work)."""
        if not self.active:
            return
        if self._lock.locked() or (self._kick is not None and not self._kick.done()):
            self._again = True
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._kick = loop.create_task(self._pump_logged(), name="outbound-pump")

    async def _pump_logged(self) -> int:
        """A look started by a listener: nobody awaits it, so a failure is logged here (the
        next wake or the timer looks again)."""
        try:
            return await self.pump()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("outbound: a look at the queue failed")
            return 0

    async def idle(self) -> None:
        """Wait for a look at the queue under way (a bench drives the clock by it)."""
        while self._kick is not None and not self._kick.done():
            await asyncio.wait({self._kick})

    async def on_timer(self, key: TimerKey) -> None:
        """The `outbound:` timer fired: a call fell due, or a second's calls were spent (or
        a minute passed since a call waited for the line)."""
        self._timer_at, self._line_trouble = None, False
        await self.pump()

    async def pump(self) -> int:
        """Place every due call the pace allows now; returns how many were placed."""
        if not self.active:
            return 0
        if self._lock.locked():
            self._again = True
            return 0
        async with self._lock:
            started = time.process_time()
            placed = 0
            try:
                while True:
                    self._again = False
                    n, more = await self._look()
                    placed += n
                    if not more and not self._again:
                        break
            finally:
                self.cpu_s += time.process_time() - started
            return placed

    # -- one look at the queue ------------------------------------------------------------------
    def _refill(self, now: datetime) -> float:
        cps = max(self.core.config.outbound_cps, 0.001)
        cap = max(1.0, cps)
        if self._tokens is None or self._filled_at is None:
            self._tokens = cap
        else:
            gained = max(0.0, (now - self._filled_at).total_seconds()) * cps
            self._tokens = min(cap, self._tokens + gained)
        self._filled_at = now
        return self._tokens

    async def _free_channels(self, session: AsyncSession, pacing: Pacing) -> int:
        """Outbound calls that may start now: channels left, and trunk lines left over the
        hotline's reserve. An outbound call holds a line once the backend took it
        (`dialed_at`): not while it waits in the queue or for the phone line. This
        engine's own are dialled before its next look (it hands them over in its look)."""
        rows = await session.execute(
            select(col(Call.direction), func.count())
            .where(
                col(Call.state).not_in(list(OFF_LINE)),
                (col(Call.direction) == "in") | col(Call.dialed_at).is_not(None),
            )
            .group_by(col(Call.direction))
        )
        live = {str(d): int(n) for d, n in rows}
        out, inbound = live.get("out", 0), live.get("in", 0)
        return min(pacing.channels - out, pacing.trunk - pacing.inbound_reserved - inbound - out)

    async def _look(self) -> tuple[int, bool]:
        """Place what is due within the pace: (placed, whether to look again at once)."""
        core = self.core
        now = core.now()
        if not core.health().up:
            return 0, False  # nothing would ring: `telephony.up` wakes the engine
        if self._line_trouble:
            # a backend that said nothing of an outage: try again in a while
            await self._wake(None, now, now + timedelta(seconds=BUSY_HOLD_S))
            return 0, False
        tokens = self._refill(now)
        async with core.store.read() as session:
            free = await self._free_channels(session, self.pacing)
        room = min(free, int(tokens))
        if room <= 0:
            if free > 0:  # the second's calls are spent: back with the next one
                cps = max(core.config.outbound_cps, 0.001)
                await self._wake(None, now, now + timedelta(seconds=(1.0 - tokens) / cps))
            return 0, False  # else the trunk is full: a call ending wakes the engine
        placed = moved = 0
        commands: list[PlaceCall] = []
        held: list[datetime] = []
        async with core.store.tx() as tx:
            due = list(
                (
                    await tx.session.execute(
                        select(OutboundJob)
                        .where(col(OutboundJob.state) == QUEUED, col(OutboundJob.due_at) <= now)
                        .order_by(
                            col(OutboundJob.priority), col(OutboundJob.due_at), col(OutboundJob.id)
                        )
                        .limit(room * 2 + 8)
                    )
                ).scalars()
            )
            calls = {
                c.ref: c
                for c in (
                    await tx.session.execute(
                        select(Call).where(col(Call.ref).in_([j.ref for j in due]))
                    )
                ).scalars()
            }
            rung = await self._rung(tx, {j.resident_id for j in due if j.resident_id}, now)
            for job in due:
                if placed >= room:
                    break
                call = calls.get(job.ref)
                if call is None or call.state in cm.FINAL:
                    job.state = DROPPED
                    moved += 1
                    continue
                until = self._hold_until(job, rung.get(job.resident_id or 0, []), now)
                if until is None and self.outbound.quiet_hours(call):
                    until = quiet_until(core.config, now)
                if until is not None:
                    job.due_at = until
                    held.append(until)
                    tx.emit("outbound.held", "call", call.id, purpose=job.purpose,
                            until=until.isoformat())  # fmt: skip
                    moved += 1
                    continue
                if not await self.outbound.wanted(tx, call):
                    await self._drop(tx, job, call)
                    moved += 1
                    continue
                job.state, job.placed_at, call.started_at = PLACED, now, now
                tx.emit("outbound.placed", "call", call.id, purpose=job.purpose,
                        priority=job.priority,
                        queued_s=round((now - job.created_at).total_seconds(), 1))  # fmt: skip
                if job.resident_id is not None:
                    rung.setdefault(job.resident_id, []).append(
                        _Rung(job.ref, False, job.source, job.priority, now, True)
                    )
                commands.append(
                    PlaceCall(
                        call.ref,
                        call.number,
                        caller_id=self.outbound.caller_id(call.purpose),
                        ring_s=job.ring_s,
                    )
                )
                placed += 1
            self._tokens = tokens - placed
            left = len(due) > placed + moved  # due calls the pace left for later
            # maybe more due than this look read: look again at once
            more = len(due) >= room * 2 + 8 and placed < room
            await self._next_look(tx, now, held, left=left)
            core.fx.after_commit(tx, *commands)
        self.placed += placed
        if placed:
            log.info("outbound: %s calls placed", placed)
        return placed, more

    async def _rung(self, tx: Tx, residents: set[int], now: datetime) -> dict[int, list[_Rung]]:
        """The calls of these residents live now or started within the dedupe window (not
        those still in the queue)."""
        if not residents:
            return {}
        since = now - timedelta(seconds=self.core.config.outbound_dedupe_s)
        rows = await tx.session.execute(
            select(
                col(Call.resident_id),
                col(Call.ref),
                col(Call.direction),
                col(Call.purpose),
                col(Call.state),
                col(Call.started_at),
                col(OutboundJob.state),
            )
            .outerjoin(OutboundJob, col(OutboundJob.ref) == col(Call.ref))
            .where(
                col(Call.resident_id).in_(residents),
                (col(Call.started_at) > since) | col(Call.state).not_in(list(cm.FINAL)),
            )
        )
        out: dict[int, list[_Rung]] = {}
        for resident_id, ref, direction, purpose, state, started_at, job_state in rows:
            if job_state in (QUEUED, DROPPED) or resident_id is None:
                continue
            source = self.outbound.source_of(str(purpose), str(ref))
            out.setdefault(int(resident_id), []).append(
                _Rung(
                    str(ref),
                    direction == "in",
                    source,
                    PRIORITY.get(str(purpose), IMMEDIATE),
                    started_at,
                    cm.CallState(state) not in OFF_LINE,
                )
            )
        return out

    def _hold_until(self, job: OutboundJob, rung: list[_Rung], now: datetime) -> datetime | None:
        """When a job may go, if its resident was rung too lately (None: now)."""
        window = timedelta(seconds=self.core.config.outbound_dedupe_s)
        until: datetime | None = None
        for r in rung:
            if r.ref == job.ref or (not r.inbound and r.source == job.source):
                continue  # its own campaign's tries keep their own pace
            at: datetime | None = None
            if r.live:  # on the phone (with us, or rung by us) now: in a minute
                at = now + timedelta(seconds=BUSY_HOLD_S)
            if not r.inbound and r.priority != IMMEDIATE and r.priority <= job.priority:
                # another campaign as or more important rang them lately
                window_end = r.started_at + window
                at = window_end if at is None else max(at, window_end)
            if at is not None and at > now and (until is None or at > until):
                until = at
        return until

    async def _next_look(self, tx: Tx, now: datetime, held: list[datetime], *, left: bool) -> None:
        """Set the engine's timer: for the calls just held, for the next second's calls
        when some due ones were left, and (no timer left: it just fired) for the next
        call that falls due."""
        wanted = list(held)
        if left:
            tokens = self._tokens or 0.0
            cps = max(self.core.config.outbound_cps, 0.001)
            # out of tokens: the next one; out of channels: a call ending wakes it (a net)
            wait = (1.0 - tokens) / cps if tokens < 1.0 else BUSY_HOLD_S
            wanted.append(now + timedelta(seconds=wait))
        if self._timer_at is None or self._timer_at <= now:
            first = (
                await tx.session.execute(
                    select(func.min(col(OutboundJob.due_at))).where(
                        col(OutboundJob.state) == QUEUED, col(OutboundJob.due_at) > now
                    )
                )
            ).scalar()
            if first is not None:
                wanted.append(first)
        if wanted:
            await self._wake(tx, now, min(wanted))

    async def _wake(self, tx: Tx | None, now: datetime, at: datetime) -> None:
        """Have the `outbound:` timer fire at `at`, unless it fires sooner already."""
        if self._timer_at is not None and now < self._timer_at <= at:
            return
        self._timer_at = at
        command = ScheduleTimer(TimerKey.outbound(), at)
        if tx is None:
            await self.core.fx.run(command)
        else:
            self.core.fx.after_commit(tx, command)
