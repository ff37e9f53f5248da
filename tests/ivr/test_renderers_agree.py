"""The three renderers agree: every built-in flow, fed the same keys on the memory PBX,
Asterisk (FastAGI) and Twilio (TwiML webhooks), says the same prompts and ends the same way.

Key sequences come from the flow data (`tests.ivr.walk.cover`: every choice, the repeat
key, a wrong key and no input at every menu, retries run out, then the shortest way to the
end), so a new flow needs one line in `CASES`, not a new test. The pure engine is the
reference each backend is compared with.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

import pytest
import pytest_asyncio

from ivr.flow import input_bound
from ivr.flows import BUILTIN
from tests.ivr.renderers import (
    Renderer,
    backends,
    differences,
    expected,
    run_all,
    variables_of,
)
from tests.ivr.walk import cover, drive, walk

TODAY = date(2025, 3, 12)
RESIDENT: dict[str, Any] = {
    "name": "王秀英",
    "sex": "F",
    "birth_year": 1948,
    "today": TODAY,
    "last_category": "medicine",
}
ORDER: dict[str, Any] = {
    "category": "送药",
    "description": "降压药两盒",
    "address": "白公路 3 号楼 2 单元",
    "deadline": datetime(2025, 3, 12, 7, 30, tzinfo=UTC),
    "code_word": "4827",
}
OFFERING = {"order_status": "offering", "category": "送药", "order": "7"}
ACCEPTED = {
    "order_status": "accepted",
    "category": "送药",
    "merchant": "和平药房",
    "deadline": datetime(2025, 3, 12, 2, 0, tzinfo=UTC),
    "order": "7",
}
IN_SERVICE = {"order_status": "in_service", "category": "送药", "merchant": "和平药房"}
#: an order waiting for the resident's consent to pay (dispatch.status)
CONSENT = {"order_status": "awaiting_consent", "category": "维修", "order": "8"}
#: Per-call sound files for Asterisk (prompts with an order's details in them).
RECORDED = {"offer.intro": "yijing/dyn/t42/offer.intro", "offer.accepted": "yijing/dyn/t42/ok"}
OUTAGE: dict[str, Any] = {"incident": "water", "incident_grid": "第一网格"}
RESPONDER: dict[str, Any] = {
    "registered": "no",
    "address": "白公路 3 号楼 2 单元",
    "number": "+862354000001",
    "reason": "key",
}
VISIT: dict[str, Any] = {"category": "水管维修", "address": "白公路 3 号楼 2 单元"}


@dataclass(frozen=True)
class Case:
    """A flow with the context dispatch would give it, in one language."""

    flow: str
    context: Mapping[str, Any] = field(default_factory=dict)
    lang: str = "zh-CN"
    label: str = ""

    @property
    def id(self) -> str:
        return "-".join(part for part in (self.flow, self.label, self.lang) if part)


#: a booked window: Thursday 13 March 2025, 09:00 to 11:00 (dispatch.booking_slot)
SLOT: dict[str, Any] = {"slot_weekday": "4", "slot_day": date(2025, 3, 13),
                        "slot_start": time(9, 0), "slot_end": time(11, 0)}  # fmt: skip

NOTICE = {"notice": "本周六上午九点，社区活动室有健康讲座。", "question": "您参加吗？"}

CASES = [
    Case("hotline", RESIDENT),
    Case("hotline", {**RESIDENT, "last_category": ""}, label="no_last"),
    # daily care calls: key 7 (away for some days, or back home)
    Case("hotline", {**RESIDENT, "wellbeing": "care"}, label="care"),
    Case("hotline", {**RESIDENT, "wellbeing": "away"}, lang="en", label="away"),
    Case("hotline_no_menu", RESIDENT),
    Case("hotline_unknown"),
    Case("status", {**RESIDENT, **OFFERING}, label="offering"),
    Case("status", {**RESIDENT, **ACCEPTED}, label="accepted"),
    Case("status", {**RESIDENT, **IN_SERVICE}, label="in_service"),
    Case("status", RESIDENT, lang="zh", label="none"),
    Case("status", {**RESIDENT, **CONSENT}, label="consent"),
    Case("status", {**RESIDENT, **CONSENT, "category": "home repair"}, lang="en", label="consent"),
    Case("status_cancelled", {"cancelled": "yes", "category": "送药"}),
    Case("status_cancelled", {"cancelled": "no", "category": "送药"}, label="failed"),
    Case("masked_wait", {}),
    Case("masked_unreached", {"side": "resident"}),
    Case("masked_unreached", {"side": "merchant"}, lang="en", label="merchant"),
    Case("merchant_offer", ORDER),
    Case("merchant_offer", ORDER, lang="en"),
    Case("merchant_offer", {**ORDER, "prompt_audio": RECORDED}, label="prompt_audio"),
    Case("merchant_accepted", ORDER),
    Case("merchant_accepted", {**ORDER, "prompt_audio": RECORDED}, label="prompt_audio"),
    Case("merchant_taken", {}),
    # the resident told who accepted their order (dispatch.notify)
    Case("resident_told", {**ORDER, "merchant": "和平药房", "today": TODAY}),
    Case("resident_told", {**ORDER, "merchant": "Heping Pharmacy", "today": TODAY}, lang="en"),
    # a family contact told what they chose (dispatch.family)
    *(
        Case(
            "family_told",
            {
                **ORDER,
                "about": about,
                "resident": "王秀英",
                "merchant": "和平药房",
                "at": "2025-03-12T10:05:00+08:00",
                "today": TODAY,
            },
            lang,
            about,
        )
        for about in ("accepted", "arrived", "completed", "late", "no_show", "emergency")
        for lang in ("zh-CN", "en")
    ),
    # who pays (dispatch.prices): each sentence the offer call and the resident's call say
    *(
        Case(flow, {**ORDER, "merchant": "和平药房", "price": price, "price_yuan": 5}, lang, price)
        for flow in ("merchant_offer", "resident_told")
        for price in ("subsidised", "subsidised_yuan", "self_paid", "self_paid_yuan", "free")
        for lang in ("zh-CN", "en")
    ),
    Case("merchant_taken", {}, lang="en"),
    Case("merchant_arrival", VISIT),
    Case("merchant_completion", VISIT),
    Case("survey", {"category": "送水"}),
    # the survey call passes the resident's language as stored
    Case("survey", {"category": "water delivery"}, lang="en-GB"),
    Case("wellbeing", RESIDENT),
    Case("wellbeing", RESIDENT, lang="en"),
    Case("wellbeing_contact", {**RESIDENT, "address": "幸福路 12 号 3 单元 302", "minutes": 30}),
    Case("wellbeing_contact", {**RESIDENT, "address": "12 Xingfu Rd", "minutes": 30}, lang="en"),
    Case("wellbeing_report", RESIDENT),
    Case("wellbeing_report", RESIDENT, lang="en"),
    Case("queue_wait", {"position": 3}),
    Case("login_code", {"code": "204913", "minutes": 10}),
    Case("login_code", {"code": "204913", "minutes": 10}, lang="en"),
    # incidents: the outage announced before the menu, and the callback once it is fixed
    Case("hotline", {**RESIDENT, **OUTAGE}, label="outage"),
    Case("hotline", {**RESIDENT, **OUTAGE, "incident": "gas"}, lang="en", label="outage"),
    Case("hotline_no_menu", {**RESIDENT, **OUTAGE, "incident": "electricity"}, label="outage"),
    Case("incident_fixed", OUTAGE),
    Case("incident_fixed", {**OUTAGE, "incident": "electricity"}, lang="en"),
    # emergencies (issue 14)
    Case("emergency_wait", {}),
    Case("emergency_help", {}),
    Case("emergency_help", {}, lang="en"),
    Case("emergency_responder", {**RESPONDER, "registered": "yes", "name": "王秀英", "sex": "女"}),
    Case("emergency_responder", {**RESPONDER, "reason": "silent"}, label="unregistered"),
    Case("desk_closed", {"opens": datetime(2025, 3, 13, 0, 0, tzinfo=UTC), "today": "2025-03-12"}),
    # a keypad report of the outage the grid has open joins it (the caller is told so)
    Case("hotline", {**RESIDENT, **OUTAGE, "incident_water": "open"}, label="joins"),
    # notices (an outbound campaign), with and without their question
    Case("notice", {**RESIDENT, **NOTICE, "asks": "question"}, label="question"),
    Case("notice", {**RESIDENT, **NOTICE, "asks": "none"}, lang="en", label="plain"),
    # medication and appointment reminders (the text is the reminder's own)
    Case("reminder", {**RESIDENT, "text": "请记得饭后吃降压药。", "kind": "medication"}),
    Case("reminder", {**RESIDENT, "text": "Doctor at 9:30.", "kind": "appointment"}, lang="en"),
    # booked visits (dispatch.booking): the slot read on the offer call and the reminder
    Case("merchant_offer", {**ORDER, **SLOT}, label="booked"),
    Case("merchant_offer", {**ORDER, **SLOT, "price": "free"}, lang="en", label="booked"),
    Case(
        "reminder", {**RESIDENT, **SLOT, "category": "请医生上门", "kind": "visit"}, label="visit"
    ),
    Case(
        "reminder",
        {**RESIDENT, **SLOT, "category": "a doctor's visit", "kind": "visit"},
        lang="en",
        label="visit",
    ),
    # the merchant's reminder of the visit they accepted: 2 cancels it
    Case(
        "reminder",
        {
            **SLOT,
            **VISIT,
            "who": "merchant",
            "category": "请医生上门",
            "kind": "visit",
            "today": TODAY,
        },
        label="merchant",
    ),
    Case(
        "reminder",
        {
            **SLOT,
            **VISIT,
            "who": "merchant",
            "category": "a doctor's visit",
            "kind": "visit",
            "today": TODAY,
        },
        lang="en",
        label="merchant",
    ),
]


def test_every_builtin_flow_has_a_case() -> None:
    assert {case.flow for case in CASES} == set(BUILTIN)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def renderers() -> AsyncIterator[list[Renderer]]:
    """One set of backends for the module: they carry many calls, as in service."""
    async with backends() as found:
        yield found


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_given_same_keys_when_run_on_each_backend_then_same_path(
    case: Case, renderers: list[Renderer]
) -> None:
    flow = BUILTIN[case.flow]
    sequences = cover(flow, variables_of(case.context))
    references = [expected(flow, case.context, keys, case.lang) for keys in sequences]
    problems: list[str] = []
    for renderer in renderers:
        results = await run_all(renderer, flow, case.context, sequences, case.lang, tag=case.id)
        for keys, reference, got in zip(sequences, references, results, strict=True):
            shown = "".join(k or "_" for k in keys) or "(none)"
            wrong = [got] if isinstance(got, str) else differences(reference, got)
            problems.extend(f"{renderer.name} keys {shown}: {line}" for line in wrong)
    assert len(renderers) >= 3
    assert not problems, f"{len(problems)} disagreements:\n" + "\n".join(problems)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_given_a_flow_when_keys_are_derived_then_they_reach_every_ending(case: Case) -> None:
    """The derived sequences end the flow every way an exhaustive walk finds."""
    flow = BUILTIN[case.flow]
    variables = variables_of(case.context)
    reached = set()
    for keys in cover(flow, variables):
        finish = drive(flow, keys, variables).finish
        assert finish is not None
        extra = {k: v for k, v in finish.variables.items() if k not in variables}
        reached.add((finish.outcome, finish.transfer, tuple(sorted(extra.items()))))
    assert reached == walk(flow, variables, bound=input_bound(flow)).outcomes
