"""The built-in flows, kept as YAML next to this module. Outcomes are the contract with dispatch.

Why YAML and not Python: an admin's override folder uses the very same format, so the
built-ins are the working examples to copy, and one loader (with its checks) serves both.

Outcomes (``Finish.outcome``; ``Finish.variables`` holds the call's context plus the
variables named here; ``Finish.transfer`` is set when the call must go to a queue):

``hotline`` (registered resident; context ``name``, ``sex``, ``age`` or ``birth_year`` +
``today``, ``last_category``; ``incident`` and ``incident_grid`` when an outage in the
caller's grid is announced before the menu; ``wellbeing`` care|away for a resident with
daily care calls)
    ``emergency``  key 1; transfer="operators" (bridge at once, flag it urgent);
                   variable ``category`` is "emergency"
    ``need``       a confirmed routine need; variable ``category`` is a service catalog
                   code: medicine, groceries, doctor, water, electricity, gas, repair
                   (or meal, through 9 "same as last time"); the call then hangs up
    ``transfer``   key 0, or no clear input after the retries; transfer="operators"
                   (``category`` may be present but empty: read it only on ``need``)
    ``away``       key 7 with ``wellbeing`` "care" (a resident with daily care calls):
                   variable ``away_days`` "1".."9", days from today with no care call;
                   the call then hangs up
    ``back``       key 7 with ``wellbeing`` "away": the away period ends today; hangs up
``hotline_no_menu`` ("no menu" mode; context as ``hotline``, the outage announced too)
    ``transfer`` to "operators"
``hotline_unknown`` (unregistered caller)  ``transfer`` to "operators"
``status`` (a registered resident with an open order; context as ``hotline`` plus
``order_status`` new|matching|offering|unassigned|accepted|in_service|awaiting_consent,
``order`` (the ticket id, never spoken), ``category`` (the catalog name), ``merchant``,
``deadline``)
    ``menu`` (key 3, or no open order: transfer="stay", run ``hotline`` next),
    ``cancel`` (2 then 1: transfer="stay", for ``status_cancelled``), ``connect`` (key 4,
    accepted or in service: transfer="stay", the merchant is rung and joined), ``consent``
    (awaiting_consent, then 1: the resident agrees to pay; the call hangs up),
    ``transfer`` (key 0, or no clear key after the retries, as in ``hotline``)
``status_cancelled`` (context ``cancelled`` yes|no, ``category``)
    ``told``, ``transfer`` (it could not be cancelled: to "operators")
``merchant_offer`` (context ``category``, ``description``, ``address``, ``deadline``,
``code_word``; never the resident's phone; a booked visit: ``slot_weekday`` "1".."7" (ISO),
``slot_day``, ``slot_start``, ``slot_end``, read after the price, then 1 takes the slot)
    ``accepted`` (transfer="stay": the call waits on the line for ``merchant_accepted``
    or ``merchant_taken``), ``declined``, ``no_input``
``merchant_accepted`` (context ``code_word``)  ``told``
``merchant_taken``  ``taken``
``resident_told`` (context ``merchant``, the shop's name; ``category``; ``deadline`` +
``today``; ``code_word``: said to the resident, never their number to anyone)
    ``heard`` (no more keys), ``operator`` (key 0: an operator calls back)
``family_told`` (context ``about``: accepted, arrived, completed, late, no_show or
emergency; ``resident``, ``category``, ``merchant``, ``deadline``, ``at`` + ``today``;
never the merchant's phone)  ``heard`` (9 hears it again)
``merchant_arrival`` (context ``category``, ``address``)
    ``arrived``, ``not_yet``, ``no_input``, ``transfer`` (key 0, to "operators"),
    ``connect`` (key 4: transfer="stay", the resident is rung and joined: a masked call)
``merchant_completion`` (context ``category``, ``address``)
    ``completed``, ``not_completed``, ``no_input``, ``transfer`` (key 0)
``survey`` (context ``category``)
    ``rated`` with variable ``rating`` in satisfied | basically_satisfied | not_satisfied;
    ``no_input``
``notice`` (context ``name``, ``notice``, ``question``, ``asks`` question|none)
    ``answer_yes`` (key 1), ``answer_no`` (key 2), ``heard`` (no question or no key)
``wellbeing`` (context as ``hotline``)
    ``well``; ``help`` with variable ``reason``: ``asked`` (key 2) or ``talk`` (key 0),
    both transfer="operators" (the call waits first in the queue), or ``no_answer`` (no
    clear key; no transfer: the service tries again, then the care circle)
``wellbeing_contact`` (context ``name``, ``sex``, ``address``, ``minutes`` until the
report call)  ``taken`` (key 1, "I will go and see"), ``no_input``
``wellbeing_report`` (context ``name``, ``sex``)  ``well`` (key 1), ``help`` (key 2),
``no_input``
``incident_fixed`` (context ``incident``: water, electricity or gas; ``incident_grid``)
    ``told``
``login_code`` (context ``code``, the merchant's one-time login code, and ``minutes`` it
stays valid; the code is never in the event log, so dispatch reads no variable back)
    ``heard``
``emergency_wait`` (an emergency caller waiting; no context)  ``waiting``
``emergency_help`` (an emergency caller once help is being called)
    ``dial_120`` (key 1: connect the emergency number), ``waiting``
``emergency_responder`` (context ``registered`` yes|no, ``name``, ``sex``, ``address``,
``number``, ``reason`` key|silent|repeat)
    ``taken`` (key 1; transfer="stay": the call waits to be joined with the caller),
    ``no_input``
``desk_closed`` (context ``opens``, ``today``)  ``callback``
``masked_wait`` (a merchant waiting to be joined with the resident; no context)
    ``waiting`` (transfer="stay")
``masked_unreached`` (context ``side`` resident|merchant)  ``transfer`` (the resident's
key 0, to "operators"), ``goodbye``
``reminder`` (context ``name``, ``sex``, ``text`` read slowly, ``kind`` medication|
appointment|visit; a booked visit's: ``slot_weekday`` "1".."7", ``slot_day``,
``slot_start``, ``slot_end``, ``category``, ``today``, read instead of the text; its
merchant's: ``who`` "merchant" and ``address`` too)
``confirmed`` (key 1), ``help`` (key 2; transfer="operators": a routine
call in the queue), ``cancel`` (the merchant's key 2: the visit goes to others), ``no_input``
"""

