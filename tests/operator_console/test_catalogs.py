"""The console's word catalogs (operator_console/locale/*/messages.po) against the code.

Every key a template (`t.<key>`, `t['<key>']`), a script (`T('<key>')`, found by Babel's
JavaScript extractor) or Python (`t["<key>"]`, `ngettext(lang, "<key>", n)`) uses has an
entry in zh-CN and in English; every entry is used somewhere; both languages have the same
keys, the same placeholders and no empty word. A key built at run time (`T(\\`rank_${code}\\`)`)
belongs to a family: a family whose codes the server defines is checked code by code against
them, the others count every entry of their prefix as used.
"""

from __future__ import annotations

import ast
import re
from io import BytesIO
from pathlib import Path

import pytest
from babel.messages.extract import extract_javascript
from babel.messages.pofile import read_po

from dispatch import matching
from dispatch.figures import RATINGS
from dispatch.machines.call import CallState
from dispatch.machines.offer import OfferState
from dispatch.machines.operator import OperatorState
from dispatch.machines.ticket import TicketState
from operator_console import i18n
from operator_console.enums import ENUMS
from registry.models import Urgency

CONSOLE = Path(i18n.__file__).parent
TEMPLATES = sorted((CONSOLE / "templates").glob("*.html"))
SCRIPTS = sorted((CONSOLE / "static").glob("*.js"))
PYTHON = sorted(p for p in CONSOLE.glob("*.py") if p.name != "i18n.py")

_KEY = r"[a-z][a-z0-9_]*"
#: a template's static use: t.key, t['key'], t["key"]
_TEMPLATE_USE = re.compile(rf"\bt\.({_KEY})\b|\bt\[['\"]({_KEY})['\"]\]")
#: a template's family: t['new_' + section]
_TEMPLATE_FAMILY = re.compile(rf"\bt\[['\"]({_KEY})['\"]\s*[+~]")
#: Python's static use: t["key"], words["key"], ngettext(lang, "key", n)
_PY_USE = re.compile(rf"\b(?:t|words)\[\"({_KEY})\"\]|ngettext\([^,]+,\s*\"({_KEY})\"")
#: Python's family: t[f"role_{...}"]
_PY_FAMILY = re.compile(rf"\b(?:t|words)(?:\[|\.get\()f\"({_KEY})\{{")
#: any quoted word that could be a key: what counts as a use for the unused-entry check
_LITERAL = re.compile(rf"(?<![\w$])['\"]({_KEY})['\"]")
_OBJECT_KEY = re.compile(rf"[{{,]\s*({_KEY}):")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")

#: run-time key families whose codes the server defines: each entry of the prefix must be one
#: of them, and each of them must have an entry
CODED_FAMILIES: dict[str, set[str]] = {"rank_": set(matching.REASONS)}
for _enum in ENUMS.values():
    if _enum["prefix"]:
        CODED_FAMILIES.setdefault(_enum["prefix"], set()).update(_enum["values"])


def _catalog(lang: str) -> dict[str, str | tuple[str, ...]]:
    with i18n.catalog_path(lang).open("rb") as f:
        catalog = read_po(f, locale=i18n.LOCALES[lang])
    out: dict[str, str | tuple[str, ...]] = {}
    for message in catalog:
        if not message.id:
            continue
        assert not message.fuzzy, f"{lang}: {message.id} is marked fuzzy"
        key = message.id[0] if isinstance(message.id, tuple | list) else message.id
        assert key not in out, f"{lang}: {key} twice"
        plural = isinstance(message.string, tuple | list)
        out[key] = tuple(message.string) if plural else message.string
    return out


#: a script's `T('key'` / `T(\`prefix${`, for the calls Babel's lexer loses track of (an
#: object literal with a shorthand property after a template literal, a `?:` of two keys)
_SCRIPT_CALL = re.compile(rf"\bT\(\s*(?:(['\"])({_KEY})\1|`({_KEY})\$\{{)")
_SCRIPT_FAMILY = re.compile(rf"\bkey = `({_KEY})\$\{{")
_SCRIPT_CHOICE = re.compile(rf"\bT\([^()'\"`]*\?\s*'({_KEY})'\s*:\s*'({_KEY})'")


