"""The HTTP transport the twilio REST client uses: a plain aiohttp session.

twilio 9.13 ships `AsyncTwilioHttpClient`, but it builds `aiohttp.BasicAuth` and passes a
float timeout, both deprecated in aiohttp 3.12+ (and errors under `filterwarnings=error`),
and it opens its session at construction, outside any loop. This client implements the
same `twilio.http.AsyncHttpClient` contract with a session opened lazily inside the
running loop and closed by `close()`. It logs no request bodies (they carry numbers).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp
from twilio.http import AsyncHttpClient
from twilio.http.response import Response

log = logging.getLogger(__name__)


def _pairs(values: Mapping[str, object] | None) -> list[tuple[str, str]]:
    """Form or query pairs; lists become repeated keys, as Twilio expects."""
    pairs: list[tuple[str, str]] = []
    for key, value in (values or {}).items():
        items: Iterable[Any] = value if isinstance(value, list | tuple) else [value]
        pairs.extend((key, str(item)) for item in items if item is not None)
    return pairs


def basic_auth(login: str, password: str) -> str:
    """An `Authorization: Basic` header value (aiohttp's BasicAuth is deprecated)."""
    token = base64.b64encode(f"{login}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


class AiohttpTwilioClient(AsyncHttpClient):
    """twilio's async HTTP port on one aiohttp session; build it inside the running loop."""

    def __init__(self, *, timeout_s: float = 10.0) -> None:
        super().__init__(log, True, timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (twilio's HttpClient contract)
        allow_redirects: bool = False,
    ) -> Response:
        """Send one API request and return twilio's response object."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        sent_headers = dict(headers or {})
        if auth is not None:
            sent_headers["Authorization"] = basic_auth(auth[0], auth[1])
        form = _pairs(data)
        async with self._session.request(
            method.upper(),
            uri,
            params=_pairs(params) or None,
            data=form if form else None,
            headers=sent_headers,
            timeout=aiohttp.ClientTimeout(total=timeout or self.timeout),
            allow_redirects=allow_redirects,
        ) as resp:
            text = await resp.text()
            log.debug("twilio api %s %s -> %s", method.upper(), resp.url.path, resp.status)
            return Response(resp.status, text, resp.headers)

    async def close(self) -> None:
        """Close the session (idempotent)."""
        if self._session is not None:
            await self._session.close()
            self._session = None
