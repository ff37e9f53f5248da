"""Chinese (and English) spoken forms of numbers, times, dates, durations, phones and names."""

from datetime import UTC, date, datetime, time, timedelta

import pytest

from ivr import speech


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "零"),
        (1, "一"),
        (2, "二"),
        (10, "十"),
        (11, "十一"),
        (12, "十二"),
        (20, "二十"),
        (30, "三十"),
        (45, "四十五"),
        (99, "九十九"),
        (100, "一百"),
        (101, "一百零一"),
        (102, "一百零二"),
        (110, "一百一十"),
        (115, "一百一十五"),
        (1000, "一千"),
        (1001, "一千零一"),
        (1010, "一千零一十"),
        (1200, "一千二百"),
        (2025, "二千零二十五"),
        (10000, "一万"),
        (10010, "一万零一十"),
        (12345, "一万二千三百四十五"),
        (100000, "十万"),
        (100001, "十万零一"),
        (1000001, "一百万零一"),
        (1001000, "一百万一千"),
        (100000000, "一亿"),
        (100001000, "一亿零一千"),
        (-5, "负五"),
    ],
)
def test_number_reads_integers_as_chinese_words(n: int, words: str) -> None:
    assert speech.number(n) == words


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (2, "两"),
        (12, "十二"),
        (22, "二十二"),
        (200, "两百"),
        (2000, "两千"),
        (20000, "两万"),
        (2200, "两千二百"),
        (200000, "二十万"),
        (3, "三"),
    ],
)
def test_number_says_liang_before_a_measure_word_where_natural(n: int, words: str) -> None:
    assert speech.number(n, measure=True) == words


def test_number_refuses_what_it_cannot_say() -> None:
    with pytest.raises(ValueError, match="too large"):
        speech.number(10**17)


@pytest.mark.parametrize(
    ("value", "words"),
    [(3.5, "三点五"), ("0.25", "零点二五"), ("12.0", "十二"), ("-1.5", "负一点五")],
)
def test_decimal(value: float | str, words: str) -> None:
    assert speech.decimal(value) == words


@pytest.mark.parametrize(
    ("at", "words"),
    [
        (time(15, 30), "下午三点半"),
        (time(14, 0), "下午两点"),
        (time(2, 0), "凌晨两点"),
        (time(9, 0), "上午九点"),
        (time(7, 15), "早上七点十五分"),
        (time(14, 5), "下午两点零五分"),
        (time(12, 0), "中午十二点"),
        (time(12, 30), "中午十二点半"),
        (time(20, 45), "晚上八点四十五分"),
        (time(0, 10), "半夜十二点十分"),
        (time(22, 22), "晚上十点二十二分"),
    ],
)
def test_clock_reads_times_as_people_say_them(at: time, words: str) -> None:
    assert speech.clock(at) == words


def test_clock_speaks_aware_times_in_shanghai_time() -> None:
    assert speech.clock(datetime(2025, 5, 1, 7, 30, tzinfo=UTC)) == "下午三点半"


@pytest.mark.parametrize(
    ("day", "words"),
    [
        (date(2025, 5, 1), "今天"),
        (date(2025, 5, 2), "明天"),
        (date(2025, 5, 3), "后天"),
        (date(2025, 4, 30), "昨天"),
        (date(2025, 5, 12), "五月十二号"),
        (date(2026, 1, 2), "二〇二六年一月二号"),
    ],
)
def test_day_is_relative_near_today_and_spoken_otherwise(day: date, words: str) -> None:
    assert speech.day(day, today=date(2025, 5, 1)) == words


def test_day_can_add_the_weekday() -> None:
    assert speech.day(date(2025, 3, 5), weekday=True) == "三月五号，星期三"
    assert speech.day(date(2025, 3, 9), weekday=True) == "三月九号，星期天"


