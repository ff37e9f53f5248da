"""What every handler reaches: the app's `Services`, built once by the composition root.

Its own module (not `app.py`) so that handlers can import the type without importing the
composition root; `api.services(request)` returns it typed, so mypy checks every call from
a handler into `dispatch`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from dispatch.services import DispatchServices
from dispatch.timers import Timers
from eventlog.bus import EventBus
from eventlog.clock import Clock
from eventlog.store import Store
from operator_console.instance import Ownership
from operator_console.settings import Settings
from providers.base import Simulator, Telephony


@dataclass(slots=True)
class Services:
    """Everything the handlers reach, built once per app."""

    settings: Settings
    engine: AsyncEngine
    store: Store
    bus: EventBus
    clock: Clock
    telephony: Telephony
    timers: Timers
    dispatch: DispatchServices
    scheduler_up: Callable[[], bool]
    #: the phone simulator when the backend is one (the memory PBX), else None
    simulator: Simulator | None = None
    #: whether this process owns the PBX link (several processes on one PostgreSQL)
    ownership: Ownership = field(default_factory=Ownership)


services_key = web.AppKey("services", Services)
