"""The built-in flows on the pure engine: happy paths, no input, wrong keys, retries, bounds."""

from __future__ import annotations

import pytest

from ivr import engine
from ivr.flow import Ask, input_bound, keypad_paths
from ivr.flows import (
    BUILTIN,
    HOTLINE,
    HOTLINE_NO_MENU,
    HOTLINE_UNKNOWN,
    LOGIN_CODE,
    MERCHANT_ARRIVAL,
    MERCHANT_COMPLETION,
    MERCHANT_OFFER,
    NEED_CATEGORIES,
    OUTCOMES,
    STATUS,
    SURVEY,
    WELLBEING,
)
from tests.ivr.walk import drive, walk

RESIDENT = {"name": "王秀英", "sex": "女", "age": "82"}

#: Contexts each flow is walked with, so every Branch case is taken.
CONTEXTS: dict[str, list[dict[str, str]]] = {
    "hotline": [
        RESIDENT,
        {**RESIDENT, "incident": "water", "incident_water": "open"},
        {**RESIDENT, "last_category": "medicine"},
        {**RESIDENT, "last_category": "meal"},
        {**RESIDENT, "last_category": "bogus"},
        {**RESIDENT, "wellbeing": "care"},
        {**RESIDENT, "wellbeing": "away"},
    ],
    "status": [
        {"order_status": s}
        for s in ("matching", "offering", "accepted", "in_service", "awaiting_consent", "")
    ],
    "status_cancelled": [{"cancelled": "yes"}, {"cancelled": "no"}],
    "masked_unreached": [{"side": "resident"}, {"side": "merchant"}],
    "notice": [{**RESIDENT, "asks": "question"}, {**RESIDENT, "asks": "none"}],
    "family_told": [
        {"about": a}
        for a in ("accepted", "arrived", "completed", "late", "no_show", "emergency", "")
    ],
    **{
        name: [
            {"price": p, "price_yuan": "5"}
            for p in ("subsidised", "subsidised_yuan", "self_paid", "self_paid_yuan", "free", "")
        ]
        for name in ("resident_told",)
    },
    # a booked visit reads its slot (one prompt per weekday), with and without a price
    "merchant_offer": [
        *(
            {"price": p, "price_yuan": "5"}
            for p in ("subsidised", "subsidised_yuan", "self_paid", "self_paid_yuan", "free", "")
        ),
        *({"slot_weekday": str(d)} for d in range(1, 8)),
        {"slot_weekday": "4", "price": "free"},
    ],
    "reminder": [
        RESIDENT,
        *({**RESIDENT, "slot_weekday": str(d)} for d in range(1, 8)),
        *({"who": "merchant", "slot_weekday": str(d)} for d in (*range(1, 8), "")),
    ],
}


# -- every flow: never a dead end, never a loop ----------------------------------------------


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_given_any_keys_and_timeouts_when_walked_then_every_path_finishes_within_the_bound(
    name: str,
) -> None:
    flow = BUILTIN[name]
    bound = input_bound(flow)
    seen: set[str] = set()
    for context in CONTEXTS.get(name, [RESIDENT]):
        result = walk(flow, context, bound=bound)
        assert result.longest <= bound
        seen |= {outcome for outcome, _, _ in result.outcomes}
    # every outcome the contract promises is reachable, and nothing else is
    assert seen == OUTCOMES[name]


def test_the_walk_notices_a_flow_that_waits_forever() -> None:
    # an Ask whose retries lead back to itself with unbounded visits would loop: build one
    # by hand (validate() would refuse it) to prove the walk can fail
    from ivr.flow import Flow

    looping = Flow(
        "looping",
        "menu",
        {"menu": Ask("offer.menu", choices={"1": "menu"}, on_fail="menu", max_visits=10**6)},
    )
    with pytest.raises(AssertionError, match="more than 5 inputs"):
        walk(looping, bound=5)


