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
from argon2 import PasswordHasher

from dispatch.config import DispatchConfig
from dispatch.timers import ManualTimers
from eventlog.clock import ManualClock
from operator_console.app import create_app, services_key
from operator_console.settings import Settings
from providers.memory import MemoryPBX
from tests import pg_dropper

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
#: this test process's background dropper of its PostgreSQL databases (tests/pg_dropper.py)
DROPPER = pg_dropper.Dropper(PG_ADMIN)


async def _pg_create(name: str, template: str | None = None) -> None:
    """A new PostgreSQL database for one test (a copy of `template` when given)."""
    admin = await _pg_admin()
    try:
        await pg_dropper.create(admin, name, template)
    finally:
        await admin.close()


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
    await _pg_create(name)
    yield f"{_PG_BASE}/{name}"
    DROPPER.drop(name)


class TemplateDatabases:
    """Migrated template databases per backend and recipe, each built once per test session.

    Migrating (about 1 s of CPU, several seconds of wall time on PostgreSQL) and seeding
    per test was most of the suite's database time; copying a template file or
    `CREATE DATABASE ... TEMPLATE` is cheap, and each test still gets a database of its own.
    Recipes: ``migrated`` (the schema, empty), ``seeded`` (the demo community and logins,
    as the app seeds it), ``registry`` (a 60-resident community and an admin, for the
    registry tests).
    """

    RECIPES = ("migrated", "seeded", "registry")

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        token = uuid.uuid4().hex[:12]
        self.pg_names = {recipe: f"yijing_tpl_{recipe[:4]}_{token}" for recipe in self.RECIPES}
        self._built: dict[tuple[str, str], str] = {}

    @property
    def pg_name(self) -> str:
        """The seeded PostgreSQL template's name (kept for older callers)."""
        return self.pg_names["seeded"]

    def built(self, kind: str, recipe: str = "seeded") -> bool:
        """Whether this session built that template."""
        return (kind, recipe) in self._built

    async def url(self, kind: str, recipe: str = "seeded") -> str:
        """The template's URL (`kind`: sqlite or postgresql), building it on first use."""
        if (kind, recipe) not in self._built:
            if kind == "sqlite":
                url = f"sqlite+aiosqlite:///{self.folder / f'template-{recipe}.db'}"
            else:
                await _pg_create(self.pg_names[recipe])
                url = f"{_PG_BASE}/{self.pg_names[recipe]}"
            await _RECIPES[recipe](url, self.folder)
            self._built[kind, recipe] = url
        return self._built[kind, recipe]

    @contextlib.asynccontextmanager
    async def copy(self, kind: str, recipe: str, folder: Path) -> AsyncIterator[str]:
        """A database of its own made from a template: a file in `folder`, or a new
        PostgreSQL database (dropped afterwards)."""
        template = await self.url(kind, recipe)
        if kind == "sqlite":
            copy = folder / "test.db"
            await asyncio.to_thread(
                shutil.copyfile, template.removeprefix("sqlite+aiosqlite:///"), copy
            )
            yield f"sqlite+aiosqlite:///{copy}"
            return
        name = f"yijing_t_{uuid.uuid4().hex[:12]}"
        await _pg_create(name, self.pg_names[recipe])
        try:
            yield f"{_PG_BASE}/{name}"
        finally:
            DROPPER.drop(name)

    async def drop(self) -> None:
        """Drop the PostgreSQL templates this session built."""
        for kind, recipe in self._built:
            if kind == "postgresql":
                await _pg_execute(f'DROP DATABASE IF EXISTS "{self.pg_names[recipe]}" WITH (FORCE)')


#: the old name of `TemplateDatabases`
SeededTemplates = TemplateDatabases


async def _migrate(url: str, folder: Path) -> None:
    from operator_console.migrate import upgrade

    await asyncio.to_thread(upgrade, url)


async def _migrate_and_seed(url: str, folder: Path) -> None:
    from eventlog.bus import EventBus
    from eventlog.clock import SystemClock
    from eventlog.db import make_engine, make_sessionmaker
    from eventlog.store import Store
    from operator_console.app import seed_demo

    await _migrate(url, folder)
    engine = make_engine(url)
    try:
        store = Store(make_sessionmaker(engine), EventBus(), SystemClock())
        await seed_demo(store, make_settings(folder, url))
    finally:
        await engine.dispose()


