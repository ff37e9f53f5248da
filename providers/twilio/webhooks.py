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
answer again without being handled twice. Handlers only update memory and enqueue
events, so they answer in milliseconds (the voice route may wait up to
`handoff_wait_s` for dispatch's command; see `providers.twilio.adapter`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from twilio.request_validator import RequestValidator

from providers.twilio.adapter import TwilioTelephony

log = logging.getLogger(__name__)

ADAPTER = web.AppKey("twilio_adapter", TwilioTelephony)
VALIDATOR = web.AppKey("twilio_validator", RequestValidator)
ANSWERS = web.AppKey("twilio_answers", OrderedDict[str, tuple[int, str]])

SIGNATURE_HEADER = "X-Twilio-Signature"
IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
TWIML = "text/xml"
_REMEMBERED_ANSWERS = 2048

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def webhook_app(adapter: TwilioTelephony) -> web.Application:
    """The webhook sub-application for one adapter; mount it where `public_url` points."""
    app = web.Application(middlewares=[_signed, _once])
    app[ADAPTER] = adapter
    app[VALIDATOR] = RequestValidator(adapter.config.auth_token)
    app[ANSWERS] = OrderedDict()
    app.router.add_post("/voice", _voice, name="voice")
    app.router.add_post("/gather", _gather, name="gather")
    app.router.add_post("/dial", _dial, name="dial")
    app.router.add_post("/hold", _hold, name="hold")
    app.router.add_post("/participant", _participant, name="participant")
    app.router.add_post("/status", _status, name="status")
    app.router.add_post("/callout", _callout, name="callout")
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


@web.middleware
async def _once(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer a retried request (same idempotency token) as the first time, unhandled."""
    token = request.headers.get(IDEMPOTENCY_HEADER)
    answers = request.app[ANSWERS]
    if token and token in answers:
        status, body = answers[token]
        log.info("twilio webhook %s repeated: answered from memory", request.match_info.route.name)
        return _answer(status, body)
    response = await handler(request)
    if token and isinstance(response, web.Response):
        answers[token] = (response.status, response.text or "")
        while len(answers) > _REMEMBERED_ANSWERS:
            answers.popitem(last=False)
    return response


def _answer(status: int, body: str) -> web.Response:
    if status == 204:
        return web.Response(status=204)
    return web.Response(status=status, text=body, content_type=TWIML)


async def _params(request: web.Request) -> tuple[dict[str, str], str | None]:
    form = await request.post()
    params = {key: str(value) for key, value in form.items()}
    return params, request.query.get("ref") or None


async def _voice(request: web.Request) -> web.Response:
    params, ref = await _params(request)
    document = await request.app[ADAPTER].on_voice(params, ref)
    return _answer(200, document)


async def _gather(request: web.Request) -> web.Response:
    params, ref = await _params(request)
    try:
        turn = int(request.query.get("turn", ""))
    except ValueError:
        raise web.HTTPBadRequest(text="turn missing") from None
    document = await request.app[ADAPTER].on_gather(params, ref, turn)
    return _answer(200, document)


async def _dial(request: web.Request) -> web.Response:
    params, ref = await _params(request)
    return _answer(200, request.app[ADAPTER].on_dial_result(params, ref))


async def _status(request: web.Request) -> web.Response:
    params, ref = await _params(request)
    request.app[ADAPTER].on_status(params, ref)
    return web.Response(status=204)


async def _callout(request: web.Request) -> web.Response:
    params, ref = await _params(request)
    request.app[ADAPTER].on_callout(params, ref)
    return web.Response(status=204)


async def _hold(request: web.Request) -> web.Response:
    params, ref = await _params(request)
    return _answer(200, request.app[ADAPTER].on_hold(params, ref))


async def _participant(request: web.Request) -> web.Response:
    params, ref = await _params(request)
    await request.app[ADAPTER].on_participant(params, ref, request.query.get("label"))
    return web.Response(status=204)
