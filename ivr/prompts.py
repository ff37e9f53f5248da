"""Prompt catalogs: every sentence the service says, in zh-CN (default) and English."""

from __future__ import annotations

from collections.abc import Mapping
from string import Formatter
from typing import Any

DEFAULT_LANG = "zh-CN"

CATALOGS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "ivr.no_input": "没有听到您按键。",
        "ivr.wrong_key": "您按的键不对。",
        "hotline.greeting_known": "{name}您好，这里是医敬服务热线。",
        "hotline.greeting_unknown": "您好，这里是医敬服务热线。",
        "hotline.to_operator": "正在为您转接话务员，请稍候。",
        "offer.intro": "您好，这里是医敬服务平台，有一个新的上门服务订单。"
        "服务：{category}。内容：{description}。地址：{address}。请在{deadline}前到达。",
        "offer.menu": "接单请按 1，不接请按 2，再听一遍请按 9。",
        "offer.accepted": "谢谢您接单。上门时请说暗号：{code_word}。再见。",
        "offer.declined": "好的，已为您记录不接单。再见。",
        "offer.no_input": "没有收到您的选择，订单将转给其他商家。再见。",
        "survey.intro": "您好，这里是医敬服务平台。您的{category}服务已经完成，请您评价。",
        "survey.menu": "满意请按 1，基本满意请按 2，不满意请按 3，再听一遍请按 9。",
        "survey.thanks": "谢谢您的评价，祝您身体健康。再见。",
        "survey.no_input": "没有收到您的评价，我们稍后再联系您。再见。",
    },
    "en": {
        "ivr.no_input": "We did not hear a key.",
        "ivr.wrong_key": "That key is not one of the choices.",
        "hotline.greeting_known": "Hello {name}, this is the Yijing care hotline.",
        "hotline.greeting_unknown": "Hello, this is the Yijing care hotline.",
        "hotline.to_operator": "Connecting you to an operator, please hold.",
        "offer.intro": "Hello, this is the Yijing care platform with a new home visit order. "
        "Service: {category}. Details: {description}. Address: {address}. "
        "Please arrive before {deadline}.",
        "offer.menu": "To accept press 1, to decline press 2, to hear it again press 9.",
        "offer.accepted": "Thank you. At the door, say the code word {code_word}. Goodbye.",
        "offer.declined": "Noted, you declined this order. Goodbye.",
        "offer.no_input": "We did not get your choice; the order goes to another merchant.",
        "survey.intro": "Hello, this is the Yijing care platform. Your {category} visit is "
        "complete; please rate it.",
        "survey.menu": "Satisfied press 1, basically satisfied press 2, not satisfied press 3, "
        "to hear it again press 9.",
        "survey.thanks": "Thank you for your rating. Goodbye.",
        "survey.no_input": "We did not get your rating; we will call again later. Goodbye.",
    },
}


def catalog(lang: str | None) -> dict[str, str]:
    """The catalog for a language, falling back to zh-CN."""
    return CATALOGS.get(lang or DEFAULT_LANG, CATALOGS[DEFAULT_LANG])


def render(prompt: str, lang: str | None, params: Mapping[str, Any] | None = None) -> str:
    """The text of a prompt with its placeholders filled; missing values read as empty."""
    template = catalog(lang).get(prompt) or CATALOGS[DEFAULT_LANG][prompt]
    values = dict(params or {})
    for _, name, _, _ in Formatter().parse(template):
        if name and name not in values:
            values[name] = ""
    return template.format(**values)
