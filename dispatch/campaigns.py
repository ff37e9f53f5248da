"""Outbound campaigns: one round of calls to many residents (a notice to grids, with an
optional yes/no question), retried, never in the quiet hours.

A campaign has one `CampaignCall` per recipient. Every recipient's call is recorded and
queued in the outbound engine (`dispatch.outbound_engine`) in the unit of work that makes
the campaign, its ref on the recipient's row; the engine paces them (per backend, with
the other campaigns by priority), keeps the quiet hours and the ten minutes between two
campaigns' calls to one resident, and places each once: a restart places none twice (one
a restart cut off counts as `lost` and is not placed again) and forgets none (the queue is
in the database). One nobody answers is queued again for `retry_s` later, `tries` in all.
Outbound calls of purpose `campaign` (dedupe source `campaign-<id>`), flow `notice`.

What a recipient's call comes to: `heard` (answered: the notice was read; `answer` is
`yes` / `no` when the question was answered), `unanswered` or `failed` after the last try,
`lost`, `no_phone` (no number to ring). Progress (`progress`) counts them live.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from dispatch.core import Core
from dispatch.effects import Command, PlayFlow
from dispatch.errors import Conflict, Invalid
from dispatch.models import Call, Campaign, CampaignCall
from dispatch.outbound import Outbound, Purpose
from dispatch.outbound_engine import OutboundEngine
from dispatch.timer_keys import TimerKey
from eventlog.store import Tx
from providers.base import OriginateFailure
from registry import repository as repo
from registry.models import Grid, Resident, ResidentPhone, ResidentStatus, User

log = logging.getLogger(__name__)

PURPOSE = "campaign"
FLOW = "notice"
RUNNING, DONE, CANCELLED = "running", "done", "cancelled"
#: the keys of the notice's question and what they mean
ANSWERS = {"answer_yes": "yes", "answer_no": "no"}
OUTCOMES = ("heard", "unanswered", "failed", "lost", "no_phone", "cancelled")


def call_ref(campaign_id: int | None, row_id: int | None, attempt: int = 1) -> str:
    """`campaign-4-17`, a second try `campaign-4-17.t2` (an outage's replacement `.r1`)."""
    base = f"campaign-{campaign_id}-{row_id}"
    return base if attempt <= 1 else f"{base}.t{attempt}"


def source_of(ref: str) -> str:
    """The campaign a call belongs to, for the engine's dedupe: `campaign-4`."""
    return ref.split(".", 1)[0].rsplit("-", 1)[0]


def _row_id(ref: str) -> int | None:
    head = ref.split(".", 1)[0]
    tail = head.rsplit("-", 1)[-1]
    return int(tail) if head.startswith("campaign-") and tail.isdigit() else None


def _current(row: CampaignCall, ref: str) -> bool:
    return row.ref is not None and (ref == row.ref or ref.startswith(row.ref + ".r"))


def _waiting(row: CampaignCall) -> bool:
    return row.ref is None and row.outcome is None


class Campaigns:
    """Notices to grids: who is called, the pace, the answers, the progress."""

    def __init__(self, core: Core, outbound: Outbound, engine: OutboundEngine) -> None:
        self.core = core
        self.outbound = outbound
        self.engine = engine
        outbound.serve(
            PURPOSE,
            Purpose(
                answered=self._answered,
                wanted=self._wanted,
                ended=self._ended,
                failed=self._failed,
                quiet_hours=True,
                source=source_of,
            ),
        )

    # -- making one ------------------------------------------------------------------------
    async def create(
        self,
        *,
        user: User,
        title: str,
        text: str,
        question: str = "",
        grid_codes: Sequence[str] = (),
        groups: Sequence[str] = (),
        tries: int = 2,
        retry_s: float = 1800.0,
    ) -> Campaign:
        """A notice to the registered residents of these grids (all grids when none),
        only those in one of `groups` when given; every call is queued at once (the
        outbound engine paces them)."""
        core = self.core
        async with core.store.tx() as tx:
            for code in grid_codes:
                if await tx.session.get(Grid, code) is None:
                    raise Invalid(f"unknown grid {code!r}")
            query = select(Resident).where(col(Resident.status) == ResidentStatus.REGISTERED)
            if grid_codes:
                query = query.where(col(Resident.grid_code).in_(list(grid_codes)))
            residents = [
                r
                for r in (await tx.session.execute(query.order_by(col(Resident.id)))).scalars()
                if not groups or set(r.groups) & set(groups)
            ]
            if not residents:
                raise Invalid("nobody to call: no registered resident in these grids and groups")
            campaign = Campaign(
                title=title,
                text=text,
                question=question,
                grid_codes=list(grid_codes),
                groups=list(groups),
                tries=tries,
                retry_s=retry_s,
                created_by=user.username,
                created_at=core.now(),
            )
            tx.session.add(campaign)
            await tx.session.flush()
            numbers = await self._numbers(tx, [r.id for r in residents if r.id is not None])
            rows = []
            for resident in residents:
                assert resident.id is not None
                number = numbers.get(resident.id, "")
                row = CampaignCall(
                    campaign_id=campaign.id,  # type: ignore[arg-type]
                    resident_id=resident.id,
                    number=number,
                    outcome=None if number else "no_phone",
                )
                tx.session.add(row)
                rows.append(row)
            tx.emit(
                "campaign.created",
                "campaign",
                campaign.id,
                actor=user.username,
                kind=campaign.kind,
                recipients=len(residents),
                grids=list(grid_codes),
                question=bool(question),
            )
            await tx.session.flush()
            await self._queue(tx, campaign.id, [r for r in rows if _waiting(r)])
            await self._maybe_done(tx, campaign)
        log.info("campaign %s: %s recipients", campaign.id, len(residents))
        return campaign

    async def _numbers(self, tx: Tx, resident_ids: list[int]) -> dict[int, str]:
        """Each resident's number to ring: a mobile first, else their first phone."""
        rows = await tx.session.execute(
            select(col(ResidentPhone.resident_id), col(ResidentPhone.number))
            .where(col(ResidentPhone.resident_id).in_(resident_ids))
            .order_by(col(ResidentPhone.kind) != "mobile", col(ResidentPhone.id))
        )
        out: dict[int, str] = {}
        for resident_id, number in rows:
            out.setdefault(int(resident_id), str(number))
        return out

    async def cancel(self, campaign_id: int, *, user: User) -> Campaign:
        """Stop placing calls (those under way finish)."""
        async with self.core.store.tx() as tx:
            campaign = await self.core.get(tx, Campaign, campaign_id, "campaign")
            if campaign.state != RUNNING:
                raise Conflict(f"campaign {campaign_id} is {campaign.state}")
            campaign.state, campaign.done_at = CANCELLED, self.core.now()
            # nobody still to be called is called now (calls under way finish as they do)
            rows = await self._rows(tx, campaign_id)
            pending = [r.ref for r in rows if r.ref is not None and r.outcome is None]
            withdrawn = await self.engine.withdraw(tx, pending)
            for row in rows:
                if _waiting(row) or (row.outcome is None and row.ref in withdrawn):
                    row.outcome, row.finished_at = CANCELLED, self.core.now()
            tx.emit("campaign.cancelled", "campaign", campaign_id, actor=user.username)
        return campaign

    # -- the calls -------------------------------------------------------------------------
    async def _queue(self, tx: Tx, campaign_id: int | None, rows: list[CampaignCall]) -> None:
        """Record each row's next try and queue it in the outbound engine (due at the row's
        `retry_at`, else now), its ref on the row in this unit of work: placed once."""
        calls = []
        for row in rows:
            row.attempts += 1
            ref = call_ref(campaign_id, row.id, row.attempts)
            call = self.outbound.record(
                tx, ref=ref, number=row.number, purpose=PURPOSE, resident_id=row.resident_id,
                registered=True,
            )  # fmt: skip
            row.ref = ref
            calls.append((row, call))
        await tx.session.flush()
        for row, call in calls:
            tx.emit("campaign.call", "campaign", campaign_id, call_id=call.id, row_id=row.id,
                    resident_id=row.resident_id, attempt=row.attempts)  # fmt: skip
            self.engine.enqueue(tx, call, due_at=row.retry_at)
        if calls:
            log.info("campaign %s: %s calls queued", campaign_id, len(calls))

    async def round(self, campaign_id: int) -> None:
        """Queue the recipients of a running campaign whose try is not queued yet (its
        `campaign:` timer, from a database made before the outbound engine)."""
        async with self.core.store.tx() as tx:
            campaign = await tx.session.get(Campaign, campaign_id, populate_existing=True)
            if campaign is None or campaign.state != RUNNING:
                return
            rows = [r for r in await self._rows(tx, campaign_id) if _waiting(r)]
            await self._queue(tx, campaign_id, rows)

    async def _rows(self, tx: Tx, campaign_id: int) -> list[CampaignCall]:
        return list(
            (
                await tx.session.execute(
                    select(CampaignCall)
                    .where(col(CampaignCall.campaign_id) == campaign_id)
                    .order_by(col(CampaignCall.id))
                    .execution_options(populate_existing=True)
                )
            ).scalars()
        )

    async def _maybe_done(self, tx: Tx, campaign: Campaign) -> None:
        """Done once every recipient has an outcome (counted in SQL: a notice to thousands
        reads no rows per call)."""
        if campaign.state != RUNNING:
            return
        counts: Counter[str | None] = Counter(
            {
                outcome: int(n)
                for outcome, n in await tx.session.execute(
                    select(col(CampaignCall.outcome), func.count())
                    .where(col(CampaignCall.campaign_id) == campaign.id)
                    .group_by(col(CampaignCall.outcome))
                )
            }
        )
        if counts[None]:
            return
        campaign.state, campaign.done_at = DONE, self.core.now()
        tx.emit("campaign.done", "campaign", campaign.id, outcomes={k: counts[k] for k in OUTCOMES})

    async def _outcome(self, tx: Tx, call: Call, outcome: str, answer: str | None = None) -> None:
        """A recipient's call ended: their outcome (the first one counts), maybe a retry."""
        row_id = _row_id(call.ref)
        row = await tx.session.get(CampaignCall, row_id) if row_id is not None else None
        if row is None or row.outcome is not None or not _current(row, call.ref):
            return  # decided already, or a late report of an earlier try
        campaign = await tx.session.get(Campaign, row.campaign_id, populate_existing=True)
        if campaign is None:
            return
        retry = outcome in ("unanswered", "failed") and row.attempts < campaign.tries
        if retry and campaign.state == RUNNING:
            row.retry_at = self.core.now() + timedelta(seconds=campaign.retry_s)
            tx.emit(
                "campaign.retry",
                "campaign",
                campaign.id,
                row_id=row.id,
                outcome=outcome,
                at=row.retry_at.isoformat(),
            )
            await self._queue(tx, campaign.id, [row])
            return
        row.outcome, row.answer, row.finished_at = outcome, answer, self.core.now()
        tx.emit(
            "campaign.reached" if outcome == "heard" else "campaign.unreached",
            "campaign",
            campaign.id,
            row_id=row.id,
            resident_id=row.resident_id,
            outcome=outcome,
            answer=answer,
        )
        await tx.session.flush()
        await self._maybe_done(tx, campaign)

    async def wanted_timers(self) -> dict[TimerKey, datetime]:
        """For the reconciler: a running campaign with recipients not called yet needs its
        `campaign:` timer (a crash right after it was made left none)."""
        async with self.core.store.read() as session:
            ids = (
                await session.execute(
                    select(col(Campaign.id))
                    .join(CampaignCall, col(CampaignCall.campaign_id) == Campaign.id)
                    .where(
                        col(Campaign.state) == RUNNING,
                        col(CampaignCall.ref).is_(None),
                        col(CampaignCall.outcome).is_(None),
                    )
                    .distinct()
                )
            ).scalars()
            now = self.core.now()
            return {TimerKey.campaign(i): now for i in ids}

    # -- what the console shows ------------------------------------------------------------
    async def progress(self, campaign_id: int) -> dict[str, Any]:
        """The campaign and its counts: recipients, called, reached, answers, unreached."""
        async with self.core.store.read() as session:
            campaign = await session.get(Campaign, campaign_id)
            if campaign is None:
                raise repo.NotFound("campaign", campaign_id)
            # a try is "called" once the engine placed it (not while it waits in the queue)
            rows = await session.execute(
                select(CampaignCall, col(Call.dialed_at))
                .outerjoin(Call, col(Call.ref) == col(CampaignCall.ref))
                .where(col(CampaignCall.campaign_id) == campaign_id)
            )
            outcomes: Counter[str] = Counter()
            answers: Counter[str] = Counter()
            total = called = 0
            for row, dialed_at in rows:
                total += 1
                called += row.attempts > 1 or dialed_at is not None or row.outcome in OUTCOMES[:4]
                outcomes[row.outcome or "pending"] += 1
                if row.answer:
                    answers[row.answer] += 1
        finished = total - outcomes["pending"]
        return {
            "id": campaign.id,
            "kind": campaign.kind,
            "title": campaign.title,
            "text": campaign.text,
            "question": campaign.question,
            "grid_codes": campaign.grid_codes,
            "groups": campaign.groups,
            "state": campaign.state,
            "created_by": campaign.created_by,
            "created_at": campaign.created_at.isoformat(),
            "done_at": campaign.done_at.isoformat() if campaign.done_at else None,
            "recipients": total,
            "called": called,
            "pending": outcomes["pending"],
            "reached": outcomes["heard"],
            "unreached": total - outcomes["heard"] - outcomes["pending"],
            "outcomes": {k: outcomes[k] for k in OUTCOMES},
            "answers": {k: answers[k] for k in ANSWERS.values()},
            "done_share": round(100.0 * finished / total, 1) if total else 100.0,
        }

    async def recipients(self, campaign_id: int) -> list[dict[str, Any]]:
        """One line per recipient (for the CSV): who, tries, outcome, answer; no number."""
        async with self.core.store.read() as session:
            if await session.get(Campaign, campaign_id) is None:
                raise repo.NotFound("campaign", campaign_id)
            rows = (
                await session.execute(
                    select(CampaignCall, Resident)
                    .join(Resident, col(Resident.id) == CampaignCall.resident_id)
                    .where(col(CampaignCall.campaign_id) == campaign_id)
                    .order_by(col(CampaignCall.id))
                )
            ).all()
        return [
            {
                "resident_id": row.resident_id,
                "name": resident.name,
                "grid": resident.grid_code,
                "attempts": row.attempts,
                "outcome": row.outcome or "pending",
                "answer": row.answer or "",
                "finished_at": row.finished_at.isoformat() if row.finished_at else "",
            }
            for row, resident in rows
        ]

    # -- the call (purpose "campaign") -----------------------------------------------------
    async def _answered(self, tx: Tx, call: Call) -> list[Command]:
        row_id = _row_id(call.ref)
        row = await tx.session.get(CampaignCall, row_id) if row_id is not None else None
        campaign = await tx.session.get(Campaign, row.campaign_id) if row is not None else None
        if row is None or campaign is None:
            return []
        resident = await tx.session.get(Resident, row.resident_id)
        context = {
            "name": resident.name if resident is not None else "",
            "sex": resident.sex if resident is not None else "",
            "birth_year": (resident.birth_year or "") if resident is not None else "",
            "notice": campaign.text,
            "question": campaign.question,
            "asks": "question" if campaign.question else "none",
        }
        lang = resident.language if resident is not None else "zh-CN"
        return [PlayFlow(call.ref, FLOW, context, lang)]

    async def finished(self, ref: str, outcome: str) -> None:
        """The notice's flow ended: heard, with the answer when the question got one."""
        async with self.core.store.tx() as tx:
            call = await self.core.call_by_ref(tx, ref)
            if call is not None:
                await self._outcome(tx, call, "heard", ANSWERS.get(outcome))

    async def _ended(self, tx: Tx, call: Call) -> None:
        if call.cause == "lost":
            await self._outcome(tx, call, "lost")
        else:
            await self._outcome(tx, call, "heard" if call.answered_at else "unanswered")

    async def _failed(self, tx: Tx, call: Call, reason: OriginateFailure) -> None:
        await self._outcome(tx, call, "failed")

    async def _wanted(self, tx: Tx, call: Call) -> bool:
        row_id = _row_id(call.ref)
        row = await tx.session.get(CampaignCall, row_id) if row_id is not None else None
        return row is not None and row.outcome is None and _current(row, call.ref)
