"""The composition root: the one place that chooses implementations and wires the app.

Every long-lived resource (database engine, telephony link, scheduler, event pump) is an
async context manager in `app.cleanup_ctx`, opened in order and closed in reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from dispatch.config import DispatchConfig
from dispatch.services import DispatchServices
from dispatch.timers import ManualTimers, SchedulerTimers, Timers
from eventlog.bus import EventBus
from eventlog.clock import Clock, SystemClock
from eventlog.db import make_engine, make_sessionmaker, sync_url
from eventlog.store import Store
from ivr.library import FlowLibrary
from operator_console import auth
from operator_console.context import Services, services_key
from operator_console.errors import error_middleware
from operator_console.instance import instance_lock
from operator_console.merchant_login import LoginPolicy, MerchantLogin
from operator_console.migrate import upgrade
from operator_console.password_login import LoginLimits, PasswordLogin
from operator_console.security import request_guard, security_headers
from operator_console.settings import Settings
from providers.base import LiveCalls, Messaging, Simulator, Telephony
from providers.memory import MemoryPBX
from registry import repository as repo
from registry.demo import generate
from registry.models import Role, User

log = logging.getLogger(__name__)

HERE = Path(__file__).parent


settings_key = web.AppKey("settings", Settings)
websockets_key: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("websockets")


def live_calls_of(backend: Telephony) -> LiveCalls | None:
    """How the reconciler asks a backend which calls it still knows (None: it cannot)."""
    return backend if isinstance(backend, LiveCalls) else None


def simulator_of(backend: Telephony) -> Simulator | None:
    """The phone simulator the console's simulator page drives, when the backend is one."""
    return backend if isinstance(backend, MemoryPBX) else None


def make_telephony(settings: Settings) -> Telephony:
    """The telephony backend the settings ask for (constructing one does no I/O)."""
    if settings.telephony == "asterisk":
        from providers.asterisk.config import AsteriskConfig
        from providers.asterisk.telephony import AsteriskTelephony

        return AsteriskTelephony(
            AsteriskConfig(
                host=settings.asterisk_host,
                port=settings.asterisk_port,
                username=settings.asterisk_username,
                secret=settings.asterisk_secret,
                dial_template=settings.asterisk_dial_template,
                desk_template=settings.asterisk_desk_template,
                caller_id=f'"Yijing" <{settings.hotline_number}>',
                agi_host=settings.asterisk_agi_host,
                agi_port=settings.asterisk_agi_port,
                sounds_dir=settings.asterisk_sounds_dir,
                action_timeout_s=settings.asterisk_action_timeout_s,
                ping_interval_s=settings.asterisk_ping_interval_s,
            )
        )
    if settings.telephony == "twilio":
        from providers.twilio import TwilioConfig, TwilioTelephony

        return TwilioTelephony(
            TwilioConfig(
                account_sid=settings.twilio_account_sid,
                auth_token=settings.twilio_auth_token,
                public_url=settings.twilio_public_url,
                from_number=settings.twilio_from_number,
                operator_endpoint=settings.twilio_operator_endpoint,
                audio_base_url=settings.twilio_audio_base_url,
                api_base_url=settings.twilio_api_base_url,
                sms_from=settings.twilio_sms_from,
            )
        )
    return MemoryPBX(
        time_scale=settings.memory_time_scale,
        ring_timeout_s=settings.ring_timeout_s,
        hotline=settings.hotline_number,
    )


def messaging_of(settings: Settings, backend: Telephony) -> Messaging | None:
    """The backend's text messages, if it can send them and the settings allow it."""
    if not isinstance(backend, Messaging):
        return None
    if settings.telephony == "twilio" and not settings.twilio_sms:
        return None
    return backend


