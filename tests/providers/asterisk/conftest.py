"""Fixtures for the Asterisk adapter tests: a fake AMI server on loopback, short timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from providers.asterisk.config import AsteriskConfig
from providers.asterisk.telephony import AsteriskTelephony
from providers.base import TelephonyEvent
from tests.providers.asterisk.fake_ami import FakeAMI

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "asterisk"


#: how long a check may take on a loaded CI machine (a bound, not a speed claim: a check
#: that passes returns at once). Every delay of the adapter under test is set well below it
#: in `config`, so no test races a timer of its own configuration.
WAIT_S = 15.0

#: the adapter's grace before a reasonless Originate failure is reported (see `config`)
GRACE_S = 0.3


async def eventually(check: Callable[[], object], within: float = WAIT_S) -> None:
    """Poll `check` until it is truthy; fail with its last value after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = check()
        if value:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within} s (last: {value!r})")
        await asyncio.sleep(0.01)


class Recorder:
    """Collects every event an adapter emits, in a background task."""

    def __init__(self, tel: AsteriskTelephony) -> None:
        self.events: list[TelephonyEvent] = []
        self._task = asyncio.get_running_loop().create_task(self._run(tel))

    async def _run(self, tel: AsteriskTelephony) -> None:
        async for event in tel.events():
            self.events.append(event)

    def of(self, kind: type) -> list[TelephonyEvent]:
        """Events of one class."""
        return [e for e in self.events if isinstance(e, kind)]

    async def stop(self) -> None:
        """Stop collecting."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@pytest.fixture
async def ami() -> AsyncIterator[FakeAMI]:
    """A fake Asterisk AMI listening on 127.0.0.1."""
    fake = await FakeAMI().start()
    yield fake
    await fake.close()


@pytest.fixture
def config(ami: FakeAMI) -> AsteriskConfig:
    """An adapter config pointed at the fake, with timeouts short enough for a fast suite."""
    return AsteriskConfig(
        host="127.0.0.1",
        port=ami.port,
        username="yijing",
        secret="s3cret",
        dial_template="PJSIP/{number}@trunk",
        hotline_contexts=("yijing-hotline", "hotline-in"),
        agi_host="127.0.0.1",
        agi_port=0,
        agi_wait_s=2.0,
        action_timeout_s=0.5,
        connect_timeout_s=0.5,
        ping_interval_s=5.0,
        backoff_initial_s=0.02,
        backoff_max_s=0.1,
        startup_wait_s=2.0,
        originate_failure_grace_s=GRACE_S,
    )


@contextlib.asynccontextmanager
async def running(
    config: AsteriskConfig, **changes: object
) -> AsyncIterator[tuple[AsteriskTelephony, Recorder]]:
    """An adapter (entered) plus a recorder of its events."""
    tel = AsteriskTelephony(dataclasses.replace(config, **changes))  # type: ignore[arg-type]
    async with tel:
        recorder = Recorder(tel)
        try:
            yield tel, recorder
        finally:
            await recorder.stop()
