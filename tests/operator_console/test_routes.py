"""The route table is the one declaration of each route: who may call it (enforced by the
auth middleware) and what it answers (the OpenAPI document)."""

from __future__ import annotations

import re
from typing import Any

from operator_console.openapi import Route, routes_key
from registry.models import Role
from tests.conftest import Harness

#: who walks the table: nobody logged in, then one login of each role
WALKERS: tuple[tuple[str | None, Role | None], ...] = (
    (None, None),
    ("operator", Role.OPERATOR),
    ("supervisor", Role.SUPERVISOR),
    ("demo", Role.ADMIN),
    ("merchant1", Role.MERCHANT),
)
#: what a path parameter is filled with: nothing that exists, so no route changes anything
FILLERS = {"kind": "residents", "ref": "no-such-call", "code": "no-such-category"}


def table(harness: Harness) -> list[Route]:
    """The routes as the app registered them."""
    routes: dict[Any, Route] = harness.client.app[routes_key]  # type: ignore[index]
    return list(routes.values())


def concrete(path: str) -> str:
    """A route's path with its parameters filled in."""
    return re.sub(r"\{(\w+)\}", lambda m: FILLERS.get(m.group(1), "999999999"), path)


async def test_given_a_merchant_when_reading_the_catalog_then_403_as_documented(
    harness: Harness,
) -> None:
    doc = await harness.call("GET", "/openapi.json")
    assert "merchant" not in doc["paths"]["/api/v1/catalog"]["get"]["description"]
    body = await harness.call("GET", "/catalog", as_user="merchant1", expect=403)
    assert body["error_id"] == "forbidden"
    await harness.call("GET", "/catalog", as_user="operator")


async def test_every_route_lets_in_exactly_the_roles_it_declares(harness: Harness) -> None:
    for username, _ in WALKERS:
        if username is not None:
            await harness.login(username)
    harness.client.session.cookie_jar.clear()  # each walker by its bearer token only
    routes = table(harness)
    assert len(routes) > 60
    wrong: list[str] = []
    for route in routes:
        path = concrete(route.path)
        for username, role in WALKERS:
            headers = {"Authorization": f"Bearer {harness.tokens[username]}"} if username else {}
            resp = await harness.client.request(route.method, path, headers=headers)
            await resp.read()
            if route.access.allows(role):
                refused = resp.status in (401, 403)
            else:
                refused = resp.status == (401 if role is None else 403)
            if refused == route.access.allows(role):
                wrong.append(f"{route.method} {route.path} as {username}: {resp.status}")
            if route.path.endswith("/logout") and username is not None and resp.status == 200:
                await harness.login(username)  # the walk logged this user out
                harness.client.session.cookie_jar.clear()
    assert not wrong, "\n".join(wrong)


async def test_the_document_states_each_routes_roles_from_the_table(harness: Harness) -> None:
    doc = await harness.call("GET", "/openapi.json")
    for route in table(harness):
        op = doc["paths"][route.path][route.method.lower()]
        assert op["description"] == "Roles: " + route.access.describe()
        if not route.access.login:
            assert op["security"] == []
