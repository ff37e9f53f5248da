"""Port words from an old-style `operator_console/i18n.py` (a `_TEXTS` dict) to the catalogs.

For a branch made before the words moved to operator_console/locale/*/messages.po:

    git show other-branch:operator_console/i18n.py > /tmp/branch_i18n.py
    git show $(git merge-base HEAD other-branch):operator_console/i18n.py > /tmp/base_i18n.py
    python scripts/port_i18n_keys.py /tmp/branch_i18n.py /tmp/base_i18n.py

appends each key the branch added (not in the base, not in the catalogs yet) to both
messages.po files, with the comment above it in the branch's file, and lists the keys whose
words the branch changed, to edit by hand. Without a base, every key the catalogs lack is
added (also those removed from the catalogs as unused). A counted word still needs its
`msgid_plural` forms by hand.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from babel.messages.pofile import read_po

LOCALE = Path(__file__).resolve().parent.parent / "operator_console" / "locale"
CATALOGS = {
    "zh-CN": LOCALE / "zh_CN" / "LC_MESSAGES" / "messages.po",
    "en": LOCALE / "en" / "LC_MESSAGES" / "messages.po",
}


def old_words(path: Path) -> dict[str, list[tuple[str, str, list[str]]]]:
    """lang -> [(key, text, comments above it)] of an old i18n.py's `_TEXTS`."""
    source = path.read_text()
    lines = source.splitlines()
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign | ast.Assign) and "_TEXTS" in ast.unparse(node):
            table = node.value
            break
    else:
        raise SystemExit(f"{path}: no _TEXTS")
    assert isinstance(table, ast.Dict)
    out: dict[str, list[tuple[str, str, list[str]]]] = {}
    for lang_node, words in zip(table.keys, table.values, strict=True):
        assert isinstance(lang_node, ast.Constant) and isinstance(words, ast.Dict)
        entries, previous = [], words.lineno
        for key, value in zip(words.keys, words.values, strict=True):
            assert isinstance(key, ast.Constant)
            comments = [
                lines[n].strip().lstrip("#").strip()
                for n in range(previous, key.lineno - 1)
                if lines[n].strip().startswith("#")
            ]
            previous = value.end_lineno or value.lineno
            entries.append((key.value, ast.literal_eval(value), comments))
        out[lang_node.value] = entries
    return out


def quote(text: str) -> str:
    """A PO string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def main(path: str, base_path: str | None = None) -> int:
    """Append the branch's new keys; report the ones it changed."""
    old = old_words(Path(path))
    base = old_words(Path(base_path)) if base_path else {}
    for lang, po in CATALOGS.items():
        with po.open("rb") as f:
            have = {m.id if isinstance(m.id, str) else m.id[0]: m.string for m in read_po(f)}
        before = {key: words for key, words, _ in base.get(lang, [])}
        added, text = [], po.read_text().rstrip("\n") + "\n"
        for key, words, comments in old.get(lang, []):
            if base and key in before:
                if before[key] != words:
                    sys.stdout.write(f"{lang}: the branch changed {key}: {words!r}\n")
                continue
            if key in have:
                continue
            notes = "".join(f"#. {c}\n" for c in comments)
            text += f"\n{notes}msgid {quote(key)}\nmsgstr {quote(words)}\n"
            added.append(key)
        po.write_text(text)
        sys.stdout.write(f"{lang}: added {len(added)}: {' '.join(added)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
