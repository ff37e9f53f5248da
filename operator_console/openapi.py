"""The route table: each API route is declared once, and the routes, the role check and the
OpenAPI document all come from that one declaration.

How to add a route (in the resource's module, e.g. `tickets_api.py`)::

    from operator_console.api import API, OPERATORS, body, ok, services, user_of

    class TicketOut(Model):                      # the answer's shape (a pydantic model)
        id: int
        state: str

    @API.route(
        "POST",                                   # method
        "/tickets/{ticket_id}/cancel",            # path under /api/v1
        summary="Cancel a ticket",                # one line for the OpenAPI document
        roles=OPERATORS,                          # who may call it (see below)
        body=CancelBody,                          # the JSON body's model, if any
        response=TicketOut,                       # what a 2xx answers (a model, list[Model])
        tag="tickets",
    )
    async def cancel(request: web.Request) -> web.Response:
        user = user_of(request)                   # the logged-in user; roles already checked
        data = await body(request, CancelBody)    # 415 / 422 naming the field
        ticket = await services(request).dispatch.tickets.cancel(...)   # typed: mypy checks it
        return ok(ticket_public(ticket))

and import the module once in `app.create_app` (the list of API modules there).

`roles` is an `Access`; the auth middleware (`api.auth_middleware`) enforces it before the
handler runs, so a handler never checks roles itself:

- `PUBLIC`: no login needed (the logins themselves);
- `LOGGED_IN`: any login, merchants included;
- `OPERATORS`, `SUPERVISORS`, `ADMINS`: that role and the ones above it
  (operator < supervisor < admin, `auth.RANKS`);
- `MERCHANTS`: merchants only; `OPERATORS_AND_MERCHANTS`: both.

A route whose answer is not JSON (a download) says `response=Download`. Errors need no
declaration: every route documents the one error shape (`Error`, `errors.py`).
`tests/operator_console/test_routes.py` walks this table: each role gets 401 / 403 exactly
as declared, every route documents a response schema, and real answers validate against it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, TypeAdapter

from operator_console import auth
from registry.models import Role, User

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Access:
    """Who may call a route: `login` says whether a login is needed at all, `roles` which
    (empty: any login; staff roles include the ranks above them)."""

    login: bool
    roles: tuple[Role, ...] = ()

    def check(self, user: User | None) -> None:
        """401 without a login where one is needed, 403 for a role not allowed."""
        if self.login:
            auth.require(user, *self.roles)

    def allows(self, role: Role | None) -> bool:
        """Whether a user of `role` (None: nobody logged in) passes `check`."""
        if not self.login:
            return True
        return role is not None and auth.role_allows(role, self.roles)

    def describe(self) -> str:
        """The words the OpenAPI document shows."""
        if not self.login:
            return "no login needed"
        if not self.roles:
            return "any login"
        return ", ".join(auth.roles_included(self.roles))


PUBLIC = Access(login=False)
LOGGED_IN = Access(login=True)
OPERATORS = Access(login=True, roles=(Role.OPERATOR,))
SUPERVISORS = Access(login=True, roles=(Role.SUPERVISOR,))
ADMINS = Access(login=True, roles=(Role.ADMIN,))
MERCHANTS = Access(login=True, roles=(Role.MERCHANT,))
OPERATORS_AND_MERCHANTS = Access(login=True, roles=(Role.OPERATOR, Role.MERCHANT))


class Model(BaseModel):
    """A response model: it documents an answer, and a test checks real answers against it
    (unknown fields are refused, so the document cannot fall behind the code)."""

    model_config = ConfigDict(extra="forbid")


class OpenModel(BaseModel):
    """A response model for a read model whose keys are data (figures by group, a card
    with optional sections): the fields named here are checked, others allowed."""

    model_config = ConfigDict(extra="allow")


class Download:
    """`response=Download`: the route answers a file (CSV, XLSX), not JSON."""


@dataclass(frozen=True, slots=True)
class Route:
    """One API endpoint."""

    method: str
    path: str
    handler: Handler
    summary: str
    access: Access
    body: type[BaseModel] | None
    response: Any
    status: int
    tag: str
    #: optional query parameters (name -> description), all strings
    query: tuple[tuple[str, str], ...] = ()

    def adapter(self) -> TypeAdapter[Any]:
        """Validates (and describes) this route's answer."""
        return TypeAdapter(self.response)


#: the aiohttp route -> its declaration, on every app (what the auth middleware reads)
routes_key: web.AppKey[dict[web.AbstractRoute, Route]] = web.AppKey("api_routes")