def test_bounds_stay_humane() -> None:
    # no caller should be kept pressing keys for long: the worst case is small
    assert walk(MERCHANT_OFFER, bound=input_bound(MERCHANT_OFFER)).longest <= 9
    assert walk(HOTLINE, RESIDENT, bound=input_bound(HOTLINE)).longest <= 30


# -- hotline ------------------------------------------------------------------------------


def test_given_a_resident_when_they_press_2_and_confirm_then_the_need_is_medicine() -> None:
    call = drive(HOTLINE, ["2", "1"], RESIDENT)
    assert call.prompts == [
        "hotline.greeting_known",
        "hotline.menu",
        "hotline.confirm.medicine",
        "hotline.need_taken",
    ]
    assert call.finish is not None
    assert call.finish.outcome == "need"
    assert call.finish.variables["category"] == "medicine"
    assert call.finish.transfer is None


@pytest.mark.parametrize(
    ("keys", "category"),
    [
        (["3", "1"], "groceries"),
        (["4", "1"], "doctor"),
        (["5", "1", "1"], "water"),
        (["5", "2", "1"], "electricity"),
        (["5", "3", "1"], "gas"),
        (["6", "1"], "repair"),
    ],
)
def test_every_routine_need_has_a_key(keys: list[str], category: str) -> None:
    call = drive(HOTLINE, keys, RESIDENT)
    assert call.finish is not None and call.finish.outcome == "need"
    assert call.finish.variables["category"] == category
    assert call.prompts[-2] == f"hotline.confirm.{category}"


def test_the_keys_derived_from_the_flow_are_the_keys_that_work() -> None:
    keys = keypad_paths(HOTLINE)
    assert keys == {
        "emergency": "1",
        "medicine": "2",
        "groceries": "3",
        "doctor": "4",
        "water": "5 1",
        "electricity": "5 2",
        "gas": "5 3",
        "repair": "6",
    }  # meal only comes "as last time" (9): no keys of its own
    for category, path in keys.items():
        pressed = path.split()
        if category != "emergency":
            pressed.append("1")  # confirm the read-back
        call = drive(HOTLINE, pressed, RESIDENT)
        assert call.finish is not None and call.finish.variables["category"] == category
    assert keypad_paths(HOTLINE_UNKNOWN) == {}


def test_emergency_is_key_1_and_goes_straight_to_an_operator() -> None:
    call = drive(HOTLINE, ["1"], RESIDENT)
    assert call.finish == engine.Finish(
        "emergency", {**RESIDENT, "category": "emergency"}, transfer="operators"
    )
    assert call.prompts[-1] == "hotline.emergency"


def test_0_is_an_operator() -> None:
    call = drive(HOTLINE, ["0"], RESIDENT)
    assert call.finish is not None
    assert (call.finish.outcome, call.finish.transfer) == ("transfer", "operators")


def test_9_repeats_last_times_need_with_a_read_back() -> None:
    call = drive(HOTLINE, ["9", "1"], {**RESIDENT, "last_category": "groceries"})
    assert call.prompts[-2] == "hotline.confirm.groceries"
    assert call.finish is not None and call.finish.variables["category"] == "groceries"


def test_9_without_a_last_need_says_so_and_offers_the_menu_again() -> None:
    call = drive(HOTLINE, ["9", "2", "1"], RESIDENT)
    assert call.prompts[:4] == [
        "hotline.greeting_known",
        "hotline.menu",
        "hotline.no_last",
        "hotline.menu",
    ]
    assert call.played[3] == ("hotline.menu", True)  # heard again: slower
    assert call.finish is not None and call.finish.variables["category"] == "medicine"


def test_choosing_again_at_the_read_back_returns_to_the_menu() -> None:
    call = drive(HOTLINE, ["2", "2", "3", "1"], RESIDENT)
    assert call.finish is not None and call.finish.variables["category"] == "groceries"