def _script_calls(path: Path) -> list[str]:
    """The first argument of every `T(...)` in a script: what Babel's JavaScript extractor
    reads (a template literal keeps its `${...}`) and what the patterns above find."""
    found = extract_javascript(
        BytesIO(path.read_bytes()), {"T": None}, [], {"parse_template_string": True}
    )
    out = [message for _line, _func, message, _comments in found if isinstance(message, str)]
    text = path.read_text()
    for match in _SCRIPT_CALL.finditer(text):
        out.append(match.group(2) or f"{match.group(3)}${{}}")
    for match in _SCRIPT_CHOICE.finditer(text):
        out.extend(match.groups())
    return out


def _uses() -> tuple[dict[str, str], dict[str, str]]:
    """Static keys and run-time families (prefixes), each with the first file using it."""
    keys: dict[str, str] = {}
    families: dict[str, str] = {}
    for path in TEMPLATES:
        text = path.read_text()
        for match in _TEMPLATE_USE.finditer(text):
            keys.setdefault(match.group(1) or match.group(2), path.name)
        for match in _TEMPLATE_FAMILY.finditer(text):
            families.setdefault(match.group(1), path.name)
    for path in SCRIPTS:
        for message in _script_calls(path):
            if "${" in message:
                prefix = message.split("${", 1)[0]
                if prefix:
                    families.setdefault(prefix, path.name)
            elif re.fullmatch(_KEY, message):
                keys.setdefault(message, path.name)
        # a key built before the call: const key = `e_${data.error_id}`; T(key)
        for prefix in _SCRIPT_FAMILY.findall(path.read_text()):
            families.setdefault(prefix, path.name)
    for path in PYTHON:
        text = path.read_text()
        for match in _PY_USE.finditer(text):
            keys.setdefault(match.group(1) or match.group(2), path.name)
        for match in _PY_FAMILY.finditer(text):
            families.setdefault(match.group(1), path.name)
    return keys, families


def _literals() -> set[str]:
    """Every quoted word of the templates, scripts and Python (a key held in a table, a
    field spec's label, one side of a `?:`)."""
    words: set[str] = set()
    for path in [*TEMPLATES, *SCRIPTS]:
        text = path.read_text()
        words.update(_LITERAL.findall(text))
        # a row's field is a table's column, worded by its name (admin.js table(): T(c))
        words.update(_OBJECT_KEY.findall(text))
        words.update(m.group(1) or m.group(2) for m in _TEMPLATE_USE.finditer(text))
    for path in PYTHON:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                words.add(node.value)
    return words


ZH = _catalog("zh-CN")
EN = _catalog("en")


def test_both_languages_have_the_same_keys() -> None:
    assert sorted(set(ZH) - set(EN)) == [], "keys without English"
    assert sorted(set(EN) - set(ZH)) == [], "keys without zh-CN"


@pytest.mark.parametrize("lang", i18n.LANGS)
def test_no_entry_is_empty_and_plurals_have_the_forms_of_their_language(lang: str) -> None:
    catalog, forms = (ZH, 1) if lang == "zh-CN" else (EN, 2)
    assert [k for k, v in catalog.items() if not v or (isinstance(v, tuple) and not all(v))] == []
    assert {k: len(v) for k, v in catalog.items() if isinstance(v, tuple) and len(v) != forms} == {}
    assert {k for k, v in ZH.items() if isinstance(v, tuple)} == {
        k for k, v in EN.items() if isinstance(v, tuple)
    }, "an entry is plural in one language only"


def test_both_languages_fill_the_same_placeholders() -> None:
    def holes(value: str | tuple[str, ...]) -> set[str]:
        parts = value if isinstance(value, tuple) else (value,)
        return {name for part in parts for name in _PLACEHOLDER.findall(part)}

    differ = {k: (holes(ZH[k]), holes(EN[k])) for k in ZH if holes(ZH[k]) != holes(EN.get(k, ""))}
    assert differ == {}
    # a plural entry is chosen by its count `n`
    assert [k for k, v in EN.items() if isinstance(v, tuple) and "n" not in holes(v)] == []


def test_every_key_a_page_uses_has_a_chinese_and_an_english_entry() -> None:
    keys, families = _uses()
    missing = {key: where for key, where in keys.items() if key not in ZH or key not in EN}
    assert missing == {}, "keys used without a catalog entry (add them to both messages.po)"
    empty = {p: where for p, where in families.items() if not any(k.startswith(p) for k in ZH)}
    assert empty == {}, "run-time key families without any entry"


