"""Matching: which merchants can serve a need, and in what order. Pure: data in, ranking out.

A candidate must have an active contract on the day, take the category, cover the
resident's grid (or have the resident inside its radius), be open at the time (for a
booked visit: open during some part of the booked window, `Need.until`) and be under
capacity. Every candidate, eligible or not, carries the reasons an operator sees, as codes
(`REASONS`) with their figures: the console puts them in words.

Ranking (lower score is better), each term shown to the operator as a reason:
  distance in km
  + 2.0 x load share (current accepted / in-service tickets over capacity)
  + 1.5 x (1 - acceptance rate)      (recent offers; an unknown merchant counts as 0.8)
  + 1.5 x (1 - satisfied share)      (recent ratings; unknown counts as 0.9)
  + 1.0 x recent no-shows (capped at 2)
  - 3.0 for the resident's preferred merchant for the category (usual_pharmacy / usual_merchant)

Fairness: the seed community "randomly allocates" among its merchants. Among the eligible
candidates whose score lies within `band` of the best (and who are not the resident's
preferred merchant, which keeps its place), the order is least-recently-offered first,
ties broken by a seeded shuffle, so comparable merchants take turns and a test with a seed
gets the same order every time.

`MatchIndex` keeps merchants in memory by category and grid (and by a coarse geographic
cell for merchants that serve a radius), so ranking looks at the few merchants that could
serve a place instead of every merchant of the county.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache

from eventlog.clock import LOCAL_TZ
from registry.models import ContractStatus, Merchant

#: weights of the score terms (see the module docstring)
W_LOAD, W_ACCEPT, W_RATING, W_NO_SHOW, PREFERRED_BONUS = 2.0, 1.5, 1.5, 1.0, 3.0
UNKNOWN_ACCEPTANCE, UNKNOWN_RATING = 0.8, 0.9
#: the codes of the reasons a candidate carries (`Candidate.why`), with their figures; the
#: domain says codes only and the console words each as `rank_<code>`
REASONS = (
    "contract_invalid",
    "in_grid",
    "in_radius",
    "out_of_area",
    "closed_until",  # opens
    "closed",
    "open_booked",  # a booked visit: open during the window
    "closed_booked",
    "full",  # load, capacity
    "load",  # load, capacity
    "distance",  # km
    "acceptance",  # pct
    "rating",  # pct
    "no_shows",  # n
    "usual_pharmacy",
    "usual_merchant",
    "fair_turn",
)
#: km assumed when a distance cannot be computed (no coordinates)
UNKNOWN_KM = 1.0
#: degrees per geographic cell of the index (about 1.1 km north-south)
CELL_DEG = 0.01


@dataclass(frozen=True, slots=True)
class Need:
    """What to match: a category at a place and a time."""

    category: str
    grid_code: str | None
    lat: float | None = None
    lon: float | None = None
    at: datetime | None = None
    preferred: frozenset[int] = frozenset()
    #: a booked visit: the end of the window that starts `at` (matching asks "open then")
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class MerchantStats:
    """What the service knows of a merchant's recent record (computed from the database)."""

    offers: int = 0
    accepted: int = 0
    rated: int = 0
    satisfied: int = 0
    no_shows: int = 0
    last_offered_at: datetime | None = None
    #: (rating, count) pairs of the rated visits, e.g. (("satisfied", 8), ("not_satisfied", 1))
    ratings: tuple[tuple[str, int], ...] = ()

    @property
    def acceptance(self) -> float | None:
        """Accepted over decided offers, None without history."""
        return self.accepted / self.offers if self.offers else None

    @property
    def rating(self) -> float | None:
        """Satisfied or basically satisfied over rated visits, None without ratings."""
        return self.satisfied / self.rated if self.rated else None


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
    preferred: bool = False
    opens_at: str | None = None
    #: the reasons as codes with their figures (`REASONS`); the console words them
    why: list[dict[str, object]] = field(default_factory=list)
    #: the merchant's price note for the category (`dispatch.prices.price_public`)
    price: dict[str, object] | None = None

    def note(self, code: str, **params: object) -> None:
        """Add a reason: its code (`rank_<code>` in the console's words) and figures."""
        assert code in REASONS, code
        self.why.append({"code": code, **params})

    @property
    def reason_codes(self) -> list[str]:
        """The reasons' codes, in the order they were noted."""
        return [str(w["code"]) for w in self.why]

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
            "preferred": self.preferred,
            "opens_at": self.opens_at,
            "why": self.why,
            "price": self.price,
        }


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    r = 6_371_000.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


