"""A merchant's price note for a category, as the desk shows it and the calls say it.

The note is the registry's `MerchantService` row (who pays, the resident's share in whole
yuan, a short text). The calls say who pays and the amount only, never the free text
(a short, slow sentence an elder can follow); the flows branch on `price`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from registry.models import MerchantService, PriceKind


def price_public(service: MerchantService | None) -> dict[str, Any] | None:
    """The note on the API (None when the merchant stated nothing)."""
    if service is None or (
        service.price_kind is None and service.price_yuan is None and not service.price_note
    ):
        return None
    return {
        "kind": service.price_kind.value if service.price_kind else None,
        "yuan": service.price_yuan,
        "note": service.price_note,
    }


def price_context(service: MerchantService | None) -> dict[str, Any]:
    """The flow variables: `price` names the sentence said (empty: none), `price_yuan`
    its amount. A free service has no amount to say."""
    if service is None or service.price_kind is None:
        return {"price": "", "price_yuan": ""}
    kind = service.price_kind
    with_amount = service.price_yuan is not None and kind != PriceKind.FREE
    return {
        "price": f"{kind.value}_yuan" if with_amount else kind.value,
        "price_yuan": service.price_yuan if with_amount else "",
    }


async def spoken_price(session: Any, merchant_id: int, category: str) -> dict[str, Any]:
    """`price_context` of one merchant's note for a category (the calls' context)."""
    return price_context(await session.get(MerchantService, (merchant_id, category)))


async def price_notes(
    session: Any, category: str, merchant_ids: Iterable[int]
) -> dict[int, MerchantService]:
    """The price notes of some merchants for one category, by merchant id."""
    ids = list(merchant_ids)
    if not ids:
        return {}
    rows = await session.execute(
        select(MerchantService).where(
            col(MerchantService.category_code) == category,
            col(MerchantService.merchant_id).in_(ids),
        )
    )
    return {s.merchant_id: s for s in rows.scalars()}