async def _migrate_and_add_registry(url: str, folder: Path) -> None:
    from eventlog.db import make_engine, make_sessionmaker
    from registry import repository as repo
    from registry.demo import generate
    from registry.models import Role, User

    await _migrate(url, folder)
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            await repo.add_community(session, community=generate(residents=60))
            session.add(User(username="admin", password_hash="x", role=Role.ADMIN))
            await session.commit()
    finally:
        await engine.dispose()


_RECIPES: dict[str, Callable[[str, Path], Awaitable[None]]] = {
    "migrated": _migrate,
    "seeded": _migrate_and_seed,
    "registry": _migrate_and_add_registry,
}


#: argon2 at its cheapest for the test session (about 1 ms a hash instead of 0.15 s of CPU
#: and 64 MiB): app tests log in several times each, and hashing was minutes of the suite's
#: CPU. The code path is the production one (argon2 reads the cost from each stored hash;
#: the hashing lanes, threads and throttles are unchanged); only the cost is lower, as
#: Django's test settings do with their password hasher.
TEST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(scope="session", autouse=True)
def drop_test_databases() -> Iterator[None]:
    """The session ends once every test database it made is dropped."""
    yield
    DROPPER.close()


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashes() -> Iterator[None]:
    """Every hash this test process makes (demo logins, new users, the dummy) is cheap."""
    from operator_console import auth

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(auth, "_hasher", TEST_HASHER)
        auth._dummy_hash.cache_clear()
        yield
    auth._dummy_hash.cache_clear()


@pytest.fixture(scope="session")
def seeded_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemplateDatabases]:
    """The session's template databases (the PostgreSQL ones are dropped at the end)."""
    templates = TemplateDatabases(tmp_path_factory.mktemp("templates"))
    yield templates
    asyncio.run(templates.drop())


@pytest.fixture(params=["sqlite", "postgresql"])
async def seeded_db_url(
    request: pytest.FixtureRequest, tmp_path: Path, seeded_templates: TemplateDatabases
) -> AsyncIterator[str]:
    """A database of this test's own, already migrated and holding the demo community."""
    async with seeded_templates.copy(request.param, "seeded", tmp_path) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
async def migrated_db_url(
    request: pytest.FixtureRequest, tmp_path: Path, seeded_templates: TemplateDatabases
) -> AsyncIterator[str]:
    """A database of this test's own with the schema at the latest revision, and no rows."""
    async with seeded_templates.copy(request.param, "migrated", tmp_path) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
async def registry_db_url(
    request: pytest.FixtureRequest, tmp_path: Path, seeded_templates: TemplateDatabases
) -> AsyncIterator[str]:
    """A database of this test's own, migrated, with 60 demo residents and an admin (id 1)."""
    async with seeded_templates.copy(request.param, "registry", tmp_path) as url:
        yield url


async def eventually(
    check: Callable[[], Awaitable[Any]], *, within: float = 15.0, interval: float = 0.02
) -> Any:
    """Poll an async check until it returns something truthy.

    The limit is a bound on a loaded CI box (three workers, PostgreSQL and a real PBX
    sharing two cores), not a speed claim: a passing check returns at once, and speed is
    measured in `bench/`. At 5 s an offer's accept on PostgreSQL missed it under load."""
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
async def started_harness(
    tmp_path: Path, db_url: str, *, config: DispatchConfig | None = None, **settings: Any
) -> AsyncIterator[Harness]:
    """The `harness` fixture's app, with some settings (or dispatch config) of the test's own."""
    clock = ManualClock(MORNING)
    timers = ManualTimers(clock)
    pbx = MemoryPBX(time_scale=1.0)
    app = create_app(
        make_settings(tmp_path, db_url, **settings),
        telephony=pbx,
        clock=clock,
        timers=timers,
        dispatch_config=config
        or DispatchConfig(
            match_seed=7, survey_delay_s=60, offer_timeout_s=90, parallel_offers_urgent=1
        ),
    )
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        h = Harness(client, pbx, clock, timers, {})
        # settled: the pump has written the backend's `telephony.up` (it does so on its own
        # a moment after start), so no test reads that startup event as its own doing
        await eventually(lambda: telephony_up(h))
        yield h
    finally:
        await client.close()


async def telephony_up(h: Harness) -> bool:
    """Whether the backend's `telephony.up` is in the log."""
    from sqlalchemy import func, select
    from sqlmodel import col

    from eventlog.models import Event

    async with h.services.store.read() as session:
        count = await session.scalar(select(func.count()).where(col(Event.name) == "telephony.up"))
    return bool(count)