def test_no_input_repeats_the_menu_slower_then_an_operator_takes_the_call() -> None:
    call = drive(HOTLINE, [None, None, None], RESIDENT)
    assert call.played == [
        ("hotline.greeting_known", False),
        ("hotline.menu", False),
        ("ivr.no_input", False),
        ("hotline.menu", True),
        ("ivr.no_input", False),
        ("hotline.menu", True),
        ("hotline.to_operator", False),
    ]
    assert call.finish is not None and call.finish.transfer == "operators"


def test_a_wrong_key_says_so() -> None:
    call = drive(HOTLINE, ["7", "2", "1"], RESIDENT)
    assert call.played[2:4] == [("ivr.wrong_key", False), ("hotline.menu", True)]
    assert call.finish is not None and call.finish.outcome == "need"


def test_choosing_again_and_again_ends_with_an_operator_not_a_loop() -> None:
    call = drive(HOTLINE, ["2", "2", "2", "2", "2", "2"], RESIDENT)
    assert call.finish is not None
    assert (call.finish.outcome, call.finish.transfer) == ("transfer", "operators")
    assert call.finish.variables["category"] == ""  # the abandoned choice is not kept


def test_no_input_at_the_read_back_goes_to_an_operator() -> None:
    call = drive(HOTLINE, ["2", None, None, None], RESIDENT)
    assert call.finish is not None and call.finish.transfer == "operators"


def test_hotline_needs_cover_the_catalog_codes_it_promises() -> None:
    categories = set()
    for context in CONTEXTS["hotline"]:
        for outcome, _, variables in walk(HOTLINE, context, bound=input_bound(HOTLINE)).outcomes:
            if outcome == "need":
                categories.add(dict(variables)["category"])
    assert categories == set(NEED_CATEGORIES)


@pytest.mark.parametrize("flow", [HOTLINE_UNKNOWN, HOTLINE_NO_MENU])
def test_unregistered_and_no_menu_callers_go_straight_to_an_operator(flow: object) -> None:
    call = drive(flow, [], RESIDENT)  # type: ignore[arg-type]
    assert call.finish is not None
    assert (call.finish.outcome, call.finish.transfer) == ("transfer", "operators")
    assert call.prompts[-1] == "hotline.to_operator"


@pytest.mark.parametrize("days", [str(n) for n in range(1, 10)])
def test_given_care_calls_when_7_then_days_are_read_back_and_away_finishes(days: str) -> None:
    call = drive(HOTLINE, ["7", days, "1"], {**RESIDENT, "wellbeing": "care"})
    assert call.prompts == [
        "hotline.greeting_known",
        "hotline.menu_care",
        "hotline.away.days",
        f"hotline.away.confirm.{days}",
        "hotline.away.taken",
    ]
    assert call.finish is not None and call.finish.transfer is None
    assert (call.finish.outcome, call.finish.variables["away_days"]) == ("away", days)


def test_given_care_calls_when_the_read_back_is_wrong_then_the_days_are_asked_again() -> None:
    call = drive(HOTLINE, ["7", "3", "2", "5", "1"], {**RESIDENT, "wellbeing": "care"})
    assert call.finish is not None and call.finish.variables["away_days"] == "5"


def test_given_care_calls_when_longer_than_9_days_then_0_is_an_operator() -> None:
    call = drive(HOTLINE, ["7", "0"], {**RESIDENT, "wellbeing": "care"})
    assert call.finish is not None
    assert (call.finish.outcome, call.finish.transfer) == ("transfer", "operators")


def test_given_away_when_7_and_1_then_back() -> None:
    call = drive(HOTLINE, ["7", "1"], {**RESIDENT, "wellbeing": "away"})
    assert call.prompts[1:] == ["hotline.menu_back", "hotline.away.back", "hotline.away.back_taken"]
    assert call.finish is not None and call.finish.outcome == "back"


def test_given_away_when_7_then_2_then_the_plain_menu_takes_a_need() -> None:
    call = drive(HOTLINE, ["7", "2", "2", "1"], {**RESIDENT, "wellbeing": "away"})
    assert call.prompts[3] == "hotline.menu"
    assert call.finish is not None and call.finish.variables["category"] == "medicine"


