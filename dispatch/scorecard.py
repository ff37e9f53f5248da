"""A merchant's scorecard (a read model): offers and acceptance, ratings, time from
acceptance to arrival, no-shows, disputes and recent orders over a period.

A rating or no-show a supervisor overturned on the merchant's dispute does not count
(`Ranking.merchant_stats` leaves it out); the card says how many were disputed and
overturned. It never says who rated: a merchant reads their own card.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from dispatch.core import Core
from dispatch.figures import RATINGS, pct, percentile
from dispatch.machines import offer as om
from dispatch.machines import ticket as tm
from dispatch.matching import MerchantStats
from dispatch.models import Dispute, Offer, Ticket
from dispatch.ranking import Ranking
from registry import models as registry_models
from registry import repository as repo


class Scorecard:
    """Merchants' records for the wallboard and the merchant page."""

    def __init__(self, core: Core, ranking: Ranking) -> None:
        self.core = core
        self.ranking = ranking

    async def merchant_record(
        self,
        merchant_id: int,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> dict[str, Any]:
        """A merchant's scorecard over [start, end): offers and acceptance, ratings, time
        from acceptance to arrival (median, p90), no-shows and recent orders.

        Without a period, the recent window the ranking uses. Offers count by when they
        were placed, ratings by when they were given (as in `merchant_stats`).
        """
        if start is None:
            start = self.core.now() - timedelta(days=self.core.config.stats_window_days)
        period = [col(Offer.placed_at) >= start]
        if end is not None:
            period.append(col(Offer.placed_at) < end)
        async with self.core.store.read() as session:
            merchant = await repo.get_merchant(session, merchant_id=merchant_id)
            stats = (
                await self.ranking.merchant_stats(session, [merchant_id], since=start, until=end)
            ).get(merchant_id, MerchantStats())
            taken = (
                await session.execute(
                    select(
                        col(Offer.ticket_id),
                        col(Offer.state),
                        col(Offer.placed_at),
                        col(Offer.decided_at),
                        col(Ticket.category_code),
                        col(Ticket.state),
                        col(Ticket.merchant_id),
                        col(Ticket.arrived_at),
                        col(Ticket.rating),
                    )
                    .join(Ticket, col(Ticket.id) == col(Offer.ticket_id))
                    .where(
                        col(Offer.merchant_id) == merchant_id,
                        col(Offer.state).in_([om.OfferState.ACCEPTED, om.OfferState.NO_SHOW]),
                        *period,
                    )
                    .order_by(col(Offer.placed_at).desc(), col(Offer.id).desc())
                )
            ).all()
            grid = await session.get(registry_models.Grid, merchant.grid_code)
            opened = [col(Dispute.merchant_id) == merchant_id, col(Dispute.opened_at) >= start]
            if end is not None:
                opened.append(col(Dispute.opened_at) < end)
            by_state = dict(
                (
                    await session.execute(
                        select(col(Dispute.state), func.count())
                        .where(*opened)
                        .group_by(col(Dispute.state))
                    )
                ).all()
            )
            disputes = {
                (d.ticket_id, d.kind): d.state
                for d in (
                    await session.execute(
                        # a merchant's disputes are few: read them all, not an IN of offers
                        select(Dispute).where(col(Dispute.merchant_id) == merchant_id)
                    )
                ).scalars()
            }
        arrive_s: list[float] = []
        orders: list[dict[str, Any]] = []
        no_show_tickets: list[dict[str, Any]] = []
        for tid, ostate, placed, decided, category, tstate, holder, arrived, rating in taken:
            no_show = om.OfferState(ostate) == om.OfferState.NO_SHOW
            # after a no-show the ticket's arrival and rating belong to the next merchant
            mine = not no_show and holder == merchant_id
            if mine and arrived is not None and decided is not None:
                arrive_s.append((arrived - decided).total_seconds())
            if no_show and len(no_show_tickets) < 50:
                no_show_tickets.append(
                    {"ticket_id": tid, "at": decided.isoformat() if decided else None}
                )
            if len(orders) < 20:
                orders.append(
                    {
                        "ticket_id": tid,
                        "category": category,
                        "placed_at": placed.isoformat(),
                        "accepted_at": decided.isoformat() if decided and not no_show else None,
                        "arrived_at": arrived.isoformat() if mine and arrived else None,
                        "state": "no_show" if no_show else tm.TicketState(tstate).value,
                        "rating": rating if mine else None,
                        "dispute": disputes.get((tid, "no_show" if no_show else "rating")),
                    }
                )
        counts = dict(stats.ratings)
        return {
            "merchant_id": merchant.id,
            "name": merchant.name,
            "kind": merchant.kind,
            "grid_code": merchant.grid_code,
            "grid_name": grid.name if grid is not None else merchant.grid_code,
            "window_days": self.core.config.stats_window_days,
            "from": start.isoformat(),
            "to": end.isoformat() if end is not None else None,
            "offers": stats.offers,
            "accepted": stats.accepted,
            "acceptance": stats.acceptance,
            "acceptance_rate": pct(stats.accepted, stats.offers),
            "rated": stats.rated,
            "satisfied": stats.satisfied,
            "satisfied_rate": pct(stats.satisfied, stats.rated),
            "ratings": {r: counts.get(r, 0) for r in RATINGS},
            "no_shows": stats.no_shows,
            # disputes opened in the period, and how they stand now
            "disputed": sum(by_state.values()),
            "disputes_open": by_state.get("open", 0),
            "upheld": by_state.get("upheld", 0),
            "overturned": by_state.get("overturned", 0),
            "time_to_arrive": {
                "visits": len(arrive_s),
                "median_s": percentile(arrive_s, 50),
                "p90_s": percentile(arrive_s, 90),
            },
            "last_offered_at": stats.last_offered_at.isoformat() if stats.last_offered_at else None,
            "no_show_tickets": no_show_tickets,
            "recent_orders": orders,
        }
