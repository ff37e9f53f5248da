"""Phone numbers: one normal form (E.164) for every way a community office writes them."""

from __future__ import annotations

from functools import lru_cache

import phonenumbers

DEFAULT_REGION = "CN"


class BadPhone(ValueError):
    """A string that is not a usable phone number."""

    #: the machine code an API error carries for it
    code = "bad_phone"


# pure, and numbers recur: a caller ID on every call, stored numbers on every edit
@lru_cache(maxsize=65536)
def normalize(raw: str, *, region: str = DEFAULT_REGION, strict: bool = False) -> str:
    """`023-5444 1234`, `+86 23 5444 1234` and `02354441234` all become `+862354441234`.

    `strict` (for numbers people register) also refuses numbers outside the numbering
    plan's real ranges: `12345` or `1380000111` (a digit short) are possible lengths for
    a caller ID, but nobody can be called back on them.
    """
    text = (raw or "").strip()
    if not text:
        raise BadPhone("empty phone number")
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise BadPhone(f"not a phone number: {exc}") from exc
    if not phonenumbers.is_possible_number(number):
        raise BadPhone("not a possible phone number")
    if strict and not phonenumbers.is_valid_number(number):
        raise BadPhone("not a number in use: check the digits and the area code")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def try_normalize(raw: str, *, region: str = DEFAULT_REGION) -> str | None:
    """`normalize`, or None for a caller ID that is not a number (anonymous, garbage)."""
    try:
        return normalize(raw, region=region)
    except BadPhone:
        return None


def mask(number: str) -> str:
    """A number with its middle hidden, for merchants and logs: +86138****0001."""
    if len(number) <= 8:
        return "*" * len(number)
    return number[:6] + "****" + number[-4:]