@pytest.mark.parametrize("wellbeing", ["care", "away"])
def test_given_care_calls_then_every_other_key_is_the_plain_menus(wellbeing: str) -> None:
    context = {**RESIDENT, "wellbeing": wellbeing}
    for pressed in (["1"], ["2", "1"], ["5", "3", "1"], ["0"]):
        plain, care = drive(HOTLINE, pressed, RESIDENT), drive(HOTLINE, pressed, context)
        assert care.finish is not None and plain.finish is not None
        assert (care.finish.outcome, care.finish.variables.get("category")) == (
            plain.finish.outcome,
            plain.finish.variables.get("category"),
        )


# -- status ---------------------------------------------------------------------------


def test_a_resident_with_an_accepted_order_hears_who_and_when_then_silence_is_an_operator() -> None:
    call = drive(STATUS, [None, None, None], {"order_status": "accepted"})
    assert call.prompts[:3] == [
        "hotline.greeting_known",
        "status.accepted",
        "status.menu_merchant",
    ]
    # as in the hotline menu: no clear key ends with an operator
    assert call.finish is not None and call.finish.outcome == "transfer"
    assert call.finish.transfer == "operators"


def test_status_9_repeats_the_status_slower_and_0_is_an_operator() -> None:
    call = drive(STATUS, ["9", "0"], {"order_status": "matching"})
    assert call.played[3] == ("status.matching", True)
    assert call.finish is not None and call.finish.transfer == "operators"


def test_status_without_an_open_order_says_so_and_goes_on_to_the_menu() -> None:
    call = drive(STATUS, [], {})
    assert "status.none" in call.prompts
    assert call.finish is not None and call.finish.outcome == "menu"
    assert call.finish.transfer == "stay"  # the call stays for the hotline menu


def test_status_3_is_the_normal_menu_and_2_then_1_cancels_and_2_then_2_keeps_it() -> None:
    menu = drive(STATUS, ["3"], {"order_status": "accepted"})
    assert menu.finish is not None and (menu.finish.outcome, menu.finish.transfer) == (
        "menu",
        "stay",
    )
    cancel = drive(STATUS, ["2", "1"], {"order_status": "accepted", "order": "7"})
    assert cancel.prompts[-1] == "status.cancel_confirm"
    assert cancel.finish is not None and cancel.finish.outcome == "cancel"
    assert cancel.finish.variables["order"] == "7"
    kept = drive(STATUS, ["2", "2", "3"], {"order_status": "accepted"})
    assert kept.prompts.count("status.accepted") == 2
    assert kept.finish is not None and kept.finish.outcome == "menu"


def test_status_4_with_an_accepted_order_connects_to_the_merchant_and_stays_on_the_line() -> None:
    for state in ("accepted", "in_service"):
        call = drive(STATUS, ["4"], {"order_status": state, "order": "7"})
        assert call.prompts[-1] == "masked.calling_merchant"
        assert call.finish is not None
        assert (call.finish.outcome, call.finish.transfer) == ("connect", "stay")
        assert call.finish.variables["order"] == "7"
    # no merchant yet: 4 is no key of that menu (the status is said again, slower)
    waiting = drive(STATUS, ["4", "0"], {"order_status": "matching"})
    assert "status.menu_merchant" not in waiting.prompts
    assert waiting.finish is not None and waiting.finish.outcome == "transfer"


def test_masked_unreached_offers_the_resident_an_operator_and_tells_the_merchant_goodbye() -> None:
    resident = drive(BUILTIN["masked_unreached"], ["0"], {"side": "resident"})
    assert resident.prompts[:2] == ["masked.unreached", "masked.unreached_menu"]
    assert resident.finish is not None and resident.finish.transfer == "operators"
    merchant = drive(BUILTIN["masked_unreached"], [], {"side": "merchant"})
    assert merchant.prompts == ["masked.unreached", "status.goodbye"]
    assert merchant.finish is not None and merchant.finish.outcome == "goodbye"
    wait = drive(BUILTIN["masked_wait"], [], {})
    assert wait.prompts == ["masked.calling_resident"]
    assert wait.finish is not None and wait.finish.transfer == "stay"


