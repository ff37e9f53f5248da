"""The default service catalog a new community starts with (editable by an admin)."""

from __future__ import annotations

from registry.models import ServiceCategory, Urgency

#: the category of a call back: an operator rings a caller who hung up in the queue or
#: asked to be called back
CALLBACK = "callback"
#: categories that are tasks for operators: never offered to a merchant, never "the same
#: as last time", never dispatched by the service on its own
OPERATOR_TASKS = frozenset({CALLBACK})

#: `needs_consent`: the self-paid services a resident pays for in full, ordered at
#: leisure (home repair, meal delivery): the resident agrees to the price before dispatch.
#: Never an emergency or urgent category: a consent must not hold up help that hurries.
_DEFAULTS: list[dict[str, object]] = [
    # not a merchant service: an operator calls back a caller who hung up in the queue
    dict(
        code=CALLBACK,
        name_zh="回电",
        name_en="Call back",
        urgency=Urgency.URGENT,
        deadline_minutes=15,
        merchant_kinds=[],
        sort_order=90,
    ),
    dict(
        code="emergency",
        name_zh="紧急求助",
        name_en="Emergency",
        urgency=Urgency.EMERGENCY,
        deadline_minutes=15,
        merchant_kinds=["clinic"],
        sort_order=0,
    ),
    dict(
        code="medicine",
        name_zh="送药",
        name_en="Medicine delivery",
        urgency=Urgency.URGENT,
        deadline_minutes=60,
        merchant_kinds=["pharmacy"],
        sort_order=1,
    ),
    dict(
        code="groceries",
        name_zh="买菜购物",
        name_en="Groceries",
        urgency=Urgency.ROUTINE,
        deadline_minutes=120,
        merchant_kinds=["supermarket", "shop"],
        sort_order=2,
    ),
    dict(
        code="doctor",
        name_zh="上门看病",
        name_en="Doctor home visit",
        urgency=Urgency.URGENT,
        deadline_minutes=90,
        merchant_kinds=["clinic"],
        sort_order=3,
    ),
    dict(
        code="water",
        name_zh="水管维修",
        name_en="Water fault",
        urgency=Urgency.URGENT,
        deadline_minutes=120,
        merchant_kinds=["water"],
        sort_order=4,
    ),
    dict(
        code="electricity",
        name_zh="电力故障",
        name_en="Electricity fault",
        urgency=Urgency.URGENT,
        deadline_minutes=120,
        merchant_kinds=["electricity"],
        sort_order=5,
    ),
    dict(
        code="gas",
        name_zh="燃气故障",
        name_en="Gas fault",
        urgency=Urgency.EMERGENCY,
        deadline_minutes=30,
        merchant_kinds=["gas"],
        sort_order=6,
    ),
    dict(
        code="repair",
        name_zh="家电维修",
        name_en="Home repair",
        urgency=Urgency.ROUTINE,
        deadline_minutes=240,
        merchant_kinds=["shop"],
        sort_order=7,
        needs_consent=True,
    ),
    dict(
        code="meal",
        name_zh="送餐",
        name_en="Meal delivery",
        urgency=Urgency.ROUTINE,
        deadline_minutes=90,
        merchant_kinds=["supermarket", "shop"],
        sort_order=8,
        needs_consent=True,
    ),
]


def default_catalog() -> list[ServiceCategory]:
    """New rows of the default catalog (fresh objects every call)."""
    return [ServiceCategory.model_validate(values) for values in _DEFAULTS]
