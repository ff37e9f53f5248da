"""Search keys of a Chinese name: full pinyin and initials (王秀英 -> wangxiuying, wxy)."""

from __future__ import annotations

import re
from functools import lru_cache

from pypinyin import Style, lazy_pinyin

#: surnames read differently from their everyday reading (单 shan, 曾 zeng, ...)
SURNAME_READINGS = {
    "单": "shan",
    "曾": "zeng",
    "解": "xie",
    "仇": "qiu",
    "朴": "piao",
    "区": "ou",
    "查": "zha",
    "翟": "zhai",
    "缪": "miao",
    "覃": "qin",
    "盖": "ge",
    "尉": "yu",
    "乐": "yue",
    "员": "yun",
    "繁": "po",
}


_WORD = re.compile(r"[A-Za-z0-9]+")


@lru_cache(maxsize=65536)
def pinyin_keys(name: str) -> tuple[str, str]:
    """Full pinyin without tones and the initials, both lowercase and without spaces."""
    text = (name or "").strip()
    if not text:
        return "", ""
    # anything that is not Chinese (a Latin name) keeps its words: "Li Ming" -> li, ming
    chunks = lazy_pinyin(text, style=Style.NORMAL, errors=lambda s: " ".join(_WORD.findall(s)))
    if text[0] in SURNAME_READINGS and chunks:
        chunks[0] = SURNAME_READINGS[text[0]]
    syllables = [w.lower().replace("ü", "v") for chunk in chunks for w in chunk.split()]
    return "".join(syllables)[:200], "".join(s[0] for s in syllables)[:64]