# -- merchants -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "outcome", "last"),
    [
        # "1": the call stays for the service to commit the accept, nothing said yet
        (["1"], "accepted", "offer.menu"),
        (["2"], "declined", "offer.declined"),
        (["9", "1"], "accepted", "offer.menu"),
        ([None, None, None], "no_input", "offer.no_input"),
        (["5", "6", "7"], "no_input", "offer.no_input"),
        (["9", "9", "9"], "no_input", "offer.no_input"),
    ],
)
def test_merchant_offer(keys: list[str | None], outcome: str, last: str) -> None:
    call = drive(MERCHANT_OFFER, keys)
    assert call.finish is not None and call.finish.outcome == outcome
    assert call.prompts[-1] == last


def test_given_1_when_offered_then_the_call_stays_for_the_service_and_no_code_is_said() -> None:
    from ivr.flow import STAY
    from ivr.flows import MERCHANT_ACCEPTED, MERCHANT_TAKEN

    call = drive(MERCHANT_OFFER, ["1"])
    assert call.finish is not None and call.finish.transfer == STAY
    assert "offer.accepted" not in call.prompts
    told = drive(MERCHANT_ACCEPTED, [])
    assert told.prompts == ["offer.accepted"] and told.finish is not None
    assert told.finish.transfer is None  # then it hangs up
    taken = drive(MERCHANT_TAKEN, [])
    assert taken.prompts == ["offer.taken"] and taken.finish is not None


def test_offer_9_replays_the_order_slower() -> None:
    call = drive(MERCHANT_OFFER, ["9", "2"])
    assert call.played[:4] == [
        ("offer.intro", False),
        ("offer.menu", False),
        ("offer.intro", True),
        ("offer.menu", True),
    ]


@pytest.mark.parametrize(
    ("flow", "keys", "outcome"),
    [
        (MERCHANT_ARRIVAL, ["1"], "arrived"),
        (MERCHANT_ARRIVAL, ["2"], "not_yet"),
        (MERCHANT_ARRIVAL, ["9", "1"], "arrived"),
        (MERCHANT_ARRIVAL, [None, "5", None], "no_input"),
        (MERCHANT_COMPLETION, ["1"], "completed"),
        (MERCHANT_COMPLETION, ["2"], "not_completed"),
        (MERCHANT_COMPLETION, [None, None, None], "no_input"),
    ],
)
def test_merchant_arrival_and_completion(
    flow: object, keys: list[str | None], outcome: str
) -> None:
    call = drive(flow, keys)  # type: ignore[arg-type]
    assert call.finish is not None and call.finish.outcome == outcome
    assert call.finish.transfer is None


def test_a_merchant_at_the_gate_presses_4_and_stays_on_the_line_for_the_resident() -> None:
    call = drive(MERCHANT_ARRIVAL, ["4"])
    assert call.prompts[-1] == "masked.calling_resident"
    assert call.finish is not None
    assert (call.finish.outcome, call.finish.transfer) == ("connect", "stay")


@pytest.mark.parametrize("flow", [MERCHANT_ARRIVAL, MERCHANT_COMPLETION])
def test_a_merchant_with_a_problem_presses_0_for_an_operator(flow: object) -> None:
    call = drive(flow, ["0"])  # type: ignore[arg-type]
    assert call.finish is not None
    assert (call.finish.outcome, call.finish.transfer) == ("transfer", "operators")


def test_the_repeat_key_is_bounded_too() -> None:
    # two repeats, then 9 counts as a wrong key: two retries, then the safe default
    call = drive(MERCHANT_ARRIVAL, ["9", "9", "9", "9", "9"])
    assert call.finish is not None and call.finish.outcome == "no_input"