async def seed_demo(store: Store, settings: Settings) -> str | None:
    """Seed the demo community and logins on an empty database; returns a new password."""
    async with store.read() as session:
        if not await repo.is_empty(session):
            return None
        await repo.add_community(session, community=generate())
        password = settings.demo_password or secrets.token_urlsafe(9)
        hashed = await auth.hash_password_async(password)
        session.add_all(
            [
                User(
                    username="demo",
                    display_name="演示管理员",
                    password_hash=hashed,
                    role=Role.ADMIN,
                ),
                User(
                    username="operator",
                    display_name="话务员小李",
                    password_hash=hashed,
                    role=Role.OPERATOR,
                ),
                User(
                    username="supervisor",
                    display_name="班长老张",
                    password_hash=hashed,
                    role=Role.SUPERVISOR,
                ),
                User(
                    username="merchant1",
                    display_name="康华大药房",
                    password_hash=hashed,
                    role=Role.MERCHANT,
                    merchant_id=1,
                ),
            ]
        )
    return password


def create_app(
    settings: Settings,
    *,
    telephony: Telephony | None = None,
    clock: Clock | None = None,
    timers: Timers | None = None,
    dispatch_config: DispatchConfig | None = None,
    announce: Callable[[str], None] | None = None,
) -> web.Application:
    """Build the app. Tests pass their own telephony, clock or timers; the rest is chosen here."""
    # the API's modules, one per resource: each adds its routes to `api.API` when imported
    from operator_console import (
        access_log_api,
        admin_api,
        api,
        auth_api,
        callouts_api,
        calls_api,
        desk_api,
        emergency_api,
        events_api,
        figures_api,
        import_api,
        incidents_api,
        merchant_api,
        pages,
        registry_api,
        resident_search,
        sim_api,
        tickets_api,
        wallboard_api,
        ws,
    )

    del access_log_api, admin_api, auth_api, calls_api, desk_api, events_api, figures_api
    del import_api, registry_api, sim_api, tickets_api, wallboard_api
    del callouts_api, emergency_api, incidents_api

    app = web.Application(
        middlewares=[error_middleware, request_guard, api.auth_middleware],
        client_max_size=2 * 1024 * 1024,
    )
    app[settings_key] = settings
    app[ws.streams_key] = ws.LiveStreams()
    app.on_response_prepare.append(security_headers(settings))
    backend = telephony or make_telephony(settings)
    if settings.telephony == "twilio" and telephony is None:
        from providers.twilio import TwilioTelephony, webhook_app

        assert isinstance(backend, TwilioTelephony)
        app.add_subapp("/twilio", webhook_app(backend))
    app[websockets_key] = set()
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        context_processors=[pages.context_processor],
    )

    async def resources(app: web.Application) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.database_url)
        async with contextlib.AsyncExitStack() as owner:
            owner.push_async_callback(engine.dispose)
            # before anything else touches the database: one process per database
            await owner.enter_async_context(instance_lock(engine, settings.database_url))
            await asyncio.to_thread(upgrade, settings.database_url)
            await owner.enter_async_context(_serve(app, settings, engine))
            yield

    @contextlib.asynccontextmanager
    async def _serve(
        app: web.Application, settings: Settings, engine: AsyncEngine
    ) -> AsyncIterator[None]:
        the_clock = clock or SystemClock()
        bus = EventBus()
        store = Store(make_sessionmaker(engine), bus, the_clock)
        if settings.seed_demo:
            password = await seed_demo(store, settings)
            if password and announce:
                announce(password)
        config = dispatch_config or DispatchConfig(
            offer_timeout_s=settings.offer_timeout_s,
            ring_timeout_s=settings.ring_timeout_s,
            survey_delay_s=settings.survey_delay_s,
            wrap_up_s=settings.wrap_up_s,
            quiet_start=settings.quiet_start,
            quiet_end=settings.quiet_end,
            parallel_offers_urgent=settings.parallel_offers_urgent,
            hotline_menu=settings.hotline_menu,
            queue_announce_s=settings.queue_announce_s,
            incident_window_s=settings.incident_window_s,
            incident_propose_min=settings.incident_propose_min,
            incident_callback_batch=settings.incident_callback_batch,
            incident_callback_gap_s=settings.incident_callback_gap_s,
            incident_callback_tries=settings.incident_callback_tries,
            incident_callback_retry_s=settings.incident_callback_retry_s,
            emergency_number=settings.emergency_number,
            emergency_answer_s=settings.emergency_answer_s,
            emergency_oncall_s=settings.emergency_oncall_s,
            desk_open=settings.desk_open,
            desk_close=settings.desk_close,
        )
        holder: dict[str, DispatchServices] = {}

        async def fire(key: str) -> None:
            await holder["d"].router.on_timer(key)

        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(backend)
            if timers is None:
                scheduler = SchedulerTimers(
                    sync_url=sync_url(settings.database_url),
                    handler=fire,
                    guard=store.write_lock,
                )
                the_timers: Timers = scheduler

                def scheduler_up() -> bool:
                    return scheduler.running
            else:
                scheduler = None
                the_timers = timers

                def scheduler_up() -> bool:
                    return True

            dispatch = DispatchServices(
                flows=FlowLibrary(settings.flows_dir),
                store=store,
                telephony=backend,
                timers=the_timers,
                clock=the_clock,
                config=config,
                live_calls=live_calls_of(backend),
            )
            holder["d"] = dispatch
            login = MerchantLogin(
                outbound=dispatch.outbound,
                secret=settings.secret_key,
                public_url=settings.public_url,
                messaging=messaging_of(settings, backend),
                policy=LoginPolicy(
                    code_ttl_s=settings.merchant_code_ttl_s,
                    window_s=settings.merchant_login_window_s,
                    per_phone=settings.merchant_login_per_phone,
                    per_client=settings.merchant_login_per_client,
                    attempts=settings.merchant_code_attempts,
                ),
            )
            app[merchant_api.login_key] = login
            app[api.password_login_key] = PasswordLogin(
                store=store,
                secret=settings.secret_key,
                limits=LoginLimits(
                    window_s=settings.login_window_s,
                    per_account=settings.login_per_account,
                    per_client=settings.login_per_client,
                ),
            )
            if isinstance(the_timers, ManualTimers) and the_timers.handler is None:
                the_timers.handler = fire  # a test's manual timers fire into this app
            pump = asyncio.create_task(dispatch.router.pump(), name="telephony-pump")
            if scheduler is not None:
                await stack.enter_async_context(scheduler)
            await dispatch.oncall.seed(
                [p.strip() for p in settings.oncall_phones.split(",") if p.strip()]
            )
            # after a restart: repair lost timers and calls before serving anyone
            await dispatch.reconciler.start()
            app[services_key] = Services(
                settings,
                engine,
                store,
                bus,
                the_clock,
                backend,
                the_timers,
                dispatch,
                scheduler_up,
                simulator_of(backend),
            )
            try:
                yield
            finally:
                sockets: set[web.WebSocketResponse] = app[websockets_key]
                for ws_conn in list(sockets):
                    await ws_conn.close(code=1001, message=b"server shutdown")
                await login.aclose()
                bus.close()
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump

    app.cleanup_ctx.append(resources)
    app.on_shutdown.append(end_live_streams)
    resident_search.setup(app)
    api.API.add_to(app)
    app.router.add_get("/api/v1/openapi.json", api.openapi_doc)
    app.router.add_get("/api/v1/ws", ws.websocket)
    app.router.add_get("/healthz", healthz)
    pages.add_routes(app)
    app.router.add_static("/static", HERE / "static", name="static")
    return app


async def end_live_streams(app: web.Application) -> None:
    """End every WebSocket stream before the server waits for open handlers to finish.

    aiohttp waits for running handlers before `cleanup_ctx` unwinds; a stream blocked on
    the event bus would hold a graceful shutdown for its whole timeout.
    """
    if services_key in app:
        app[services_key].bus.close()


async def healthz(request: web.Request) -> web.Response:
    """Database, telephony and scheduler status; 503 when one is down."""
    services = request.app[services_key]
    checks: dict[str, Any] = {}
    try:
        async with services.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = {"up": True, "dialect": services.engine.dialect.name}
    except Exception as exc:  # any failure to reach the database is "down"
        checks["database"] = {"up": False, "detail": type(exc).__name__}
    health = services.telephony.health()
    checks["telephony"] = {"up": health.up, "backend": health.backend, "detail": health.detail}
    checks["scheduler"] = {"up": services.scheduler_up()}
    ok = all(c["up"] for c in checks.values())
    return web.json_response(
        {"status": "ok" if ok else "down", "checks": checks}, status=200 if ok else 503
    )
