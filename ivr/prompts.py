"""Prompt catalogs: every sentence the service says, in zh-CN (default) and English.

Templates name their dynamic parts with `str.format` fields. A field may carry a *spoken
form* as its format spec, which `render` turns into words with `ivr.speech`:

=============  ============================================  ==========================
spec           value                                         zh-CN example
=============  ============================================  ==========================
``address``    a resident's name (+ params ``sex``, ``age``   王阿姨, 王爷爷
               or ``birth_year`` and ``today``)
``time``       datetime/time (ISO text too)                  下午三点半
``when``       datetime (+ param ``today``)                  明天上午九点
``date``       date/datetime (+ param ``today``)             三月五号, 明天
``duration``   timedelta or minutes                          三十分钟, 一个半小时
``num``        integer                                       一百零二
``count``      integer before a measure word                 两 (个)
``code``       a code word or number, digit by digit         四八二七
``phone``      a phone number, digit by digit, 1 as 幺       幺三八，零零二三，...
``digits``     a one-time code, slowly: a pause per digit    幺，三，八，零
=============  ============================================  ==========================

A value the spec cannot read (already text, say) is spoken as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from string import Formatter
from typing import Any

from ivr import speech

DEFAULT_LANG = "zh-CN"
LANGS = ("zh-CN", "en")
#: The spoken forms a template field may name as its format spec.
SPOKEN_FORMS = frozenset(
    {"address", "time", "when", "date", "duration", "num", "count", "code", "phone", "digits"}
)

_MENU_ZH = (
    "有紧急情况请按 1。送药请按 2，买菜购物请按 3，请医生上门请按 4，"
    "水、电、燃气有问题请按 5，家里东西要修理请按 6。和上次一样请按 9，找话务员请按 0。"
)
_MENU_EN = (
    "For an emergency press 1. Medicine press 2, groceries press 3, "
    "a doctor's visit press 4, water, electricity or gas press 5, a home repair press 6. "
    "The same as last time press 9, an operator press 0."
)
#: the days of an away period said back (hotline key 7), 1 to 9
_DAYS_ZH = dict(enumerate("一两三四五六七八九", start=1))
_DAYS_EN = {1: "one day", **{n: f"{w} days" for n, w in enumerate(
    ["two", "three", "four", "five", "six", "seven", "eight", "nine"], start=2)}}  # fmt: skip
#: a booked visit's weekday (ISO 1..7), one prompt each (offer and reminder calls)
_WEEKDAY_ZH = dict(enumerate(("周一", "周二", "周三", "周四", "周五", "周六", "周日"), start=1))
_WEEKDAY_EN = dict(enumerate(("Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
                              "Saturday", "Sunday"), start=1))  # fmt: skip
_CONFIRM_ZH = "您要的是：{what}。确认请按 1，重选请按 2。"
_CONFIRM_EN = "You asked for: {what}. To confirm press 1, to choose again press 2."
_NEEDS = {
    # catalog code: (zh-CN read-back, English read-back)
    "medicine": ("送药", "medicine delivery"),
    "groceries": ("买菜购物", "groceries"),
    "doctor": ("请医生上门", "a doctor's home visit"),
    "water": ("水管维修", "a water repair"),
    "electricity": ("电力维修", "an electricity repair"),
    "gas": ("燃气维修", "a gas repair"),
    "repair": ("家里东西修理", "a home repair"),
    "meal": ("送餐", "meal delivery"),
}

CATALOGS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "ivr.no_input": "没有听到您按键。",
        "ivr.wrong_key": "您按的键不对。",
        # resident hotline
        "hotline.greeting_known": "{name:address}您好，这里是医敬服务热线。",
        "hotline.greeting_unknown": "您好，这里是医敬服务热线。",
        "hotline.menu": _MENU_ZH,
        "hotline.utility_menu": "水管有问题请按 1，电有问题请按 2，燃气有问题请按 3，"
        "找话务员请按 0。",
        # daily care calls: away by keypad (ivr/flows/hotline.yaml, dispatch/wellbeing_away.py)
        "hotline.menu_care": _MENU_ZH + "出门或住院、这几天不用给您打关爱电话，请按 7。",
        "hotline.menu_back": _MENU_ZH + "您已经回家、要恢复每天的关爱电话，请按 7。",
        "hotline.away.days": "您要出门几天？请按 1 到 9，按几就是几天，从今天算起。"
        "更长的时间请按 0，话务员为您登记。",
        **{
            f"hotline.away.confirm.{n}": f"您要出门{_DAYS_ZH[n]}天，这几天我们不给您打关爱电话。"
            "确认请按 1，重新选择请按 2。"
            for n in range(1, 10)
        },
        "hotline.away.taken": "好的，已经为您记下了。回家以后，请您打热线按 7 告诉我们。"
        "有急事随时打热线。祝您平安，再见。",
        "hotline.away.back": "您回家了吗？确认回家、恢复每天的关爱电话请按 1，回到菜单请按 2。",
        "hotline.away.back_taken": "好的，欢迎您回家。我们会照常每天给您打关爱电话。再见。",
        "hotline.emergency": "马上为您转接话务员，请不要挂机。",
        "hotline.to_operator": "正在为您转接话务员，请稍候。",
        "queue.position": "您前面还有{position:num}位来电，请稍候。",
        "queue.callback_offer": "如需我们给您回电，请按 1；继续等待请不要挂机。",
        "queue.callback_taken": "好的，话务员会尽快给您回电。再见。",
        "hotline.no_last": "没有找到您上次的服务记录。",
        "hotline.need_taken": "好的，已经为您登记。商家接单后会给您回电话，请保持电话畅通。再见。",
        **{
            f"hotline.confirm.{code}": _CONFIRM_ZH.format(what=zh)
            for code, (zh, _) in _NEEDS.items()
        },
        # order status
        "status.matching": "您的{category}订单正在联系商家，请您耐心等待。",
        "status.accepted": "您的{category}订单已由{merchant}接单，预计{deadline:time}前到。",
        "status.in_service": "您的{category}订单，{merchant}已经上门为您服务。",
        "status.none": "您现在没有正在办理的订单。",
        "status.consent": "您的{category}订单是自费服务，需要您个人付费。"
        "您同意以后，我们才为您派单。",
        "status.consent_ask": "同意付费请按 1，不同意请按 2，再听一遍请按 9，找话务员请按 0。",
        "status.consented": "好的，已经为您派单。商家接单后会给您回电话。再见。",
        "status.menu": "有紧急情况请按 1。再听一遍请按 9，取消这个订单请按 2，"
        "有其他需要请按 3，找话务员请按 0。",
        "status.cancel_confirm": "您要取消{category}订单吗？确认取消请按 1，不取消请按 2。",
        "status.cancelled": "好的，您的{category}订单已经取消。祝您身体健康，再见。",
        "status.cancel_failed": "这个订单现在已经不能取消了，正在为您转接话务员，请稍候。",
        "status.goodbye": "祝您身体健康，再见。",
        "status.menu_merchant": "有紧急情况请按 1。再听一遍请按 9，和商家通话请按 4，"
        "取消这个订单请按 2，有其他需要请按 3，找话务员请按 0。",
        # masked calls (the merchant and the resident, through the hotline)
        "masked.calling_merchant": "正在为您接通商家，请不要挂机。",
        "masked.calling_resident": "您好，这里是医敬服务平台。正在为您接通下单的老人，请不要挂机。",
        "masked.unreached": "对不起，对方现在没有接听。",
        "masked.unreached_menu": "找话务员请按 0，不需要请挂机。",
        # merchant offer
        "offer.intro": "您好，这里是医敬服务平台，有一个新的上门服务订单。"
        "服务：{category}。内容：{description}。地址：{address}。请在{deadline:time}前到达。",
        "offer.menu": "接单请按 1，不接请按 2，再听一遍请按 9。",
        "offer.accepted": "谢谢您接单。上门时请对老人说暗号：{code_word:code}。"
        "再说一遍，暗号是：{code_word:code}。再见。",
        "offer.declined": "好的，已为您记录不接单。再见。",
        "offer.taken": "抱歉，这一单已经交给其他商家了，您不用上门。谢谢您，再见。",
        "offer.no_input": "没有收到您的选择，订单将转给其他商家。再见。",
        # a booked visit (dispatch.booking): the slot, one prompt per weekday
        **{
            f"offer.slot.{n}": f"这是预约上门：{_WEEKDAY_ZH[n]}，{{slot_day:date}}，"
            "{slot_start:time}到{slot_end:time}。"
            for n in range(1, 8)
        },
        "offer.slot_menu": "能在这个时间上门请按 1，不能请按 2，再听一遍请按 9。",
        # who pays: the offer call and the resident's call (dispatch.prices)
        "price.subsidised": "这是补贴服务。",
        "price.subsidised_yuan": "这是补贴服务，个人自付{price_yuan:num}元。",
        "price.self_paid": "这是自费服务，需要个人付费。",
        "price.self_paid_yuan": "这是自费服务，费用{price_yuan:num}元。",
        "price.free": "这是免费服务，不用付钱。",
        # the resident told who accepted their order (dispatch.notify)
        "told.accepted": "您好，这里是医敬服务热线。您的{category}订单已由{merchant}接单，"
        "预计{deadline:time}前到。",
        "told.code_word": "上门的人会对您说暗号：{code_word:code}。"
        "再说一遍，暗号是：{code_word:code}。暗号对不上，请不要开门。",
        "told.more": "再听一遍请按 9，找话务员请按 0。",
        "told.bye": "祝您身体健康，再见。",
        "told.operator": "好的，话务员会尽快给您回电话。再见。",
        # a family contact told what they chose to hear (dispatch.family)
        "family.accepted": "您好，这里是医敬服务热线。{resident}的{category}订单"
        "已由{merchant}接单，预计{deadline:time}前上门。",
        "family.arrived": "您好，这里是医敬服务热线。{resident}的{category}订单，"
        "{merchant}已于{at:time}上门。",
        "family.completed": "您好，这里是医敬服务热线。{resident}的{category}订单，"
        "{merchant}已于{at:time}完成服务。",
        "family.late": "您好，这里是医敬服务热线。{resident}的{category}订单已经超时，"
        "原定{deadline:time}前完成，话务员正在跟进。",
        "family.no_show": "您好，这里是医敬服务热线。{resident}的{category}订单，"
        "商家没有按时上门，我们正在另找商家。",
        "family.emergency": "您好，这里是医敬服务热线。{resident}在{at:time}拨打了紧急求助电话，"
        "话务员正在处理。",
        "family.more": "再听一遍请按 9。",
        "family.bye": "谢谢您，再见。",
        # merchant arrival and completion
        "arrival.intro": "您好，这里是医敬服务平台。关于{category}订单，地址：{address}。",
        "arrival.menu": "已经到达请按 1，还没有到请按 2，要和老人通话请按 4，"
        "遇到问题找话务员请按 0。",
        "arrival.arrived": "好的，已记录您已到达。请对老人说暗号。再见。",
        "arrival.not_yet": "好的，请尽快上门。再见。",
        "arrival.no_input": "没有收到您的选择，话务员稍后会联系您。再见。",
        "completion.intro": "您好，这里是医敬服务平台。关于{category}订单，地址：{address}。",
        "completion.menu": "服务已经完成请按 1，还没有完成请按 2，遇到问题找话务员请按 0。",
        "completion.completed": "谢谢您的服务。再见。",
        "completion.not_completed": "好的，完成以后我们再联系您。再见。",
        "completion.no_input": "没有收到您的选择，话务员稍后会联系您。再见。",
        # satisfaction survey
        "survey.intro": "您好，这里是医敬服务平台。您的{category}服务已经完成，请您评价。",
        "survey.menu": "满意请按 1，基本满意请按 2，不满意请按 3，再听一遍请按 9。",
        "survey.thanks": "谢谢您的评价，祝您身体健康。再见。",
        "survey.no_input": "没有收到您的评价，我们稍后再联系您。再见。",
        # wellbeing check
        "wellbeing.intro": "{name:address}您好，这里是医敬社区关爱电话，问问您今天好不好。",
        "wellbeing.menu": "一切安好，请按 1。需要帮助，请按 2。想找人说说话，请按 0。"
        "再听一遍，请按 9。",
        "wellbeing.well": "知道您一切安好，我们就放心了。祝您身体健康，再见。",
        "wellbeing.help": "马上为您转接话务员，请不要挂机。",
        "wellbeing.no_answer": "没有收到您的回答，我们过几分钟再打给您。"
        "如果一直联系不上您，我们会请您的家人或网格员来看看您。再见。",
        "wellbeing.contact_intro": "您好，这里是医敬社区关爱电话。{name:address}今天没有接听"
        "我们的关爱电话，我们很担心。地址是：{address}。",
        "wellbeing.contact_menu": "您能去看看，请按 1。再听一遍，请按 9。",
        "wellbeing.contact_taken": "谢谢您。{minutes:duration}以后我们再打给您，"
        "请告诉我们老人的情况。再见。",
        "wellbeing.contact_goodbye": "好的，我们会联系其他人。再见。",
        "wellbeing.report_intro": "您好，这里是医敬社区关爱电话。您答应去看看{name:address}。",
        "wellbeing.report_menu": "一切安好，请按 1。需要帮助，请按 2。再听一遍，请按 9。",
        "wellbeing.report_well": "太好了，谢谢您。再见。",
        "wellbeing.report_help": "好的，我们马上通知话务员，话务员会尽快联系您。再见。",
        "wellbeing.report_goodbye": "没有收到您的回答，我们稍后再打给您。再见。",
        # merchant login code by phone call
        "login_code.intro": "您好，这里是医敬服务平台。您正在登录商家接单页面。",
        "login_code.code": "您的验证码是：{code:digits}。再说一遍：{code:digits}。"
        "验证码{minutes:duration}内有效。再听一遍请按星号键或按 1。",
        "login_code.goodbye": "请不要把验证码告诉任何人。再见。",
        # the operator desk: hold
        "desk.on_hold": "请您稍等，话务员马上回来，请不要挂机。",
        # incidents: an outage many callers reported (hotline announcement, callback)
        "hotline.incident.water": "我们已经知道您所在的{incident_grid}停水，正在抢修。"
        "修好以后，我们会打电话告诉您。",
        "hotline.incident.electricity": "我们已经知道您所在的{incident_grid}停电，正在抢修。"
        "修好以后，我们会打电话告诉您。",
        "hotline.incident.gas": "我们已经知道您所在的{incident_grid}燃气故障，正在抢修。"
        "修好以后，我们会打电话告诉您。",
        # notices (an outbound campaign): the text is the notice's own, read at call time
        "notice.greeting": "{name:address}您好，这里是医敬服务热线，现在为您播报社区通知。",
        "notice.body": "{notice}",
        "notice.question": "{question}同意或参加请按 1，不参加请按 2，再听一遍请按 9。",
        "notice.more": "再听一遍请按 9。",
        "notice.thanks": "好的，已经为您记下了。谢谢，再见。",
        "notice.bye": "谢谢您收听，祝您身体健康，再见。",
        # reminders (dispatch.reminders): the text is the reminder's own, read at call time
        "reminder.intro": "{name:address}您好，这里是医敬社区提醒电话。",
        "reminder.body": "{text}",
        "reminder.menu": "好的请按 1，需要帮助或改时间请按 2，再听一遍请按 9。",
        "reminder.confirmed": "好的，祝您身体健康，再见。",
        "reminder.help": "马上为您转接话务员，请不要挂机。",
        "reminder.no_answer": "没有收到您的回答，我们过几分钟再打给您。再见。",
        **{
            f"reminder.visit.{n}": f"您预约的{{category}}上门服务在{_WEEKDAY_ZH[n]}，"
            "{slot_day:date}，{slot_start:time}到{slot_end:time}。"
            for n in range(1, 8)
        },
        "reminder.visit_menu": "确认请按 1，要取消或改时间请按 2，再听一遍请按 9。",
        **{
            f"reminder.merchant_visit.{n}": "您好，这里是医敬服务平台，提醒您接的预约上门："
            f"{{category}}，{_WEEKDAY_ZH[n]}，{{slot_day:date}}，{{slot_start:time}}到"
            "{slot_end:time}。地址：{address}。"
            for n in range(1, 8)
        },
        "reminder.merchant_menu": "能按时上门请按 1，去不了请按 2，再听一遍请按 9。",
        "reminder.merchant_confirmed": "好的，谢谢您，请按时上门。再见。",
        "reminder.merchant_cancelled": "好的，已为您取消这次上门，我们会请其他商家去。再见。",
        "hotline.incident_joined": "好的，已经为您登记。这次故障我们已经通知抢修，"
        "修好以后会打电话告诉您，请保持电话畅通。再见。",
        "incident.fixed.water": "您好，这里是医敬服务热线。"
        "您所在的{incident_grid}停水，已经修好了。",
        "incident.fixed.electricity": "您好，这里是医敬服务热线。"
        "您所在的{incident_grid}停电，已经修好了。",
        "incident.fixed.gas": "您好，这里是医敬服务热线。"
        "您所在的{incident_grid}燃气故障，已经修好了。",
        "incident.fixed.more": "再听一遍请按 9。",
        "incident.fixed.bye": "如果家里还有问题，请再打热线电话。祝您身体健康，再见。",
        # emergencies (issue 14): the caller waiting, the responders, after hours
        "emergency.hold": "请不要挂机。我们正在为您找人，马上就来。",
        "emergency.help": "请不要挂机。我们正在为您呼叫帮助，正在联系您的家人。"
        "如果要接通一百二十急救电话，请按 1。再听一遍，请按星号键。",
        "emergency.dialing_120": "好的。正在为您接通一百二十急救电话，请不要挂机。",
        "emergency.responder_known": "这里是医敬紧急呼叫。{name:address}正在呼救。"
        "地址是：{address}。",
        "emergency.responder_unknown": "这里是医敬紧急呼叫。一位没有登记的来电人正在呼救。"
        "来电号码是：{number:phone}。",
        "emergency.why_key": "来电人按了紧急求助键。",
        "emergency.why_silent": "来电人一直没有出声，也没有按键。",
        "emergency.why_repeat": "来电人刚才打来没有接通，又打来了。",
        "emergency.responder_menu": "您能帮忙，请按 1，马上为您接通来电人。再听一遍，请按 9。",
        "emergency.connecting": "正在为您接通，请稍候。",
        "emergency.responder_goodbye": "没有收到您的按键，我们会联系下一位。再见。",
        "desk.closed": "您好，现在话务员不在班。服务台{opens:when}开门。",
        "desk.callback": "我们已经记下您的来电，开门后第一时间给您回电。"
        "如有紧急情况，请重新拨打，并按 1。再见。",
    },
    "en": {
        "ivr.no_input": "We did not hear a key.",
        "ivr.wrong_key": "That key is not one of the choices.",
        "hotline.greeting_known": "Hello {name:address}, this is the Yijing care hotline.",
        "hotline.greeting_unknown": "Hello, this is the Yijing care hotline.",
        "hotline.menu": _MENU_EN,
        "hotline.utility_menu": "Water press 1, electricity press 2, gas press 3, "
        "an operator press 0.",
        "hotline.menu_care": _MENU_EN + " If you are away or in hospital and need no care "
        "call for a few days, press 7.",
        "hotline.menu_back": _MENU_EN + " If you are back home and want your daily care call "
        "again, press 7.",
        "hotline.away.days": "For how many days will you be away? Press 1 to 9, one key for "
        "each day, counting today. For longer, press 0 and an operator will note it.",
        **{
            f"hotline.away.confirm.{n}": f"You will be away for {_DAYS_EN[n]}, and we will not "
            "make your care call then. To confirm press 1, to choose again press 2."
            for n in range(1, 10)
        },
        "hotline.away.taken": "Thank you, it is noted. When you are back home, please call "
        "the hotline and press 7. For anything urgent, call us at any time. Goodbye.",
        "hotline.away.back": "Are you back home? To confirm and have your daily care call "
        "again press 1, to go back to the menu press 2.",
        "hotline.away.back_taken": "Thank you, welcome home. Your daily care call goes on "
        "as before. Goodbye.",
        "hotline.emergency": "Connecting you to an operator now. Please stay on the line.",
        "hotline.to_operator": "Connecting you to an operator, please hold.",
        "queue.position": "There are {position:num} callers ahead of you. Please hold.",
        "queue.callback_offer": "To have us call you back, press 1; or stay on the line.",
        "queue.callback_taken": "An operator will call you back soon. Goodbye.",
        "hotline.no_last": "We found no earlier request.",
        "hotline.need_taken": "Thank you, your request is recorded. We will call you back when "
        "a provider accepts it; please keep your phone free. Goodbye.",
        **{
            f"hotline.confirm.{code}": _CONFIRM_EN.format(what=en)
            for code, (_, en) in _NEEDS.items()
        },
        "status.matching": "We are finding a provider for your {category} order. "
        "Thank you for waiting.",
        "status.accepted": "Your {category} order was accepted by {merchant}, expected by "
        "{deadline:time}.",
        "status.in_service": "For your {category} order, {merchant} is with you now.",
        "status.none": "You have no open order.",
        "status.consent": "Your {category} order is a self-paid service: you pay for it. "
        "We send someone once you agree.",
        "status.consent_ask": "To agree to pay press 1, if not press 2, to hear it again "
        "press 9, an operator press 0.",
        "status.consented": "Thank you, we are sending someone now. We will call you once "
        "a provider accepts. Goodbye.",
        "status.menu": "For an emergency press 1. To hear it again press 9, to cancel this "
        "order press 2, for something else press 3, an operator press 0.",
        "status.cancel_confirm": "Cancel your {category} order? To cancel press 1, "
        "to keep it press 2.",
        "status.cancelled": "Your {category} order is cancelled. Take care, goodbye.",
        "status.cancel_failed": "This order can no longer be cancelled. Connecting you to an "
        "operator, please hold.",
        "status.goodbye": "Take care. Goodbye.",
        "status.menu_merchant": "For an emergency press 1. To hear it again press 9, to talk "
        "to the provider press 4, to cancel this order press 2, for something else press 3, "
        "an operator press 0.",
        "masked.calling_merchant": "Connecting you to the provider. Please stay on the line.",
        "masked.calling_resident": "Hello, this is the Yijing care platform. Connecting you to "
        "the resident who placed the order. Please stay on the line.",
        "masked.unreached": "Sorry, there is no answer right now.",
        "masked.unreached_menu": "For an operator press 0, or hang up if you need nothing more.",
        "offer.intro": "Hello, this is the Yijing care platform with a new home visit order. "
        "Service: {category}. Details: {description}. Address: {address}. "
        "Please arrive before {deadline:time}.",
        "offer.menu": "To accept press 1, to decline press 2, to hear it again press 9.",
        "offer.accepted": "Thank you. At the door, say the code word {code_word:code}. "
        "Again, the code word is {code_word:code}. Goodbye.",
        "offer.declined": "Noted, you declined this order. Goodbye.",
        "offer.taken": "Sorry, this order has gone to another merchant; no visit is "
        "needed. Thank you, goodbye.",
        "offer.no_input": "We did not get your choice; the order goes to another merchant.",
        **{
            f"offer.slot.{n}": f"This visit is booked for {_WEEKDAY_EN[n]}, {{slot_day:date}}, "
            "from {slot_start:time} to {slot_end:time}."
            for n in range(1, 8)
        },
        "offer.slot_menu": "If you can come at that time press 1, if not press 2, "
        "to hear it again press 9.",
        "price.subsidised": "This service is subsidised.",
        "price.subsidised_yuan": "This service is subsidised; the share to pay is "
        "{price_yuan:num} yuan.",
        "price.self_paid": "This service is self-paid.",
        "price.self_paid_yuan": "This service is self-paid: {price_yuan:num} yuan.",
        "price.free": "This service is free; nothing to pay.",
        "told.accepted": "Hello, this is the Yijing care hotline. Your {category} order was "
        "accepted by {merchant}, expected by {deadline:time}.",
        "told.code_word": "The person at your door will say the code word {code_word:code}. "
        "Again, the code word is {code_word:code}. If it does not match, do not open the door.",
        "told.more": "To hear it again press 9, an operator press 0.",
        "told.bye": "Take care. Goodbye.",
        "told.operator": "An operator will call you back soon. Goodbye.",
        "family.accepted": "Hello, this is the Yijing care hotline. {resident}'s {category} "
        "order was accepted by {merchant}, expected by {deadline:time}.",
        "family.arrived": "Hello, this is the Yijing care hotline. For {resident}'s {category} "
        "order, {merchant} arrived at {at:time}.",
        "family.completed": "Hello, this is the Yijing care hotline. For {resident}'s {category} "
        "order, {merchant} completed the visit at {at:time}.",
        "family.late": "Hello, this is the Yijing care hotline. {resident}'s {category} order "
        "is late; it was due by {deadline:time}. An operator is following it up.",
        "family.no_show": "Hello, this is the Yijing care hotline. For {resident}'s {category} "
        "order, the shop did not come in time; we are finding another.",
        "family.emergency": "Hello, this is the Yijing care hotline. {resident} called for "
        "emergency help at {at:time}; an operator is on it.",
        "family.more": "To hear it again press 9.",
        "family.bye": "Thank you. Goodbye.",
        "arrival.intro": "Hello, this is the Yijing care platform about the {category} order "
        "at {address}.",
        "arrival.menu": "If you have arrived press 1, not yet press 2, "
        "to talk to the resident press 4, for a problem press 0 for an operator.",
        "arrival.arrived": "Noted, you have arrived. Please say the code word. Goodbye.",
        "arrival.not_yet": "Please get there as soon as you can. Goodbye.",
        "arrival.no_input": "We did not get your choice; an operator will call you. Goodbye.",
        "completion.intro": "Hello, this is the Yijing care platform about the {category} order "
        "at {address}.",
        "completion.menu": "If the service is complete press 1, not yet press 2, "
        "for a problem press 0 for an operator.",
        "completion.completed": "Thank you for your service. Goodbye.",
        "completion.not_completed": "Noted; we will call again later. Goodbye.",
        "completion.no_input": "We did not get your choice; an operator will call you. Goodbye.",
        "survey.intro": "Hello, this is the Yijing care platform. Your {category} visit is "
        "complete; please rate it.",
        "survey.menu": "Satisfied press 1, basically satisfied press 2, not satisfied press 3, "
        "to hear it again press 9.",
        "survey.thanks": "Thank you for your rating. Goodbye.",
        "survey.no_input": "We did not get your rating; we will call again later. Goodbye.",
        "wellbeing.intro": "Hello {name:address}, this is the Yijing community care call, "
        "checking how you are today.",
        "wellbeing.menu": "If all is well, press 1. If you need help, press 2. To talk to "
        "someone, press 0. To hear this again, press 9.",
        "wellbeing.well": "Glad to hear all is well. Take care, goodbye.",
        "wellbeing.help": "Connecting you to an operator now. Please stay on the line.",
        "wellbeing.no_answer": "We did not hear from you; we will call again in a few "
        "minutes. If we cannot reach you, we will ask your family or grid worker to check "
        "on you. Goodbye.",
        "wellbeing.contact_intro": "Hello, this is the Yijing community care call. "
        "{name:address} did not answer today's care calls and we are worried. The address "
        "is {address}.",
        "wellbeing.contact_menu": "If you can go and see, press 1. To hear this again, press 9.",
        "wellbeing.contact_taken": "Thank you. We will call you back in {minutes:duration} "
        "to hear how they are. Goodbye.",
        "wellbeing.contact_goodbye": "All right, we will ask someone else. Goodbye.",
        "wellbeing.report_intro": "Hello, this is the Yijing community care call. You said "
        "you would go and see {name:address}.",
        "wellbeing.report_menu": "If all is well, press 1. If they need help, press 2. To "
        "hear this again, press 9.",
        "wellbeing.report_well": "Good news, thank you. Goodbye.",
        "wellbeing.report_help": "We are telling an operator now; they will contact you "
        "soon. Goodbye.",
        "wellbeing.report_goodbye": "We did not hear from you; we will call again later. Goodbye.",
        "login_code.intro": "Hello, this is the Yijing care platform. You asked to log in to "
        "the merchant page.",
        "login_code.code": "Your login code is {code:digits}. Again: {code:digits}. "
        "The code is valid for {minutes:duration}. To hear it again press star or 1.",
        "login_code.goodbye": "Do not tell anyone this code. Goodbye.",
        "desk.on_hold": "Please hold; your operator will be right back. Please stay on the line.",
        # incidents: an outage many callers reported (hotline announcement, callback)
        "hotline.incident.water": "We already know the water is cut off in {incident_grid}. "
        "It is being repaired. We will call you when it is fixed.",
        "hotline.incident.electricity": "We already know the power is cut off in "
        "{incident_grid}. It is being repaired. We will call you when it is fixed.",
        "hotline.incident.gas": "We already know about the gas fault in {incident_grid}. "
        "It is being repaired. We will call you when it is fixed.",
        # notices (an outbound campaign): the text is the notice's own, read at call time
        "notice.greeting": "Hello {name:address}, this is the Yijing care hotline with a "
        "notice from your community.",
        "notice.body": "{notice}",
        "notice.question": "{question} For yes, press 1. For no, press 2. To hear it again, "
        "press 9.",
        "notice.more": "To hear it again, press 9.",
        "notice.thanks": "Thank you, your answer is recorded. Goodbye.",
        "notice.bye": "Thank you for listening. Take care, goodbye.",
        # reminders (dispatch.reminders): the text is the reminder's own, read at call time
        "reminder.intro": "Hello {name:address}, this is a reminder call from the Yijing "
        "community.",
        "reminder.body": "{text}",
        "reminder.menu": "If that is all right, press 1. For help or another time, press 2. "
        "To hear it again, press 9.",
        "reminder.confirmed": "Thank you. Take care, goodbye.",
        "reminder.help": "Connecting you to an operator now. Please stay on the line.",
        "reminder.no_answer": "We did not hear from you; we will call again in a few "
        "minutes. Goodbye.",
        **{
            f"reminder.visit.{n}": "Your booked home visit, {category}, is on "
            f"{_WEEKDAY_EN[n]}, {{slot_day:date}}, from {{slot_start:time}} to {{slot_end:time}}."
            for n in range(1, 8)
        },
        "reminder.visit_menu": "To confirm press 1. To cancel or change the time press 2. "
        "To hear it again press 9.",
        **{
            f"reminder.merchant_visit.{n}": "Hello, this is the Yijing care platform with a "
            f"reminder of the booked visit you accepted: {{category}}, {_WEEKDAY_EN[n]}, "
            "{slot_day:date}, from {slot_start:time} to {slot_end:time}. Address: {address}."
            for n in range(1, 8)
        },
        "reminder.merchant_menu": "If you will come at that time press 1, if you cannot "
        "press 2, to hear it again press 9.",
        "reminder.merchant_confirmed": "Thank you, see you at the visit. Goodbye.",
        "reminder.merchant_cancelled": "Noted, your visit is cancelled and we will ask "
        "another merchant. Goodbye.",
        "hotline.incident_joined": "Thank you, your report is recorded. The repair team "
        "knows about this fault; we will call you when it is fixed. Please keep your phone "
        "on. Goodbye.",
        "incident.fixed.water": "Hello, this is the Yijing care hotline. The water cut in "
        "{incident_grid} has been repaired.",
        "incident.fixed.electricity": "Hello, this is the Yijing care hotline. The power cut "
        "in {incident_grid} has been repaired.",
        "incident.fixed.gas": "Hello, this is the Yijing care hotline. The gas fault in "
        "{incident_grid} has been repaired.",
        "incident.fixed.more": "To hear it again, press 9.",
        "incident.fixed.bye": "If anything is still wrong at home, please call the hotline "
        "again. Take care, goodbye.",
        # emergencies (issue 14)
        "emergency.hold": "Please stay on the line. We are finding someone for you right now.",
        "emergency.help": "Please stay on the line. We are calling help for you, and your "
        "family. To be connected to the 120 ambulance line, press 1. To hear this again, "
        "press star.",
        "emergency.dialing_120": "Connecting you to the 120 ambulance line now. "
        "Please stay on the line.",
        "emergency.responder_known": "This is a Yijing emergency call. {name:address} needs "
        "help. The address is: {address}.",
        "emergency.responder_unknown": "This is a Yijing emergency call. An unregistered "
        "caller needs help. The number is: {number:phone}.",
        "emergency.why_key": "The caller pressed the emergency key.",
        "emergency.why_silent": "The caller has said nothing and pressed no key.",
        "emergency.why_repeat": "The caller rang before, was not answered, and rang again.",
        "emergency.responder_menu": "If you can help, press 1 to be connected to the caller "
        "now. To hear this again, press 9.",
        "emergency.connecting": "Connecting you now, please hold.",
        "emergency.responder_goodbye": "We did not hear a key; we will call the next person. "
        "Goodbye.",
        "desk.closed": "Hello, no operator is on duty now. The desk opens {opens:when}.",
        "desk.callback": "We have noted your call and will call you back first thing when "
        "it opens. In an emergency, call again and press 1. Goodbye.",
    },
}


def pick_lang(preference: str | None) -> str:
    """The catalog language for a resident's preference: zh, zh_CN, cmn -> zh-CN; en-GB -> en."""
    key = (preference or "").strip().lower().replace("_", "-")
    if key.startswith("en"):
        return "en"
    return DEFAULT_LANG