@lru_cache(maxsize=4096)
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
    local = when if when.tzinfo is LOCAL_TZ else when.astimezone(LOCAL_TZ)
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


def open_during(merchant: Merchant, start: datetime, end: datetime) -> bool:
    """Whether a merchant is open during some part of [start, end) (a booked window on
    one local day): an opening span that overlaps it."""
    local, until = start.astimezone(LOCAL_TZ), end.astimezone(LOCAL_TZ)
    first = local.time()
    last = time.max if until.date() > local.date() else until.time()
    return any(_parse(s) < last and first < _parse(e) for s, e in _spans(merchant, local.date()))


def _usual_label(kind: str) -> str:
    return "usual_pharmacy" if kind == "pharmacy" else "usual_merchant"


def _candidate(
    need: Need,
    m: Merchant,
    *,
    load: int,
    stats: MerchantStats,
    when: datetime,
) -> Candidate:
    assert m.id is not None
    today = when.date()  # `when` is local time (see `rank`)
    c = Candidate(m.id, m.name, m.kind, eligible=True, load=load, capacity=m.capacity)
    contract_ok = m.contract_status == ContractStatus.ACTIVE and (
        (m.contract_start is None or m.contract_start <= today)
        and (m.contract_end is None or today <= m.contract_end)
    )
    if not contract_ok:
        c.eligible = False
        c.note("contract_invalid")
    if need.lat is not None and need.lon is not None and m.lat is not None and m.lon is not None:
        c.distance_m = distance_m(need.lat, need.lon, m.lat, m.lon)
    in_grid = need.grid_code is not None and need.grid_code in m.service_grids
    in_radius = c.distance_m is not None and m.radius_m > 0 and c.distance_m <= m.radius_m
    if in_grid:
        c.note("in_grid")
    elif in_radius:
        c.note("in_radius")
    else:
        c.eligible = False
        c.note("out_of_area")
    if need.until is not None:
        # a booked visit: open in the window, not now
        if open_during(m, when, need.until):
            c.note("open_booked")
        else:
            c.eligible = False
            c.note("closed_booked")
    elif not (found := open_at(m, when))[0]:
        opens = found[1]
        c.eligible = False
        c.opens_at = opens
        if opens:
            c.note("closed_until", opens=opens)
        else:
            c.note("closed")
    if load >= m.capacity:
        c.eligible = False
        c.note("full", load=load, capacity=m.capacity)
    else:
        c.note("load", load=load, capacity=m.capacity)
    if c.distance_m is not None:
        dist = f"{c.distance_m / 1000:.1f}"
        c.note("distance", km=dist)
    acceptance, rating = stats.acceptance, stats.rating
    if acceptance is not None:
        c.note("acceptance", pct=f"{acceptance:.0%}")
    if rating is not None:
        c.note("rating", pct=f"{rating:.0%}")
    if stats.no_shows:
        c.note("no_shows", n=stats.no_shows)
    c.preferred = m.id in need.preferred
    if c.preferred:
        c.note(_usual_label(m.kind))
    km = c.distance_m / 1000.0 if c.distance_m is not None else UNKNOWN_KM
    c.score = (
        km
        + W_LOAD * (load / max(1, m.capacity))
        + W_ACCEPT * (1.0 - (UNKNOWN_ACCEPTANCE if acceptance is None else acceptance))
        + W_RATING * (1.0 - (UNKNOWN_RATING if rating is None else rating))
        + W_NO_SHOW * min(2, stats.no_shows)
        - (PREFERRED_BONUS if c.preferred else 0.0)
    )
    return c


def rank(
    need: Need,
    merchants: Iterable[Merchant],
    *,
    loads: Mapping[int, int],
    now: datetime,
    stats: Mapping[int, MerchantStats] | None = None,
    seed: int | None = None,
    band: float = 0.5,
) -> list[Candidate]:
    """Every given merchant that takes the category, eligible ones first, best first."""
    when = (need.at or now).astimezone(LOCAL_TZ)
    stats = stats or {}
    empty = MerchantStats()
    out = [
        _candidate(
            need,
            m,
            load=loads.get(m.id, 0) if m.id is not None else 0,
            stats=stats.get(m.id, empty) if m.id is not None else empty,
            when=when,
        )
        for m in merchants
    ]
    out.sort(key=lambda c: (not c.eligible, c.score, c.merchant_id))
    eligible = [c for c in out if c.eligible]
    if not eligible:
        return out
    # fairness among comparable merchants: least recently offered first, then a seeded shuffle
    best = eligible[0].score
    head = [c for c in eligible if c.preferred]
    band_members = [c for c in eligible if not c.preferred and c.score <= best + band]
    rest = [c for c in eligible if not c.preferred and c.score > best + band]
    rng = random.Random(seed)
    rng.shuffle(band_members)
    floor = datetime.min.replace(tzinfo=now.tzinfo)

    def last(c: Candidate) -> datetime:
        return stats.get(c.merchant_id, empty).last_offered_at or floor

    band_members.sort(key=last)
    if len(band_members) > 1:
        for c in band_members:
            c.note("fair_turn")
    return head + band_members + rest + [c for c in out if not c.eligible]


