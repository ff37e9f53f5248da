"""The domain's lists the admin forms pick from, with the prefix of their words.

The admin page gets these from the server (`admin.html` hands them to `admin.js`), so a value
added to an enum shows in the forms without a copy in the script; each value's words are the
catalog entry `<prefix><value>` (tests/operator_console/test_catalogs.py checks both ways).
"""

from __future__ import annotations

from typing import TypedDict

from providers.base import SIM_STATES, EndCause
from registry.models import (
    FAMILY_CHANNELS,
    FAMILY_EVENTS,
    ContractStatus,
    PriceKind,
    ResidentStatus,
    Role,
    Urgency,
)
from registry.schemas import CONTACT_KINDS, GROUPS, PHONE_KINDS


class Enum(TypedDict):
    """One list: its values in form order and the prefix of their catalog keys."""

    values: list[str]
    prefix: str


#: a form's list -> its values and words; groups are stored as the registry's own words and
#: are worded by `groupName` in common.js (prefix "")
ENUMS: dict[str, Enum] = {
    "groups": {"values": list(GROUPS), "prefix": ""},
    "statuses": {"values": [s.value for s in ResidentStatus], "prefix": "v_"},
    "contact_kinds": {"values": list(CONTACT_KINDS), "prefix": "ck_"},
    "family_events": {"values": list(FAMILY_EVENTS), "prefix": "fe_"},
    "family_channels": {"values": list(FAMILY_CHANNELS), "prefix": "fc_"},
    "roles": {"values": [r.value for r in Role], "prefix": "v_"},
    "contract": {"values": [c.value for c in ContractStatus], "prefix": "v_"},
    "urgency": {"values": [u.value for u in Urgency][::-1], "prefix": "v_"},
    "phone_kinds": {"values": list(PHONE_KINDS), "prefix": "pk_"},
    "price_kinds": {"values": [k.value for k in PriceKind], "prefix": "price_"},
    "weekdays": {"values": [str(d) for d in range(7)], "prefix": "wd_"},
    # the simulator page's words for its phones' states and why a call ended
    "sim_states": {"values": list(SIM_STATES), "prefix": "sim_st_"},
    "end_causes": {"values": [c.value for c in EndCause], "prefix": "cause_"},
}