# -- survey and wellbeing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "rating"),
    [("1", "satisfied"), ("2", "basically_satisfied"), ("3", "not_satisfied")],
)
def test_survey_ratings(key: str, rating: str) -> None:
    call = drive(SURVEY, [key])
    assert call.finish is not None and call.finish.outcome == "rated"
    assert call.finish.variables["rating"] == rating


def test_survey_without_a_rating_is_no_input() -> None:
    call = drive(SURVEY, [None, "8", None])
    assert call.finish is not None and call.finish.outcome == "no_input"
    assert "rating" not in call.finish.variables


def test_wellbeing_1_is_well() -> None:
    call = drive(WELLBEING, ["1"], RESIDENT)
    assert call.finish is not None and call.finish.outcome == "well"


def test_wellbeing_2_asks_for_help_and_reaches_an_operator() -> None:
    call = drive(WELLBEING, ["2"], RESIDENT)
    assert call.finish is not None
    assert (call.finish.outcome, call.finish.transfer) == ("help", "operators")
    assert call.finish.variables["reason"] == "asked"


def test_wellbeing_0_talks_to_someone_and_reaches_an_operator() -> None:
    call = drive(WELLBEING, ["0"], RESIDENT)
    assert call.finish is not None
    assert (call.finish.outcome, call.finish.transfer) == ("help", "operators")
    assert call.finish.variables["reason"] == "talk"


def test_wellbeing_9_hears_it_again_then_1_is_well() -> None:
    call = drive(WELLBEING, ["9", "1"], RESIDENT)
    assert call.finish is not None and call.finish.outcome == "well"
    assert call.prompts.count("wellbeing.menu") == 2


@pytest.mark.parametrize("keys", [[None, None, None], ["5", None, "8"]])
def test_wellbeing_silence_means_help_without_transfer(keys: list[str | None]) -> None:
    call = drive(WELLBEING, keys, RESIDENT)
    assert call.finish is not None
    assert (call.finish.outcome, call.finish.transfer) == ("help", None)
    assert call.finish.variables["reason"] == "no_answer"
    assert call.prompts[-1] == "wellbeing.no_answer"


# -- merchant login code --------------------------------------------------------------------

LOGIN = {"code": "204913", "minutes": "10"}


def test_the_login_code_is_read_twice_then_silence_ends_the_call() -> None:
    call = drive(LOGIN_CODE, [None], LOGIN)
    assert call.played == [
        ("login_code.intro", False),
        ("login_code.code", False),
        ("login_code.goodbye", False),
    ]
    assert call.finish is not None and call.finish.outcome == "heard"
    assert call.finish.transfer is None


@pytest.mark.parametrize("key", ["*", "1"])
def test_star_or_1_hears_the_code_again_slower(key: str) -> None:
    call = drive(LOGIN_CODE, [key, None], LOGIN)
    assert call.played == [
        ("login_code.intro", False),
        ("login_code.code", False),
        ("login_code.code", True),
        ("login_code.goodbye", False),
    ]


def test_hearing_the_code_again_is_bounded() -> None:
    # four hearings in all (the first and three repeats); asking once more says goodbye
    call = drive(LOGIN_CODE, ["*", "1", "*", "1"], LOGIN)
    assert call.prompts.count("login_code.code") == 4
    assert call.prompts[-2:] == ["login_code.code", "login_code.goodbye"]
    assert call.finish is not None and call.finish.outcome == "heard"


def test_another_key_after_the_code_ends_the_call() -> None:
    call = drive(LOGIN_CODE, ["5"], LOGIN)
    assert call.prompts[-1] == "login_code.goodbye"
    assert call.finish is not None and call.finish.outcome == "heard"


def test_the_login_code_prompt_reads_each_digit_with_a_pause_and_the_minutes() -> None:
    from ivr.prompts import render

    zh = render("login_code.code", "zh-CN", LOGIN)
    assert "二，零，四，九，幺，三" in zh  # 1 as 幺: it cannot be heard as 七
    assert zh.count("二，零，四，九，幺，三") == 2
    assert "十分钟内有效" in zh
    assert "星号" in zh and "1" in zh
    en = render("login_code.code", "en", LOGIN)
    assert en.count("2, 0, 4, 9, 1, 3") == 2
    assert "10 minutes" in en and "star or 1" in en