def test_when_adds_the_day_unless_it_is_today() -> None:
    today = date(2025, 5, 1)
    assert speech.when(datetime(2025, 5, 1, 15, 30), today=today) == "下午三点半"
    assert speech.when(datetime(2025, 5, 2, 9, 0), today=today) == "明天上午九点"
    assert speech.when(datetime(2025, 5, 20, 14, 0), today=today) == "五月二十号下午两点"


@pytest.mark.parametrize(
    ("span", "words"),
    [
        (30, "三十分钟"),
        (2, "两分钟"),
        (45, "四十五分钟"),
        (60, "一个小时"),
        (90, "一个半小时"),
        (120, "两个小时"),
        (150, "两个半小时"),
        (75, "一小时十五分钟"),
        (timedelta(seconds=30), "三十秒"),
        (timedelta(days=2), "两天"),
        (timedelta(days=1, hours=3), "一天三个小时"),
    ],
)
def test_duration(span: int | timedelta, words: str) -> None:
    assert speech.duration(span) == words


@pytest.mark.parametrize(
    ("number", "words"),
    [
        ("13800234567", "幺三八，零零二三，四五六七"),
        ("+86 138-0023-4567", "幺三八，零零二三，四五六七"),
        ("023-68861234", "零二三，六八八六，幺二三四"),
        ("0755 1234 5678", "零七五五，幺二三四，五六七八"),
        ("12349", "幺二三四，九"),
    ],
)
def test_phone_numbers_are_read_digit_by_digit_with_yao(number: str, words: str) -> None:
    assert speech.phone(number) == words


def test_codes_are_read_digit_by_digit_and_words_stay_words() -> None:
    assert speech.code("4827") == "四八二七"
    assert speech.code("1010") == "一零一零"
    assert speech.code("A-12") == "A，一二"
    assert speech.code("松树") == "松树"


def test_one_time_codes_are_read_slowly_a_pause_after_each_digit() -> None:
    assert speech.slow_digits("013579") == "零，幺，三，五，七，九"
    assert speech.slow_digits(" 12-34 ") == "幺，二，三，四"
    assert speech.en_slow_digits("013579") == "0, 1, 3, 5, 7, 9"


@pytest.mark.parametrize(
    ("name", "sex", "age", "form"),
    [
        ("王秀英", "女", 65, "王阿姨"),
        ("王秀英", "女", 82, "王奶奶"),
        ("李建国", "男", 60, "李叔叔"),
        ("李建国", "男", 70, "李爷爷"),
        ("李建国", "M", None, "李叔叔"),
        ("欧阳修", "男", 90, "欧阳爷爷"),
        ("张三", "", 80, "张三"),
        ("", "女", 80, ""),
        ("Mary Smith", "女", 80, "Mary Smith"),
    ],
)
def test_address_form_is_respectful_by_sex_and_age(
    name: str, sex: str, age: int | None, form: str
) -> None:
    assert speech.address_form(name, sex, age) == form


def test_age_needs_both_birth_year_and_today() -> None:
    assert speech.age_in(1945, date(2025, 1, 1)) == 80
    assert speech.age_in(None, date(2025, 1, 1)) is None
    assert speech.age_in(1945, None) is None


def test_english_forms() -> None:
    assert speech.en_clock(time(15, 30)) == "3:30 PM"
    assert speech.en_clock(time(12, 0)) == "noon"
    assert speech.en_clock(time(9, 0)) == "9 AM"
    assert speech.en_duration(90) == "1 hour 30 minutes"
    assert speech.en_duration(1) == "1 minute"
    assert speech.en_day(date(2025, 5, 2), today=date(2025, 5, 1)) == "tomorrow"
    assert speech.en_phone("13800234567") == "1 3 8, 0 0 2 3, 4 5 6 7"
    assert speech.en_address_form("王秀英", "女") == "Mrs Wang"
    assert speech.en_address_form("欧阳修", "男") == "Mr Ouyang"
    assert speech.en_address_form("王秀英", "") == "Wang Xiuying"


def test_tts_text_turns_numerals_into_words() -> None:
    assert speech.spoken_digits_for_tts("请按 1，预计 30 分钟") == "请按 一，预计 三十 分钟"
