"""The consult steps the PBX carries out (`dispatch.effects` runs them after the commit).

Kept apart from the interpreter for its size only: each step maps one call-machine
command (`ConsultOperator`, `CompleteConsult`, `CancelConsult`) to one method of the
port's optional `Consult` capability.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from dispatch.machines import call as cm
from providers.base import Consult, Telephony, TelephonyError

log = logging.getLogger(__name__)

#: the call-machine commands carried out as a `ConsultStep`
CONSULT_COMMANDS = (cm.ConsultOperator, cm.CompleteConsult, cm.CancelConsult)


@dataclass(frozen=True, slots=True)
class ConsultStep:
    """Start a consult (hold the caller, ring the colleague), complete it (the caller to
    the colleague) or cancel it (the colleague released, the caller back); a start the PBX
    refuses is reported (`Reports.consult_failed`: the caller is back with their operator)."""

    ref: str
    operator_id: int
    step: Literal["start", "complete", "cancel"]


def consult_step(
    ref: str, command: cm.ConsultOperator | cm.CompleteConsult | cm.CancelConsult
) -> ConsultStep:
    """The step a call-machine consult command asks for."""
    match command:
        case cm.ConsultOperator(operator_id=operator_id):
            return ConsultStep(ref, operator_id, "start")
        case cm.CompleteConsult(operator_id=operator_id):
            return ConsultStep(ref, operator_id, "complete")
        case cm.CancelConsult(operator_id=operator_id):
            return ConsultStep(ref, operator_id, "cancel")


async def carry_out(
    telephony: Telephony,
    command: ConsultStep,
    failed: Callable[[str, str], Awaitable[None]] | None,
) -> bool:
    """Carry out one step; False when the backend could not (logged; a start reported)."""
    ref, peer = command.ref, f"operator:{command.operator_id}"
    if not isinstance(telephony, Consult):
        # the use cases refuse a consult on such a backend before anything changes
        log.warning("call %s: the %s backend cannot consult", ref, telephony.name)
        return False
    try:
        if command.step == "start":
            await telephony.consult(ref, peer=peer)
        elif command.step == "complete":
            await telephony.complete_consult(ref, peer=peer)
        else:
            await telephony.cancel_consult(ref, peer=peer)
    except TelephonyError:
        # a caller gone meanwhile: their hang-up ends the call and frees both desks
        log.warning("call %s: consult %s with %s failed at the PBX", ref, command.step, peer)
        if command.step == "start" and failed is not None:
            await failed(ref, peer)
        return False
    return True
