"""Notices to a grid (outbound campaigns) on the memory PBX, SQLite and PostgreSQL: every
registered resident of the grid is called at the outbound engine's pace (two channels
here: the next call starts as one ends), the notice read with its question; 1 and 2 are
counted, one nobody answers is tried again, and the progress and the recipients' CSV say
where it stands. Never in the quiet hours."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from dispatch.config import DispatchConfig
from eventlog.clock import LOCAL_TZ
from ivr.prompts import render
from providers.base import OriginateFailure
from tests.conftest import Harness, eventually, started_harness
from tests.operator_console.test_whole_path import press_when_asked

PILOT = [6, 12, 18, 24, 30]  # moved into a grid of their own by `pilot_grid`
NOTICE = {
    "title": "健康讲座",
    "text": "本周六上午九点，社区活动室有健康讲座，请带好医保卡。",
    "question": "您参加吗？",
    "grid_codes": ["T1"],
    "tries": 2,
    "retry_s": 60,
}


#: the harness's dispatch config on a trunk with two outbound channels
TWO_CHANNELS = DispatchConfig(
    match_seed=7,
    survey_delay_s=60,
    offer_timeout_s=90,
    parallel_offers_urgent=1,
    outbound_channels=2,
)


@pytest.fixture
async def paced(tmp_path: Path, seeded_db_url: str) -> AsyncIterator[Harness]:
    """The app with two outbound channels: two notice calls at a time."""
    async with started_harness(tmp_path, seeded_db_url, config=TWO_CHANNELS) as h:
        yield h


async def pilot_grid(h: Harness) -> None:
    """A grid "T1" with five of the demo's residents in it (the admin's own doors)."""
    await h.call(
        "POST", "/grids", as_user="demo", json={"code": "T1", "name": "试点网格"}, expect=201
    )
    for rid in PILOT:
        card = await h.call("GET", f"/residents/{rid}?reason=edit", as_user="demo")
        await h.call(
            "PATCH",
            f"/residents/{rid}",
            as_user="demo",
            json={"grid_code": "T1", "version": str(card["revision"])},
        )


async def ringing(h: Harness, seen: set[str], n: int) -> list[dict[str, Any]]:
    """Exactly the next `n` campaign calls ringing (and no more)."""

    async def check() -> Any:
        out = [
            c
            for c in h.pbx.snapshot()
            if c["direction"] == "out" and c["state"] == "ringing" and c["ref"] not in seen
        ]
        return out if len(out) >= n else None

    found: list[dict[str, Any]] = await eventually(check)
    assert len(found) == n, found
    seen.update(c["ref"] for c in found)
    return found


async def retries(h: Harness, cid: int, n: int) -> None:
    """Wait until the campaign has scheduled `n` retries in all."""

    async def check() -> bool:
        events = await h.services.store.events_for("campaign", cid)
        return sum(e["name"] == "campaign.retry" for e in events) >= n

    await eventually(check)


async def progress(h: Harness, cid: int, **want: Any) -> dict[str, Any]:
    async def check() -> Any:
        p = await h.call("GET", f"/campaigns/{cid}", as_user="supervisor")
        return p if all(p[k] == v for k, v in want.items()) else None

    result: dict[str, Any] = await eventually(check)
    return result


async def test_given_a_notice_to_a_grid_then_paced_answered_retried_and_counted(
    paced: Harness,
) -> None:
    h = paced
    await pilot_grid(h)
    made = await h.call("POST", "/campaigns", as_user="supervisor", json=NOTICE, expect=201)
    assert (made["recipients"], made["state"], made["pending"]) == (5, "running", 5)
    cid = made["id"]
    seen: set[str] = set()
    first, second = await ringing(h, seen, 2)  # the pace: two channels
    await progress(h, cid, called=2)  # the others wait in the outbound engine's queue
    await h.pbx.answer(first["ref"])
    await press_when_asked(h, first["ref"], "1")  # yes
    heard = h.pbx.calls[first["ref"]]
    assert render("notice.body", heard.lang, {"notice": NOTICE["text"]}) in heard.transcript
    assert any(NOTICE["question"] in line for line in heard.transcript)
    [third] = await ringing(h, seen, 1)  # a channel is free: the next one at once
    await h.pbx.reject(second["ref"], OriginateFailure.BUSY)  # tried again later
    await retries(h, cid, 1)
    [fourth] = await ringing(h, seen, 1)
    await progress(h, cid, reached=1, pending=4)

    await h.pbx.answer(third["ref"])
    await press_when_asked(h, third["ref"], "2")  # no
    [fifth] = await ringing(h, seen, 1)
    await h.pbx.answer(fourth["ref"])
    await press_when_asked(h, fourth["ref"], "9")  # again: the notice once more
    await press_when_asked(h, fourth["ref"], "1")
    await progress(h, cid, reached=3)
    await h.pbx.reject(fifth["ref"], OriginateFailure.NO_ANSWER)
    await retries(h, cid, 2)
    assert not [c for c in h.pbx.snapshot() if c["state"] == "ringing" and c["ref"] not in seen]

    await h.timers.advance(60)  # a minute on: both retries fall due
    retried = sorted(await ringing(h, seen, 2), key=lambda c: c["ref"])
    assert [c["ref"] for c in retried] == sorted([second["ref"] + ".t2", fifth["ref"] + ".t2"])
    assert {c["number"] for c in retried} == {second["number"], fifth["number"]}
    for call in retried:
        await h.pbx.reject(call["ref"], OriginateFailure.NO_ANSWER)
    done = await progress(h, cid, state="done")
    assert (done["reached"], done["unreached"], done["pending"]) == (3, 2, 0)
    assert done["answers"] == {"yes": 2, "no": 1}
    assert done["outcomes"]["failed"] == 2 and done["done_share"] == 100.0
    # nobody is called again
    await h.timers.advance(3600)
    assert not [c for c in h.pbx.snapshot() if c["state"] == "ringing" and c["ref"] not in seen]

    # the recipients' CSV: one line each, no number
    resp = await h.client.get(
        f"/api/v1/campaigns/{cid}/recipients.csv",
        headers={"Authorization": f"Bearer {h.tokens['supervisor']}"},
    )
    assert resp.status == 200 and resp.content_type == "text/csv"
    text = await resp.text()
    lines = list(csv.DictReader(io.StringIO(text)))
    assert sorted(int(x["resident_id"]) for x in lines) == PILOT
    assert sorted(x["answer"] for x in lines) == ["", "", "no", "yes", "yes"]
    assert "+86" not in text


async def test_given_the_quiet_hours_then_no_notice_rings_until_the_morning(
    paced: Harness,
) -> None:
    h = paced
    await pilot_grid(h)
    h.clock.set(datetime(2026, 11, 21, 21, 30, tzinfo=LOCAL_TZ))
    made = await h.call("POST", "/campaigns", as_user="supervisor", json=NOTICE, expect=201)
    await h.timers.advance(0)
    assert not [c for c in h.pbx.snapshot() if c["direction"] == "out"]
    await h.timers.advance(12 * 3600)  # the next morning
    await ringing(h, set(), 2)
    await progress(h, made["id"], called=2)


async def test_given_a_running_notice_when_cancelled_then_nobody_else_is_called(
    paced: Harness,
) -> None:
    h = paced
    await pilot_grid(h)
    made = await h.call("POST", "/campaigns", as_user="supervisor", json=NOTICE, expect=201)
    await h.timers.advance(0)
    await ringing(h, set(), 2)
    cancelled = await h.call("POST", f"/campaigns/{made['id']}/cancel", as_user="supervisor")
    assert cancelled["state"] == "cancelled" and cancelled["outcomes"]["cancelled"] == 3
    await h.timers.advance(30)
    assert len([c for c in h.pbx.snapshot() if c["direction"] == "out"]) == 2
    await h.call("POST", f"/campaigns/{made['id']}/cancel", as_user="supervisor", expect=409)


async def test_given_the_doors_then_roles_and_bad_input_are_refused(harness: Harness) -> None:
    h = harness
    assert (await h.client.get("/api/v1/campaigns")).status == 401
    await h.call("POST", "/campaigns", json=NOTICE, expect=403)  # an operator may not
    for bad in [
        {**NOTICE, "text": ""},
        {**NOTICE, "text": "长" * 501},
        {**NOTICE, "batch": 5},  # the pace is the outbound engine's, per backend
        {**NOTICE, "groups": ["VIP"]},
        {**NOTICE, "grid_codes": ["NOPE"]},
        {**NOTICE, "extra": 1},
    ]:
        await h.call("POST", "/campaigns", as_user="supervisor", json=bad, expect=422)
    await h.call("GET", "/campaigns/9999", as_user="supervisor", expect=404)
    await h.call("GET", "/campaigns/abc", as_user="supervisor", expect=422)
    listed = await h.call("GET", "/campaigns", as_user="supervisor")
    assert listed == []


async def test_given_a_resident_on_the_hotline_then_the_notice_waits_until_they_hang_up(
    harness: Harness,
) -> None:
    """A resident on the phone with us now is called for the notice once they have hung
    up (within a minute), and the wait is not a spent try."""
    h = harness
    await pilot_grid(h)
    caller = await h.pbx.dial_in(f"+8623540000{PILOT[0]:02d}")  # on the phone with us
    await eventually(lambda: _in_ivr(h, caller))
    made = await h.call("POST", "/campaigns", as_user="supervisor", json=NOTICE, expect=201)
    seen: set[str] = set()
    rung = await ringing(h, seen, 4)  # the other four
    assert all(c["number"] != f"+8623540000{PILOT[0]:02d}" for c in rung)
    await h.timers.advance(61)
    assert not [c for c in h.pbx.snapshot() if c["state"] == "ringing" and c["ref"] not in seen]
    await h.pbx.party_hangup(caller)
    await h.timers.advance(61)  # they hung up: their turn, as a first try
    [late] = await ringing(h, seen, 1)
    assert late["ref"].count(".") == 0
    await progress(h, made["id"], called=5)


async def _in_ivr(h: Harness, ref: str) -> bool:
    return any(c["ref"] == ref and c["state"] != "ringing" for c in h.pbx.snapshot())
