"""How dynamic values are spoken: numbers, times, dates, durations, phone numbers, names.

Prompts show values to people who listen, not read: "30" must be said 三十, 14:30 is
下午两点半, a phone number is read digit by digit (1 as 幺, as Chinese operators do) and
a resident is greeted as 王阿姨 rather than by full name. Everything here is pure (no
clock: callers pass `today`); `ivr.prompts.render` uses it through format specs such as
``{deadline:time}``. English forms exist so the second catalog reads naturally too.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

#: Times are spoken in the community's time zone.
LOCAL_TZ = ZoneInfo("Asia/Shanghai")

#: From this age on a resident is 奶奶/爷爷 rather than 阿姨/叔叔.
ELDER_AGE = 70

_DIGITS = "零一二三四五六七八九"
_GROUP_UNITS = ("", "万", "亿", "万亿")
_COMPOUND_SURNAMES = frozenset(
    [
        "欧阳",
        "司马",
        "诸葛",
        "上官",
        "东方",
        "皇甫",
        "尉迟",
        "公孙",
        "慕容",
        "长孙",
        "宇文",
        "司徒",
        "夏侯",
        "轩辕",
        "令狐",
        "钟离",
        "端木",
        "西门",
        "南宫",
        "独孤",
        "申屠",
        "太史",
        "万俟",
        "闻人",
        "澹台",
        "公冶",
        "濮阳",
        "淳于",
        "单于",
    ]
)
_FEMALE = frozenset({"女", "f", "female", "w", "woman"})
_MALE = frozenset({"男", "m", "male", "man"})
_WEEKDAYS = ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期天")
_EN_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_EN_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


# -- Chinese ------------------------------------------------------------------------


def _group(n: int, leading: bool) -> str:
    """A number 1..9999 in words; `leading` drops the 一 of 一十 (十二, not 一十二)."""
    out = ""
    gap = False
    for pos, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        d = n // pos % 10
        if d == 0:
            gap = bool(out)
            continue
        if gap:
            out += "零"
            gap = False
        if pos == 10 and d == 1 and not out and leading:
            out += "十"
        else:
            out += _DIGITS[d] + unit
    return out


def number(n: int, *, measure: bool = False) -> str:
    """An integer in Chinese words: 30 三十, 102 一百零二; `measure` gives 两点, 两百."""
    if n < 0:
        return "负" + number(-n, measure=measure)
    if n == 0:
        return "零"
    groups: list[int] = []
    while n:
        groups.append(n % 10000)
        n //= 10000
    if len(groups) > len(_GROUP_UNITS):
        raise ValueError("number too large to speak")
    out = ""
    zero_before = False
    for index in range(len(groups) - 1, -1, -1):
        g = groups[index]
        if g == 0:
            zero_before = bool(out)
            continue
        if out and (g < 1000 or zero_before):
            out += "零"
        out += _group(g, leading=not out) + _GROUP_UNITS[index]
        zero_before = False
    if measure and out.startswith("二") and (len(out) == 1 or out[1] in "百千万亿"):
        out = "两" + out[1:]
    return out


def decimal(value: float | str) -> str:
    """A decimal number: 3.5 三点五, 0.25 零点二五."""
    text = str(value)
    whole, _, frac = text.partition(".")
    sign = ""
    if whole.startswith("-"):
        sign, whole = "负", whole[1:]
    out = sign + number(int(whole or "0"))
    frac = frac.rstrip("0")
    if frac:
        out += "点" + "".join(_DIGITS[int(c)] for c in frac)
    return out


def digits(text: str, *, yao: bool = False) -> str:
    """Read digits one by one (codes, room numbers); `yao` says 幺 for 1 as in phone numbers."""
    out = []
    for ch in text:
        if ch.isdigit() and ch.isascii():
            out.append("幺" if yao and ch == "1" else _DIGITS[int(ch)])
        elif ch.isascii() and ch.isalpha():
            out.append(ch.upper())
        elif ch in " -_/":
            out.append("，")
        else:
            out.append(ch)
    return re.sub("，+", "，", "".join(out)).strip("，")


def phone_groups(number_text: str) -> list[str]:
    """Split a phone number into the groups it is read in: 138 0023 4567; 023 6886 1234."""
    raw = re.sub(r"[^\d+]", "", number_text)
    if raw.startswith("+86"):
        raw = raw[3:]
    elif raw.startswith("0086"):
        raw = raw[4:]
    raw = raw.lstrip("+")
    if len(raw) == 11 and raw.startswith("1"):
        return [raw[:3], raw[3:7], raw[7:]]
    head: list[str] = []
    if raw.startswith("0") and len(raw) > 8:
        cut = 3 if raw[1] in "12" else 4
        head, raw = [raw[:cut]], raw[cut:]
    return head + [raw[i : i + 4] for i in range(0, len(raw), 4)]


def phone(number_text: str) -> str:
    """A phone number read digit by digit in groups, 1 as 幺: 幺三八，零零二三，四五六七."""
    return "，".join(digits(g, yao=True) for g in phone_groups(number_text))


def code(text: str) -> str:
    """A code (door code word, order number): digits one by one, words as they are."""
    return digits(text) if any(c.isdigit() for c in text) else text


def slow_digits(text: str) -> str:
    """A one-time code read slowly, a pause after every digit, 1 as 幺: 幺，三，八，零."""
    return "，".join(digits(c, yao=True) for c in text if c.isascii() and c.isalnum())


def _local(value: datetime | time) -> datetime | time:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(LOCAL_TZ)
    return value


def day_period(hour: int) -> str:
    """The part of the day an hour (0..23) falls in, as people say it: 上午, 下午, 晚上."""
    if hour == 0:
        return "半夜"
    if hour < 5:
        return "凌晨"
    if hour < 9:
        return "早上"
    if hour < 12:
        return "上午"
    if hour == 12:
        return "中午"
    if hour < 18:
        return "下午"
    return "晚上"


def clock(value: datetime | time) -> str:
    """A clock time: 下午三点半, 上午九点, 下午两点零五分, 中午十二点."""
    value = _local(value)
    hour, minute = value.hour, value.minute
    twelve = hour % 12 or 12
    out = day_period(hour) + number(twelve, measure=True) + "点"
    if minute == 30:
        out += "半"
    elif minute:
        out += ("零" if minute < 10 else "") + number(minute) + "分"
    return out


def day(value: date, *, today: date | None = None, weekday: bool = False) -> str:
    """A date: 今天/明天/后天 near `today`, else 三月五号 (with the year when not this year)."""
    if isinstance(value, datetime):
        value = _local(value).date()  # type: ignore[union-attr]
    if today is not None:
        relative = {0: "今天", 1: "明天", 2: "后天", -1: "昨天"}.get((value - today).days)
        if relative:
            return relative
    out = ""
    if today is not None and value.year != today.year:
        out += "".join("〇" if c == "0" else _DIGITS[int(c)] for c in str(value.year)) + "年"
    out += number(value.month) + "月" + number(value.day) + "号"
    if weekday:
        out += "，" + _WEEKDAYS[value.weekday()]
    return out


def when(value: datetime, *, today: date | None = None) -> str:
    """A moment: 下午三点半 today, 明天上午九点 tomorrow, 三月五号下午两点 later."""
    local = _local(value)
    assert isinstance(local, datetime)
    if today is not None and local.date() == today:
        return clock(local)
    return day(local.date(), today=today) + clock(local)


def duration(value: timedelta | int | float) -> str:
    """A duration (minutes when a number): 三十分钟, 两个小时, 一个半小时, 一小时十五分钟."""
    seconds = int(value.total_seconds()) if isinstance(value, timedelta) else int(value * 60)
    if seconds < 60:
        return number(seconds, measure=True) + "秒"
    minutes = round(seconds / 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    out = number(days, measure=True) + "天" if days else ""
    if hours and minutes == 30 and not days:
        return number(hours, measure=True) + "个半小时"
    if hours:
        out += number(hours, measure=True) + ("小时" if minutes and not days else "个小时")
    if minutes and not days:
        out += number(minutes, measure=True) + "分钟"
    return out


def surname(name: str) -> str:
    """The family name of a Chinese full name (compound ones like 欧阳 included)."""
    name = name.strip()
    if name[:2] in _COMPOUND_SURNAMES:
        return name[:2]
    return name[:1]


def _sex(sex: str | None) -> str | None:
    key = (sex or "").strip().lower()
    if key in _FEMALE:
        return "f"
    if key in _MALE:
        return "m"
    return None


def age_in(birth_year: int | None, today: date | None) -> int | None:
    """Age in whole years from a birth year, or None when either is unknown."""
    if birth_year is None or today is None:
        return None
    return today.year - birth_year


def address_form(name: str, sex: str | None, age: int | None = None) -> str:
    """How to greet a resident: 王阿姨/王叔叔, from 70 on 王奶奶/王爷爷; else the full name."""
    name = name.strip()
    if not name or not re.match(r"[\u4e00-\u9fff]", name):
        return name
    kind = _sex(sex)
    if kind is None:
        return name
    elder = age is not None and age >= ELDER_AGE
    titles = {"f": ("阿姨", "奶奶"), "m": ("叔叔", "爷爷")}[kind]
    return surname(name) + titles[elder]


# -- English --------------------------------------------------------------------------


def en_clock(value: datetime | time) -> str:
    """A clock time in English: 3:30 PM, noon, 9 AM."""
    value = _local(value)
    hour, minute = value.hour, value.minute
    if minute == 0 and hour == 12:
        return "noon"
    if minute == 0 and hour == 0:
        return "midnight"
    twelve = hour % 12 or 12
    suffix = "AM" if hour < 12 else "PM"
    return f"{twelve} {suffix}" if minute == 0 else f"{twelve}:{minute:02d} {suffix}"


def en_day(value: date, *, today: date | None = None, weekday: bool = False) -> str:
    """A date in English: today, tomorrow, March 5."""
    if isinstance(value, datetime):
        value = _local(value).date()  # type: ignore[union-attr]
    if today is not None:
        relative = {0: "today", 1: "tomorrow", -1: "yesterday"}.get((value - today).days)
        if relative:
            return relative
    out = f"{_EN_MONTHS[value.month - 1]} {value.day}"
    if today is not None and value.year != today.year:
        out += f", {value.year}"
    return f"{_EN_WEEKDAYS[value.weekday()]}, {out}" if weekday else out


def en_when(value: datetime, *, today: date | None = None) -> str:
    """A moment in English: 3:30 PM today, tomorrow at 9 AM."""
    local = _local(value)
    assert isinstance(local, datetime)
    if today is not None and local.date() == today:
        return en_clock(local)
    return f"{en_day(local.date(), today=today)} at {en_clock(local)}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def en_duration(value: timedelta | int | float) -> str:
    """A duration in English: 30 minutes, 1 hour 15 minutes, 2 days."""
    seconds = int(value.total_seconds()) if isinstance(value, timedelta) else int(value * 60)
    if seconds < 60:
        return _plural(seconds, "second")
    minutes = round(seconds / 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = []
    if days:
        parts.append(_plural(days, "day"))
    if hours:
        parts.append(_plural(hours, "hour"))
    if minutes and not days:
        parts.append(_plural(minutes, "minute"))
    return " ".join(parts)


def en_digits(text: str) -> str:
    """Digits one by one for English speech: 4 8 2 7."""
    return " ".join(c for c in text if c.isalnum())


def en_slow_digits(text: str) -> str:
    """A one-time code in English speech, a pause after every digit: 1, 3, 8, 0."""
    return ", ".join(c for c in text if c.isascii() and c.isalnum())


def en_phone(number_text: str) -> str:
    """A phone number in English speech: digit by digit, groups separated by commas."""
    return ", ".join(en_digits(g) for g in phone_groups(number_text))


def en_address_form(name: str, sex: str | None, romanized_surname: str | None = None) -> str:
    """How to greet a resident in English: Mrs Wang / Mr Wang, else the name as given."""
    kind = _sex(sex)
    family = romanized_surname or _romanize(surname(name)) if name.strip() else ""
    if kind is None or not family:
        name = name.strip()
        family_name = surname(name) if re.match(r"[\u4e00-\u9fff]", name) else ""
        given = name[len(family_name) :]
        return " ".join(p for p in (_romanize(family_name), _romanize(given)) if p)
    return ("Mrs " if kind == "f" else "Mr ") + family


def _romanize(text: str) -> str:
    if not re.search(r"[\u4e00-\u9fff]", text):
        return text
    from pypinyin import lazy_pinyin

    return "".join(lazy_pinyin(text)).capitalize()


# -- text for the synthesiser ------------------------------------------------------------


def spoken_digits_for_tts(text: str) -> str:
    """Replace the Arabic numerals in zh-CN catalog text with Chinese words for the TTS."""
    return re.sub(r"\d+", lambda m: number(int(m.group())), text)