from __future__ import annotations

from importlib.resources import files

from ivr.flow import Flow
from ivr.library import parse_flow

#: Every outcome each built-in flow may finish with; overrides must stay inside these.
OUTCOMES: dict[str, frozenset[str]] = {
    "hotline": frozenset({"emergency", "need", "transfer", "away", "back"}),
    "hotline_no_menu": frozenset({"transfer"}),
    "hotline_unknown": frozenset({"transfer"}),
    "status": frozenset({"menu", "cancel", "connect", "consent", "emergency", "transfer"}),
    "status_cancelled": frozenset({"told", "transfer"}),
    "merchant_offer": frozenset({"accepted", "declined", "no_input"}),
    "merchant_accepted": frozenset({"told"}),
    "merchant_taken": frozenset({"taken"}),
    "resident_told": frozenset({"heard", "operator"}),
    "family_told": frozenset({"heard"}),
    "incident_fixed": frozenset({"told"}),
    "merchant_arrival": frozenset({"arrived", "not_yet", "connect", "no_input", "transfer"}),
    "merchant_completion": frozenset({"completed", "not_completed", "no_input", "transfer"}),
    "survey": frozenset({"rated", "no_input"}),
    "wellbeing": frozenset({"well", "help"}),
    "wellbeing_contact": frozenset({"taken", "no_input"}),
    "wellbeing_report": frozenset({"well", "help", "no_input"}),
    "queue_wait": frozenset({"callback", "waiting"}),
    "login_code": frozenset({"heard"}),
    # emergencies (dispatch.emergency)
    "emergency_wait": frozenset({"waiting"}),
    "emergency_help": frozenset({"dial_120", "waiting"}),
    "emergency_responder": frozenset({"taken", "no_input"}),
    "desk_closed": frozenset({"callback"}),
    # masked calls between merchant and resident (dispatch.masked)
    "masked_wait": frozenset({"waiting"}),
    "masked_unreached": frozenset({"transfer", "goodbye"}),
    # notices (dispatch.campaigns)
    "notice": frozenset({"answer_yes", "answer_no", "heard"}),
    # medication and appointment reminders (dispatch.reminders)
    "reminder": frozenset({"confirmed", "help", "cancel", "no_input"}),
}

#: Service catalog codes the hotline can finish a ``need`` with.
NEED_CATEGORIES = (
    "medicine",
    "groceries",
    "doctor",
    "water",
    "electricity",
    "gas",
    "repair",
    "meal",
)


def _load_builtin() -> dict[str, Flow]:
    flows: dict[str, Flow] = {}
    for name in OUTCOMES:
        resource = files(__name__).joinpath(f"{name}.yaml")
        flows[name] = parse_flow(resource.read_text(encoding="utf-8"), source=f"{name}.yaml")
    return flows


BUILTIN: dict[str, Flow] = _load_builtin()

HOTLINE = BUILTIN["hotline"]
HOTLINE_NO_MENU = BUILTIN["hotline_no_menu"]
HOTLINE_UNKNOWN = BUILTIN["hotline_unknown"]
STATUS = BUILTIN["status"]
MERCHANT_OFFER = BUILTIN["merchant_offer"]
MERCHANT_ACCEPTED = BUILTIN["merchant_accepted"]
MERCHANT_TAKEN = BUILTIN["merchant_taken"]
RESIDENT_TOLD = BUILTIN["resident_told"]
MERCHANT_ARRIVAL = BUILTIN["merchant_arrival"]
MERCHANT_COMPLETION = BUILTIN["merchant_completion"]
SURVEY = BUILTIN["survey"]
WELLBEING = BUILTIN["wellbeing"]
LOGIN_CODE = BUILTIN["login_code"]
