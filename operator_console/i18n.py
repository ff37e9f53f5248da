"""The console's own words in zh-CN (default) and English, read from gettext catalogs.

The words live in `operator_console/locale/<locale>/LC_MESSAGES/messages.po` (Babel's PO
format), one file per language; the msgid of an entry is the key that templates (`t.<key>`),
scripts (`T('<key>')`) and Python use. An entry with `msgid_plural` has one form per
plural of its language and is chosen by the count `n` (gettext's `ngettext`, with the
catalog's own `Plural-Forms`). The catalogs are read once, at import: a fresh clone needs no
compile step. `tests/operator_console/test_catalogs.py` checks that every key a page uses has
an entry in both languages and that no entry is left unused.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LANGS = ("zh-CN", "en")
#: a page language -> its catalog's locale directory
LOCALES = {"zh-CN": "zh_CN", "en": "en"}
LOCALE_DIR = Path(__file__).parent / "locale"


def catalog_path(lang: str) -> Path:
    """The PO file of a page language."""
    return LOCALE_DIR / LOCALES[lang] / "LC_MESSAGES" / "messages.po"


@dataclass(frozen=True)
class Words:
    """One language's catalog: the plain words, the plural forms, gettext for `ngettext`."""

    plain: dict[str, str]
    plurals: dict[str, tuple[str, ...]]
    translations: Translations


@cache
def _words(lang: str) -> Words:
    with catalog_path(lang).open("rb") as f:
        catalog = read_po(f, locale=LOCALES[lang])
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
    mo = BytesIO()
    write_mo(mo, catalog)
    mo.seek(0)
    return Words(plain, plurals, Translations(mo))


def _lang(lang: str) -> str:
    return lang if lang in LANGS else "zh-CN"


def texts(lang: str) -> dict[str, str]:
    """The console's plain words for a language (plural entries go through `ngettext`)."""
    return _words(_lang(lang)).plain


def ngettext(lang: str, key: str, n: int, **values: object) -> str:
    """A counted word (`{n} visits`) in the form the count takes, its placeholders filled."""
    words = _words(_lang(lang))
    if key not in words.plurals:
        raise KeyError(key)
    return words.translations.ngettext(key, key, n).format(n=n, **values)


def script_words(lang: str) -> dict[str, str | list[str]]:
    """Every word of a language for a page's scripts: a plural entry as its list of forms,
    which `T` in common.js picks from by the count `n` (`Intl.PluralRules` of the page)."""
    words = _words(_lang(lang))
    return {**words.plain, **{key: list(forms) for key, forms in words.plurals.items()}}
