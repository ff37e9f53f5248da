"""The consult (warm) transfer at the desk, on SQLite and PostgreSQL, on the memory PBX:
consult then complete or cancel, a colleague who never answers, a caller who hangs up
meanwhile, refusals that change nothing, and a backend without the capability."""

from __future__ import annotations

from typing import Any

import pytest

from dispatch.consult import ConsultUnsupported
from dispatch.errors import Conflict
from dispatch.machines import IllegalTransition
from dispatch.machines import call as cm
from ivr.prompts import render
from providers.base import Consult
from providers.memory import Script
from tests.conftest import Harness, eventually
from tests.dispatch.test_hold_transfer import add_operator, answered, call_row, names, state, user

CONSULT_EVENTS = ("call.consult_started", "call.consult_answered")


async def consulting(h: Harness, note: str = "") -> tuple[dict[str, Any], str, Any, Any]:
    """A caller with "operator", who consults a free colleague "b" who answers."""
    b = await add_operator(h, "b")
    await h.call("POST", "/operator/state", json={"action": "login"}, as_user="b")
    call, ref = await answered(h)
    me = await user(h, "operator")
    await h.services.dispatch.consults.start(call["id"], me, to_user_id=b.id, note=note)

    async def talking() -> bool:
        return (await call_row(h, call["id"])).state == "consulting"

    await eventually(talking)
    return call, ref, me, b


async def test_given_a_consult_when_completed_then_b_owns_the_call_and_a_wraps_up(
    harness: Harness,
) -> None:
    h = harness
    call, ref, me, b = await consulting(h, note="想先给女儿打电话")

    assert h.pbx.calls[ref].state == "held"
    assert h.pbx.consults[ref].peer == f"operator:{b.id}" and h.pbx.consults[ref].answered
    # the caller hears the hold prompt while the two operators talk
    assert render("desk.on_hold", "zh-CN") in h.pbx.calls[ref].transcript
    assert await state(h, "b") == ("on_call", call["id"])
    assert await state(h, "operator") == ("on_call", call["id"])

    await h.services.dispatch.consults.complete(call["id"], me)

    async def bridged_to_b() -> bool:
        c = h.pbx.calls[ref]
        return c.state == "bridged" and c.peer == f"operator:{b.id}"

    await eventually(bridged_to_b)
    row = await call_row(h, call["id"])
    assert row.state == "connected" and row.operator_id == b.id and row.held_at is None
    assert await state(h, "operator") == ("wrap_up", call["id"])
    assert await state(h, "b") == ("on_call", call["id"])
    assert ref not in h.pbx.consults
    timeline = await names(h, call["id"])
    consult = [n for n in timeline if n.startswith("call.consult") or n == "call.transferred"]
    assert consult == [*CONSULT_EVENTS, "call.consult_completed", "call.transferred"]
    events = await h.services.store.events_for("call", call["id"])
    started = next(e for e in events if e["name"] == "call.consult_started")
    assert started["data"]["note"] == "想先给女儿打电话"
    assert started["data"]["to_operator_id"] == b.id
    transferred = next(e for e in events if e["name"] == "call.transferred")
    assert transferred["data"]["note"] == "想先给女儿打电话" and transferred["data"]["consult"]
    # A finishes the after-call work of the call handed on; B talks on
    await h.services.dispatch.desk.wrap_up(call["id"], me, "handed on")
    assert await state(h, "operator") == ("available", None)
    assert (await call_row(h, call["id"])).state == "connected"


