"""The console's resident search: the in-memory index (warmed in the background after
start; its grid names follow the registry's grid events on the bus) and the search
itself, whose hits go to the access log."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from operator_console.api import services
from operator_console.context import Services, services_key
from registry import repository as repo
from registry.models import User
from registry.search import SearchIndex
from registry.search import search_residents as find_residents

search_index_key = web.AppKey("search_index", SearchIndex)


def setup(app: web.Application) -> None:
    """Give the app its resident search index, warmed in the background after start."""
    app[search_index_key] = SearchIndex()
    app.cleanup_ctx.append(_warm_index)


async def _warm_index(app: web.Application) -> AsyncIterator[None]:
    index = app[search_index_key]
    store = services_of(app).store
    # grid names shown in search results follow the registry's grid events
    stop_following = store.bus.listen(index.follow, subjects=("grid",))

    async def warm() -> None:
        async with store.read() as session:
            await index.ensure_loaded(session)

    task = asyncio.create_task(warm(), name="search-index-warm")
    yield
    stop_following()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


def services_of(app: web.Application) -> Services:
    """The app's services."""
    return app[services_key]


async def search(request: web.Request, query: str, user: User, limit: int = 20) -> list[Any]:
    """Search residents for the console; the residents shown go to the access log."""
    index = request.app[search_index_key]
    async with services(request).store.read() as session:
        hits = await find_residents(index, session, query=query, limit=limit)
        repo.log_access(
            session, resident_ids=[h.entry.id for h in hits], user=user, reason="search"
        )
    return [h.public(index.grid_names) for h in hits]