def catalog(lang: str | None) -> dict[str, str]:
    """The catalog for a language, falling back to zh-CN."""
    return CATALOGS.get(lang or DEFAULT_LANG) or CATALOGS[pick_lang(lang)]


def fields(template: str) -> list[tuple[str, str]]:
    """The (field name, spoken form) pairs of a template, in order."""
    return [(name, spec or "") for _, name, spec, _ in Formatter().parse(template) if name]


def fragments(template: str) -> list[str | tuple[str, str]]:
    """A template as static text pieces and (field, spoken form) pairs, in order."""
    out: list[str | tuple[str, str]] = []
    for literal, name, spec, _ in Formatter().parse(template):
        if literal:
            out.append(literal)
        if name:
            out.append((name, spec or ""))
    return out


def render(prompt: str, lang: str | None, params: Mapping[str, Any] | None = None) -> str:
    """The text of a prompt with its placeholders filled; missing values read as empty."""
    template = catalog(lang).get(prompt) or CATALOGS[DEFAULT_LANG][prompt]
    values = dict(params or {})
    return _SpokenFormatter(pick_lang(lang), values).format(template)


def render_field(name: str, form: str, lang: str | None, params: Mapping[str, Any]) -> str:
    """One dynamic part of a prompt as words (for backends that play static parts as audio)."""
    formatter = _SpokenFormatter(pick_lang(lang), dict(params))
    return formatter.format_field(formatter.get_value(name, (), {}), form)


