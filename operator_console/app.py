"""The composition root: the one place that chooses implementations and wires the app.

Every long-lived resource (database engine, telephony link, scheduler, event pump) is an
async context manager in `app.cleanup_ctx`, opened in order and closed in reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from dispatch.config import DispatchConfig
from dispatch.outbound_engine import pacing_for
from dispatch.services import DispatchServices
from dispatch.timers import ManualTimers, SchedulerTimers, Timers
from eventlog.bus import EventBus
from eventlog.clock import Clock, SystemClock
from eventlog.commands import CHANNEL as COMMANDS_CHANNEL
from eventlog.commands import CommandQueue
from eventlog.commands import serve as serve_commands
from eventlog.db import make_engine, make_sessionmaker, sync_url
from eventlog.models import Event
from eventlog.relay import relay as relay_events
from eventlog.store import Store, event_public
from ivr.library import FlowLibrary
from operator_console import auth
from operator_console.context import Services, services_key
from operator_console.errors import error_middleware
from operator_console.instance import Ownership, instance_lock
from operator_console.merchant_login import LoginPolicy, MerchantLogin
from operator_console.migrate import prepare
from operator_console.password_login import LoginLimits, PasswordLogin
from operator_console.security import request_guard, security_headers
from operator_console.settings import Settings
from providers.base import LiveCalls, Messaging, Simulator, SpeechDetection, Telephony
from providers.memory import MemoryPBX
from providers.relay import Executor, RelayTelephony, RelayTimers
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


def speech_of(backend: Telephony) -> SpeechDetection | None:
    """How dispatch asks whether the backend hears callers speak (None: it cannot)."""
    return backend if isinstance(backend, SpeechDetection) else None


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
                consult_ring_s=settings.asterisk_consult_ring_s,
                caller_id=f'"Yijing" <{settings.hotline_number}>',
                agi_host=settings.asterisk_agi_host,
                agi_port=settings.asterisk_agi_port,
                sounds_dir=settings.asterisk_sounds_dir,
                action_timeout_s=settings.asterisk_action_timeout_s,
                ping_interval_s=settings.asterisk_ping_interval_s,
                amd=settings.asterisk_amd,
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
                machine_detection=settings.twilio_machine_detection,
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
        booking_api,
        callouts_api,
        calls_api,
        campaigns_api,
        desk_api,
        emergency_api,
        events_api,
        figures_api,
        import_api,
        incidents_api,
        masked_api,
        merchant_api,
        open_data_api,
        pages,
        registry_api,
        reminders_api,
        resident_search,
        sim_api,
        tickets_api,
        wallboard_api,
        wellbeing_api,
        ws,
    )

    del access_log_api, admin_api, auth_api, calls_api, desk_api, events_api, figures_api
    del import_api, registry_api, sim_api, tickets_api, wallboard_api
    del callouts_api, emergency_api, incidents_api, open_data_api, campaigns_api
    del wellbeing_api, masked_api, reminders_api, booking_api

    app = web.Application(
        middlewares=[error_middleware, request_guard, api.auth_middleware],
        client_max_size=2 * 1024 * 1024,
    )
    app[settings_key] = settings
    app[ws.streams_key] = ws.LiveStreams()
    app.on_response_prepare.append(security_headers(settings))
    backend = telephony or make_telephony(settings)
    twilio: Any = None  # the Twilio webhooks' work (providers.twilio.webhooks.Webhooks)
    if settings.telephony == "twilio" and telephony is None:
        from providers.twilio import TwilioTelephony, webhook_app
        from providers.twilio.webhooks import Webhooks

        assert isinstance(backend, TwilioTelephony)
        twilio = Webhooks(backend)
        app.add_subapp("/twilio", webhook_app(backend, hooks=twilio))
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
            # before anything else touches the database: who owns the calls
            ownership = await owner.enter_async_context(
                instance_lock(
                    engine,
                    settings.database_url,
                    standby=may_stand_by(settings, telephony),
                    poll_s=settings.takeover_poll_s,
                    on_lost=_stop_process,
                )
            )
            # migrated by the owner (`auto`) or once per deploy by `yijing db upgrade`
            # (`check`); a standby only checks, whatever the mode
            mode = settings.migrate if ownership.owner else "check"
            await asyncio.to_thread(prepare, settings.database_url, mode)
            await owner.enter_async_context(_serve(app, settings, engine, ownership))
            yield

    @contextlib.asynccontextmanager
    async def _serve(
        app: web.Application, settings: Settings, engine: AsyncEngine, ownership: Ownership
    ) -> AsyncIterator[None]:
        the_clock = clock or SystemClock()
        bus = EventBus()
        store = Store(make_sessionmaker(engine), bus, the_clock)
        if settings.seed_demo and ownership.owner:
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
            wellbeing_tries=settings.wellbeing_tries,
            wellbeing_retry_s=settings.wellbeing_retry_s,
            wellbeing_report_s=settings.wellbeing_report_s,
            tell_resident=settings.tell_resident,
            tell_resident_retry_s=settings.tell_resident_retry_s,
            tell_family=settings.tell_family,
            emergency_number=settings.emergency_number,
            emergency_answer_s=settings.emergency_answer_s,
            emergency_oncall_s=settings.emergency_oncall_s,
            desk_open=settings.desk_open,
            desk_close=settings.desk_close,
            outbound_dedupe_s=settings.outbound_dedupe_s,
            # the backend's own pace unless the settings say otherwise
            **pacing_for(
                backend.name,
                cps=settings.outbound_cps,
                channels=settings.outbound_channels,
                inbound_reserved=settings.inbound_reserved_lines,
                trunk_lines=settings.trunk_lines,
            ),
        )
        holder: dict[str, DispatchServices] = {}

        async def fire(key: str) -> None:
            await holder["d"].router.on_timer(key)

        async with contextlib.AsyncExitStack() as stack:
            # every process's bus carries every process's events, in the log's order
            follower = await stack.enter_async_context(relay_events(store, engine))
            if timers is None:
                scheduler = SchedulerTimers(
                    sync_url=sync_url(settings.database_url),
                    handler=fire,
                    guard=store.write_lock,
                )
                local_timers: Timers = scheduler
            else:
                scheduler = None
                local_timers = timers
            flows = FlowLibrary(settings.flows_dir)
            # several processes: the ports go through the owner until this one owns them
            relay = None
            the_telephony: Telephony = backend
            the_timers: Timers = local_timers
            if may_stand_by(settings, telephony):
                queue = CommandQueue(engine, me=ownership.holder)
                relay = Relay(
                    queue,
                    RelayTelephony(queue, backend=backend.name, timeout_s=settings.relay_timeout_s),
                    RelayTimers(queue, timeout_s=settings.relay_timeout_s),
                )
                the_telephony, the_timers = relay.telephony, relay.timers
                if twilio is not None:  # its calls in the database, its webhooks to the owner
                    from providers.twilio import handover
                    from providers.twilio.state import CallTable

                    twilio.adapter.keep_state(CallTable(engine), flows.get)
                    handover.forward(
                        twilio, queue, lambda: ownership.owner, timeout_s=settings.relay_timeout_s
                    )
                # the owner's link status, as its telephony.* events say
                stack.callback(bus.listen(relay.telephony.follow, subjects=["system"]))
                await _last_line_status(store, relay.telephony)

            def scheduler_up() -> bool:
                if not ownership.owner:
                    return True  # the owner runs the timers
                return scheduler.running if scheduler is not None else True

            dispatch = DispatchServices(
                flows=flows,
                store=store,
                telephony=the_telephony,
                timers=the_timers,
                clock=the_clock,
                config=config,
                live_calls=live_calls_of(backend) if relay is None else relay.telephony,
                # a standby hears no speech until it owns the link (the relay says)
                speech=speech_of(backend) if relay is None else relay.telephony,
                # family texts go out when their timer fires, on the owner of the backend
                messaging=messaging_of(settings, backend),
            )
            holder["d"] = dispatch
            # the outbound engine places calls only where the PBX link is (`own`)
            dispatch.outbound_engine.pause()
            login = MerchantLogin(
                outbound=dispatch.outbound,
                secret=settings.secret_key,
                public_url=settings.public_url,
                messaging=messaging_of(settings, backend) if ownership.owner else None,
                forward=None if relay is None else partial(_hand_login_to_owner, relay, ownership),
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
            if isinstance(local_timers, ManualTimers) and local_timers.handler is None:
                local_timers.handler = fire  # a test's manual timers fire into this app
                # and first let this app's committed work finish its after-commit part (a
                # ring timer is scheduled just after the reservation a test can already see)
                local_timers.before = store.quiet

            @contextlib.asynccontextmanager
            async def own() -> AsyncIterator[None]:
                """What only the owner runs: the PBX link, its event pump, the timers, the
                start-up repairs and the commands standbys send."""
                async with contextlib.AsyncExitStack() as owned:
                    await owned.enter_async_context(backend)
                    if relay is not None:
                        relay.telephony.attach(backend)
                        relay.timers.attach(local_timers)
                    pump = asyncio.create_task(dispatch.router.pump(), name="telephony-pump")
                    owned.push_async_callback(_cancel, pump)
                    if scheduler is not None:
                        await owned.enter_async_context(scheduler)
                    await dispatch.oncall.seed(
                        [p.strip() for p in settings.oncall_phones.split(",") if p.strip()]
                    )
                    # after a restart or a takeover: repair lost timers and calls first
                    await dispatch.reconciler.start()
                    dispatch.outbound_engine.start()
                    owned.push_async_callback(dispatch.outbound_engine.stop)
                    if relay is not None:
                        handlers = {"login": partial(_login_handler, login)}
                        if twilio is not None:
                            from providers.twilio import handover

                            handlers[handover.TARGET] = handover.handler(twilio)
                        executor = Executor(backend, local_timers, flows.get, handlers=handlers)
                        woken = asyncio.Event()
                        if follower is not None:  # a standby's NOTIFY wakes the owner
                            await follower.wake_on(COMMANDS_CHANNEL, woken)
                        server = asyncio.create_task(
                            serve_commands(relay.queue, executor, poll_s=0.5, wake=woken),
                            name="commands",
                        )
                        owned.push_async_callback(_cancel, server)
                    yield

            if ownership.owner:
                await stack.enter_async_context(own())
            else:
                stack.push_async_callback(_cancel, asyncio.create_task(_take_over(ownership, own)))
            app[services_key] = Services(
                settings,
                engine,
                store,
                bus,
                the_clock,
                the_telephony,
                the_timers,
                dispatch,
                scheduler_up,
                simulator_of(backend),
                ownership,
            )
            try:
                yield
            finally:
                sockets: set[web.WebSocketResponse] = app[websockets_key]
                for ws_conn in list(sockets):
                    await ws_conn.close(code=1001, message=b"server shutdown")
                await login.aclose()
                bus.close()

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


def may_stand_by(settings: Settings, telephony: Telephony | None) -> bool:
    """Whether a second process on this database serves as a standby instead of refusing:
    PostgreSQL with a PBX every process can reach (Asterisk, or Twilio, whose call state
    the owner keeps in the database). The memory PBX lives inside one process."""
    return (
        telephony is None
        and settings.telephony in ("asterisk", "twilio")
        and settings.database_url.startswith("postgresql")
    )


@dataclass(frozen=True, slots=True)
class Relay:
    """A process's ports while it may stand by: the command table and the two relays."""

    queue: CommandQueue
    telephony: RelayTelephony
    timers: RelayTimers


