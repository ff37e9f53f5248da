"""Disputes: a merchant objects to a rating or a no-show on one of their tickets, with a
reason; a supervisor upholds it (it stands) or overturns it (it stops counting in the
scorecard, the ranking and the figures; the original event stays in the log).

One dispute per ticket, kind and merchant, and a decision is final: a second objection
to the same rating is refused (409) whether the first is open or decided. Events carry
ids only (`dispute.opened`, `dispute.upheld`, `dispute.overturned`, subject the ticket);
the merchant's reason and the supervisor's note stay in the `dispute` row.

What the merchant sees of a rating is the ticket, its category, the answer and the day;
never who rated (the resident or a family contact), nor their name or phone.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from dispatch.core import Core, actor
from dispatch.effects import TouchMerchant
from dispatch.errors import Conflict
from dispatch.machines import offer as om
from dispatch.models import Dispute, Offer, Ticket
from eventlog.clock import LOCAL_TZ
from registry import repository as repo
from registry.models import Merchant, ServiceCategory, User

KINDS = ("rating", "no_show")
OPEN, UPHELD, OVERTURNED = "open", "upheld", "overturned"
STATES = (OPEN, UPHELD, OVERTURNED)


class DisputeExists(Conflict):
    """The merchant disputed this already (`details.dispute_id`, `details.state`)."""

    error_id = "dispute_exists"

    def __init__(self, dispute: Dispute) -> None:
        super().__init__(
            f"this {dispute.kind} of ticket {dispute.ticket_id} is disputed already "
            f"(dispute {dispute.id}, {dispute.state})"
        )
        self.details = {"dispute_id": dispute.id, "state": dispute.state}


class NothingToDispute(Conflict):
    """The merchant's ticket has no rating (or no no-show of theirs) to dispute."""

    error_id = "nothing_to_dispute"

    def __init__(self, ticket_id: int, kind: str) -> None:
        super().__init__(f"ticket {ticket_id} has no {kind} of yours to dispute")


class DisputeDecided(Conflict):
    """A dispute is decided once (`details.state`)."""

    error_id = "dispute_decided"

    def __init__(self, dispute: Dispute) -> None:
        super().__init__(f"dispute {dispute.id} is {dispute.state} already")
        self.details = {"state": dispute.state}


def dispute_public(d: Dispute) -> dict[str, Any]:
    """A dispute as the merchant who opened it sees it (no supervisor's identity)."""
    return {
        "id": d.id,
        "ticket_id": d.ticket_id,
        "kind": d.kind,
        "state": d.state,
        "reason": d.reason,
        "opened_at": d.opened_at.isoformat(),
        "decided_at": d.decided_at.isoformat() if d.decided_at else None,
        "note": d.note,
    }


