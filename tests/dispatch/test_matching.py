"""Ranking: reasons the operator sees, the usual merchant, record-based scores, fairness."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from dispatch.matching import MatchIndex, MerchantStats, Need, rank
from registry.models import Merchant

NOON = datetime(2026, 11, 21, 4, 0, tzinfo=UTC)  # 12:00 Shanghai, a Saturday
ALL_DAY = {str(d): [["08:00", "22:00"]] for d in range(7)}


def merchant(mid: int, **kw: object) -> Merchant:
    values: dict[str, object] = {
        "id": mid,
        "name": f"药房{mid}",
        "kind": "pharmacy",
        "grid_code": "G1",
        "lat": 30.0,
        "lon": 108.0,
        "service_grids": ["G1"],
        "radius_m": 0,
        "capacity": 3,
        "hours": ALL_DAY,
        "phones": ["+8613900000000"],
        "contract_start": date(2026, 1, 1),
    }
    values.update(kw)
    return Merchant(**values)  # type: ignore[arg-type]


NEED = Need("medicine", "G1", lat=30.0, lon=108.0)


def test_given_closed_full_and_far_merchants_when_ranking_then_each_says_why() -> None:
    ms = [
        merchant(1, hours={str(d): [["08:00", "09:00"]] for d in range(7)}),
        merchant(2, capacity=1),
        merchant(3, service_grids=["G9"]),
        merchant(4),
    ]
    out = rank(NEED, ms, loads={2: 1}, now=NOON, seed=1)
    by_id = {c.merchant_id: c for c in out}
    assert [c.merchant_id for c in out if c.eligible] == [4]
    assert {"code": "closed_until", "opens": "08:00(+1)"} in by_id[1].why
    assert by_id[1].opens_at == "08:00(+1)"
    assert {"code": "full", "load": 1, "capacity": 1} in by_id[2].why
    assert "out_of_area" in by_id[3].reason_codes
    assert "in_grid" in by_id[4].reason_codes
    assert {"code": "load", "load": 0, "capacity": 3} in by_id[4].why


def test_given_a_usual_pharmacy_when_ranking_then_it_comes_first_and_says_so() -> None:
    ms = [merchant(1), merchant(2, lat=30.05)]  # 2 is 5.5 km away
    need = Need("medicine", "G1", lat=30.0, lon=108.0, preferred=frozenset({2}))
    out = rank(need, ms, loads={}, now=NOON, seed=1)
    assert out[0].merchant_id == 2 and "usual_pharmacy" in out[0].reason_codes and out[0].preferred


def test_given_a_poor_record_when_ranking_then_the_merchant_drops_with_its_reasons() -> None:
    ms = [merchant(1), merchant(2)]
    stats = {
        1: MerchantStats(offers=10, accepted=2, rated=10, satisfied=5, no_shows=1),
        2: MerchantStats(offers=10, accepted=9, rated=10, satisfied=10),
    }
    out = rank(NEED, ms, loads={}, now=NOON, stats=stats, seed=1, band=0.1)
    assert [c.merchant_id for c in out] == [2, 1]
    assert {"code": "acceptance", "pct": "20%"} in out[1].why
    assert {"code": "rating", "pct": "50%"} in out[1].why
    assert {"code": "no_shows", "n": 1} in out[1].why


def test_given_comparable_merchants_when_ranking_then_least_recently_offered_goes_first() -> None:
    ms = [merchant(i) for i in range(1, 5)]
    stats = {
        1: MerchantStats(last_offered_at=NOON - timedelta(minutes=5)),
        2: MerchantStats(last_offered_at=NOON - timedelta(days=2)),
        3: MerchantStats(last_offered_at=NOON - timedelta(hours=1)),
    }
    out = rank(NEED, ms, loads={}, now=NOON, stats=stats, seed=3)
    assert [c.merchant_id for c in out] == [4, 2, 3, 1]  # never offered first
    assert all("fair_turn" in c.reason_codes for c in out)


def test_given_a_seed_when_ranking_twice_then_the_order_is_the_same() -> None:
    ms = [merchant(i) for i in range(1, 9)]
    first = [c.merchant_id for c in rank(NEED, ms, loads={}, now=NOON, seed=42)]
    again = [c.merchant_id for c in rank(NEED, ms, loads={}, now=NOON, seed=42)]
    other = [c.merchant_id for c in rank(NEED, ms, loads={}, now=NOON, seed=43)]
    assert first == again and sorted(first) == list(range(1, 9))
    assert first != other  # the seed matters: comparable merchants share the orders


def test_given_an_index_when_asking_near_a_need_then_only_grid_and_radius_merchants_come() -> None:
    index = MatchIndex(
        [
            (merchant(1), ["medicine"]),
            (merchant(2, service_grids=["G2"], radius_m=2000, lat=30.01), ["medicine"]),
            (merchant(3, service_grids=["G2"], radius_m=2000, lat=31.0), ["medicine"]),
            (merchant(4), ["groceries"]),
        ]
    )
    assert sorted(m.id for m in index.near(NEED)) == [1, 2]  # type: ignore[type-var]
    index.remove(1)
    assert [m.id for m in index.near(NEED)] == [2]
    assert len(index) == 3 and len(index.for_category("medicine")) == 2
