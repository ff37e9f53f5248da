"""Flows as YAML: errors that name flow and step; a library that survives bad reloads."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.flow import Ask, Flow, FlowError, Say, Transfer, validate
from ivr.flows import BUILTIN
from ivr.library import FlowLibrary, FlowLoadError, check_folder, load_flow, parse_flow

GOOD = """
name: callback
start: intro
steps:
  intro: {say: survey.intro, next: menu}
  menu:
    ask: survey.menu
    choices: {1: yes, 2: no}
    on_fail: no
    timeout_s: 10
  yes: {hangup: rated, prompt: survey.thanks}
  no: {hangup: no_input, prompt: survey.no_input}
"""


def test_given_good_yaml_when_parsed_then_keys_are_text_and_yes_no_stay_names() -> None:
    flow = parse_flow(GOOD)
    menu = flow.steps["menu"]
    assert isinstance(menu, Ask)
    assert menu.choices == {"1": "yes", "2": "no"}
    assert menu.on_fail == "no" and menu.timeout_s == 10


@pytest.mark.parametrize(
    ("change", "step", "reason"),
    [
        (
            ("{say: survey.intro, next: menu}", "{speak: survey.intro, next: menu}"),
            "intro",
            "unknown step kind",
        ),
        (
            ("{say: survey.intro, next: menu}", "{say: survey.nope, next: menu}"),
            "intro",
            "prompt 'survey.nope' is missing",
        ),
        (
            ("{say: survey.intro, next: menu}", "{say: survey.intro, next: manu}"),
            "intro",
            "leads to unknown step 'manu'",
        ),
        (("{1: yes, 2: no}", "{1: no, 2: no}"), "yes", "unreachable"),
        (("timeout_s: 10", "timeout_s: 600"), "menu", "timeout_s must be"),
        (("timeout_s: 10", "retries: 50"), "menu", "retries must be"),
        (("timeout_s: 10", "colour: red"), "menu", "unknown field 'colour'"),
        (("{1: yes, 2: no}", "{11: yes, 2: no}"), "menu", "'11' is not a key"),
        (("on_fail: no", "on_fail: menu"), "menu", "loops without waiting for a key"),
        (("{say: survey.intro, next: menu}", "{say: survey.intro}"), "intro", "needs 'next'"),
    ],
)
def test_given_a_broken_flow_when_loaded_then_the_error_names_flow_and_step(
    change: tuple[str, str], step: str, reason: str
) -> None:
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(FlowLoadError) as caught:
        parse_flow(text, source="flows/callback.yaml")
    error = caught.value
    assert (error.flow, error.step) == ("callback", step)
    assert reason in error.reason
    assert str(error).startswith("flows/callback.yaml: flow 'callback', step ")


def test_a_prompt_missing_in_one_catalog_is_named_with_the_language() -> None:
    catalogs = {"zh-CN": {"a": "甲", "ivr.no_input": "", "ivr.wrong_key": ""}, "en": {}}
    text = "name: tiny\nsteps:\n  a: {say: a, next: b}\n  b: {hangup: done}\n"
    with pytest.raises(FlowLoadError, match="prompt 'a' is missing in the en catalog"):
        parse_flow(text, catalogs=catalogs)


def test_a_silent_cycle_through_say_and_branch_is_refused() -> None:
    flow = Flow(
        "spin",
        "a",
        {"a": Say("survey.intro", next="b"), "b": Say("survey.thanks", next="a")},
    )
    with pytest.raises(FlowError, match=r"loops without waiting for a key: a -> b -> a"):
        validate(flow)


def test_not_yaml_and_not_a_mapping_are_clear_errors() -> None:
    with pytest.raises(FlowLoadError, match="not valid YAML"):
        parse_flow("steps: [unclosed", source="x.yaml")
    with pytest.raises(FlowLoadError, match="must be a mapping"):
        parse_flow("- a\n- b\n", source="x.yaml")


def test_the_file_name_must_match_the_flow_name(tmp_path: Path) -> None:
    path = tmp_path / "other.yaml"
    path.write_text(GOOD, encoding="utf-8")
    with pytest.raises(FlowLoadError, match=r"must be named callback\.yaml"):
        load_flow(path)


def test_builtins_round_trip_through_the_same_loader() -> None:
    assert BUILTIN["hotline"].start == "greet"
    queue = BUILTIN["hotline_unknown"].steps["queue"]
    assert queue == Transfer("operators", outcome="transfer")


# -- the library ---------------------------------------------------------------------------


OFFER_OVERRIDE = """
name: merchant_offer
steps:
  intro: {say: offer.intro, next: menu}
  menu: {ask: offer.menu, choices: {1: accept, 2: decline}, on_fail: no_input, retries: 1}
  accept: {hangup: accepted, prompt: offer.accepted}
  decline: {hangup: declined, prompt: offer.declined}
  no_input: {hangup: no_input, prompt: offer.no_input}
