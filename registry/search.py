"""Resident search as operators think: part of a name, pinyin initials (`wxy` finds 王秀英),
full pinyin, the last four digits of a phone, part of an address, a grid.

Why an in-memory index: a substring match ("秀英", "巴王路12") cannot use a B-tree index,
and SQLite has no trigram index, so the database alone cannot answer in 50 ms on 100,000
residents on both dialects. The index holds only what search needs (name, pinyin keys,
address, grid, status, phones) as one joined string per field; `str.find` walks those at
C speed, and a hit's offset maps back to a resident by bisection. Phone suffixes and grids
are dictionaries.

The database stays the source of truth (DESIGN §12): the index is loaded from it and,
before every search, reads the registry revision (one row); when it moved, it reads the
residents with a newer revision (an indexed query), so writes by this process or another
one show up in the next search. Changed residents go to
a small overlay that is scored directly; the joined strings are rebuilt when it grows.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from rapidfuzz import fuzz, process
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from registry.models import (
    Grid,
    Merchant,
    RegistryRevision,
    Resident,
    ResidentPhone,
    ResidentStatus,
)
from registry.names import pinyin_keys
from registry.phones import mask

log = logging.getLogger(__name__)

SEP = "\x1f"
#: most candidates gathered for one term before scoring; the first ones come from the
#: strongest fields (phone, name, initials), so the cap only drops weak address hits
CANDIDATE_CAP = 1000
#: rebuild the joined strings once this many residents changed since the last build
OVERLAY_LIMIT = 2000


class Entry(NamedTuple):
    """What the index knows of one resident.

    A tuple of strings and ints only: the garbage collector stops tracking such tuples,
    so 100,000 of them do not slow every full collection (and the p99 with it).
    """

    id: int
    name: str
    pinyin: str
    initials: str
    address: str
    room: str
    grid_code: str
    status: str
    groups: tuple[str, ...]
    birth_year: int | None
    sex: str
    phones: tuple[str, ...]
    revision: int


@dataclass(slots=True)
class Hit:
    """A search result with its score and why it matched."""

    entry: Entry
    score: float
    matched: list[str] = field(default_factory=list)

    def public(self, grid_names: dict[str, str]) -> dict[str, Any]:
        """JSON shape for the console: enough to pick the right person, phones masked."""
        e = self.entry
        return {
            "id": e.id,
            "name": e.name,
            "sex": e.sex,
            "birth_year": e.birth_year,
            "address": e.address,
            "grid_code": e.grid_code,
            "grid_name": grid_names.get(e.grid_code, ""),
            "groups": list(e.groups),
            "status": e.status,
            "phones": [mask(p) for p in e.phones],
            "score": round(self.score, 1),
            "matched": self.matched,
        }


class _Column:
    """One field of every indexed resident as a single string, for substring scans."""

    def __init__(self, values: Sequence[str]) -> None:
        self.starts: list[int] = []
        parts: list[str] = []
        offset = 1
        for value in values:
            self.starts.append(offset)
            parts.append(value)
            offset += len(value) + 1
        self.blob = SEP + SEP.join(parts) + SEP

    def scan(self, needle: str, *, prefix: bool, cap: int) -> list[int]:
        """Positions whose value contains (or starts with) `needle`, at most `cap` of them."""
        if not needle or SEP in needle:
            return []
        target = SEP + needle if prefix else needle
        shift = 1 if prefix else 0
        out: list[int] = []
        find, blob, starts = self.blob.find, self.blob, self.starts
        last = -1
        at = find(target)
        while at != -1 and len(out) < cap:
            pos = bisect_right(starts, at + shift) - 1
            if pos != last:
                out.append(pos)
                last = pos
            # jump to the next value: one hit per resident is enough
            nxt = starts[pos + 1] if pos + 1 < len(starts) else len(blob)
            at = find(target, nxt - shift)
        return out


def _kind(term: str) -> str:
    if term.isdigit():
        return "digits"
    if term.isascii() and term.isalnum():
        return "latin"
    return "text"


class SearchIndex:
    """An in-memory index of residents, caught up with the database before each search."""

    def __init__(self) -> None:
        self.entries: dict[int, Entry] = {}
        self.grid_names: dict[str, str] = {}
        self._order: list[int] = []
        self._names = _Column([])
        self._initials = _Column([])
        self._pinyin = _Column([])
        self._addresses = _Column([])
        self._phones = _Column([])
        self._last4: dict[str, set[int]] = {}
        self._by_grid: dict[str, set[int]] = {}
        self._stale: set[int] = set()
        self._seen = 0
        self._grids_stale = False
        self._lock = asyncio.Lock()
        self.loaded = False

    def follow(self, event: dict[str, Any]) -> None:
        """A committed event from the bus: a grid's change makes the grid names be read
        again before the next search (residents follow the registry revision instead)."""
        if event["subject"] == "grid":
            self._grids_stale = True

    # -- loading --
    async def load(self, session: AsyncSession) -> None:
        """Read every resident from the database and build the index."""
        started = time.perf_counter()
        # read the revision first: changes racing the load are seen again next time
        self._seen = await self._revision(session)
        self.entries = {}
        self._last4 = {}
        self._by_grid = {}
        for entry in await self._fetch(session, ids=None):
            self._put(entry)
        await self._load_grid_names(session)
        self._rebuild()
        self.loaded = True
        log.info(
            "search index loaded: %d residents in %.0f ms",
            len(self.entries),
            (time.perf_counter() - started) * 1000,
        )

    async def _load_grid_names(self, session: AsyncSession) -> None:
        self._grids_stale = False  # first: a change racing this read is read again next time
        self.grid_names = {
            code: name
            for code, name in (await session.execute(select(col(Grid.code), col(Grid.name)))).all()
        }

    async def ensure_loaded(self, session: AsyncSession) -> None:
        """Load the index unless that was done already."""
        async with self._lock:
            if not self.loaded:
                await self.load(session)

    async def catch_up(self, session: AsyncSession) -> int:
        """Take in residents changed since the last look; returns how many changed."""
        if not self.loaded:
            await self.load(session)
            return len(self.entries)
        if self._grids_stale:
            await self._load_grid_names(session)
        current = await self._revision(session)
        if current <= self._seen:
            return 0
        stmt = select(col(Resident.id)).where(col(Resident.revision) > self._seen)
        found: list[Any] = list((await session.execute(stmt)).scalars())
        changed = [int(rid) for rid in found]
        self._seen = current
        if not changed:
            return 0
        if len(changed) > OVERLAY_LIMIT:  # a big import: reading everything is simpler
            await self.load(session)
            return len(changed)
        for entry in await self._fetch(session, ids=changed):
            self._put(entry)
            self._stale.add(entry.id)
        if len(self._stale) > OVERLAY_LIMIT:
            self._rebuild()
        return len(changed)

    async def _revision(self, session: AsyncSession) -> int:
        value = await session.scalar(
            select(col(RegistryRevision.value)).where(col(RegistryRevision.key) == "resident")
        )
        return int(value or 0)

    async def _fetch(self, session: AsyncSession, *, ids: list[int] | None) -> list[Entry]:
        stmt = select(
            col(Resident.id),
            col(Resident.name),
            col(Resident.name_pinyin),
            col(Resident.name_initials),
            col(Resident.address),
            col(Resident.room),
            col(Resident.grid_code),
            col(Resident.status),
            col(Resident.groups),
            col(Resident.birth_year),
            col(Resident.sex),
            col(Resident.revision),
        )
        phone_stmt = select(col(ResidentPhone.resident_id), col(ResidentPhone.number)).order_by(
            col(ResidentPhone.id)
        )
        if ids is not None:
            stmt = stmt.where(col(Resident.id).in_(ids))
            phone_stmt = phone_stmt.where(col(ResidentPhone.resident_id).in_(ids))
        phones: dict[int, list[str]] = {}
        phone_rows: list[Any] = list((await session.execute(phone_stmt)).all())
        for owner, number in phone_rows:
            phones.setdefault(owner, []).append(number)
        out = []
        resident_rows: list[Any] = list((await session.execute(stmt)).all())
        for row in resident_rows:
            rid, name, pinyin, initials, address, room, grid, status, groups, by, sex, upd = row
            if not pinyin and name:  # rows written around the ORM
                pinyin, initials = pinyin_keys(name)
            out.append(
                Entry(
                    id=int(rid),
                    name=name,
                    pinyin=pinyin,
                    initials=initials,
                    address=address,
                    room=room,
                    grid_code=grid,
                    status=str(getattr(status, "value", status)),
                    groups=tuple(groups or ()),
                    birth_year=by,
                    sex=sex,
                    phones=tuple(phones.get(rid, ())),
                    revision=upd,
                )
            )
        return out

    def _put(self, entry: Entry) -> None:
        old = self.entries.get(entry.id)
        if old is not None:
            for number in old.phones:
                self._last4.get(number[-4:], set()).discard(entry.id)
            self._by_grid.get(old.grid_code, set()).discard(entry.id)
        self.entries[entry.id] = entry
        for number in entry.phones:
            self._last4.setdefault(number[-4:], set()).add(entry.id)
        self._by_grid.setdefault(entry.grid_code, set()).add(entry.id)

    def _rebuild(self) -> None:
        self._order = sorted(self.entries)
        rows = [self.entries[i] for i in self._order]
        self._names = _Column([e.name for e in rows])
        self._initials = _Column([e.initials for e in rows])
        self._pinyin = _Column([e.pinyin for e in rows])
        self._addresses = _Column([e.address for e in rows])
        self._phones = _Column([" ".join(e.phones) for e in rows])
        self._stale = set()

    # -- searching --
    def search(self, query: str, *, limit: int = 20) -> list[Hit]:
        """Residents matching every word of the query, best first."""
        terms = [(t, _kind(t)) for t in query.lower().split()][:5]
        if not terms:
            return []
        pools = [self._candidates(t, kind) for t, kind in terms]
        driver = min(pools, key=len)
        entries, score = self.entries, self._score
        scored: list[tuple[float, int, list[str]]] = []
        for rid in driver:
            entry = entries[rid]
            total, matched = 0.0, []
            for term, kind in terms:
                points, why = score(term, kind, entry)
                if points <= 0:
                    break
                total += points
                matched.append(why)
            else:
                scored.append((total, rid, matched))
        if not scored:
            scored = [(points, rid, ["fuzzy"]) for rid, points in self._fuzzy(terms).items()]
        registered = ResidentStatus.REGISTERED.value
        # score, then registered before others, then the closest name, then the oldest record
        best = heapq.nsmallest(
            limit,
            scored,
            key=lambda s: (
                -s[0],
                entries[s[1]].status != registered,
                -fuzz.ratio(query, entries[s[1]].name),
                s[1],
            ),
        )
        return [Hit(entries[rid], total, matched) for total, rid, matched in best]

    def _candidates(self, term: str, kind: str) -> set[int]:
        """Ids that may match a term, strongest fields first, at most CANDIDATE_CAP."""
        found: list[int] = []

        def add(ids: Iterable[int]) -> None:
            for rid in ids:
                if len(found) >= CANDIDATE_CAP:
                    return
                found.append(rid)

        def scan(column: _Column, *, prefix: bool) -> None:
            room = CANDIDATE_CAP - len(found)
            if room > 0:
                add(self._order[p] for p in column.scan(term, prefix=prefix, cap=room))

        if kind == "digits":
            if len(term) == 4:
                add(self._last4.get(term, ()))
            scan(self._phones, prefix=False)
            scan(self._addresses, prefix=False)
        elif kind == "latin":
            add(rid for rid in self._grid_ids(term))
            scan(self._initials, prefix=True)
            scan(self._pinyin, prefix=True)
            if len(term) >= 3:
                scan(self._pinyin, prefix=False)
            scan(self._addresses, prefix=False)
        else:
            scan(self._names, prefix=True)
            scan(self._names, prefix=False)
            add(self._grid_ids(term))
            scan(self._addresses, prefix=False)
        out = set(found)
        # residents changed since the last rebuild are not (correctly) in the columns
        out.update(self._stale)
        return out

    def _grid_ids(self, term: str) -> list[int]:
        codes = {
            code
            for code, name in self.grid_names.items()
            if code.lower() == term or (len(term) >= 2 and term in name)
        }
        return [rid for code in sorted(codes) for rid in sorted(self._by_grid.get(code, ()))]

    def _score(self, term: str, kind: str, e: Entry) -> tuple[float, str]:
        """How well one term matches one resident (0: not at all) and on what."""
        if kind == "digits":
            if len(term) >= 4 and any(p.endswith(term) for p in e.phones):
                return 90.0, "phone"
            if len(term) >= 3 and any(term in p for p in e.phones):
                return 50.0, "phone"
            if term == e.room:
                return 40.0, "address"
            if term in e.address:
                return 30.0, "address"
            return 0.0, ""
        if kind == "latin":
            if term in (e.initials, e.pinyin):
                return 95.0, "pinyin"
            if e.pinyin.startswith(term):
                return 85.0, "pinyin"
            if e.initials.startswith(term):
                return 80.0, "pinyin"
            if e.grid_code.lower() == term:
                return 60.0, "grid"
            if len(term) >= 3 and term in e.pinyin:
                return 45.0, "pinyin"
            if term in e.address.lower():
                return 30.0, "address"
            return 0.0, ""
        if term == e.name:
            return 100.0, "name"
        if e.name.startswith(term):
            return 90.0, "name"
        if term in e.name:
            return 75.0, "name"
        if len(term) >= 2 and term in self.grid_names.get(e.grid_code, ""):
            return 50.0, "grid"
        if term in e.address:
            return 40.0, "address"
        return 0.0, ""

    def _fuzzy(self, terms: list[tuple[str, str]]) -> dict[int, float]:
        """A near miss on a Chinese name (王秀音 for 王秀英): the last resort.

        Candidates share a two-character piece with the query; rapidfuzz ranks them.
        """
        if len(terms) != 1 or terms[0][1] != "text" or len(terms[0][0]) < 2:
            return {}
        term = terms[0][0]
        pool: set[int] = set(self._stale)
        for i in range(len(term) - 1):
            pool.update(
                self._order[p]
                for p in self._names.scan(term[i : i + 2], prefix=False, cap=CANDIDATE_CAP)
            )
        ids = sorted(pool)
        names = [self.entries[rid].name for rid in ids]
        return {
            ids[i]: score * 0.6
            for _name, score, i in process.extract(
                term, names, scorer=fuzz.ratio, score_cutoff=60, limit=20
            )
        }


async def search_residents(
    index: SearchIndex, session: AsyncSession, *, query: str, limit: int = 20
) -> list[Hit]:
    """Catch the index up with the database, then search it."""
    async with index._lock:
        await index.catch_up(session)
    return index.search(query, limit=limit)


def _merchant_score(m: Merchant, term: str) -> int | None:
    """How well one term matches a merchant: 0 best, None no match."""
    full, initials = pinyin_keys(m.name)
    name = m.name.lower()
    if term == str(m.id) or (m.external_code and term == m.external_code.lower()):
        return 0
    if name.startswith(term):
        return 1
    if term in name:
        return 2
    if initials.startswith(term) or full.startswith(term):
        return 3
    if term in initials or term in full:
        return 4
    return None


def match_merchants(
    merchants: Iterable[Merchant], query: str, *, limit: int = 20
) -> list[Merchant]:
    """Merchants matching every term of the query by name, pinyin or initials (`dfyf` finds
    大方药房), id or external code; best first.

    Merchants are a few hundred at most, so a scan is fast enough and needs no index.
    """
    terms = [t for t in query.lower().split() if t]
    if not terms:
        return []
    scored: list[tuple[int, str, Merchant]] = []
    for m in merchants:
        scores = [_merchant_score(m, t) for t in terms]
        if all(s is not None for s in scores):
            scored.append((sum(s for s in scores if s is not None), m.name, m))
    scored.sort(key=lambda x: (x[0], x[1]))
    return [m for _, _, m in scored[:limit]]