def check_catalogs(catalogs: Mapping[str, Mapping[str, str]] | None = None) -> list[str]:
    """Problems across catalogs: keys missing in a language, differing fields, unknown forms."""
    books = CATALOGS if catalogs is None else catalogs
    problems: list[str] = []
    keys = set().union(*(set(book) for book in books.values()))
    for lang, book in books.items():
        for key in sorted(keys - set(book)):
            problems.append(f"{lang}: prompt {key!r} is missing")
    for key in sorted(keys):
        shapes = {
            lang: sorted(set(fields(book[key]))) for lang, book in books.items() if key in book
        }
        if len({tuple(v) for v in shapes.values()}) > 1:
            problems.append(f"{key}: fields differ between languages: {shapes}")
        for lang, pairs in shapes.items():
            for name, form in pairs:
                if form and form not in SPOKEN_FORMS:
                    problems.append(f"{lang}: {key}: field {name!r} has unknown form {form!r}")
    return problems


class _SpokenFormatter(Formatter):
    """Fills fields, speaking each value in the form its spec names."""

    def __init__(self, lang: str, params: dict[str, Any]) -> None:
        self.lang = lang
        self.params = params

    def get_value(self, key: int | str, args: Any, kwargs: Any) -> Any:
        return self.params.get(str(key), "")

    def format_field(self, value: Any, format_spec: str) -> str:
        if value is None or value == "":
            return ""
        if format_spec in SPOKEN_FORMS:
            try:
                return str(getattr(self, f"_{format_spec}")(value))
            except (TypeError, ValueError):
                return str(value)
        if format_spec:
            return format(value, format_spec)
        return str(value)

    @property
    def _zh(self) -> bool:
        return self.lang != "en"

    def _today(self) -> date | None:
        today = self.params.get("today")
        if isinstance(today, datetime):
            return today.astimezone(speech.LOCAL_TZ).date() if today.tzinfo else today.date()
        if isinstance(today, date):
            return today
        if isinstance(today, str) and today:
            return date.fromisoformat(today[:10])
        return None

    def _address(self, value: Any) -> str:
        sex = str(self.params.get("sex") or "")
        if not self._zh:
            return speech.en_address_form(str(value), sex)
        age = self.params.get("age")
        if age in (None, ""):
            birth = self.params.get("birth_year")
            age = speech.age_in(int(birth), self._today()) if birth not in (None, "") else None
        return speech.address_form(str(value), sex, int(age) if age is not None else None)

    def _time(self, value: Any) -> str:
        moment = _moment(value)
        if isinstance(moment, datetime) and (today := self._today()) is not None:
            return (
                speech.when(moment, today=today)
                if self._zh
                else speech.en_when(moment, today=today)
            )
        return speech.clock(moment) if self._zh else speech.en_clock(moment)

    _when = _time

    def _date(self, value: Any) -> str:
        day = date.fromisoformat(value[:10]) if isinstance(value, str) else value
        if not isinstance(day, date):
            raise TypeError(value)
        today = self._today()
        return speech.day(day, today=today) if self._zh else speech.en_day(day, today=today)

    def _duration(self, value: Any) -> str:
        span = value if isinstance(value, timedelta) else float(value)
        return speech.duration(span) if self._zh else speech.en_duration(span)

    def _num(self, value: Any) -> str:
        return speech.number(int(value)) if self._zh else str(int(value))

    def _count(self, value: Any) -> str:
        return speech.number(int(value), measure=True) if self._zh else str(int(value))

    def _code(self, value: Any) -> str:
        return speech.code(str(value)) if self._zh else speech.en_digits(str(value))

    def _digits(self, value: Any) -> str:
        return speech.slow_digits(str(value)) if self._zh else speech.en_slow_digits(str(value))

    def _phone(self, value: Any) -> str:
        return speech.phone(str(value)) if self._zh else speech.en_phone(str(value))


def _moment(value: Any) -> datetime | time:
    if isinstance(value, datetime | time):
        return value
    if isinstance(value, str) and re.match(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d", value):
        return datetime.fromisoformat(value)
    if isinstance(value, str) and re.match(r"^\d{1,2}:\d\d", value):
        return time.fromisoformat(value if len(value) > 4 else "0" + value)
    raise ValueError(value)
