"""The console's doors: where a request may come from, what it may carry, and the headers
every answer wears.

- **Origin.** A browser names the page that made a request in `Origin`. Every unsafe
  request (POST, PUT, PATCH, DELETE; the login included) and the WebSocket must come from
  the configured public URL (`YIJING_PUBLIC_URL`) or from no page at all (an API client);
  the request's own `Host` is not trusted, a proxy or an attacker's DNS can set it. A
  request without `Origin` that the browser marks `Sec-Fetch-Site: cross-site` is refused
  too. JSON bodies must be `application/json` (`api.body`): a form another site posts
  cannot pass for one.
- **Parameters.** A query or path parameter with a control character is refused (422,
  naming it) before any handler runs: PostgreSQL refuses NUL, and none belongs in a search
  or an id.
- **Headers.** A Content-Security-Policy the pages satisfy (scripts and styles from
  `/static` only, no inline script, no framing), `X-Content-Type-Options: nosniff`, and
  `Cache-Control: no-store` on the API and the pages (they carry personal data and the
  session's CSRF token). HSTS when the public URL is https.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from operator_console.errors import FieldInvalid, Forbidden
from operator_console.settings import Settings

UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: what no query or path parameter holds: any control character (line breaks too) and
#: lone surrogates
_PARAM_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _settings(request: web.Request) -> Settings:
    from operator_console.app import settings_key

    return request.app[settings_key]


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a URL, lower-cased, as browsers send it in `Origin`."""
    parts = urlsplit(url.strip())
    return f"{parts.scheme}://{parts.netloc}".lower()


def origin_allowed(request: web.Request) -> bool:
    """True for the public URL's own origin, or for no browser page at all."""
    origin = request.headers.get("Origin")
    if origin is None:
        # an API client, or an old browser: a cross-site request it marks is still refused
        return request.headers.get("Sec-Fetch-Site", "") not in ("cross-site", "same-site")
    return origin.strip().lower() == origin_of(_settings(request).public_url)


def client_address(request: web.Request) -> str:
    """Who asks, for the rate limits: the peer, or behind a trusted proxy the address it saw.

    Always an IP address as text (or ""): a forwarded value that is none is not believed,
    so nothing but an address reaches the throttles' table or a log line.
    """
    if _settings(request).trust_proxy:
        forwarded = request.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
        with contextlib.suppress(ValueError):
            return str(ipaddress.ip_address(forwarded))
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(request.remote or ""))
    return ""


@web.middleware
async def request_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse foreign origins on unsafe requests, and control characters in parameters."""
    if request.method in UNSAFE and not origin_allowed(request):
        raise Forbidden("this request comes from a page that is not this console's")
    for name, value in request.query.items():
        if _PARAM_CONTROL.search(name) or _PARAM_CONTROL.search(value):
            raise FieldInvalid(
                "control characters are not allowed", _PARAM_CONTROL.sub("?", name[:64])
            )
    for name, value in request.match_info.items():
        if _PARAM_CONTROL.search(value):
            raise FieldInvalid("control characters are not allowed", name)
    return await handler(request)


def content_security_policy(settings: Settings) -> str:
    """The pages' policy: everything from this console, nothing inline, never framed."""
    public = urlsplit(settings.public_url)
    ws = f"{'wss' if public.scheme == 'https' else 'ws'}://{public.netloc}"
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            f"connect-src 'self' {ws}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


ResponseHook = Callable[[web.Request, web.StreamResponse], Awaitable[None]]


def security_headers(settings: Settings) -> ResponseHook:
    """An `on_response_prepare` hook that puts the headers on every answer (errors too)."""
    policy = content_security_policy(settings)
    https = settings.public_url.lower().startswith("https://")

    async def add(request: web.Request, response: web.StreamResponse) -> None:
        headers = response.headers
        headers.setdefault("Content-Security-Policy", policy)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if https:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        if not request.path.startswith("/static/"):
            headers.setdefault("Cache-Control", "no-store")

    return add