def _roughly_within(lat: float, lon: float, geo: tuple[float, float, float]) -> bool:
    """A fast flat-earth check (10% slack) that a merchant's radius may reach the point."""
    mlat, mlon, radius = geo
    dy = (mlat - lat) * 111_000.0
    dx = (mlon - lon) * 111_000.0 * math.cos(math.radians(lat))
    reach = radius * 1.1
    return dx * dx + dy * dy <= reach * reach


class MatchIndex:
    """Merchants in memory by category, then by served grid and by geographic cell."""

    def __init__(self, merchants: Iterable[tuple[Merchant, Iterable[str]]] = ()) -> None:
        self.merchants: dict[int, Merchant] = {}
        self._categories: dict[int, frozenset[str]] = {}
        self._by_grid: dict[tuple[str, str], list[int]] = defaultdict(list)
        self._by_cell: dict[tuple[str, int, int], list[int]] = defaultdict(list)
        self._by_category: dict[str, list[int]] = defaultdict(list)
        self._max_radius_m = 0
        #: plain (lat, lon, radius) of radius merchants: ORM attribute reads are slow
        self._geo: dict[int, tuple[float, float, float]] = {}
        for merchant, categories in merchants:
            self.add(merchant, categories)

    def __len__(self) -> int:
        return len(self.merchants)

    @staticmethod
    def _cell(lat: float, lon: float) -> tuple[int, int]:
        return math.floor(lat / CELL_DEG), math.floor(lon / CELL_DEG)

    def add(self, merchant: Merchant, categories: Iterable[str]) -> None:
        """Index one merchant (replacing an older copy of it)."""
        assert merchant.id is not None
        if merchant.id in self.merchants:
            self.remove(merchant.id)
        cats = frozenset(categories)
        self.merchants[merchant.id] = merchant
        self._categories[merchant.id] = cats
        for cat in cats:
            self._by_category[cat].append(merchant.id)
            for grid in merchant.service_grids:
                self._by_grid[(cat, grid)].append(merchant.id)
            if merchant.radius_m > 0 and merchant.lat is not None and merchant.lon is not None:
                self._by_cell[(cat, *self._cell(merchant.lat, merchant.lon))].append(merchant.id)
                self._max_radius_m = max(self._max_radius_m, merchant.radius_m)
                self._geo[merchant.id] = (merchant.lat, merchant.lon, float(merchant.radius_m))

    def remove(self, merchant_id: int) -> None:
        """Forget a merchant."""
        self.merchants.pop(merchant_id, None)
        self._categories.pop(merchant_id, None)
        self._geo.pop(merchant_id, None)
        for index in (self._by_grid, self._by_cell, self._by_category):
            for ids in index.values():
                if merchant_id in ids:
                    ids.remove(merchant_id)

    def for_category(self, category: str) -> list[Merchant]:
        """Every merchant that takes a category."""
        return [self.merchants[i] for i in self._by_category.get(category, [])]

    def near(self, need: Need) -> list[Merchant]:
        """Merchants of the need's category that serve its grid or may reach it by radius."""
        ids: dict[int, None] = {}
        if need.grid_code is not None:
            ids.update(dict.fromkeys(self._by_grid.get((need.category, need.grid_code), [])))
        if need.lat is not None and need.lon is not None:
            # radius merchants within a few cells; `rank` checks the exact distance
            clat, clon = self._cell(need.lat, need.lon)
            # a cell is CELL_DEG tall and at least cos(lat) x CELL_DEG wide
            cell_m = CELL_DEG * 111_000 * max(0.1, math.cos(math.radians(need.lat)))
            reach = max(1, math.ceil(self._max_radius_m / cell_m))
            for dlat in range(-reach, reach + 1):
                for dlon in range(-reach, reach + 1):
                    key = (need.category, clat + dlat, clon + dlon)
                    for i in self._by_cell.get(key, []):
                        if i not in ids and _roughly_within(need.lat, need.lon, self._geo[i]):
                            ids[i] = None
        for preferred in need.preferred:
            if preferred in self.merchants and need.category in self._categories[preferred]:
                ids[preferred] = None
        return [self.merchants[i] for i in ids]
