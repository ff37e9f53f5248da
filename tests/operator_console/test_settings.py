"""The process's configuration: what `yijing` refuses at start and what it logs."""

from __future__ import annotations

import logging

import pytest

from operator_console import cli
from operator_console.logsafe import configure
from operator_console.settings import Settings, UnknownVariables


def test_given_a_variable_nobody_reads_when_starting_then_it_is_refused_with_a_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # documented once in INSTALL.md, never read: the default stayed in force unnoticed
    monkeypatch.setenv("YIJING_ASTERISK_CALLER_ID", "12349")
    monkeypatch.setenv("YIJING_OFER_TIMEOUT_S", "30")
    with pytest.raises(UnknownVariables) as caught:
        Settings.from_environment()
    message = str(caught.value)
    assert "YIJING_ASTERISK_CALLER_ID" in message
    assert "YIJING_OFER_TIMEOUT_S (did you mean YIJING_OFFER_TIMEOUT_S?)" in message


def test_given_an_unknown_variable_when_the_command_runs_then_it_exits_before_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("YIJING_ASTERISK_PING_INTERVAL", "5")
    assert cli.main(["db", "upgrade"]) == 2
    assert "YIJING_ASTERISK_PING_INTERVAL" in capsys.readouterr().err


def test_given_only_known_variables_when_starting_then_they_are_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("YIJING_ASTERISK_ACTION_TIMEOUT_S", "2.5")
    monkeypatch.setenv("yijing_asterisk_ping_interval_s", "4")
    settings = Settings.from_environment()
    assert settings.asterisk_action_timeout_s == 2.5
    assert settings.asterisk_ping_interval_s == 4.0


@pytest.mark.parametrize("secret", ["CHANGE-ME", "Change-Me", " changeme ", "SECRET"])
def test_given_a_placeholder_secret_in_any_case_when_configuring_then_refused(
    secret: str,
) -> None:
    with pytest.raises(ValueError, match="YIJING_ASTERISK_SECRET"):
        Settings(telephony="asterisk", asterisk_secret=secret)
    with pytest.raises(ValueError, match="YIJING_SECRET_KEY"):
        Settings(
            environment="production",
            telephony="asterisk",
            secret_key=secret,
            asterisk_secret="a-real-one",
        )


def test_given_the_command_logging_when_the_scheduler_runs_jobs_then_no_info_lines() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure(logging.INFO)
        # the loggers APScheduler 3 writes "Added job", "Running job", "executed" to
        for name in ("apscheduler.scheduler", "apscheduler.executors.default"):
            assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
            assert logging.getLogger(name).isEnabledFor(logging.WARNING), name
        assert logging.getLogger("dispatch.offers").isEnabledFor(logging.INFO)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        for name in ("alembic", "aiosqlite", "apscheduler"):
            logging.getLogger(name).setLevel(logging.NOTSET)
