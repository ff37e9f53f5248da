"""Away by keypad: a resident with daily care calls tells the hotline they are away.

The hotline menu of a resident with an enabled plan has one more key (7): "away for 1 to 9
days, counting today" (the flow reads the number back for confirmation), or, while an away
period runs, "back home". Either rewrites the plan's away periods through
`Wellbeing.set_plan`, so the next round is rescheduled as for an operator's change, and
the call ends served (`call.self_served`). Longer periods are an operator's (key 0).

Periods that ended before today are dropped when one is added, so the list stays short.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from dispatch.core import Core
from dispatch.machines import call as cm
from dispatch.models import Call, WellbeingPlan
from dispatch.wellbeing import Wellbeing
from dispatch.wellbeing_schedule import is_away
from eventlog.clock import LOCAL_TZ
from providers.base import FlowFinished

log = logging.getLogger(__name__)

#: the hotline's variable: `care` (7 = away) or `away` (7 = back), absent without a plan
VARIABLE = "wellbeing"
#: the hotline outcomes this module takes
AWAY, BACK = "away", "back"
#: the reason an away period set by keypad carries
KEYPAD_REASON = "keypad"
#: a plan keeps at most this many away periods (the API's bound)
MAX_PERIODS = 20


def periods_away(periods: list[dict[str, str]], today: date, days: int) -> list[dict[str, str]]:
    """`periods` plus `days` days away from `today` on (today counted); ended ones dropped."""
    kept = [p for p in periods if p.get("until", "") >= today.isoformat()]
    until = today + timedelta(days=days - 1)
    kept.append({"from": today.isoformat(), "until": until.isoformat(), "reason": KEYPAD_REASON})
    return kept[-MAX_PERIODS:]


def periods_back(periods: list[dict[str, str]], today: date) -> list[dict[str, str]]:
    """`periods` with every one that holds today ended yesterday (or gone, begun today)."""
    iso, yesterday = today.isoformat(), (today - timedelta(days=1)).isoformat()
    out: list[dict[str, str]] = []
    for period in periods:
        if not period.get("from", "") <= iso <= period.get("until", ""):
            out.append(period)
        elif period["from"] <= yesterday:
            out.append({**period, "until": yesterday})
    return out


class AwayByKeypad:
    """The hotline's key 7 for residents with daily care calls."""

    def __init__(self, core: Core, wellbeing: Wellbeing) -> None:
        self.core = core
        self.wellbeing = wellbeing

    def today(self) -> date:
        return self.core.now().astimezone(LOCAL_TZ).date()

    async def context(self, session: AsyncSession, resident_id: int) -> dict[str, Any]:
        """The hotline's `wellbeing` variable for a resident (empty: no enabled plan)."""
        plan = await session.get(WellbeingPlan, resident_id)
        if plan is None or not plan.enabled:
            return {}
        return {VARIABLE: "away" if is_away(plan, self.today()) is not None else "care"}

    async def finished(self, event: FlowFinished) -> bool:
        """Take a hotline that ended `away` or `back`; False for any other outcome.

        The plan is written first: the caller was told it is noted, and a restart before
        the call's own record ends it as any call the PBX no longer has."""
        if event.outcome not in (AWAY, BACK):
            return False
        core = self.core
        async with core.store.read() as session:
            call = (
                await session.execute(select(Call).where(col(Call.ref) == event.ref))
            ).scalar_one_or_none()
        if call is None or call.resident_id is None:
            return True
        await self._record(call, event)
        async with core.store.tx() as tx:
            call = await core.call_by_ref(tx, event.ref)
            if call is not None and call.state == cm.CallState.IVR:
                await core.self_served(tx, call, wellbeing=event.outcome)
        return True

    async def _record(self, call: Call, event: FlowFinished) -> None:
        assert call.resident_id is not None
        plan = await self.wellbeing.plan(call.resident_id)
        if plan is None or not plan.enabled:
            log.warning("call %s: %s by keypad without a care plan", call.id, event.outcome)
            return
        today = self.today()
        data: dict[str, Any] = {"call_id": call.id}
        if event.outcome == AWAY:
            raw = str(event.variables.get("away_days", ""))
            if not (raw.isdigit() and 1 <= int(raw) <= 9):
                log.warning("call %s: away by keypad with days %r", call.id, raw)
                return
            away = periods_away(plan.away, today, int(raw))
            data |= {"days": int(raw), "until": away[-1]["until"]}
        else:
            away = periods_back(plan.away, today)
        await self.wellbeing.set_plan(
            call.resident_id,
            actor="resident",
            note=(f"wellbeing.{event.outcome}_by_keypad", data),
            away=away,
        )