"""


def test_given_an_override_folder_then_it_replaces_and_extends_the_builtins(tmp_path: Path) -> None:
    (tmp_path / "merchant_offer.yaml").write_text(OFFER_OVERRIDE, encoding="utf-8")
    (tmp_path / "callback.yaml").write_text(GOOD, encoding="utf-8")
    library = FlowLibrary(tmp_path)
    menu = library.get("merchant_offer").steps["menu"]
    assert isinstance(menu, Ask) and menu.retries == 1
    assert "callback" in library and "survey" in library
    assert library.last_error is None


def test_given_a_bad_reload_then_the_last_good_flows_stay(tmp_path: Path) -> None:
    (tmp_path / "merchant_offer.yaml").write_text(OFFER_OVERRIDE, encoding="utf-8")
    library = FlowLibrary(tmp_path)
    good = library.get("merchant_offer")
    (tmp_path / "merchant_offer.yaml").write_text(
        OFFER_OVERRIDE.replace("next: menu", "next: menuu"), encoding="utf-8"
    )
    (tmp_path / "callback.yaml").write_text(GOOD, encoding="utf-8")
    with pytest.raises(FlowLoadError, match="step 'intro': leads to unknown step 'menuu'"):
        library.reload()
    assert library.get("merchant_offer") is good
    assert "callback" not in library  # all or nothing
    assert library.last_error is not None and "menuu" in library.last_error


def test_a_fixed_folder_reloads_and_reports_what_changed(tmp_path: Path) -> None:
    (tmp_path / "merchant_offer.yaml").write_text("oops: [", encoding="utf-8")
    library = FlowLibrary(tmp_path)  # a broken folder at start: built-ins serve
    assert library.get("merchant_offer") is BUILTIN["merchant_offer"]
    assert library.last_error is not None
    (tmp_path / "merchant_offer.yaml").write_text(OFFER_OVERRIDE, encoding="utf-8")
    (tmp_path / "callback.yaml").write_text(GOOD, encoding="utf-8")
    report = library.reload()
    assert report.overridden == ("merchant_offer",) and report.added == ("callback",)
    assert library.get("merchant_offer") is not BUILTIN["merchant_offer"]


def test_an_override_may_not_invent_outcomes_dispatch_does_not_know(tmp_path: Path) -> None:
    (tmp_path / "merchant_offer.yaml").write_text(
        OFFER_OVERRIDE.replace("hangup: declined", "hangup: maybe"), encoding="utf-8"
    )
    library = FlowLibrary()
    library.folder = tmp_path
    with pytest.raises(FlowLoadError, match=r"outcomes \['maybe'\] are not in the contract"):
        library.reload()
    assert library.get("merchant_offer") is BUILTIN["merchant_offer"]


def test_a_missing_folder_is_an_error_on_reload(tmp_path: Path) -> None:
    library = FlowLibrary(tmp_path / "absent")
    assert library.names() == sorted(BUILTIN)
    with pytest.raises(FlowLoadError, match="does not exist"):
        library.reload()


def test_check_folder_lists_every_bad_file(tmp_path: Path) -> None:
    (tmp_path / "callback.yaml").write_text(GOOD, encoding="utf-8")
    (tmp_path / "a.yaml").write_text("name: a\nsteps:\n  x: {ring: 1}\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text("name: b\nsteps:\n  x: {say: nope, next: x}\n", "utf-8")
    problems = check_folder(tmp_path)
    assert len(problems) == 2
    assert "a.yaml: flow 'a', step 'x': unknown step kind" in problems[0]
    assert "b.yaml: flow 'b', step 'x': prompt 'nope' is missing" in problems[1]