async def test_given_a_consult_when_cancelled_then_the_caller_is_back_with_a_and_b_free(
    harness: Harness,
) -> None:
    h = harness
    call, ref, me, _b = await consulting(h)

    await h.services.dispatch.consults.cancel(call["id"], me)

    async def back() -> bool:
        c = h.pbx.calls[ref]
        return c.state == "bridged" and c.peer == f"operator:{me.id}"

    await eventually(back)
    row = await call_row(h, call["id"])
    assert row.state == "connected" and row.operator_id == me.id and row.held_at is None
    assert await state(h, "b") == ("available", None)
    assert await state(h, "operator") == ("on_call", call["id"])
    assert ref not in h.pbx.consults
    consult = [n for n in await names(h, call["id"]) if n.startswith("call.consult")]
    assert consult == [*CONSULT_EVENTS, "call.consult_cancelled"]
    # nothing left to complete or cancel
    with pytest.raises(Conflict, match="no consult"):
        await h.services.dispatch.consults.complete(call["id"], me)
    with pytest.raises(Conflict, match="no consult"):
        await h.services.dispatch.consults.cancel(call["id"], me)


async def test_given_b_does_not_answer_when_consulted_then_the_caller_is_back_with_a(
    harness: Harness,
) -> None:
    h = harness
    b = await add_operator(h, "b")
    await h.call("POST", "/operator/state", json={"action": "login"}, as_user="b")
    h.pbx.script_desk(f"operator:{b.id}", Script(action="busy"))
    call, ref = await answered(h)
    me = await user(h, "operator")

    await h.services.dispatch.consults.start(call["id"], me, to_user_id=b.id)

    async def failed() -> bool:
        return "call.consult_failed" in await names(h, call["id"])

    await eventually(failed)

    async def back() -> bool:
        c = h.pbx.calls[ref]
        return c.state == "bridged" and c.peer == f"operator:{me.id}"

    await eventually(back)
    row = await call_row(h, call["id"])
    assert row.state == "connected" and row.operator_id == me.id and row.held_at is None
    assert await state(h, "b") == ("available", None)
    assert await state(h, "operator") == ("on_call", call["id"])
    events = await h.services.store.events_for("call", call["id"])
    told = next(e for e in events if e["name"] == "call.consult_failed")
    # A is told (the desk's feed shows the event to the call's operator)
    assert told["data"]["operator_id"] == me.id and told["data"]["to_operator_id"] == b.id


async def test_given_b_still_ringing_when_completing_then_409_and_cancel_frees_b(
    harness: Harness,
) -> None:
    h = harness
    b = await add_operator(h, "b")
    await h.call("POST", "/operator/state", json={"action": "login"}, as_user="b")
    # rings for the PBX's 30 s ring time: still ringing while the test runs
    h.pbx.script_desk(f"operator:{b.id}", Script(action="no_answer"))
    call, ref = await answered(h)
    me = await user(h, "operator")
    await h.services.dispatch.consults.start(call["id"], me, to_user_id=b.id)
    assert (await call_row(h, call["id"])).state == "consult_ringing"

    with pytest.raises(Conflict, match="not answered yet"):
        await h.services.dispatch.consults.complete(call["id"], me)
    # a blind transfer or a second hold in the middle of a consult is refused
    with pytest.raises((Conflict, IllegalTransition)):
        await h.services.dispatch.desk.transfer_call(call["id"], me, to_user_id=b.id)
    with pytest.raises(IllegalTransition):
        await h.services.dispatch.desk.hold_call(call["id"], me)

    await h.services.dispatch.consults.cancel(call["id"], me)

    async def back() -> bool:
        return h.pbx.calls[ref].state == "bridged"

    await eventually(back)
    assert ref not in h.pbx.consults
    assert await state(h, "b") == ("available", None)


async def test_given_a_consult_when_the_caller_hangs_up_then_a_wraps_up_and_b_is_free(
    harness: Harness,
) -> None:
    h = harness
    call, ref, _me, _b = await consulting(h)

    await h.pbx.party_hangup(ref)

    async def ended() -> bool:
        return (await call_row(h, call["id"])).state == "wrap_up"

    await eventually(ended)
    assert await state(h, "operator") == ("wrap_up", call["id"])
    assert await state(h, "b") == ("available", None)
    assert ref not in h.pbx.consults
    events = await h.services.store.events_for("call", call["id"])
    cancelled = next(e for e in events if e["name"] == "call.consult_cancelled")
    assert cancelled["data"]["caller_left"] is True
    assert [e["name"] for e in events].index("call.consult_cancelled") < [
        e["name"] for e in events
    ].index("call.ended")


