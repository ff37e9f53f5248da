"""Shared fixtures: a fresh database per test on SQLite and on PostgreSQL, and a running app.

PostgreSQL is not optional: when it is down these tests fail with a clear message
(the Makefile starts it); they are never skipped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from dispatch.clock import ManualClock
from dispatch.config import DispatchConfig
from dispatch.timers import ManualTimers
from operator_console.app import create_app, services_key
from operator_console.settings import Settings
from providers.memory import MemoryPBX

PG_ADMIN = os.environ.get("YIJING_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
DEMO_PASSWORD = "demo-pass-123"
#: 10:00 in Shanghai: every demo merchant is open
MORNING = ManualClock().now()


async def _pg_admin() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(PG_ADMIN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:  # pragma: no cover - environment
        pytest.fail(f"PostgreSQL at {PG_ADMIN} is required for the tests: {exc}")


_PG_BASE = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")


async def _pg_execute(sql: str) -> None:
    admin = await _pg_admin()
    try:
        await admin.execute(sql)
    finally:
        await admin.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The real-PBX tier's skip reason and figures (from the workers' reports)."""
    from tests.pbx.summary import summarize

    summarize(terminalreporter)


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database URL: a SQLite file or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        return
    name = f"yijing_t_{uuid.uuid4().hex[:12]}"
    await _pg_execute(f'CREATE DATABASE "{name}"')
    yield f"{_PG_BASE}/{name}"
    await _pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class SeededTemplates:
    """One migrated, demo-seeded database per backend, built once per test session.

    Every app test used to migrate and seed its own database (about 2 s each on
    PostgreSQL); copying a template file or `CREATE DATABASE ... TEMPLATE` is cheap,
    and each test still gets a database of its own.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.pg_name = f"yijing_tpl_{uuid.uuid4().hex[:12]}"
        self._built: dict[str, str] = {}

    def built(self, kind: str) -> bool:
        """Whether this session built that template."""
        return kind in self._built

    async def url(self, kind: str) -> str:
        """The template's URL, building it on first use."""
        if kind not in self._built:
            if kind == "sqlite":
                url = f"sqlite+aiosqlite:///{self.folder / 'template.db'}"
            else:
                await _pg_execute(f'CREATE DATABASE "{self.pg_name}"')
                url = f"{_PG_BASE}/{self.pg_name}"
            await _migrate_and_seed(url, self.folder)
            self._built[kind] = url
        return self._built[kind]


async def _migrate_and_seed(url: str, folder: Path) -> None:
    from dispatch.clock import SystemClock
    from dispatch.events import EventBus, Store
    from operator_console.app import seed_demo
    from operator_console.migrate import upgrade
    from registry.db import make_engine, make_sessionmaker

    await asyncio.to_thread(upgrade, url)
    engine = make_engine(url)
    try:
        store = Store(make_sessionmaker(engine), EventBus(), SystemClock())
        await seed_demo(store, make_settings(folder, url))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def seeded_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeededTemplates]:
    """The session's seeded template databases (the PostgreSQL one is dropped at the end)."""
    templates = SeededTemplates(tmp_path_factory.mktemp("templates"))
    yield templates
    if "postgresql" in templates._built:
        asyncio.run(_pg_execute(f'DROP DATABASE IF EXISTS "{templates.pg_name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
async def seeded_db_url(
    request: pytest.FixtureRequest, tmp_path: Path, seeded_templates: SeededTemplates
) -> AsyncIterator[str]:
    """A database of this test's own, already migrated and holding the demo community."""
    template = await seeded_templates.url(request.param)
    if request.param == "sqlite":
        copy = tmp_path / "test.db"
        shutil.copyfile(template.removeprefix("sqlite+aiosqlite:///"), copy)
        yield f"sqlite+aiosqlite:///{copy}"
        return
    name = f"yijing_t_{uuid.uuid4().hex[:12]}"
    await _pg_execute(f'CREATE DATABASE "{name}" TEMPLATE "{seeded_templates.pg_name}"')
    yield f"{_PG_BASE}/{name}"
    await _pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def eventually(
    check: Callable[[], Awaitable[Any]], *, within: float = 5.0, interval: float = 0.02
) -> Any:
    """Poll an async check until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s: {check}")
        await asyncio.sleep(interval)


@dataclass
class Harness:
    """A running app with its memory PBX, manual clock and timers, and an API client."""

    client: TestClient[Any, Any]
    pbx: MemoryPBX
    clock: ManualClock
    timers: ManualTimers
    tokens: dict[str, str]

    @property
    def services(self) -> Any:
        """The app's services."""
        return self.client.app[services_key]  # type: ignore[index]

    async def login(self, username: str, password: str = DEMO_PASSWORD) -> str:
        """A bearer token for a user."""
        resp = await self.client.post(
            "/api/v1/login", json={"username": username, "password": password}
        )
        assert resp.status == 200, await resp.text()
        token: str = (await resp.json())["token"]
        self.tokens[username] = token
        return token

    async def call(
        self,
        method: str,
        path: str,
        *,
        as_user: str = "operator",
        expect: int | None = 200,
        **kwargs: Any,
    ) -> Any:
        """An API request as a user; checks the status when `expect` is given."""
        if as_user not in self.tokens:
            await self.login(as_user)
        headers = {"Authorization": f"Bearer {self.tokens[as_user]}", **kwargs.pop("headers", {})}
        resp = await self.client.request(method, "/api/v1" + path, headers=headers, **kwargs)
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        if expect is not None:
            assert resp.status == expect, (resp.status, body)
        return body

    async def settle(self) -> None:
        """Let the telephony pump work through what is queued."""
        for _ in range(5):
            await asyncio.sleep(0.01)


def make_settings(tmp_path: Path, db_url: str, **overrides: Any) -> Settings:
    """Settings for a test app."""
    values: dict[str, Any] = {
        "environment": "test",
        "data_dir": tmp_path / "data",
        "database_url": db_url,
        "demo_password": DEMO_PASSWORD,
        "secret_key": "test-secret-key-not-for-production",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def harness(tmp_path: Path, seeded_db_url: str) -> AsyncIterator[Harness]:
    """The app on a database of its own with the demo community, at 10:00 Shanghai time."""
    async with started_harness(tmp_path, seeded_db_url) as h:
        yield h


@contextlib.asynccontextmanager
async def started_harness(tmp_path: Path, db_url: str, **settings: Any) -> AsyncIterator[Harness]:
    """The `harness` fixture's app, with some settings of the test's own."""
    clock = ManualClock(MORNING)
    timers = ManualTimers(clock)
    pbx = MemoryPBX(time_scale=1.0)
    app = create_app(
        make_settings(tmp_path, db_url, **settings),
        telephony=pbx,
        clock=clock,
        timers=timers,
        dispatch_config=DispatchConfig(
            match_seed=7, survey_delay_s=60, offer_timeout_s=90, parallel_offers_urgent=1
        ),
    )
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield Harness(client, pbx, clock, timers, {})
    finally:
        await client.close()
