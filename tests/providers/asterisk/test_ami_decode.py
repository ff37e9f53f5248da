"""Captured AMI transcripts decoded into port events (the same parser and correlator as live)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from providers.asterisk.correlate import end_cause, originate_failure
from providers.asterisk.decode import decode_bytes, decode_chunks, decode_file, main
from providers.base import EndCause, OriginateFailure
from tests.providers.asterisk.conftest import FIXTURES


def _decode(name: str, **kw: object) -> list[dict[str, object]]:
    return list(decode_file(FIXTURES / name, **kw))  # type: ignore[arg-type]


def test_a_hotline_call_with_caller_id_and_menu_digit() -> None:
    ref = "ast-1795290863.0"
    assert _decode("a_inbound_hotline.raw") == [
        {"event": "CallOffered", "ref": ref, "caller": "13800000001", "dialled": "4000",
         "caller_name": None},
        {"event": "CallAnswered", "ref": ref, "answered_by": ""},
        {"event": "DigitPressed", "ref": ref, "digit": "1"},
        {"event": "CallBridged", "ref": ref, "peer": "operator:operator"},
        {"event": "CallEnded", "ref": ref, "cause": "normal"},
    ]  # fmt: skip


def test_b_outbound_answered_with_digit_1() -> None:
    assert _decode("b_originate_answer_dtmf1.raw", ref_vars=["ORDER_ID"]) == [
        {"event": "CallRinging", "ref": "A1001"},
        {"event": "CallAnswered", "ref": "A1001", "answered_by": ""},
        {"event": "DigitPressed", "ref": "A1001", "digit": "1"},
        {"event": "CallEnded", "ref": "A1001", "cause": "normal"},
    ]


def test_c1_no_answer_even_though_hangup_comes_before_the_response() -> None:
    assert _decode("c1_originate_noanswer.raw", ref_vars=["ORDER_ID"]) == [
        {"event": "CallRinging", "ref": "A1002"},
        {"event": "OriginateFailed", "ref": "A1002", "reason": "no_answer"},
    ]


def test_c2_busy() -> None:
    assert _decode("c2_originate_busy.raw", ref_vars=["ORDER_ID"]) == [
        {"event": "OriginateFailed", "ref": "A1003", "reason": "busy"},
    ]


def test_d_queue_call_ends_bridged_to_the_queue_member() -> None:
    """Queue join/leave have no port event (dispatch owns the queue); the connect is a bridge."""
    ref = "ast-1795290918.10"
    events = _decode("d_queue_call.raw")
    assert [e["event"] for e in events] == [
        "CallOffered", "CallAnswered", "DigitPressed", "CallBridged", "CallEnded"
    ]  # fmt: skip
    assert events[2] == {"event": "DigitPressed", "ref": ref, "digit": "2"}
    assert events[3] == {"event": "CallBridged", "ref": ref, "peer": "operator:op1001"}


def test_utf8_names_whole_even_when_every_read_is_one_byte() -> None:
    data = (FIXTURES / "utf8_names.raw").read_bytes()
    whole = list(decode_bytes(data))
    names = [e["caller_name"] for e in whole if e["event"] == "CallOffered"]
    assert names == ["王秀英", "李建国", "张桂兰", "陈志强"]
    bytewise = list(decode_chunks(data[i : i + 1] for i in range(len(data))))
    assert bytewise == whole


def test_surge_320_calls_none_lost() -> None:
    events = _decode("surge_hotline.raw.gz")
    counts = Counter(e["event"] for e in events)
    assert counts == {"CallOffered": 320, "CallAnswered": 320, "DigitPressed": 320,
                      "CallEnded": 320, "CallBridged": 247}  # fmt: skip
    callers = {e["caller"] for e in events if e["event"] == "CallOffered"}
    assert callers == {f"138000{n:05d}" for n in range(1001, 1321)}
    digits = Counter(e["digit"] for e in events if e["event"] == "DigitPressed")
    assert digits == {"1": 228, "2": 92}
    causes = Counter(e["cause"] for e in events if e["event"] == "CallEnded")
    assert causes == {"normal": 247, "unknown": 73}  # the 73 who hung up waiting in queue


@pytest.mark.parametrize(
    ("reason", "failure"),
    [("0", OriginateFailure.FAILED), ("3", OriginateFailure.NO_ANSWER),
     ("5", OriginateFailure.BUSY), ("8", OriginateFailure.CONGESTION),
     ("", OriginateFailure.FAILED)],
)  # fmt: skip
def test_originate_reasons(reason: str, failure: OriginateFailure) -> None:
    assert originate_failure(reason) is failure


@pytest.mark.parametrize(
    ("cause", "end"),
    [("16", EndCause.NORMAL), ("17", EndCause.BUSY), ("19", EndCause.NO_ANSWER),
     ("21", EndCause.REJECTED), ("34", EndCause.CONGESTION), ("38", EndCause.CONGESTION),
     ("1", EndCause.FAILED), ("0", EndCause.UNKNOWN), (None, EndCause.UNKNOWN)],
)  # fmt: skip
def test_hangup_causes(cause: str | None, end: EndCause) -> None:
    assert end_cause(cause) is end


def test_cli_prints_one_json_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(FIXTURES / "utf8_names.raw")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 20
    first = json.loads(lines[0])
    assert first["event"] == "CallOffered" and first["caller_name"] == "王秀英"
    assert "王秀英" in lines[0]  # printed as UTF-8, not \\u escapes


def test_cli_missing_file_fails_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(FIXTURES / "nope.raw")]) == 1
    assert "ami-decode" in capsys.readouterr().err
