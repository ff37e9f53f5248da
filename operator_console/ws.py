"""The WebSocket `/api/v1/ws?since=SEQ`: the event log, live.

A client first gets every event after `since` from the database, then the live stream;
a client that drops reconnects with the last seq it saw and misses nothing. Browsers'
`Origin` must be this console's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from urllib.parse import urlsplit

from aiohttp import web

from operator_console import auth
from operator_console.api import current_user, services
from operator_console.errors import Forbidden
from registry.models import Role

log = logging.getLogger(__name__)


def origin_allowed(request: web.Request) -> bool:
    """True without an Origin (not a browser) or with this console's own origin."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    public = urlsplit(services(request).settings.public_url)
    own = {f"{public.scheme}://{public.netloc}", f"{request.scheme}://{request.host}"}
    return f"{parts.scheme}://{parts.netloc}" in own


async def websocket(request: web.Request) -> web.StreamResponse:
    """Stream events to a logged-in staff member."""
    from operator_console.app import websockets_key

    if not origin_allowed(request):
        raise Forbidden("WebSocket origin not allowed")
    user = auth.require(current_user(request), Role.OPERATOR)
    since_raw = request.query.get("since", "0")
    since = int(since_raw) if since_raw.isdigit() else 0
    svc = services(request)
    ws = web.WebSocketResponse(heartbeat=20)
    await ws.prepare(request)
    request.app[websockets_key].add(ws)
    queue = svc.bus.subscribe()
    log.info("websocket opened for user %s since %s", user.id, since)

    async def read_until_closed() -> None:
        # reading is what processes pongs and the client's close frame
        async for _msg in ws:
            pass
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(None)

    reader = asyncio.create_task(read_until_closed())
    try:
        last = since
        while True:
            backlog = await svc.store.events_since(last)
            for event in backlog:
                await ws.send_str(json.dumps(event, ensure_ascii=False))
                last = event["seq"]
            if len(backlog) < 1000:
                break
        while not ws.closed:
            event = await queue.get()
            if event is None:
                break
            if event["seq"] <= last:
                continue
            await ws.send_str(json.dumps(event, ensure_ascii=False))
            last = event["seq"]
    except (ConnectionResetError, asyncio.QueueFull):
        pass
    finally:
        svc.bus.unsubscribe(queue)
        request.app[websockets_key].discard(ws)
        if not ws.closed:
            await ws.close()
        reader.cancel()
    return ws
