"""The WebSocket `/api/v1/ws?since=SEQ`: the event log, live.

A client first gets every event after `since` from the database, then the live stream;
a client that drops reconnects with the last seq it saw and misses nothing. Browsers'
`Origin` must be the configured public URL's (`security.origin_allowed`).

A stream lives only as long as its session: a logout, or an admin disabling the login,
changing its role or resetting its password, ends the session's streams in this process
at once (`revoke`, close code 4401); a stream also checks its session every
`RECHECK_S` seconds, which catches sessions ended by another process and expiry. Nothing
is sent once the session is known to be gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from operator_console import auth
from operator_console.api import TOKEN, current_user, query_int, services
from operator_console.errors import Forbidden, log_unexpected
from operator_console.security import origin_allowed
from registry.models import Role

log = logging.getLogger(__name__)

#: how often an open stream checks that its session still exists
RECHECK_S = 5.0
#: the close code of a stream whose session ended (4000-4999 are the application's own)
SESSION_ENDED = 4401


@dataclass(eq=False, slots=True)
class _Stream:
    """One open stream: whose session it serves and the queue it reads the bus from."""

    ws: web.WebSocketResponse
    user_id: int
    digest: str
    queue: asyncio.Queue[dict[str, Any] | None]
    revoked: bool = field(default=False)


class LiveStreams:
    """The open streams of this process, by session, so that ending a session ends them."""

    def __init__(self) -> None:
        self._streams: set[_Stream] = set()

    def open(
        self,
        ws: web.WebSocketResponse,
        *,
        user_id: int,
        digest: str,
        queue: asyncio.Queue[dict[str, Any] | None],
    ) -> _Stream:
        """Register a stream."""
        stream = _Stream(ws, user_id, digest, queue)
        self._streams.add(stream)
        return stream

    def close(self, stream: _Stream) -> None:
        """Forget a stream that ended."""
        self._streams.discard(stream)

    def revoke(
        self, *, user_id: int | None = None, digest: str | None = None, keep: str | None = None
    ) -> int:
        """End the streams of a session (`digest`) or of every session of a user but the
        one `keep` names; returns how many were told to close."""
        count = 0
        for stream in list(self._streams):
            if stream.digest == keep:
                continue
            if (digest is not None and stream.digest == digest) or (
                user_id is not None and stream.user_id == user_id
            ):
                stream.revoked = True
                _wake(stream.queue)
                count += 1
        return count


def _wake(queue: asyncio.Queue[dict[str, Any] | None]) -> None:
    """Put the end-of-stream marker in a queue, making room if it is full."""
    try:
        queue.put_nowait(None)
    except asyncio.QueueFull:
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
        queue.put_nowait(None)


streams_key = web.AppKey("live_streams", LiveStreams)


def revoke(
    app: web.Application,
    *,
    user_id: int | None = None,
    token: str | None = None,
    keep: str | None = None,
) -> None:
    """End the live streams of a session (by its token) or of all of a user's sessions but
    the one whose token is `keep`."""
    streams = app.get(streams_key)
    if streams is None:
        return
    ended = streams.revoke(
        user_id=user_id,
        digest=auth.digest(token) if token else None,
        keep=auth.digest(keep) if keep else None,
    )
    if ended:
        log.info("ended %d live stream(s) of user %s: session ended", ended, user_id or "-")


async def _still_valid(request: web.Request, token: str) -> bool:
    async with services(request).store.read() as session:
        return await auth.resolve(session, token=token) is not None


async def websocket(request: web.Request) -> web.StreamResponse:
    """Stream events to a logged-in staff member."""
    from operator_console.app import websockets_key

    if not origin_allowed(request):
        raise Forbidden("WebSocket origin not allowed")
    user = auth.require(current_user(request), Role.OPERATOR)
    since = query_int(request, "since", 0, minimum=0) or 0
    token = request[TOKEN]
    svc = services(request)
    ws = web.WebSocketResponse(heartbeat=20)
    await ws.prepare(request)
    request.app[websockets_key].add(ws)
    queue = svc.bus.subscribe()
    assert user.id is not None
    stream = request.app[streams_key].open(
        ws, user_id=user.id, digest=auth.digest(token), queue=queue
    )
    log.info("websocket opened for user %s since %s", user.id, since)

    async def read_until_closed() -> None:
        # reading is what processes pongs and the client's close frame
        async for _msg in ws:
            pass
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(None)

    async def send(event: dict[str, Any]) -> None:
        if stream.revoked:
            raise _SessionEnded
        await ws.send_str(json.dumps(event, ensure_ascii=False))

    reader = asyncio.create_task(read_until_closed())
    try:
        last = since
        while True:
            backlog = await svc.store.events_since(last)
            for old in backlog:
                await send(old)
                last = old["seq"]
            if len(backlog) < 1000:
                break
        while not ws.closed:
            try:
                event = await asyncio.wait_for(queue.get(), RECHECK_S)
            except TimeoutError:
                if not await _still_valid(request, token):
                    raise _SessionEnded from None
                continue
            if event is None:
                if stream.revoked:
                    raise _SessionEnded
                break
            if event["seq"] <= last:
                continue
            await send(event)
            last = event["seq"]
    except _SessionEnded:
        log.info("websocket of user %s closed: session ended", user.id)
        await ws.close(code=SESSION_ENDED, message=b"session ended")
    except (ConnectionResetError, asyncio.QueueFull):
        pass
    except Exception as exc:  # the stream is open: no error answer can be sent any more
        log_unexpected(request, exc)
        await ws.close(code=1011, message=b"internal error")
    finally:
        svc.bus.unsubscribe(queue)
        request.app[streams_key].close(stream)
        request.app[websockets_key].discard(ws)
        if not ws.closed:
            await ws.close()
        reader.cancel()
    return ws


class _SessionEnded(Exception):
    """The stream's session was ended or expired."""
