"""Matching: which merchants can serve a need, and in what order. Pure: data in, ranking out.

A candidate must have an active contract on the day, take the category, cover the
resident's grid (or have the resident inside its radius), be open at the time and be
under capacity. Every candidate, eligible or not, carries the reasons an operator sees.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from dispatch.clock import LOCAL_TZ
from registry.models import ContractStatus, Merchant


@dataclass(frozen=True, slots=True)
class Need:
    """What to match: a category at a place and a time."""

    category: str
    grid_code: str | None
    lat: float | None = None
    lon: float | None = None
    at: datetime | None = None
    preferred: frozenset[int] = frozenset()


@dataclass(slots=True)
class Candidate:
    """A merchant as the operator sees it in the ranking."""

    merchant_id: int
    name: str
    kind: str
    eligible: bool
    score: float = 0.0
    distance_m: float | None = None
    load: int = 0
    capacity: int = 0
    reasons: list[str] = field(default_factory=list)

    def public(self) -> dict[str, object]:
        """JSON shape for the API."""
        return {
            "merchant_id": self.merchant_id,
            "name": self.name,
            "kind": self.kind,
            "eligible": self.eligible,
            "score": round(self.score, 3),
            "distance_m": None if self.distance_m is None else round(self.distance_m),
            "load": self.load,
            "capacity": self.capacity,
            "reasons": self.reasons,
        }


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    r = 6_371_000.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


def _parse(hhmm: str) -> time:
    if hhmm == "24:00":
        return time.max
    hour, minute = hhmm.split(":")
    return time(int(hour), int(minute))


def _spans(merchant: Merchant, day: date) -> list[list[str]]:
    """A day's opening spans: a holiday exception for the date wins over the weekday."""
    holidays = merchant.holidays or {}
    if day.isoformat() in holidays:
        return list(holidays[day.isoformat()] or [])
    return list(merchant.hours.get(str(day.weekday()), []))


def open_at(merchant: Merchant, when: datetime) -> tuple[bool, str | None]:
    """Whether a merchant is open at `when`, and if not, when it next opens (local time)."""
    local = when.astimezone(LOCAL_TZ)
    now = local.time()
    for start, end in _spans(merchant, local.date()):
        if _parse(start) <= now < _parse(end):
            return True, None
    for offset in range(8):
        day = local.date() + timedelta(days=offset)
        for start, _end in sorted(_spans(merchant, day)):
            if offset > 0 or _parse(start) > now:
                return False, start if offset == 0 else f"{start}(+{offset})"
    return False, None


def rank(
    need: Need,
    merchants: Iterable[Merchant],
    *,
    loads: Mapping[int, int],
    now: datetime,
    seed: int | None = None,
) -> list[Candidate]:
    """Every merchant that takes the category, eligible ones first, best first."""
    when = need.at or now
    today = when.astimezone(LOCAL_TZ).date()
    rng = random.Random(seed)
    out: list[Candidate] = []
    for m in merchants:
        assert m.id is not None
        load = loads.get(m.id, 0)
        c = Candidate(m.id, m.name, m.kind, eligible=True, load=load, capacity=m.capacity)
        contract_ok = m.contract_status == ContractStatus.ACTIVE and (
            (m.contract_start is None or m.contract_start <= today)
            and (m.contract_end is None or today <= m.contract_end)
        )
        if not contract_ok:
            c.eligible = False
            c.reasons.append("合同无效")
        if (
            need.lat is not None
            and need.lon is not None
            and m.lat is not None
            and m.lon is not None
        ):
            c.distance_m = distance_m(need.lat, need.lon, m.lat, m.lon)
        in_grid = need.grid_code is not None and need.grid_code in m.service_grids
        in_radius = c.distance_m is not None and m.radius_m > 0 and c.distance_m <= m.radius_m
        if in_grid:
            c.reasons.append("服务本网格")
        elif in_radius:
            c.reasons.append("在服务半径内")
        else:
            c.eligible = False
            c.reasons.append("不在服务范围")
        is_open, opens = open_at(m, when)
        if not is_open:
            c.eligible = False
            c.reasons.append(f"休息中，{opens}开门" if opens else "不营业")
        if load >= m.capacity:
            c.eligible = False
            c.reasons.append(f"已满({load}/{m.capacity})")
        else:
            c.reasons.append(f"负载 {load}/{m.capacity}")
        if c.distance_m is not None:
            c.reasons.append(f"距离 {c.distance_m / 1000:.1f} 公里")
        preferred = m.id in need.preferred
        if preferred:
            c.reasons.append("常用商家")
        # Lower is better: distance in km, load share, a bonus for the usual merchant, and
        # a small random jitter so comparable merchants share the orders fairly.
        km = (c.distance_m or 1000.0) / 1000.0
        c.score = km + 2.0 * (load / max(1, m.capacity)) - (3.0 if preferred else 0.0)
        c.score += rng.uniform(0.0, 0.5)
        out.append(c)
    out.sort(key=lambda c: (not c.eligible, c.score))
    return out
