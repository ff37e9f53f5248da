"""The telephony port and the timers, on a process that does not own the PBX link.

On a standby (`operator_console.instance`), `RelayTelephony` and `RelayTimers` stand where
the adapters stand on the owner: every call becomes a command row (`eventlog.commands`)
that the owner carries out on its real adapters (`Executor`), and its error comes back as
the same port error, so a use case cannot tell where it runs. When this process takes over,
`attach` points both at its own adapters and nothing else changes for the code holding them.

What the port promises on a relay:

- the errors are the port's: a refusal on the owner is raised here as the same class
  (`UnknownCall`, `TelephonyUnavailable`, ...); no owner within `timeout_s` is
  `TelephonyUnavailable` (the command was withdrawn: the ref stays free, as the port says);
  an owner that took the command and did not finish is `TelephonyError` (outcome unknown),
  except for placing a call: a maybe-placed call is taken as placed, never sent again, and
  the reconciler ends it as lost if the PBX does not have it (`_call`'s `placing`);
- `events()` yields nothing on a standby: the owner's pump consumes the PBX's events;
- `health()` is the owner's link as the last `telephony.up` / `telephony.down` event in
  the log says (`follow`), or "no owner" before any.

Flows travel by name (the owner has the same flow library); arguments are JSON.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from eventlog.commands import Command, CommandFailed, CommandQueue, NoAnswer, Outcome
from ivr.flow import Flow
from providers.base import (
    Consult,
    Health,
    LiveCalls,
    MessagingError,
    SpeechDetection,
    Telephony,
    TelephonyError,
    TelephonyEvent,
    TelephonyUnavailable,
    UnknownCall,
)

log = logging.getLogger(__name__)

#: the port's errors by class name, as they travel back from the owner
ERRORS: dict[str, type[TelephonyError]] = {
    cls.__name__: cls for cls in (TelephonyError, TelephonyUnavailable, UnknownCall, MessagingError)
}


#: a target of the composition root's: (method, args) -> JSON result
Handler = Callable[[str, dict[str, Any]], Awaitable[Any]]


class TimersPort(Protocol):
    """The timers as the relay carries them (`dispatch.timers.Timers`)."""

    async def schedule(self, key: str, at: datetime) -> None: ...

    async def cancel(self, key: str) -> None: ...

    async def keys(self) -> set[str]: ...


def _raise(exc: CommandFailed | NoAnswer) -> None:
    if isinstance(exc, NoAnswer):
        if exc.claimed:
            raise TelephonyError("the owning process did not finish the command in time")
        raise TelephonyUnavailable("no process owns the PBX link right now")
    raise ERRORS.get(exc.kind, TelephonyError)(exc.detail)


class RelayTelephony:
    """The telephony port through the owner (or this process's adapter, once attached)."""

    name = "relay"

    def __init__(self, queue: CommandQueue, *, backend: str, timeout_s: float = 10.0) -> None:
        self.queue = queue
        self.backend = backend
        self.timeout_s = timeout_s
        self.local: Telephony | None = None
        self._remote = Health(backend, False, "no process owns the PBX link yet")
        self._closed = asyncio.Event()

    def attach(self, local: Telephony) -> None:
        """This process owns the link now: every call goes to `local` directly."""
        self.local = local

    def follow(self, event: Mapping[str, Any]) -> None:
        """A bus listener: the owner's link status from its `telephony.*` events."""
        if event["name"] == "telephony.up":
            self._remote = Health(self.backend, True, "on the owning process")
        elif event["name"] == "telephony.down":
            detail = str(event["data"].get("detail", "")) or "down"
            self._remote = Health(self.backend, False, f"on the owning process: {detail}")

    async def __aenter__(self) -> RelayTelephony:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closed.set()

    async def events(self) -> AsyncIterator[TelephonyEvent]:
        if self.local is not None:
            async for event in self.local.events():
                yield event
            return
        await self._closed.wait()  # a standby's PBX events go to the owner
        return
        yield  # pragma: no cover - makes this an async generator

    async def _call(self, method: str, *, placing: bool = False, **args: Any) -> Any:
        """One port call through the owner. `placing` (originate, call_out): an owner that
        took the command and did not finish in time may well have placed the call. That is
        no failure of the far end (a failure would move an offer on to the next merchant
        while the first one's phone rings): as on the adapters themselves, a maybe-placed
        call is never sent again, and the owner's resync and the reconciler decide (a call
        the PBX does not have ends as lost, and is replaced then)."""
        try:
            return await self.queue.call("telephony", method, args, timeout_s=self.timeout_s)
        except NoAnswer as exc:
            if not (placing and exc.claimed):
                _raise(exc)
            log.warning("%s %s: the owner took it, outcome unknown", method, args.get("ref"))
        except CommandFailed as exc:
            _raise(exc)
        return None

    async def originate(
        self, *, ref: str, number: str, caller_id: str | None = None, timeout_s: float = 30.0
    ) -> None:
        if self.local is not None:
            return await self.local.originate(
                ref=ref, number=number, caller_id=caller_id, timeout_s=timeout_s
            )
        await self._call("originate", placing=True, ref=ref, number=number,
                         caller_id=caller_id, timeout_s=timeout_s)  # fmt: skip

    async def call_out(
        self,
        *,
        ref: str,
        desk: str,
        number: str,
        caller_id: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        if self.local is not None:
            return await self.local.call_out(
                ref=ref, desk=desk, number=number, caller_id=caller_id, timeout_s=timeout_s
            )
        await self._call("call_out", placing=True, ref=ref, desk=desk, number=number,
                         caller_id=caller_id, timeout_s=timeout_s)  # fmt: skip

    async def run_flow(
        self, ref: str, flow: Flow, *, context: Mapping[str, Any], lang: str = "zh-CN"
    ) -> None:
        if self.local is not None:
            return await self.local.run_flow(ref, flow, context=context, lang=lang)
        await self._call("run_flow", ref=ref, flow=flow.name, context=dict(context), lang=lang)

    async def bridge(self, ref: str, *, peer: str) -> None:
        if self.local is not None:
            return await self.local.bridge(ref, peer=peer)
        await self._call("bridge", ref=ref, peer=peer)

    async def hold(self, ref: str) -> None:
        if self.local is not None:
            return await self.local.hold(ref)
        await self._call("hold", ref=ref)

    async def unhold(self, ref: str) -> None:
        if self.local is not None:
            return await self.local.unhold(ref)
        await self._call("unhold", ref=ref)

    async def transfer(self, ref: str, *, peer: str) -> None:
        if self.local is not None:
            return await self.local.transfer(ref, peer=peer)
        await self._call("transfer", ref=ref, peer=peer)

    async def hangup(self, ref: str) -> None:
        if self.local is not None:
            return await self.local.hangup(ref)
        await self._call("hangup", ref=ref)

    # -- Consult: every backend that stands by (Asterisk, Twilio) has it ------------------
    async def consult(self, ref: str, *, peer: str) -> None:
        if self.local is not None:
            return await _consulting(self.local).consult(ref, peer=peer)
        await self._call("consult", ref=ref, peer=peer)

    async def complete_consult(self, ref: str, *, peer: str) -> None:
        if self.local is not None:
            return await _consulting(self.local).complete_consult(ref, peer=peer)
        await self._call("complete_consult", ref=ref, peer=peer)

    async def cancel_consult(self, ref: str, *, peer: str) -> None:
        if self.local is not None:
            return await _consulting(self.local).cancel_consult(ref, peer=peer)
        await self._call("cancel_consult", ref=ref, peer=peer)

    async def live_calls(self) -> set[str]:
        """`LiveCalls` where this process's adapter has it; a standby cannot tell."""
        if isinstance(self.local, LiveCalls):
            return await self.local.live_calls()
        raise TelephonyUnavailable("live calls are known to the owning process only")

    @property
    def hears_speech(self) -> bool:
        """`SpeechDetection` where this process's adapter has it; a standby hears nothing
        (the owner's pump takes the PBX's events)."""
        return isinstance(self.local, SpeechDetection) and self.local.hears_speech

    def health(self) -> Health:
        if self.local is not None:
            return self.local.health()
        return self._remote


def _consulting(telephony: Telephony) -> Consult:
    if not isinstance(telephony, Consult):
        raise TelephonyError(f"the {telephony.name} backend cannot do a consult transfer")
    return telephony


class RelayTimers:
    """The timers through the owner (or this process's, once attached)."""

    def __init__(self, queue: CommandQueue, *, timeout_s: float = 10.0) -> None:
        self.queue = queue
        self.timeout_s = timeout_s
        self.local: TimersPort | None = None

    def attach(self, local: TimersPort) -> None:
        """This process owns the timers now."""
        self.local = local

    async def _call(self, method: str, **args: Any) -> Any:
        try:
            return await self.queue.call("timers", method, args, timeout_s=self.timeout_s)
        except (CommandFailed, NoAnswer) as exc:
            _raise(exc)

    async def schedule(self, key: str, at: datetime) -> None:
        if self.local is not None:
            return await self.local.schedule(key, at)
        await self._call("schedule", key=key, at=at.isoformat())

    async def cancel(self, key: str) -> None:
        if self.local is not None:
            return await self.local.cancel(key)
        await self._call("cancel", key=key)

    async def keys(self) -> set[str]:
        if self.local is not None:
            return await self.local.keys()
        return set(await self._call("keys"))


class Executor:
    """The owner's side: carries a command out on this process's adapters."""

    def __init__(
        self,
        telephony: Telephony,
        timers: TimersPort,
        flow: Callable[[str], Flow],
        *,
        handlers: Mapping[str, Handler] | None = None,
    ) -> None:
        self.telephony = telephony
        self.timers = timers
        self.flow = flow
        #: more targets the composition root adds (a merchant's login code to read out)
        self.handlers = dict(handlers or {})

    async def __call__(self, command: Command) -> Outcome:
        args = dict(command.args)
        try:
            result = await self._run(command.target, command.method, args)
        except TelephonyError as exc:
            return Outcome(error=type(exc).__name__, detail=str(exc))
        except Exception as exc:  # a bad row or a broken adapter: failed, the loop goes on
            log.exception("command %s.%s failed", command.target, command.method)
            return Outcome(error="TelephonyError", detail=type(exc).__name__)
        return Outcome(result=result)

    async def _run(self, target: str, method: str, args: dict[str, Any]) -> Any:
        tel = self.telephony
        if target in self.handlers:
            return await self.handlers[target](method, args)
        if target == "timers":
            if method == "schedule":
                return await self.timers.schedule(args["key"], datetime.fromisoformat(args["at"]))
            if method == "cancel":
                return await self.timers.cancel(args["key"])
            if method == "keys":
                return sorted(await self.timers.keys())
        elif target == "telephony":
            if method == "originate":
                return await tel.originate(**args)
            if method == "call_out":
                return await tel.call_out(**args)
            if method == "run_flow":
                return await tel.run_flow(
                    args["ref"], self.flow(args["flow"]), context=args["context"],
                    lang=args["lang"],
                )  # fmt: skip
            if method in ("bridge", "transfer"):
                return await getattr(tel, method)(args["ref"], peer=args["peer"])
            if method in ("consult", "complete_consult", "cancel_consult"):
                return await getattr(_consulting(tel), method)(args["ref"], peer=args["peer"])
            if method in ("hold", "unhold", "hangup"):
                return await getattr(tel, method)(args["ref"])
        raise ValueError(f"unknown command {target}.{method}")
