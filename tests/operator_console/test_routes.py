"""The route table is the one declaration of each route: who may call it (enforced by the
auth middleware) and what it answers (the OpenAPI document)."""

from __future__ import annotations

import json
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


async def test_every_documented_route_has_a_response_schema(harness: Harness) -> None:
    doc = await harness.call("GET", "/openapi.json")
    schemas = doc["components"]["schemas"]
    for route in table(harness):
        op = doc["paths"][route.path][route.method.lower()]
        answer = op["responses"][str(route.status)]
        content = answer["content"]
        schema = next(iter(content.values()))["schema"]
        assert schema, f"{route.method} {route.path}"
        if "$ref" in schema:
            assert schema["$ref"].rsplit("/", 1)[1] in schemas, route.path
    for name, model in schemas.items():
        assert "properties" in model or "anyOf" in model or "enum" in model, name
    refs = re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(doc))
    assert refs and set(refs) <= set(schemas)


class Answers:
    """Real answers of the app, each validated against the response its route declares."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.routes = {(r.method, r.path): r for r in table(harness)}
        self.checked: set[tuple[str, str]] = set()

    async def get(self, method: str, template: str, *, as_user: str, **kwargs: Any) -> Any:
        route = self.routes[(method, "/api/v1" + template.split("?")[0])]
        params = kwargs.pop("params", {})
        path = template.format(**params)
        body = await self.harness.call(method, path, as_user=as_user, expect=route.status, **kwargs)
        route.adapter().validate_python(body)
        self.checked.add((method, template))
        return body


async def test_real_answers_validate_against_their_declared_response(harness: Harness) -> None:
    h = harness
    a = Answers(h)
    await h.pbx.dial_in("13800000001")
    await h.settle()
    await a.get("GET", "/me", as_user="operator")
    await a.get("GET", "/catalog", as_user="operator")
    found = await a.get("GET", "/residents?q=1", as_user="operator")
    rid = found[0]["id"] if found else 1
    await a.get("GET", "/residents/{resident_id}", as_user="operator", params={"resident_id": rid})
    await a.get("GET", "/calls", as_user="operator")
    ticket = await a.get(
        "POST", "/tickets", as_user="operator", json={"category": "medicine", "resident_id": rid}
    )
    tid = {"ticket_id": ticket["id"]}
    await a.get("GET", "/tickets", as_user="operator")
    await a.get("GET", "/tickets/{ticket_id}/candidates", as_user="operator", params=tid)
    await a.get("POST", "/tickets/{ticket_id}/dispatch", as_user="operator", params=tid, json={})
    await h.settle()
    await a.get("GET", "/tickets/{ticket_id}", as_user="operator", params=tid)
    await a.get("GET", "/tickets", as_user="merchant1")
    await a.get("GET", "/merchant/orders", as_user="merchant1")
    await a.get("GET", "/events", as_user="operator")
    await a.get("GET", "/telephony", as_user="operator")
    await a.get("GET", "/merchants", as_user="operator")
    await a.get("GET", "/merchants/{merchant_id}", as_user="operator", params={"merchant_id": 1})
    await a.get(
        "GET", "/merchants/{merchant_id}/record", as_user="operator", params={"merchant_id": 1}
    )
    await a.get("GET", "/grids", as_user="operator")
    await a.get("GET", "/board", as_user="operator")
    await a.get("GET", "/operator/state", as_user="operator")
    await a.get("GET", "/transfer-targets", as_user="operator")
    await a.get("GET", "/wallboard", as_user="supervisor")
    await a.get("GET", "/figures", as_user="supervisor")
    await a.get("GET", "/figures?by=category", as_user="supervisor")
    await a.get("GET", "/contracts", as_user="supervisor")
    await a.get("GET", "/users", as_user="supervisor")
    await a.get("GET", "/access-log", as_user="demo")
    await a.get("GET", "/login-failures", as_user="demo")
    await a.get("GET", "/sim/calls", as_user="demo")
    await a.get("GET", "/sim/phones", as_user="demo")
    await a.get("GET", "/sim/messages", as_user="demo")
    await a.get("GET", "/catalog/{code}", as_user="demo", params={"code": "medicine"})
    assert len(a.checked) >= 30
