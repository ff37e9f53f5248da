"""The ranking's inputs: the in-memory merchant index, merchants' recent records (cached in
`StatsCache`), loads, the resident's preferred merchants, and `rank` over them.

The pure ranking itself (distance, load, acceptance, rating, preference, fair rotation)
is `dispatch.matching`; this module reads what it needs.

The merchant index follows the registry's events on the bus
(`registry.usecases.MERCHANT_INDEX_EVENTS`: a merchant, its contract, a grid, the catalog
or an import changed): it is read again by the next ranking, whoever made the change.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select
from sqlmodel import col

from dispatch.booking_slot import window_of
from dispatch.core import ACTIVE_TICKET_STATES, Core
from dispatch.machines import offer as om
from dispatch.matching import Candidate, MatchIndex, MerchantStats, Need, rank
from dispatch.models import Dispute, Offer, Ticket
from dispatch.prices import price_notes, price_public
from dispatch.stats import StatsCache
from registry import models as registry_models
from registry import repository as repo
from registry.models import Merchant, MerchantService, Resident
from registry.usecases import MERCHANT_INDEX_EVENTS, MERCHANT_INDEX_SUBJECTS


class Ranking:
    """Ranked merchants for a ticket, and the records behind the ranking."""

    def __init__(self, core: Core, stats: StatsCache) -> None:
        self.core = core
        self.stats = stats
        self._index: MatchIndex | None = None
        self._index_at: datetime | None = None
        #: moves on every invalidation: an index read while it moved is used once, not kept
        self._generation = 0
        core.store.bus.listen(self._follow, subjects=MERCHANT_INDEX_SUBJECTS)

    def _follow(self, event: dict[str, Any]) -> None:
        if event["name"] in MERCHANT_INDEX_EVENTS:
            self.invalidate_merchants()

    def invalidate_merchants(self) -> None:
        """Forget the merchant index (the bus calls it after a registry change)."""
        self._index = None
        self._generation += 1

    async def merchant_index(self, session: Any) -> MatchIndex:
        """The in-memory index of merchants, read again after `index_ttl_s` or a change."""
        now = self.core.now()
        if (
            self._index is not None
            and self._index_at is not None
            and (now - self._index_at).total_seconds() < self.core.config.index_ttl_s
        ):
            return self._index
        generation = self._generation
        merchants = (await session.execute(select(Merchant))).scalars().all()
        categories: dict[int, list[str]] = {}
        for merchant_id, code in await session.execute(
            select(col(MerchantService.merchant_id), col(MerchantService.category_code))
        ):
            categories.setdefault(merchant_id, []).append(code)
        for m in merchants:
            session.expunge(m)
        index = MatchIndex((m, categories.get(m.id or 0, [])) for m in merchants)
        if generation == self._generation:
            self._index, self._index_at = index, now
        return index

    async def loads(self, session: Any) -> dict[int, int]:
        """How many active tickets each merchant holds."""
        rows = await session.execute(
            select(col(Ticket.merchant_id), func.count())
            .where(col(Ticket.state).in_(ACTIVE_TICKET_STATES))
            .group_by(col(Ticket.merchant_id))
        )
        return {mid: n for mid, n in rows if mid is not None}

    async def merchant_stats(
        self,
        session: Any,
        ids: Sequence[int],
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> dict[int, MerchantStats]:
        """Acceptance, ratings, no-shows and last offer of some merchants, in 2 queries.

        Offers placed and visits rated in [since, until); by default the recent window
        the ranking uses (`stats_window_days` up to now).
        """
        if not ids:
            return {}
        if since is None:
            since = self.core.now() - timedelta(days=self.core.config.stats_window_days)
        offer_period = [col(Offer.placed_at) >= since]
        rated_period = [col(Ticket.rated_at) >= since]
        if until is not None:
            offer_period.append(col(Offer.placed_at) < until)
            rated_period.append(col(Ticket.rated_at) < until)
        decided = {*om.REFUSED, om.OfferState.ACCEPTED, om.OfferState.NO_SHOW}
        accepted = {om.OfferState.ACCEPTED, om.OfferState.NO_SHOW}
        acc: dict[int, dict[str, Any]] = {}
        offer_rows = await session.execute(
            select(
                col(Offer.merchant_id),
                col(Offer.state),
                func.count(),
                func.max(col(Offer.placed_at)),
            )
            .where(col(Offer.merchant_id).in_(list(ids)), *offer_period)
            .group_by(col(Offer.merchant_id), col(Offer.state))
        )
        for merchant_id, state, n, last in offer_rows:
            row = acc.setdefault(
                merchant_id, {"offers": 0, "accepted": 0, "no_shows": 0, "last": None}
            )
            state = om.OfferState(state)
            if state in decided:
                row["offers"] += n
            if state in accepted:
                row["accepted"] += n
            if state == om.OfferState.NO_SHOW:
                row["no_shows"] += n
            if last is not None and last.tzinfo is None:
                last = last.replace(tzinfo=since.tzinfo)
            if last is not None and (row["last"] is None or last > row["last"]):
                row["last"] = last
        # so does an overturned no-show (the offer was still taken: offers, accepted stay)
        overturned_rows = await session.execute(
            select(col(Offer.merchant_id), func.count())
            .join(
                Dispute,
                (col(Dispute.ticket_id) == col(Offer.ticket_id))
                & (col(Dispute.merchant_id) == col(Offer.merchant_id)),
            )
            .where(
                col(Offer.merchant_id).in_(list(ids)),
                *offer_period,
                col(Offer.state) == om.OfferState.NO_SHOW,
                col(Dispute.kind) == "no_show",
                col(Dispute.state) == "overturned",
            )
            .group_by(col(Offer.merchant_id))
        )
        for merchant_id, n in overturned_rows:
            if merchant_id in acc:
                acc[merchant_id]["no_shows"] = max(0, acc[merchant_id]["no_shows"] - n)
        ratings: dict[int, tuple[int, int]] = {}
        by_rating: dict[int, dict[str, int]] = {}
        rating_rows = await session.execute(
            select(col(Ticket.merchant_id), col(Ticket.rating), func.count())
            .where(
                col(Ticket.merchant_id).in_(list(ids)),
                *rated_period,
                col(Ticket.rating).is_not(None),
                # a rating a supervisor overturned on the merchant's dispute stops counting
                ~exists().where(
                    col(Dispute.ticket_id) == col(Ticket.id),
                    col(Dispute.merchant_id) == col(Ticket.merchant_id),
                    col(Dispute.kind) == "rating",
                    col(Dispute.state) == "overturned",
                ),
            )
            .group_by(col(Ticket.merchant_id), col(Ticket.rating))
        )
        for merchant_id, rating, n in rating_rows:
            rated, satisfied = ratings.get(merchant_id, (0, 0))
            good = rating in ("satisfied", "basically_satisfied")
            ratings[merchant_id] = (rated + n, satisfied + (n if good else 0))
            by_rating.setdefault(merchant_id, {})[str(rating)] = n
        out: dict[int, MerchantStats] = {}
        for merchant_id in set(acc) | set(ratings):
            row = acc.get(merchant_id, {"offers": 0, "accepted": 0, "no_shows": 0, "last": None})
            rated, satisfied = ratings.get(merchant_id, (0, 0))
            out[merchant_id] = MerchantStats(
                offers=row["offers"],
                accepted=row["accepted"],
                no_shows=row["no_shows"],
                last_offered_at=row["last"],
                rated=rated,
                satisfied=satisfied,
                ratings=tuple(sorted(by_rating.get(merchant_id, {}).items())),
            )
        return out

    async def preferred(self, session: Any, resident: Resident | None, category: str) -> set[int]:
        """The resident's preferred merchants for a category.

        Two sources: the registry's `preferred` set where the registry has one (a mapping of
        category to merchant ids, or a plain set), and the merchant that completed the
        resident's last order of this category (their usual pharmacy).
        """
        if resident is None or resident.id is None:
            return set()
        out: set[int] = set()
        declared = getattr(resident, "preferred", None)
        if isinstance(declared, dict):
            out.update(int(m) for m in declared.get(category, []) or [])
        elif isinstance(declared, list | set | frozenset | tuple):
            out.update(int(m) for m in declared)
        table = getattr(registry_models, "PreferredMerchant", None)
        if table is not None and hasattr(table, "resident_id"):
            stmt = select(table.merchant_id).where(table.resident_id == resident.id)
            if hasattr(table, "category_code"):
                stmt = stmt.where(table.category_code == category)
            out.update(int(m) for m in (await session.execute(stmt)).scalars())
        usual = (
            await session.execute(
                select(col(Ticket.merchant_id))
                .where(
                    col(Ticket.resident_id) == resident.id,
                    col(Ticket.category_code) == category,
                    col(Ticket.completed_at).is_not(None),
                    col(Ticket.merchant_id).is_not(None),
                )
                .order_by(col(Ticket.id).desc())
                .limit(1)
            )
        ).scalar()
        if usual is not None:
            out.add(int(usual))
        return out

    async def rank(
        self, session: Any, ticket: Ticket, *, exclude: Sequence[int] = ()
    ) -> list[Candidate]:
        """The merchants for a ticket, best first, each with its reasons."""
        index = await self.merchant_index(session)
        resident = await session.get(Resident, ticket.resident_id) if ticket.resident_id else None
        # a booked visit asks for merchants open in its window (dispatch.booking), not now
        booked = window_of(ticket)
        need = Need(
            category=ticket.category_code,
            grid_code=resident.grid_code if resident else None,
            lat=resident.lat if resident else None,
            lon=resident.lon if resident else None,
            preferred=frozenset(await self.preferred(session, resident, ticket.category_code)),
            at=booked.start if booked else None,
            until=booked.end if booked else None,
        )
        merchants = index.near(need) if resident is not None else index.for_category(need.category)
        skip = set(exclude)
        merchants = [m for m in merchants if m.id not in skip]
        ids = [m.id for m in merchants if m.id is not None]
        loads = await self.loads(session)
        stats = await self.stats.get(session, ids)
        config = self.core.config
        return rank(
            need,
            merchants,
            loads=loads,
            now=self.core.now(),
            stats=stats,
            seed=config.match_seed if config.match_seed is not None else ticket.id,
            band=config.match_band,
        )

    async def candidates(self, ticket_id: int) -> list[Candidate]:
        """The ranked merchants for a ticket, with the reasons and price note of each."""
        async with self.core.store.read() as session:
            ticket = await session.get(Ticket, ticket_id)
            if ticket is None:
                raise repo.NotFound("ticket", ticket_id)
            ranked = await self.rank(session, ticket)
            notes = await price_notes(
                session, ticket.category_code, (c.merchant_id for c in ranked)
            )
            for c in ranked:
                c.price = price_public(notes.get(c.merchant_id))
            return ranked