async def test_given_a_busy_or_unknown_colleague_when_consulting_then_refused_unchanged(
    harness: Harness,
) -> None:
    h = harness
    b = await add_operator(h, "b")  # logged out
    call, ref = await answered(h)
    me = await user(h, "operator")
    consults = h.services.dispatch.consults

    with pytest.raises(Conflict, match="not free"):
        await consults.start(call["id"], me, to_user_id=b.id)
    with pytest.raises(ValueError, match="themselves"):
        await consults.start(call["id"], me, to_user_id=me.id)
    other = await user(h, "supervisor")
    with pytest.raises(Conflict, match="another operator"):
        await consults.start(call["id"], other, to_user_id=b.id)
    row = await call_row(h, call["id"])
    assert row.state == "connected" and h.pbx.calls[ref].state == "bridged"
    assert not [n for n in await names(h, call["id"]) if n.startswith("call.consult")]


class WithoutConsult:
    """A backend like the memory PBX but without the consult capability."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name in ("consult", "complete_consult", "cancel_consult"):
            raise AttributeError(name)
        return getattr(self._inner, name)


async def test_given_a_backend_without_consult_when_consulting_then_consult_unsupported(
    harness: Harness,
) -> None:
    h = harness
    b = await add_operator(h, "b")
    await h.call("POST", "/operator/state", json={"action": "login"}, as_user="b")
    call, _ref = await answered(h)
    me = await user(h, "operator")
    fx = h.services.dispatch.core.fx
    fx.telephony = WithoutConsult(h.pbx)
    assert not isinstance(fx.telephony, Consult)

    with pytest.raises(ConsultUnsupported) as refused:
        await h.services.dispatch.consults.start(call["id"], me, to_user_id=b.id)

    assert refused.value.error_id == "consult_unsupported"
    assert (await call_row(h, call["id"])).state == "connected"
    assert await state(h, "b") == ("available", None)


@pytest.mark.parametrize("state", [cm.CallState.CONSULT_RINGING, cm.CallState.CONSULTING])
def test_given_a_consult_when_a_blind_transfer_or_hold_comes_then_the_machine_refuses(
    state: cm.CallState,
) -> None:
    for event in (cm.Transfer(2), cm.Hold(), cm.Consult(3)):
        with pytest.raises(IllegalTransition):
            cm.transition(state, event)
    assert cm.transition(state, cm.Hangup(inbound=True)) == (cm.CallState.WRAP_UP, [])


def test_given_the_backends_then_memory_asterisk_and_twilio_offer_consult() -> None:
    from providers.asterisk.telephony import AsteriskTelephony
    from providers.memory import MemoryPBX
    from providers.relay import RelayTelephony
    from providers.twilio.adapter import TwilioTelephony

    # the same desk behaviour on Asterisk and Twilio: test_consult_backends.py
    for backend in (MemoryPBX, AsteriskTelephony, TwilioTelephony):
        assert issubclass(backend, Consult), backend
    # a standby's port forwards a consult to the owner as well (tests/providers/test_relay.py)
    assert issubclass(RelayTelephony, Consult)


async def test_given_a_consult_when_the_reconciler_runs_then_the_colleague_stays_on_call(
    harness: Harness,
) -> None:
    h = harness
    call, ref, me, _b = await consulting(h)

    await h.services.dispatch.reconciler.reconcile(startup=True)

    # the caller is still live on the PBX: the consult goes on, then completes as usual
    assert await state(h, "b") == ("on_call", call["id"])
    assert (await call_row(h, call["id"])).state == "consulting"
    await h.services.dispatch.consults.complete(call["id"], me)
    assert await state(h, "b") == ("on_call", call["id"])
    assert h.pbx.calls[ref].state in ("held", "bridged")
