"""The AMI frame parser: what real Asterisk sends, and junk it must survive."""

from __future__ import annotations

import pytest

from providers.asterisk.wire import FrameParser, parse_bytes


def test_greeting_without_blank_line_then_login_response() -> None:
    parser = FrameParser()
    msgs = parser.feed(b"Asterisk Call Manager/9.0.0\r\nResponse: Success\r\nActionID: 1\r\n"
                       b"Message: Authentication accepted\r\n\r\n")  # fmt: skip
    assert parser.version == "9.0.0"
    assert msgs == [{"Response": "Success", "ActionID": "1", "Message": "Authentication accepted"}]


def test_repeated_key_keeps_first_and_empty_values_survive() -> None:
    msgs = parse_bytes(b"Event: UserEvent\r\nCallerIDNum: 1380\r\nAccountCode: \r\n"
                       b"CallerIDNum: 4000\r\n\r\n")  # fmt: skip
    assert msgs == [{"Event": "UserEvent", "CallerIDNum": "1380", "AccountCode": ""}]


@pytest.mark.parametrize(
    "line", [b"ChanVariable: YIJING_REF=offer-1", b"ChanVariable(PJSIP/x-1): YIJING_REF=offer-1"]
)
def test_chanvariable_both_spellings(line: bytes) -> None:
    msgs = parse_bytes(b"Event: Newstate\r\n" + line + b"\r\n\r\n")
    assert msgs[0]["ChanVariable(YIJING_REF)"] == "offer-1"


def test_garbage_and_missing_blank_line_and_megabyte_of_junk(
    caplog: pytest.LogCaptureFixture,
) -> None:
    parser = FrameParser()
    msgs = parser.feed(
        b"hello world\r\n\xff\xfe\x00\r\nEvent: A\r\nX: 1\r\nEvent: B\r\nY: 2\r\n\r\n"
    )
    msgs += parser.feed(b"z" * 1_000_000)
    msgs += parser.feed(b"z" * 100_000 + b"\r\nEvent: C\r\n\r\nNoColonHere\r\nFoo: bar\r\n\r\n")
    assert msgs == [{"Event": "A", "X": "1"}, {"Event": "B", "Y": "2"}, {"Event": "C"}]
    assert parser.skipped_lines >= 3 and parser.bad_frames == 1
    assert "over-long" in caplog.text and "without blank line" in caplog.text


def test_lf_only_frames_and_originate_response_with_both_keys() -> None:
    msgs = parse_bytes(b"Event: OriginateResponse\nResponse: Failure\nReason: 5\n\n")
    assert msgs == [{"Event": "OriginateResponse", "Response": "Failure", "Reason": "5"}]
