"""Contracts and opening hours as matching sees them: an expired or suspended contract
removes a merchant at once; a holiday exception overrides the weekday hours."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.matching import Need, open_at, rank
from registry import repository as repo
from registry.models import ContractStatus, Merchant
from registry.schemas import ContractIn

#: 2026-10-01 is a Thursday; 10:00 in Shanghai
HOLIDAY_MORNING = datetime(2026, 10, 1, 2, 0, tzinfo=UTC)
ORDINARY_MORNING = datetime(2026, 10, 8, 2, 0, tzinfo=UTC)


async def _eligible(session: AsyncSession, now: datetime) -> set[int]:
    merchants = await repo.merchants_for_category(session, code="medicine")
    ranked = rank(Need("medicine", "BG01"), merchants, loads={}, now=now, seed=1)
    return {c.merchant_id for c in ranked if c.eligible}


async def test_given_a_contract_change_when_ranked_then_the_merchant_leaves_and_returns(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        eligible = await _eligible(session, ORDINARY_MORNING)
        mid = min(eligible)
        await repo.change_contract(
            session,
            merchant_id=mid,
            contract=ContractIn(status=ContractStatus.SUSPENDED, note="投诉待查"),
            actor="admin",
        )
        assert mid not in await _eligible(session, ORDINARY_MORNING)
        await repo.change_contract(
            session,
            merchant_id=mid,
            contract=ContractIn(
                status=ContractStatus.ACTIVE, start=date(2026, 1, 1), end=date(2026, 9, 30)
            ),
            actor="admin",
        )
        assert mid not in await _eligible(session, ORDINARY_MORNING)  # expired on 09-30
        assert mid in await _eligible(session, datetime(2026, 9, 30, 2, 0, tzinfo=UTC))
        history = await repo.contract_history(session, merchant_id=mid)
        assert [h.status for h in history] == ["suspended", "active"]


def test_given_a_holiday_exception_when_checking_hours_then_it_overrides_the_weekday() -> None:
    m = Merchant(
        id=1,
        name="m",
        kind="pharmacy",
        grid_code="BG01",
        hours={str(d): [["08:00", "20:00"]] for d in range(7)},
        holidays={"2026-10-01": [], "2026-10-02": [["09:00", "12:00"]]},
    )
    assert open_at(m, ORDINARY_MORNING) == (True, None)
    closed, opens = open_at(m, HOLIDAY_MORNING)
    assert not closed and opens == "09:00(+1)"
    assert open_at(m, datetime(2026, 10, 2, 2, 0, tzinfo=UTC)) == (True, None)
    assert open_at(m, datetime(2026, 10, 2, 5, 0, tzinfo=UTC))[0] is False  # 13:00
