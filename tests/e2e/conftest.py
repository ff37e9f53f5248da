"""Browser tests: the real `yijing run` server in a subprocess, driven by Playwright's sync
API through Debian's chromium. SQLite only (the API tests cover PostgreSQL).

A server starts on a copy of the session's migrated, demo-seeded template database
(tests/conftest.py), as a server restarted on its data would: migrating and seeding in
every server's first start was most of a browser test's set-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.conftest import DEMO_PASSWORD, DROPPER, PG_ADMIN, TemplateDatabases

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
#: the seeded template's demo password
PASSWORD = DEMO_PASSWORD
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-output" / "screenshots"
DESK = {"width": 1366, "height": 768}
PHONE = {"width": 375, "height": 667}


def free_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PortTaken(Exception):
    """Another process took the port between choosing it and binding it."""


class Server:
    """`yijing run` on a fresh data directory; can be stopped and started again."""

    def __init__(self, data_dir: Path, database_url: str = "") -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "server.log"
        self.started = False

    def start(self) -> None:
        """Start and wait until /healthz answers 200; a first start retries on a taken port."""
        for attempt in range(5):
            try:
                self._start()
                self.started = True
                return
            except PortTaken:
                time.sleep(0.5)
                if not self.started:
                    self.port = free_port()
                    self.url = f"http://127.0.0.1:{self.port}"
                if attempt == 4:
                    raise

    def _start(self) -> None:
        env = {
            **os.environ,
            "YIJING_DATA_DIR": str(self.data_dir),
            "YIJING_PORT": str(self.port),
            "YIJING_PUBLIC_URL": self.url,
            "YIJING_DEMO_PASSWORD": PASSWORD,
            "YIJING_SURVEY_DELAY_S": "1",
            "YIJING_WRAP_UP_S": "600",
            # the survey must ring now whatever the hour on the test machine
            "YIJING_QUIET_START": "23:59:59.999999",
            "YIJING_QUIET_END": "00:00",
            # the desk is open all day: routine calls queue at any hour of the test run
            "YIJING_DESK_OPEN": "00:00",
            "YIJING_DESK_CLOSE": "23:59:59.999999",
            # the browser tour takes the resident's next ringing call for the survey: the
            # call telling them who accepted (tests/dispatch/test_told.py) stays off here
            "YIJING_TELL_RESIDENT": "false",
        }
        if self.database_url:
            env["YIJING_DATABASE_URL"] = self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "operator_console.cli", "run"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_text()[-2000:]
                self.proc = None
                if "address already in use" in tail:
                    self.log.write_text("")
                    raise PortTaken(self.port)
                raise RuntimeError(f"server exited: {tail}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not come up: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        """Stop the server and wait for it."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@contextlib.contextmanager
def postgres_database(template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database for one server (empty, or a copy of `template`); dropped
    afterwards."""
    name = f"yijing_e2e_{uuid.uuid4().hex[:10]}"
    admin = PG_ADMIN.replace("postgresql+asyncpg://", "postgresql://")
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:  # pragma: no cover - environment
        pytest.fail(f"PostgreSQL at {admin} is required for this test: {exc}")
    with conn:
        copy_of = f' TEMPLATE "{template}"' if template else ""
        conn.execute(f'CREATE DATABASE "{name}"{copy_of}')
        conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        DROPPER.drop(name)


def _template(templates: TemplateDatabases, kind: str) -> str:
    """The seeded template's URL, built in a thread of its own: Playwright's sync API keeps
    an event loop running in this one."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, templates.url(kind, "seeded")).result()


@pytest.fixture
def server(
    request: pytest.FixtureRequest, tmp_path: Path, seeded_templates: TemplateDatabases
) -> Iterator[Server]:
    """A demo server of its own for one test (on a copy of the seeded template): SQLite
    unless the test asks for "postgresql"."""
    backend = getattr(request, "param", "sqlite")
    template = _template(seeded_templates, backend)
    with contextlib.ExitStack() as stack:
        data_dir = tmp_path / "data"
        data_dir.mkdir(parents=True)
        if backend == "postgresql":
            url = stack.enter_context(postgres_database(seeded_templates.pg_names["seeded"]))
        else:
            url = ""
            shutil.copyfile(template.removeprefix("sqlite+aiosqlite:///"), data_dir / "yijing.db")
        srv = Server(data_dir, url)
        srv.start()
        stack.callback(srv.stop)
        yield srv


# module scope, not session: the sync API keeps an event loop running in this thread, and
# the asyncio tests that run after the browser tests need it gone
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Playwright's sync API."""
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's chromium, headless."""
    if not Path(CHROMIUM).exists():  # pragma: no cover - environment
        pytest.fail(f"{CHROMIUM} is required for the browser tests (make system)")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
    yield browser
    browser.close()


class Pages:
    """Opens pages, each in its own browser context (own cookies), closed after the test."""

    def __init__(self, browser: Browser, server: Server) -> None:
        self.browser = browser
        self.server = server
        self.contexts: list[BrowserContext] = []
        self.errors: list[str] = []

    def open(self, viewport: dict[str, int] = DESK) -> Page:
        """A new page; uncaught JavaScript errors are collected in `errors`."""
        context = self.browser.new_context(
            viewport=viewport, base_url=self.server.url, locale="zh-CN"
        )
        context.set_default_timeout(15_000)
        self.contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))
        return page

    def close(self) -> None:
        """Close every context (before the server stops)."""
        for context in self.contexts:
            context.close()


@pytest.fixture
def pages(browser: Browser, server: Server) -> Iterator[Pages]:
    """Pages on this test's server."""
    opened = Pages(browser, server)
    yield opened
    opened.close()


def login(page: Page, username: str, landing: str = "/") -> None:
    """Log in through the form and wait for the landing page's script to be ready."""
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login-button")
    page.wait_for_url(f"**{landing}")
    page.wait_for_selector("body[data-ready='1']")


def shot(page: Page, name: str) -> None:
    """Save a full-page screenshot for a person to look at."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
