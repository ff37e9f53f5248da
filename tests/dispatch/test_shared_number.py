"""A number several residents hold (data from before one-phone-one-resident was enforced)
never picks one of them: the call is treated as unregistered, nobody is greeted by name,
and the ambiguity shows on the call's event and in the log, by resident ids only."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import text

from registry.models import Resident, ResidentPhone
from tests.conftest import Harness, eventually

PHONE_OF_1 = "+862354000001"  # resident 1 of the demo community (a landline)


async def test_given_a_number_two_residents_hold_when_it_calls_then_nobody_is_greeted_by_name(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    caplog.set_level(logging.INFO)
    async with h.services.store.tx() as tx:
        # a database that predates the unique index on resident_phone.number
        await tx.session.execute(text("DROP INDEX IF EXISTS ux_resident_phone_number"))
        tx.session.add(ResidentPhone(resident_id=2, number=PHONE_OF_1, kind="landline"))
        names = [(await tx.session.get(Resident, rid)).name for rid in (1, 2)]  # type: ignore[union-attr]

    ref = await h.pbx.dial_in(PHONE_OF_1)

    async def offered() -> Any:
        events = await h.services.store.events_since(0)
        return next((e for e in events if e["name"] == "call.offered"), None)

    event = await eventually(offered)
    assert event["data"]["resident_id"] is None
    assert event["data"]["registered"] is False
    assert event["data"]["shared_number"] == [1, 2]

    async def greeted() -> Any:
        return h.pbx.calls[ref].transcript

    said = " ".join(await eventually(greeted))
    for name in names:
        assert name not in said
    calls = await h.call("GET", "/calls")
    assert [(c["registered"], c.get("resident_name")) for c in calls] == [(False, None)]
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "shared" in logged
    for word in (*names, PHONE_OF_1, PHONE_OF_1[-8:]):
        assert word not in logged
