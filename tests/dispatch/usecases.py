"""The dispatch services on a seeded database, without the HTTP app: for tests of the use
cases themselves (a telephony backend of the test's choosing, a manual clock and timers).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from dispatch.config import DispatchConfig
from dispatch.services import DispatchServices
from dispatch.timers import ManualTimers
from eventlog.bus import EventBus
from eventlog.clock import ManualClock
from eventlog.db import make_engine, make_sessionmaker
from eventlog.store import Store
from providers.base import LiveCalls, SpeechDetection, Telephony
from tests.conftest import MORNING


@dataclass
class UseCases:
    """Running dispatch services and what drives them."""

    dispatch: DispatchServices
    store: Store
    clock: ManualClock
    timers: ManualTimers


@contextlib.asynccontextmanager
async def use_cases(
    db_url: str,
    telephony: Telephony,
    *,
    config: DispatchConfig | None = None,
    live_calls: LiveCalls | None = None,
    speech: SpeechDetection | None = None,
    pump: bool = False,
) -> AsyncIterator[UseCases]:
    """The services on `db_url` (migrated and seeded) with `telephony` already open;
    `pump`: consume the backend's events as the app does."""
    engine = make_engine(db_url)
    clock = ManualClock(MORNING)
    timers = ManualTimers(clock)
    store = Store(make_sessionmaker(engine), EventBus(), clock)
    dispatch = DispatchServices(
        store=store,
        telephony=telephony,
        timers=timers,
        clock=clock,
        config=config or DispatchConfig(match_seed=7),
        live_calls=live_calls,
        speech=speech,
    )
    timers.handler = dispatch.router.on_timer
    task = asyncio.create_task(dispatch.router.pump()) if pump else None
    try:
        yield UseCases(dispatch, store, clock, timers)
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await engine.dispose()
