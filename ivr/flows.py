"""The built-in flows. Outcomes are the contract with `dispatch`."""

from __future__ import annotations

from ivr.flow import Ask, Flow, Hangup, Say, Set, Transfer

MERCHANT_OFFER = Flow(
    name="merchant_offer",
    start="intro",
    steps={
        "intro": Say("offer.intro", next="menu"),
        "menu": Ask(
            "offer.menu",
            choices={"1": "accept", "2": "decline", "9": "intro"},
            on_fail="no_input",
        ),
        "accept": Hangup("accepted", prompt="offer.accepted"),
        "decline": Hangup("declined", prompt="offer.declined"),
        "no_input": Hangup("no_input", prompt="offer.no_input"),
    },
)

SURVEY = Flow(
    name="survey",
    start="intro",
    steps={
        "intro": Say("survey.intro", next="menu"),
        "menu": Ask(
            "survey.menu",
            choices={"1": "r1", "2": "r2", "3": "r3", "9": "intro"},
            on_fail="no_input",
        ),
        "r1": Set("rating", "satisfied", next="thanks"),
        "r2": Set("rating", "basically_satisfied", next="thanks"),
        "r3": Set("rating", "not_satisfied", next="thanks"),
        "thanks": Hangup("rated", prompt="survey.thanks"),
        "no_input": Hangup("no_input", prompt="survey.no_input"),
    },
)

HOTLINE = Flow(
    name="hotline",
    start="greet",
    steps={
        "greet": Say("hotline.greeting_known", next="to_operator"),
        "to_operator": Say("hotline.to_operator", next="queue"),
        "queue": Transfer("operators"),
    },
)

HOTLINE_UNKNOWN = Flow(
    name="hotline_unknown",
    start="greet",
    steps={
        "greet": Say("hotline.greeting_unknown", next="to_operator"),
        "to_operator": Say("hotline.to_operator", next="queue"),
        "queue": Transfer("operators"),
    },
)

BUILTIN: dict[str, Flow] = {f.name: f for f in (MERCHANT_OFFER, SURVEY, HOTLINE, HOTLINE_UNKNOWN)}