class Disputes:
    """Opening, listing and deciding disputes."""

    def __init__(self, core: Core) -> None:
        self.core = core

    async def open(self, ticket_id: int, *, user: User, kind: str, reason: str) -> Dispute:
        """A merchant disputes a rating or a no-show of one of their tickets.

        404 when the ticket is not theirs (another merchant's or none), 409 when there is
        nothing of theirs to dispute or they disputed it already."""
        merchant_id = user.merchant_id
        if merchant_id is None:
            raise repo.NotFound("merchant", "(not a merchant login)")
        async with self.core.store.tx() as tx:
            ticket = await tx.session.get(Ticket, ticket_id)
            if ticket is None:
                raise repo.NotFound("ticket", ticket_id)
            no_show = (
                await tx.session.execute(
                    select(col(Offer.id)).where(
                        col(Offer.ticket_id) == ticket_id,
                        col(Offer.merchant_id) == merchant_id,
                        col(Offer.state) == om.OfferState.NO_SHOW,
                    )
                )
            ).first()
            held = ticket.merchant_id == merchant_id
            if not held and no_show is None:
                # another merchant's ticket: no different from one that does not exist
                raise repo.NotFound("ticket", ticket_id)
            if (kind == "rating" and (not held or ticket.rating is None)) or (
                kind == "no_show" and no_show is None
            ):
                raise NothingToDispute(ticket_id, kind)
            before = await self._existing(tx.session, ticket_id, kind, merchant_id)
            if before is not None:
                raise DisputeExists(before)
            dispute = Dispute(
                ticket_id=ticket_id,
                merchant_id=merchant_id,
                kind=kind,
                reason=reason,
                opened_by=user.id,
                opened_at=self.core.now(),
            )
            tx.session.add(dispute)
            try:
                await tx.session.flush()
            except IntegrityError:
                # the same merchant in two tabs: the other click won
                raise Conflict(f"this {kind} of ticket {ticket_id} is disputed already") from None
            tx.emit(
                "dispute.opened",
                "ticket",
                ticket_id,
                actor=actor(user),
                dispute_id=dispute.id,
                kind=kind,
                merchant_id=merchant_id,
            )
        return dispute

    async def _existing(
        self, session: Any, ticket_id: int, kind: str, merchant_id: int
    ) -> Dispute | None:
        found: Dispute | None = (
            (
                await session.execute(
                    select(Dispute).where(
                        col(Dispute.ticket_id) == ticket_id,
                        col(Dispute.kind) == kind,
                        col(Dispute.merchant_id) == merchant_id,
                    )
                )
            )
            .scalars()
            .first()
        )
        return found

    async def decide(self, dispute_id: int, *, user: User, overturn: bool, note: str) -> Dispute:
        """A supervisor upholds or overturns an open dispute (409 once decided)."""
        state = OVERTURNED if overturn else UPHELD
        async with self.core.store.tx() as tx:
            dispute = await tx.session.get(Dispute, dispute_id)
            if dispute is None:
                raise repo.NotFound("dispute", dispute_id)
            if dispute.state != OPEN:
                raise DisputeDecided(dispute)
            now = self.core.now()
            # compare-and-set on the state: two supervisors deciding at once, one wins
            done = await tx.session.execute(
                update(Dispute)
                .where(col(Dispute.id) == dispute_id, col(Dispute.state) == OPEN)
                .values(state=state, decided_by=user.id, decided_at=now, note=note)
                .execution_options(synchronize_session=False)
            )
            if getattr(done, "rowcount", 1) != 1:
                await tx.session.refresh(dispute)
                raise DisputeDecided(dispute)
            await tx.session.refresh(dispute)
            tx.emit(
                f"dispute.{state}",
                "ticket",
                dispute.ticket_id,
                actor=actor(user),
                dispute_id=dispute.id,
                kind=dispute.kind,
                merchant_id=dispute.merchant_id,
            )
            if overturn:
                # the ranking's record of this merchant changes
                self.core.fx.after_commit(tx, TouchMerchant(dispute.merchant_id))
        return dispute

    async def listing(
        self, *, state: str | None = OPEN, merchant_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Disputes for the supervisor, oldest first: what is disputed (the rating and who
        gave it: staff may see that), the merchant, the reason and any decision."""
        stmt = (
            select(Dispute, Ticket, Merchant)
            .join(Ticket, col(Ticket.id) == col(Dispute.ticket_id))
            .join(Merchant, col(Merchant.id) == col(Dispute.merchant_id))
            .order_by(col(Dispute.opened_at), col(Dispute.id))
            .limit(200)
        )
        if state is not None:
            stmt = stmt.where(col(Dispute.state) == state)
        if merchant_id is not None:
            stmt = stmt.where(col(Dispute.merchant_id) == merchant_id)
        async with self.core.store.read() as session:
            rows = (await session.execute(stmt)).all()
        return [
            {
                **dispute_public(d),
                "merchant_id": d.merchant_id,
                "merchant": m.name,
                "category": t.category_code,
                "rating": t.rating if d.kind == "rating" else None,
                "rated_by": t.rated_by if d.kind == "rating" else None,
            }
            for d, t, m in rows
        ]

    async def disputable(self, merchant_id: int, *, limit: int = 20) -> list[dict[str, Any]]:
        """A merchant's recent ratings and no-shows with their disputes, newest first:
        the ticket, category, answer and day; never who rated."""
        async with self.core.store.read() as session:
            rated = (
                await session.execute(
                    select(
                        col(Ticket.id),
                        col(Ticket.category_code),
                        col(Ticket.rating),
                        col(Ticket.rated_at),
                    )
                    .where(col(Ticket.merchant_id) == merchant_id, col(Ticket.rating).is_not(None))
                    .order_by(col(Ticket.rated_at).desc(), col(Ticket.id).desc())
                    .limit(limit)
                )
            ).all()
            missed = (
                await session.execute(
                    select(col(Offer.ticket_id), col(Ticket.category_code), col(Offer.decided_at))
                    .join(Ticket, col(Ticket.id) == col(Offer.ticket_id))
                    .where(
                        col(Offer.merchant_id) == merchant_id,
                        col(Offer.state) == om.OfferState.NO_SHOW,
                    )
                    .order_by(col(Offer.decided_at).desc(), col(Offer.id).desc())
                    .limit(limit)
                )
            ).all()
            names = {
                c.code: c
                for c in (
                    await session.execute(
                        select(ServiceCategory).where(
                            col(ServiceCategory.code).in_({r[1] for r in [*rated, *missed]})
                        )
                    )
                ).scalars()
            }
            disputes: dict[tuple[Any, str], Dispute] = {
                (d.ticket_id, d.kind): d
                for d in (
                    await session.execute(
                        select(Dispute).where(col(Dispute.merchant_id) == merchant_id)
                    )
                ).scalars()
            }
        items: list[dict[str, Any]] = []
        for kind, rows in (("rating", rated), ("no_show", missed)):
            for row in rows:
                tid, category, at = row[0], row[1], row[-1]
                d = disputes.get((tid, kind))
                items.append(
                    {
                        "ticket_id": tid,
                        "kind": kind,
                        "category": category,
                        "category_zh": names[category].name_zh if category in names else category,
                        "category_en": names[category].name_en if category in names else category,
                        "rating": row[2] if kind == "rating" else None,
                        # the day only: the hour would narrow down who answered the survey
                        "day": at.astimezone(LOCAL_TZ).date().isoformat() if at else None,
                        "dispute": dispute_public(d) if d is not None else None,
                    }
                )
        items.sort(key=lambda i: (i["day"] or "", i["ticket_id"]), reverse=True)
        return items[:limit]
