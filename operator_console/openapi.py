"""A small route registry that builds both the aiohttp routes and the OpenAPI document.

Each API handler is declared once with `@api.route(...)`: its method, path, summary,
allowed roles and body model. The OpenAPI 3.1 document is derived from the same table,
so it cannot drift from the routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    """One API endpoint."""

    method: str
    path: str
    handler: Handler
    summary: str
    roles: tuple[str, ...]
    body: type[BaseModel] | None
    tag: str
    #: optional query parameters (name -> description), all strings
    query: tuple[tuple[str, str], ...] = ()


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
        roles: tuple[str, ...] = (),
        body: type[BaseModel] | None = None,
        tag: str = "api",
        query: dict[str, str] | None = None,
    ) -> Callable[[Handler], Handler]:
        """Declare an endpoint."""

        def wrap(handler: Handler) -> Handler:
            self.routes.append(
                Route(
                    method,
                    self.prefix + path,
                    handler,
                    summary,
                    roles,
                    body,
                    tag,
                    tuple((query or {}).items()),
                )
            )
            return handler

        return wrap

    def add_to(self, app: web.Application) -> None:
        """Register every route on an app."""
        for r in self.routes:
            app.router.add_route(r.method, r.path, r.handler)

    def document(self, *, title: str, version: str) -> dict[str, Any]:
        """The OpenAPI 3.1 document."""
        paths: dict[str, dict[str, Any]] = {}
        schemas: dict[str, Any] = {}
        error = {"$ref": "#/components/schemas/Error"}
        for r in self.routes:
            op: dict[str, Any] = {
                "summary": r.summary,
                "tags": [r.tag],
                "operationId": r.handler.__name__,
                "responses": {
                    "200": {"description": "OK"},
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
            if r.roles:
                op["description"] = "Roles: " + ", ".join(r.roles)
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
                schemas.update(schema.pop("$defs", {}))
                schemas[r.body.__name__] = schema
                op["requestBody"] = {
                    "required": True,
                    "content": _json({"$ref": f"#/components/schemas/{r.body.__name__}"}),
                }
            paths.setdefault(r.path, {})[r.method.lower()] = op
        schemas["Error"] = {
            "type": "object",
            "required": ["error_id", "message"],
            "properties": {
                "error_id": {"type": "string"},
                "message": {"type": "string"},
                "details": {},
            },
        }
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


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}
