"""The Twilio adapter's call state, and its copy in the database (`twilio_call`).

Twilio keeps no state of ours: what a call is doing for us (its mode, the flow run and the
turn it is on, the desk conference, the operator in it, hold) lives in the adapter. With
several processes on one PostgreSQL (DESIGN.md section 12) the owner writes that state to
`twilio_call` after every change a webhook or a command made, before answering, so a
process that takes over after kill -9 loads it and answers the next webhook where the
dead one left off. The ref of an outbound call is written before `Calls.create` is sent:
a new owner never places a ref the old one may have placed.

A row keeps what the call needs while it lives; once it ended, only its ref, SID and
progress stay (so its ref is never placed again and late webhooks are hung up): the flow
variables, the rendered turns and a click-to-call's number are wiped, as the command
table wipes its arguments.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Column, Field, SQLModel, col

from eventlog.db import JSONType, UTCDateTime, utcnow
from ivr import engine
from ivr.flow import Flow
from providers.twilio import twiml
from providers.twilio.callout import Callout
from providers.twilio.status import Progress


@dataclass(slots=True, eq=False)
class TrackedCall:
    """One call as the adapter tracks it."""

    ref: str
    outbound: bool
    sid: str | None = None
    progress: Progress = field(default_factory=Progress)
    # "wait": no command yet; "flow": in a Gather; "hold": handed on, waiting for a
    # bridge; "bridged": in a Dial; "done": told to hang up.
    mode: str = "wait"
    flow: Flow | None = None
    run: engine.Run | None = None
    lang: str = "zh-CN"
    context: dict[str, Any] = field(default_factory=dict)
    queued: list[engine.Action] | None = None
    dial: tuple[str, twiml.DialTarget] | None = None
    hangup: bool = False
    turn: int = 0
    answers: dict[int, str] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    waiting_since: float | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    # the desk conference: its SID once Twilio named it, the operator now in it (label,
    # call SID), how many operators it has had, whether the caller is held, and the
    # label whose answer ends a transfer's hold
    conference_sid: str | None = None
    operator_label: str | None = None
    operator_sid: str | None = None
    operator_peer: str | None = None
    operators: int = 0
    held: bool = False
    unhold_on_answer: str | None = None
    # a consult: the colleague's participant (label, call SID, peer), once they answered
    consult_label: str | None = None
    consult_sid: str | None = None
    consult_peer: str | None = None
    consult_answered: bool = False
    #: a click-to-call: this call is the operator's desk leg, which dials the number
    callout: Callout | None = None

    @property
    def ended(self) -> bool:
        """Twilio reported a final status."""
        return self.progress.ended


class TwilioCallRow(SQLModel, table=True):
    """One call's adapter state, as the owning process last wrote it."""

    __tablename__ = "twilio_call"

    ref: str = Field(primary_key=True, max_length=64)
    sid: str | None = Field(default=None, max_length=64, index=True)
    ended: bool = False
    state: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


_TABLE = TwilioCallRow.__table__  # type: ignore[attr-defined]


def _action(action: engine.Action) -> dict[str, Any]:
    match action:
        case engine.Play(prompt=prompt, slow=slow):
            return {"play": prompt, "slow": slow}
        case engine.Collect(digits=digits, timeout_s=timeout_s):
            return {"collect": sorted(digits), "timeout_s": timeout_s}
        case engine.Finish(outcome=outcome, variables=variables, transfer=transfer):
            return {"finish": outcome, "variables": dict(variables), "transfer": transfer}


def _unaction(data: Mapping[str, Any]) -> engine.Action:
    if "play" in data:
        return engine.Play(str(data["play"]), bool(data["slow"]))
    if "collect" in data:
        return engine.Collect(frozenset(data["collect"]), float(data["timeout_s"]))
    return engine.Finish(str(data["finish"]), dict(data["variables"]), data["transfer"])


def _jsonable(context: Mapping[str, Any]) -> dict[str, Any]:
    """The flow's context as JSON holds it: a deadline (a datetime) as its ISO text,
    which the prompts read as they read the datetime (`ivr.prompts`: "ISO text too")."""
    data: dict[str, Any] = json.loads(json.dumps(dict(context), default=_text))
    return data


def _text(value: Any) -> str:
    iso = getattr(value, "isoformat", None)
    return str(iso()) if callable(iso) else str(value)