async def _last_line_status(store: Store, relay: RelayTelephony) -> None:
    """A standby starts from the owner's last reported link status."""
    async with store.read() as session:
        last = (
            await session.execute(
                select(Event)
                .where(col(Event.name).in_(["telephony.up", "telephony.down"]))
                .order_by(col(Event.seq).desc())
                .limit(1)
            )
        ).scalar_one_or_none()
    if last is not None:
        relay.follow(event_public(last))


async def _hand_login_to_owner(
    relay: Relay, ownership: Ownership, delivery: dict[str, Any]
) -> bool:
    """A standby's merchant login code is read out by the owner, whose PBX link answers
    the call (the code never leaves memory otherwise; the command row's copy is wiped)."""
    if ownership.owner:
        return False
    await relay.queue.call("login", "deliver", delivery, timeout_s=relay.telephony.timeout_s)
    return True


async def _login_handler(login: MerchantLogin, method: str, args: dict[str, Any]) -> None:
    if method != "deliver":
        raise ValueError(f"unknown login command {method}")
    await login.take(args)


async def _take_over(
    ownership: Ownership, own: Callable[[], contextlib.AbstractAsyncContextManager[None]]
) -> None:
    """A standby's wait: once it holds the lock, it runs the owner's part until stopped."""
    await ownership.became_owner.wait()
    try:
        async with own():
            log.warning("took over the PBX link, the timers and the commands")
            await asyncio.Event().wait()  # until the app stops (cancelled)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("taking over failed: stopping this process")
        _stop_process()


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _stop_process() -> None:
    """End this process as its signal handler would (a graceful shutdown)."""
    os.kill(os.getpid(), signal.SIGTERM)


async def end_live_streams(app: web.Application) -> None:
    """End every WebSocket stream before the server waits for open handlers to finish.

    aiohttp waits for running handlers before `cleanup_ctx` unwinds; a stream blocked on
    the event bus would hold a graceful shutdown for its whole timeout.
    """
    if services_key in app:
        app[services_key].bus.close()


async def healthz(request: web.Request) -> web.Response:
    """Database, telephony and scheduler status; 503 when one is down. With several
    processes, `role` says whether this one owns the PBX link and `owner` which does."""
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
    own = services.ownership
    return web.json_response(
        {"status": "ok" if ok else "down", "role": own.role, "owner": own.holder, "checks": checks},
        status=200 if ok else 503,
    )