# -- engine guards --------------------------------------------------------------------------


def test_a_finished_run_refuses_more_input() -> None:
    from ivr.flow import FlowError

    call = drive(MERCHANT_OFFER, ["1"])
    assert call.run is not None
    with pytest.raises(FlowError, match="already finished"):
        engine.on_digit(MERCHANT_OFFER, call.run, "1")


# -- the resident told who accepted ------------------------------------------------------


def test_the_resident_told_hears_who_by_when_and_the_code_word_slowly_and_9_repeats() -> None:
    flow = BUILTIN["resident_told"]
    call = drive(flow, ["9", None], {"merchant": "和平药房", "code_word": "4827"})
    assert call.played[:3] == [
        ("told.accepted", True),
        ("told.code_word", True),
        ("told.more", False),
    ]
    assert call.played[3:5] == [("told.accepted", True), ("told.code_word", True)]
    assert call.finish is not None and call.finish.outcome == "heard"


def test_given_a_subsidised_price_when_offered_or_told_then_it_is_said_after_the_order() -> None:
    context = {"price": "subsidised_yuan", "price_yuan": "5"}
    offer = drive(MERCHANT_OFFER, ["2"], context)
    assert offer.prompts[:3] == ["offer.intro", "price.subsidised_yuan", "offer.menu"]
    told = drive(BUILTIN["resident_told"], [None], {"merchant": "和平药房", **context})
    # slowly, like the rest of the news
    assert told.played[:3] == [
        ("told.accepted", True),
        ("price.subsidised_yuan", True),
        ("told.code_word", True),
    ]


def test_given_no_price_note_when_offered_then_nothing_about_price_is_said() -> None:
    assert "price" not in " ".join(drive(MERCHANT_OFFER, ["2"], {"price": ""}).prompts)


def test_the_resident_told_asks_for_an_operator_with_0() -> None:
    call = drive(BUILTIN["resident_told"], ["0"], {"merchant": "和平药房"})
    assert call.finish is not None and call.finish.outcome == "operator"
    assert call.prompts[-1] == "told.operator"


def test_status_1_is_an_emergency_as_everywhere_on_the_hotline() -> None:
    call = drive(STATUS, ["1"], {"order_status": "accepted"})
    assert call.finish is not None
    assert (call.finish.outcome, call.finish.transfer) == ("emergency", "operators")
    assert call.finish.variables["category"] == "emergency"


def test_given_a_family_contact_told_when_they_press_9_then_they_hear_it_again_slowly() -> None:
    context = {"about": "no_show", "resident": "王秀英", "category": "送药"}
    call = drive(BUILTIN["family_told"], ["9", None], context)
    assert call.played == [
        ("family.no_show", True),
        ("family.more", False),
        ("family.no_show", True),
        ("family.more", True),  # asked again: slower
        ("family.bye", False),
    ]
    assert call.finish is not None and call.finish.outcome == "heard"


def test_given_an_order_waiting_for_consent_when_the_resident_presses_1_then_consented() -> None:
    call = drive(STATUS, ["9", "1"], {"order_status": "awaiting_consent", "order": "8"})
    assert call.played[:3] == [
        ("hotline.greeting_known", False),
        ("status.consent", True),
        ("status.consent_ask", False),
    ]
    assert ("status.consent", True) in call.played[3:]
    assert call.finish is not None and call.finish.outcome == "consent"
    assert call.played[-1][0] == "status.consented"
    # 2: not now, the status menu (where 2 cancels) as for any open order
    menu = drive(STATUS, ["2", "0"], {"order_status": "awaiting_consent"})
    assert "status.menu" in menu.prompts and menu.finish is not None
    assert menu.finish.outcome == "transfer"