class Api:
    """The table of API routes."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.routes: list[Route] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        roles: Access,
        response: Any,
        body: type[BaseModel] | None = None,
        status: int = 200,
        tag: str = "api",
        query: dict[str, str] | None = None,
    ) -> Callable[[Handler], Handler]:
        """Declare an endpoint (see the module docstring)."""
        if not isinstance(roles, Access):
            raise TypeError(f"{path}: roles= takes an Access (api.OPERATORS, api.PUBLIC, ...)")

        def wrap(handler: Handler) -> Handler:
            self.routes.append(
                Route(
                    method,
                    self.prefix + path,
                    handler,
                    summary,
                    roles,
                    body,
                    response,
                    status,
                    tag,
                    tuple((query or {}).items()),
                )
            )
            return handler

        return wrap

    def add_to(self, app: web.Application) -> None:
        """Register every route on an app, with its declaration for the auth middleware."""
        table: dict[web.AbstractRoute, Route] = {}
        for r in self.routes:
            table[app.router.add_route(r.method, r.path, r.handler)] = r
        app[routes_key] = table

    def document(self, *, title: str, version: str) -> dict[str, Any]:
        """The OpenAPI 3.1 document."""
        paths: dict[str, dict[str, Any]] = {}
        schemas: dict[str, Any] = {}
        error = {"$ref": "#/components/schemas/Error"}
        for r in self.routes:
            op: dict[str, Any] = {
                "summary": r.summary,
                "description": "Roles: " + r.access.describe(),
                "tags": [r.tag],
                "operationId": r.handler.__name__,
                "responses": {
                    str(r.status): _answer(r, schemas),
                    "401": {"description": "login required", "content": _json(error)},
                    "403": {"description": "role not allowed", "content": _json(error)},
                    "404": {"description": "not found", "content": _json(error)},
                    "409": {"description": "conflict", "content": _json(error)},
                    "415": {"description": "body is not application/json", "content": _json(error)},
                    "422": {"description": "invalid input", "content": _json(error)},
                    "429": {
                        "description": "too many attempts (see Retry-After)",
                        "content": _json(error),
                    },
                    "503": {"description": "dependency down or busy", "content": _json(error)},
                },
            }
            if not r.access.login:
                op["security"] = []
            params = [
                {"name": part[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
                for part in r.path.split("/")
                if part.startswith("{")
            ]
            params += [
                {"name": name, "in": "query", "description": text, "schema": {"type": "string"}}
                for name, text in r.query
            ]
            if params:
                op["parameters"] = params
            if r.body is not None:
                schema = r.body.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, part in schema.pop("$defs", {}).items():
                    _add(schemas, name, part)
                _add(schemas, r.body.__name__, schema)
                op["requestBody"] = {
                    "required": True,
                    "content": _json({"$ref": f"#/components/schemas/{r.body.__name__}"}),
                }
            paths.setdefault(r.path, {})[r.method.lower()] = op
        schemas["Error"] = ERROR_SCHEMA
        return {
            "openapi": "3.1.0",
            "info": {"title": title, "version": version},
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer"},
                    "cookie": {"type": "apiKey", "in": "cookie", "name": "yijing_session"},
                },
            },
            "security": [{"bearer": []}, {"cookie": []}],
        }


#: the one error shape; `details` is a list of fields at fault (with pydantic's `type` and
#: its `ctx`, or a domain `code`) or an object (`reason`, `incident`, `retry_after_s`)
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error_id", "message"],
    "properties": {
        "error_id": {"type": "string", "description": "machine code, e.g. invalid_input"},
        "message": {"type": "string", "description": "English, for logs and API clients"},
        "details": {
            "anyOf": [
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "field": {"type": "string"},
                            "message": {"type": "string"},
                            "type": {"type": "string", "description": "machine code"},
                            "ctx": {"type": "object"},
                        },
                    },
                },
                {"type": "object"},
                {"type": "null"},
            ]
        },
    },
}


def _answer(route: Route, schemas: dict[str, Any]) -> dict[str, Any]:
    if route.response is Download:
        return {
            "description": "a file",
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        }
    schema = route.adapter().json_schema(
        ref_template="#/components/schemas/{model}", mode="serialization"
    )
    for name, part in schema.pop("$defs", {}).items():
        _add(schemas, name, part)
    if schema.get("title") and isinstance(route.response, type):
        name = route.response.__name__
        _add(schemas, name, schema)
        schema = {"$ref": f"#/components/schemas/{name}"}
    return {"description": "OK", "content": _json(schema)}


def _add(schemas: dict[str, Any], name: str, schema: dict[str, Any]) -> None:
    """A component schema; two different models of one name would make a `$ref` lie."""
    if schemas.get(name, schema) != schema:
        raise ValueError(f"two different models are both called {name}: rename one")
    schemas[name] = schema


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}
