"""Phone normalization: every way an office writes a number comes to one E.164 form."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from registry.phones import BadPhone, mask, normalize, try_normalize
from registry.schemas import PhoneIn


@pytest.mark.parametrize(
    "raw",
    ["023-5444 1234", "+86 23 5444 1234", "02354441234", "(023) 5444-1234", "0086 23 54441234"],
)
def test_given_a_chongqing_landline_in_any_writing_when_normalized_then_one_number(
    raw: str,
) -> None:
    assert normalize(raw) == "+862354441234"


@pytest.mark.parametrize("raw", ["138 0000 0001", "+86 138-0000-0001", "13800000001"])
def test_given_a_mobile_in_any_writing_when_normalized_then_one_number(raw: str) -> None:
    assert normalize(raw) == "+8613800000001"


@pytest.mark.parametrize("raw", ["", "   ", "123", "abc", "0238"])
def test_given_garbage_when_normalized_then_bad_phone(raw: str) -> None:
    with pytest.raises(BadPhone):
        normalize(raw)
    assert try_normalize(raw) is None


def test_given_a_number_when_masked_then_the_middle_is_hidden() -> None:
    assert mask("+8613800000001") == "+86138****0001"


@pytest.mark.parametrize("raw", ["12345", "023-544", "1380000111", "+86 10 1234"])
def test_given_a_possible_but_unused_number_when_registered_then_refused(raw: str) -> None:
    assert try_normalize(raw) is not None  # as a caller ID it is kept as it came
    with pytest.raises(BadPhone, match="not a number in use"):
        normalize(raw, strict=True)


def test_given_a_registration_with_a_number_a_digit_short_then_the_field_is_named() -> None:
    with pytest.raises(ValidationError) as caught:
        PhoneIn(number="1380000111")
    assert caught.value.errors()[0]["loc"] == ("number",)
    assert PhoneIn(number="138 0000 1111").number == "+8613800001111"