def dump(call: TrackedCall) -> dict[str, Any]:
    """A call's state as JSON; an ended call keeps only what dedupes its webhooks."""
    kept: dict[str, Any] = {
        "ref": call.ref,
        "outbound": call.outbound,
        "sid": call.sid,
        "rank": call.progress.rank,
        "answered": call.progress.answered,
        "mode": call.mode,
        "hangup": call.hangup,
        "seen": sorted(call.seen),
    }
    if call.ended:
        return kept
    run = call.run
    callout = call.callout
    return kept | {
        "flow": call.flow.name if call.flow is not None else None,
        "run": None
        if run is None
        else {
            "flow": run.flow,
            "step": run.step,
            "attempt": run.attempt,
            "variables": dict(run.variables),
            "finished": run.finished,
            "visits": dict(run.visits),
        },
        "lang": call.lang,
        "context": _jsonable(call.context),
        "queued": None if call.queued is None else [_action(a) for a in call.queued],
        "dial": None
        if call.dial is None
        else [call.dial[0], call.dial[1].kind, call.dial[1].address],
        "turn": call.turn,
        "answers": {str(t): doc for t, doc in call.answers.items()},
        "conference_sid": call.conference_sid,
        "operator_label": call.operator_label,
        "operator_sid": call.operator_sid,
        "operator_peer": call.operator_peer,
        "operators": call.operators,
        "held": call.held,
        "unhold_on_answer": call.unhold_on_answer,
        "consult_label": call.consult_label,
        "consult_sid": call.consult_sid,
        "consult_peer": call.consult_peer,
        "consult_answered": call.consult_answered,
        "callout": None
        if callout is None
        else {
            "desk": callout.desk,
            "number": callout.number,
            "ring_s": callout.ring_s,
            "rank": callout.number_progress.rank,
            "answered": callout.number_progress.answered,
            "bridged": callout.bridged,
            "failed": callout.failed,
        },
    }


def restore(data: Mapping[str, Any], flows: Callable[[str], Flow]) -> TrackedCall:
    """A call from its JSON state; its flow is looked up by name in this process."""
    call = TrackedCall(
        ref=str(data["ref"]),
        outbound=bool(data["outbound"]),
        sid=data.get("sid"),
        progress=Progress(rank=int(data["rank"]), answered=bool(data["answered"])),
        mode=str(data["mode"]),
        hangup=bool(data["hangup"]),
        seen=set(data.get("seen", [])),
    )
    if "turn" not in data:  # an ended call: nothing more to serve
        return call
    if data.get("flow"):
        call.flow = flows(str(data["flow"]))
    if (run := data.get("run")) is not None:
        call.run = engine.Run(
            flow=run["flow"],
            step=run["step"],
            attempt=int(run["attempt"]),
            variables=dict(run["variables"]),
            finished=bool(run["finished"]),
            visits={k: int(v) for k, v in run["visits"].items()},
        )
    call.lang = str(data.get("lang", "zh-CN"))
    call.context = dict(data.get("context") or {})
    if (queued := data.get("queued")) is not None:
        call.queued = [_unaction(a) for a in queued]
    if (dial := data.get("dial")) is not None:
        call.dial = (str(dial[0]), twiml.DialTarget(str(dial[1]), str(dial[2])))
    call.turn = int(data["turn"])
    call.answers = {int(t): str(doc) for t, doc in (data.get("answers") or {}).items()}
    call.conference_sid = data.get("conference_sid")
    call.operator_label = data.get("operator_label")
    call.operator_sid = data.get("operator_sid")
    call.operator_peer = data.get("operator_peer")
    call.operators = int(data.get("operators", 0))
    call.held = bool(data.get("held", False))
    call.unhold_on_answer = data.get("unhold_on_answer")
    call.consult_label = data.get("consult_label")
    call.consult_sid = data.get("consult_sid")
    call.consult_peer = data.get("consult_peer")
    call.consult_answered = bool(data.get("consult_answered", False))
    if (co := data.get("callout")) is not None:
        call.callout = Callout(
            desk=str(co["desk"]),
            number=str(co["number"]),
            ring_s=int(co["ring_s"]),
            number_progress=Progress(rank=int(co["rank"]), answered=bool(co["answered"])),
            bridged=bool(co["bridged"]),
            failed=bool(co["failed"]),
        )
    return call


class CallTable:
    """The `twilio_call` rows, read at opening and written after each change."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def load(self) -> list[dict[str, Any]]:
        """Every call's state, oldest ref first."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(_TABLE.c.state).order_by(col(_TABLE.c.updated_at)))
            return [dict(r.state) for r in rows]

    async def save(self, changed: Mapping[str, dict[str, Any]], gone: list[str]) -> None:
        """Write the calls that changed and drop the ones the adapter forgot, in one go."""
        async with self.engine.begin() as conn:
            now = utcnow()
            insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            for ref, state in changed.items():
                values = {
                    "ref": ref,
                    "sid": state.get("sid"),
                    "ended": "turn" not in state,
                    "state": state,
                    "updated_at": now,
                }
                stmt = insert(_TABLE).values(**values)
                await conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["ref"],
                        set_={k: v for k, v in values.items() if k != "ref"},
                    )
                )
            if gone:
                await conn.execute(delete(_TABLE).where(col(_TABLE.c.ref).in_(gone)))
