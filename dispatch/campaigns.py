"""Outbound campaigns: one round of calls to many residents (a notice to grids, with an
optional yes/no question), paced, retried, never in the quiet hours.

A campaign has one `CampaignCall` per recipient. Its `campaign:` timer places the next
`batch` calls every `gap_s` seconds; each call is recorded in the unit of work that writes
its ref on the recipient's row, so a restart places none twice (one waiting for the phone
line is placed when it is back, one a restart cut off counts as `lost` and is not placed
again) and forgets none (the reconciler asks `wanted_timers`). One nobody answers is tried
again after `retry_s`, `tries` in all. A resident on a call now, or rung in the last ten
minutes for anything (`SPACING_S`), waits that long without it counting as a try.
Outbound calls of purpose `campaign`, flow `notice`.

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

from sqlalchemy import or_, select
from sqlmodel import col

from dispatch.core import Core, quiet_until
from dispatch.effects import Command, PlayFlow, ScheduleTimer
from dispatch.errors import Conflict, Invalid
from dispatch.machines import call as cm
from dispatch.models import Call, Campaign, CampaignCall
from dispatch.outbound import Outbound, Purpose
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
#: a resident rung (or ringing) for anything is not rung for a campaign within this long
SPACING_S = 600.0
OUTCOMES = ("heard", "unanswered", "failed", "lost", "no_phone", "cancelled")


def call_ref(campaign_id: int | None, row_id: int | None, attempt: int = 1) -> str:
    """`campaign-4-17`, a second try `campaign-4-17.t2` (an outage's replacement `.r1`)."""
    base = f"campaign-{campaign_id}-{row_id}"
    return base if attempt <= 1 else f"{base}.t{attempt}"


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

    def __init__(self, core: Core, outbound: Outbound) -> None:
        self.core = core
        self.outbound = outbound
        outbound.serve(
            PURPOSE,
            Purpose(
                answered=self._answered,
                wanted=self._wanted,
                ended=self._ended,
                failed=self._failed,
                quiet_hours=True,
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
        batch: int = 10,
        gap_s: float = 30.0,
        tries: int = 2,
        retry_s: float = 1800.0,
    ) -> Campaign:
        """A notice to the registered residents of these grids (all grids when none),
        only those in one of `groups` when given; its first round starts at once."""
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
                batch=batch,
                gap_s=gap_s,
                tries=tries,
                retry_s=retry_s,
                created_by=user.username,
                created_at=core.now(),
            )
            tx.session.add(campaign)
            await tx.session.flush()
            numbers = await self._numbers(tx, [r.id for r in residents if r.id is not None])
            for resident in residents:
                assert resident.id is not None
                number = numbers.get(resident.id, "")
                tx.session.add(
                    CampaignCall(
                        campaign_id=campaign.id,  # type: ignore[arg-type]
                        resident_id=resident.id,
                        number=number,
                        outcome=None if number else "no_phone",
                    )
                )
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
            core.fx.after_commit(tx, ScheduleTimer(TimerKey.campaign(campaign.id), core.now()))
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
            for row in await self._rows(tx, campaign_id):
                if _waiting(row):
                    row.outcome, row.finished_at = CANCELLED, self.core.now()
            tx.emit("campaign.cancelled", "campaign", campaign_id, actor=user.username)
        return campaign

    # -- the rounds ------------------------------------------------------------------------
    async def round(self, campaign_id: int) -> None:
        """Place the next calls of a running campaign (its `campaign:` timer)."""
        core = self.core
        now = core.now()
        async with core.store.tx() as tx:
            campaign = await tx.session.get(Campaign, campaign_id, populate_existing=True)
            if campaign is None or campaign.state != RUNNING:
                return
            quiet = quiet_until(core.config, now)
            if quiet is not None:
                core.fx.after_commit(tx, ScheduleTimer(TimerKey.campaign(campaign_id), quiet))
                return
            rows = await self._rows(tx, campaign_id)
            waiting = [r.resident_id for r in rows if _waiting(r)]
            busy = await self._recently_called(tx, campaign_id, waiting)
            placed = 0
            for row in rows:
                if placed >= max(1, campaign.batch):
                    break
                if not _waiting(row) or (row.retry_at is not None and row.retry_at > now):
                    continue
                if row.resident_id in busy:
                    # on the phone with us, or called minutes ago for something else: later,
                    # and not counted as a try
                    row.retry_at = now + timedelta(seconds=SPACING_S)
                    continue
                row.attempts += 1
                ref = call_ref(campaign_id, row.id, row.attempts)
                call = self.outbound.record(
                    tx,
                    ref=ref,
                    number=row.number,
                    purpose=PURPOSE,
                    resident_id=row.resident_id,
                    registered=True,
                )
                row.ref, row.retry_at = ref, None
                await tx.session.flush()
                tx.emit(
                    "campaign.call",
                    "campaign",
                    campaign_id,
                    call_id=call.id,
                    row_id=row.id,
                    resident_id=row.resident_id,
                    attempt=row.attempts,
                )
                self.outbound.place(tx, call)
                placed += 1
            left = [r for r in rows if _waiting(r)]
            if left:
                later = [r.retry_at for r in left if r.retry_at is not None and r.retry_at > now]
                gap = now + timedelta(seconds=campaign.gap_s)
                at = gap if len(later) < len(left) else min(later)
                core.fx.after_commit(tx, ScheduleTimer(TimerKey.campaign(campaign_id), at))
            else:
                self._maybe_done(tx, campaign, rows)
        log.info("campaign %s: %s calls placed", campaign_id, placed)

    async def _recently_called(self, tx: Tx, campaign_id: int, resident_ids: list[int]) -> set[int]:
        """Those of `resident_ids` on a call now, or called in the last `SPACING_S` for
        something else (a wellbeing call, a survey, another notice): one resident is not
        rung twice in ten minutes for two reasons (this campaign's own tries keep their
        `retry_s`)."""
        if not resident_ids:
            return set()
        since = self.core.now() - timedelta(seconds=SPACING_S)
        rows = await tx.session.execute(
            select(col(Call.resident_id)).where(
                col(Call.resident_id).in_(resident_ids),
                ~col(Call.ref).startswith(f"campaign-{campaign_id}-"),
                or_(
                    col(Call.started_at) > since,
                    col(Call.state).not_in(list(cm.FINAL)),
                ),
            )
        )
        return {int(r) for r in rows.scalars() if r is not None}

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

    def _maybe_done(self, tx: Tx, campaign: Campaign, rows: list[CampaignCall]) -> None:
        if campaign.state != RUNNING or any(r.outcome is None for r in rows):
            return
        campaign.state, campaign.done_at = DONE, self.core.now()
        counts = Counter(r.outcome for r in rows)
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
            row.ref = None
            row.retry_at = self.core.now() + timedelta(seconds=campaign.retry_s)
            tx.emit(
                "campaign.retry",
                "campaign",
                campaign.id,
                row_id=row.id,
                outcome=outcome,
                at=row.retry_at.isoformat(),
            )
            soon = self.core.now() + timedelta(seconds=campaign.gap_s)
            self.core.fx.after_commit(tx, ScheduleTimer(TimerKey.campaign(campaign.id), soon))
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
        self._maybe_done(tx, campaign, await self._rows(tx, campaign.id))  # type: ignore[arg-type]

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
            rows = (
                await session.execute(
                    select(CampaignCall).where(col(CampaignCall.campaign_id) == campaign_id)
                )
            ).scalars()
            outcomes: Counter[str] = Counter()
            answers: Counter[str] = Counter()
            total = called = 0
            for row in rows:
                total += 1
                called += row.attempts > 0
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
