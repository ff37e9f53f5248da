"""Twilio's voice webhooks as an aiohttp sub-application, mounted by the composition root.

    app.add_subapp("/twilio", webhook_app(adapter))

Routes (all POST, form-encoded, signed by Twilio):

    /voice    inbound calls, answered outbound calls, and the hold loop  -> TwiML
    /gather   a <Gather>'s action: Digits, speech, or nothing (timeout)   -> TwiML
    /dial     a <Dial>'s action: the bridge ended                         -> TwiML
    /hold     a held caller's conference hold URL                         -> TwiML
    /participant  an operator's conference leg answered or ended          -> 204
    /status   status callbacks                                            -> 204
    /callout  a click-to-call's <Number> rang, answered or failed         -> 204

Every request's `X-Twilio-Signature` is checked before anything else, against the
configured public URL + route + query (not the URL the request arrived on, which differs
behind a proxy); a missing or wrong signature is answered 403 and changes nothing.
A request Twilio retries with the same `I-Twilio-Idempotency-Token` gets the first
answer again without being handled twice. Handlers update memory, enqueue events and
(with several processes) write the call's state to its table, so they answer in
milliseconds (the voice route may wait up to
`handoff_wait_s` for dispatch's command; see `providers.twilio.adapter`).

On several processes (DESIGN.md section 12) Twilio's requests reach whichever process the
proxy picks, while the calls' state and work belong to the owner of the telephony link.
Every process checks the signature (the public URL is the proxy's, shared); a standby then
hands the request to the owner through the command table (`Webhooks.forward`, set by the
composition root) and answers with the owner's TwiML. So only the owner ever changes a
call or places one; a standby changes nothing. With no owner within the relay's timeout a
voice request is told to ask again in a moment (the caller hears a pause), any other is
answered 503.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from twilio.request_validator import RequestValidator

from providers.twilio import twiml
from providers.twilio.adapter import TwilioTelephony

log = logging.getLogger(__name__)

ADAPTER = web.AppKey("twilio_adapter", TwilioTelephony)
VALIDATOR = web.AppKey("twilio_validator", RequestValidator)

SIGNATURE_HEADER = "X-Twilio-Signature"
IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
TWIML = "text/xml"
_REMEMBERED_ANSWERS = 2048

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


#: a route's work handed to the owner: (route, form, query, idempotency token) ->
#: (status, body), or None when this process is the owner and does it itself
Forward = Callable[[str, dict[str, str], dict[str, str], str], Awaitable[tuple[int, str] | None]]

ROUTES = ("voice", "gather", "dial", "hold", "participant", "status", "callout")


class Webhooks:
    """The work behind the routes, on the process that owns the adapter; a retried
    request (same `I-Twilio-Idempotency-Token`) gets the first answer, unhandled."""

    def __init__(self, adapter: TwilioTelephony) -> None:
        self.adapter = adapter
        self.answers: OrderedDict[str, tuple[int, str]] = OrderedDict()
        #: set on a process that may stand by (see the module docstring)
        self.forward: Forward | None = None

    async def handle(
        self,
        route: str,
        params: Mapping[str, str],
        query: Mapping[str, str],
        token: str = "",
        *,
        wait: bool = True,
    ) -> tuple[int, str]:
        """Do one route's work; the call state is written before the answer goes out."""
        if token and token in self.answers:
            log.info("twilio webhook %s repeated: answered from memory", route)
            return self.answers[token]
        try:
            answer = await self._run(route, params, query, wait=wait)
        finally:
            await self.adapter.persist()
        if token:
            self.answers[token] = answer
            while len(self.answers) > _REMEMBERED_ANSWERS:
                self.answers.popitem(last=False)
        return answer

    async def _run(
        self, route: str, params: Mapping[str, str], query: Mapping[str, str], *, wait: bool
    ) -> tuple[int, str]:
        adapter, ref = self.adapter, query.get("ref") or None
        if route == "voice":
            return 200, await adapter.on_voice(params, ref, wait=wait)
        if route == "gather":
            return 200, await adapter.on_gather(params, ref, int(query.get("turn", "")))
        if route == "dial":
            return 200, adapter.on_dial_result(params, ref)
        if route == "hold":
            return 200, adapter.on_hold(params, ref)
        if route == "participant":
            await adapter.on_participant(params, ref, query.get("label"))
            return 204, ""
        if route == "status":
            adapter.on_status(params, ref)
            return 204, ""
        if route == "callout":
            adapter.on_callout(params, ref)
            return 204, ""
        raise ValueError(f"unknown twilio route {route}")

    def unowned(self, route: str, query: Mapping[str, str]) -> tuple[int, str]:
        """The answer when no process owns the calls right now: a voice request asks
        again after a pause (a new owner is seconds away), anything else is a 503."""
        if route == "voice":
            url = self.adapter.url("voice", **dict(query))
            return 200, twiml.hold(url, pause_s=self.adapter.config.hold_pause_s)
        return 503, ""


HOOKS = web.AppKey("twilio_hooks", Webhooks)


def webhook_app(adapter: TwilioTelephony, *, hooks: Webhooks | None = None) -> web.Application:
    """The webhook sub-application for one adapter; mount it where `public_url` points."""
    app = web.Application(middlewares=[_signed])
    app[ADAPTER] = adapter
    app[VALIDATOR] = RequestValidator(adapter.config.auth_token)
    app[HOOKS] = hooks or Webhooks(adapter)
    for route in ROUTES:
        app.router.add_post(f"/{route}", _route, name=route)
    return app


def public_request_url(adapter: TwilioTelephony, route: str, raw_query: str) -> str:
    """The URL Twilio signed: our public base, the route, and the query as sent."""
    base = adapter.url(route)
    return f"{base}?{raw_query}" if raw_query else base


@web.middleware
async def _signed(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse any request whose signature does not match the public URL and form."""
    route = request.match_info.route.name
    if route is None:  # 404 / 405: nothing of ours runs
        return await handler(request)
    adapter = request.app[ADAPTER]
    try:
        form = await request.post()
    except (ValueError, HttpProcessingError):  # not a form Twilio sends (bad bytes, multipart)
        log.warning("twilio webhook %s refused: unreadable form", route)
        raise web.HTTPBadRequest(text="unreadable form") from None
    signature = request.headers.get(SIGNATURE_HEADER, "")
    url = public_request_url(adapter, route, request.rel_url.raw_query_string)
    if not signature or not request.app[VALIDATOR].validate(url, form, signature):
        # nothing the request sent is logged: it is not authenticated (a CallSid with a
        # line break in it once forged a log line of its own)
        log.warning("twilio webhook %s refused: %s signature", route, "bad" if signature else "no")
        raise web.HTTPForbidden(text="invalid signature")
    return await handler(request)


def _answer(status: int, body: str) -> web.Response:
    if status in (204, 503) or not body:
        return web.Response(status=status)
    return web.Response(status=status, text=body, content_type=TWIML)


async def _route(request: web.Request) -> web.Response:
    """One signed request: the owner's work, here or handed over."""
    route = request.match_info.route.name
    assert route is not None
    form = await request.post()
    params = {key: str(value) for key, value in form.items()}
    query = {key: value for key, value in request.query.items()}
    if route == "gather" and not query.get("turn", "").isdigit():
        raise web.HTTPBadRequest(text="turn missing")
    token = request.headers.get(IDEMPOTENCY_HEADER, "")
    hooks = request.app[HOOKS]
    answer = None
    if hooks.forward is not None:
        answer = await hooks.forward(route, params, query, token)
    if answer is None:
        answer = await hooks.handle(route, params, query, token)
    return _answer(*answer)