def test_templates_and_python_take_counted_words_through_ngettext() -> None:
    """`t` holds the plain words only: a counted word there would show nothing."""
    plural = {k for k, v in ZH.items() if isinstance(v, tuple)}
    direct = {}
    for path in TEMPLATES:
        for match in _TEMPLATE_USE.finditer(path.read_text()):
            if (match.group(1) or match.group(2)) in plural:
                direct[match.group(0)] = path.name
    for path in PYTHON:
        for match in _PY_USE.finditer(path.read_text()):
            if match.group(1) in plural:
                direct[match.group(0)] = path.name
    assert direct == {}


def test_every_coded_family_has_an_entry_for_each_code_the_server_defines_and_no_other() -> None:
    keys, families = _uses()
    prefixes = {*families, *CODED_FAMILIES}
    for prefix, codes in CODED_FAMILIES.items():
        longer = tuple(p for p in prefixes if p != prefix and p.startswith(prefix))
        have = {k[len(prefix) :] for k in ZH if k.startswith(prefix) and not k.startswith(longer)}
        assert sorted(codes - have) == [], f"{prefix}: codes without words"
        # an entry of the prefix that a page uses by name (price_yuan beside price_<kind>)
        named = {k[len(prefix) :] for k in keys if k.startswith(prefix)}
        assert sorted(have - codes - named) == [], f"{prefix}: words for codes the server has not"


def test_every_state_the_server_sends_has_words() -> None:
    """Calls, tickets, offers, operators, urgency and ratings are worded by stateName
    (`st_<state>`): a state without words shows as its code."""
    states = {*CallState, *TicketState, *OfferState, *OperatorState, *Urgency, *RATINGS}
    assert sorted(str(s) for s in states if f"st_{s}" not in ZH) == []


def test_no_entry_is_left_unused() -> None:
    keys, families = _uses()
    literals = _literals()
    prefixes = tuple(families) + tuple(CODED_FAMILIES)
    unused = sorted(
        key
        for key in ZH
        if key not in keys and key not in literals and not key.startswith(prefixes)
    )
    assert unused == [], "entries no page uses (remove them from both messages.po)"


def test_the_extractor_sees_static_uses_and_families() -> None:
    """The checks above are only as good as the extraction: it must find these uses."""
    keys, families = _uses()
    assert "app" in keys  # {{ t.app }}
    assert "emergency_alert" in keys  # T('emergency_alert', {...}) in common.js
    assert {"import_ok", "import_done"} <= set(keys)  # T(dryRun ? 'import_ok' : 'import_done')
    assert "forbidden_title" in keys  # t["forbidden_title"] in pages.py
    assert {"rank_", "e_", "role_", "new_"} <= set(families)


def test_english_counts_take_the_singular_for_one_and_chinese_has_one_form() -> None:
    assert i18n.ngettext("en", "visits_n", 1) == "1 visit"
    assert i18n.ngettext("en", "visits_n", 2) == "2 visits"
    assert i18n.ngettext("en", "visits_n", 0) == "0 visits"
    assert i18n.ngettext("zh-CN", "visits_n", 1) == "1 次上门"
    assert i18n.ngettext("zh-CN", "visits_n", 5) == "5 次上门"
    assert i18n.script_words("en")["rank_no_shows"] == ["{n} recent no-show", "{n} recent no-shows"]


#: Chinese a script may hold: the registry's stored values it maps to keys (groups, sex)
#: and the opening-hours parser's accepted input, never words it shows
_SCRIPT_CHINESE_ALLOWED = {"孤寡", "空巢", "残疾", "男", "女", "休息", "关闭", "至到"}
_CJK = re.compile(r"[\u3400-\u9fff]+")


def test_scripts_show_no_chinese_of_their_own() -> None:
    """A page's words come from the catalog: a Chinese string in a script has no English."""
    found = {}
    for path in SCRIPTS:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("//", 1)[0] if not line.lstrip().startswith("//") else ""
            runs = set(_CJK.findall(code)) - _SCRIPT_CHINESE_ALLOWED
            if runs:
                found[f"{path.name}:{number}"] = sorted(runs)
    assert found == {}, "move these words to the catalogs (messages.po) and use T('<key>')"


def test_templates_show_no_chinese_of_their_own() -> None:
    """Only the service's name, 医敬, is written in a template; every other word is `t.<key>`."""
    found = {}
    for path in TEMPLATES:
        text = re.sub(r"\{#.*?#\}", "", path.read_text(), flags=re.S)
        runs = set(_CJK.findall(text)) - {"医敬"}
        if runs:
            found[path.name] = sorted(runs)
    assert found == {}, "move these words to the catalogs (messages.po) and use {{ t.<key> }}"
