"""The console's own words in zh-CN (default) and English, read from gettext catalogs.

The words live in `operator_console/locale/<locale>/LC_MESSAGES/messages.po` (Babel's PO
format), one file per language; the msgid of an entry is the key that templates (`t.<key>`),
scripts (`T('<key>')`) and Python use. An entry with `msgid_plural` has one form per
plural of its language and is chosen by the count `n` (`ngettext`, by the catalog's own
`Plural-Forms`). The catalogs are read once, on first use: a fresh clone needs no
compile step. `tests/operator_console/test_catalogs.py` checks that every key a page uses has
an entry in both languages and that no entry is left unused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from gettext import c2py
from pathlib import Path

from babel.messages.pofile import read_po

LANGS = ("zh-CN", "en")
#: a page language -> its catalog's locale directory
LOCALES = {"zh-CN": "zh_CN", "en": "en"}
LOCALE_DIR = Path(__file__).parent / "locale"


def catalog_path(lang: str) -> Path:
    """The PO file of a page language."""
    return LOCALE_DIR / LOCALES[lang] / "LC_MESSAGES" / "messages.po"


@dataclass(frozen=True)
class Words:
    """One language's catalog: the plain words, the plural forms and the plural rule."""

    plain: dict[str, str]
    plurals: dict[str, tuple[str, ...]]
    #: count -> index of its form, from the catalog's `Plural-Forms` (gettext's own compiler)
    plural: Callable[[int], int]


@cache
def _words(lang: str) -> Words:
    with catalog_path(lang).open("rb") as f:
        catalog = read_po(f)  # the Plural-Forms header, not CLDR, says the plurals
    plain: dict[str, str] = {}
    plurals: dict[str, tuple[str, ...]] = {}
    for message in catalog:
        if not message.id:
            continue  # the header
        if isinstance(message.id, tuple | list):
            forms = message.string
            if isinstance(forms, tuple | list):
                plurals[message.id[0]] = tuple(forms)
            else:
                plurals[message.id[0]] = (str(forms),)
        else:
            plain[message.id] = str(message.string)
    return Words(plain, plurals, c2py(catalog.plural_expr))


def _lang(lang: str) -> str:
    return lang if lang in LANGS else "zh-CN"


def texts(lang: str) -> dict[str, str]:
    """The console's plain words for a language (plural entries go through `ngettext`)."""
    return _words(_lang(lang)).plain


def ngettext(lang: str, key: str, n: int, **values: object) -> str:
    """A counted word (`{n} visits`) in the form the count takes, its placeholders filled."""
    words = _words(_lang(lang))
    forms = words.plurals[key]
    return forms[min(words.plural(n), len(forms) - 1)].format(n=n, **values)


def script_words(lang: str) -> dict[str, str | list[str]]:
    """Every word of a language for a page's scripts: a plural entry as its list of forms,
    which `T` in common.js picks from by the count `n` (`Intl.PluralRules` of the page)."""
    words = _words(_lang(lang))
    return {**words.plain, **{key: list(forms) for key, forms in words.plurals.items()}}
