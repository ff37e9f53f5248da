"""What every API module uses: the route table `API`, who may call a route (`OPERATORS`,
...), the typed `services(request)`, the logged-in `user_of(request)`, JSON bodies and
answers, id parameters, and the auth middleware that enforces each route's roles.

The routes themselves live one module per resource (`README.md`, "What is where"); how to
declare one is in `operator_console.openapi`'s docstring.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from operator_console import auth
from operator_console.context import Services, services_key
from operator_console.errors import FieldInvalid, Forbidden, Unauthorized, UnsupportedBody
from operator_console.openapi import (
    ADMINS,
    LOGGED_IN,
    MERCHANTS,
    OPERATORS,
    OPERATORS_AND_MERCHANTS,
    PUBLIC,
    SUPERVISORS,
    Access,
    Api,
    Download,
    Model,
    OpenModel,
    routes_key,
)
from operator_console.password_login import PasswordLogin
from registry.models import Role, User
from registry.schemas import MAX_ID
from registry.schemas import Strict as RegistryStrict

log = logging.getLogger(__name__)

API = Api("/api/v1")
#: the staff password login use case, set by the composition root
password_login_key = web.AppKey("password_login", PasswordLogin)
USER = web.RequestKey("user", User)
TOKEN = web.RequestKey("token", str)
CSRF = web.RequestKey("csrf", str)
#: role tuples for `auth.require` (routes declare an `Access` instead: `OPERATORS`, ...)
STAFF = (Role.OPERATOR,)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)


def ok(data: Any, status: int = 200) -> web.Response:
    """A JSON response with Chinese kept readable."""
    return web.json_response(data, status=status, dumps=_dumps)


def services(request: web.Request) -> Services:
    """The app's services."""
    return request.app[services_key]


def current_user(request: web.Request) -> User | None:
    """The logged-in user, if any."""
    return request.get(USER)


def user_of(request: web.Request) -> User:
    """The logged-in user of a route that needs a login (the middleware checked it)."""
    return auth.require(current_user(request))


def need(request: web.Request, *roles: Role) -> User:
    """The user, if their role allows; 401/403 otherwise (for what is not a route of the
    table: pages, the WebSocket; a route declares its roles instead)."""
    return auth.require(current_user(request), *roles)


#: the deepest nesting of arrays and objects a JSON body may have (ours need 4)
MAX_JSON_DEPTH = 32
_WHOLE = re.compile(r"[0-9]{1,19}")


def _json_invalid(model: type[BaseModel], reason: str) -> ValidationError:
    return ValidationError.from_exception_data(
        model.__name__,
        [{"type": "json_invalid", "loc": ("body",), "input": "", "ctx": {"error": reason}}],
    )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def json_depth(value: Any) -> int:
    """How deeply arrays and objects nest in a parsed JSON value (without recursing)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            stack.extend(
                (v, depth + 1) for v in (item.values() if isinstance(item, dict) else item)
            )
    return deepest


async def body(request: web.Request, model: type[BaseModel]) -> Any:
    """Parse and validate a JSON body; 415 if it is not JSON, 422 naming the field otherwise.

    A form or `text/plain` post (what another site can make a browser send without asking)
    is refused before anything is read; NaN and Infinity, numbers of thousands of digits
    and nesting deeper than `MAX_JSON_DEPTH` are invalid input, not errors of ours.
    """
    if request.content_type != "application/json":
        raise UnsupportedBody("send the body as application/json")
    data = await request.read()
    try:
        raw = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError as exc:
        raise _json_invalid(model, "nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, too many digits
        reason = str(exc)[:100] if isinstance(exc, json.JSONDecodeError) else "not JSON"
        raise _json_invalid(model, reason) from exc
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise _json_invalid(model, f"nested more than {MAX_JSON_DEPTH} deep")
    return model.model_validate(raw)


def whole_number(value: str, name: str, *, minimum: int = 1, maximum: int = MAX_ID) -> int:
    """`value` as an integer in [minimum, maximum] (ASCII digits only); 422 naming `name`."""
    if not _WHOLE.fullmatch(value) or not minimum <= int(value) <= maximum:
        raise FieldInvalid(
            f"{name} must be a whole number from {minimum} to {maximum}",
            name,
            code="not_whole_number",
            ctx={"min": minimum, "max": maximum},
        )
    return int(value)


def int_param(request: web.Request, name: str) -> int:
    """A path parameter that must be a positive 64-bit integer (an id)."""
    return whole_number(request.match_info[name], name)


def query_int(
    request: web.Request,
    name: str,
    default: int | None = None,
    *,
    minimum: int = 1,
    maximum: int = MAX_ID,
) -> int | None:
    """An optional integer query parameter; `default` when absent, 422 naming it when bad."""
    value = request.query.get(name)
    if value is None:
        return default
    return whole_number(value, name, minimum=minimum, maximum=maximum)


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Resolve the session (cookie or bearer), enforce CSRF on cookie requests, and let a
    route of the table run only for the roles it declares (401 / 403 otherwise)."""
    token, via_cookie = None, False
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        token = header[7:].strip()
    elif auth.COOKIE in request.cookies:
        token, via_cookie = request.cookies[auth.COOKIE], True
    if token and not request.path.startswith("/static/"):
        async with services(request).store.read() as session:
            found = await auth.resolve(session, token=token)
        if found is not None:
            user, login = found
            request[USER], request[TOKEN], request[CSRF] = user, token, login.csrf
            if request.path.startswith("/api/") and request.path != "/api/v1/login":
                auth.check_csrf(
                    request.method,
                    via_cookie=via_cookie,
                    sent=request.headers.get("X-CSRF-Token"),
                    expected=login.csrf,
                )
    route = request.app.get(routes_key, {}).get(request.match_info.route)
    if route is not None:
        route.access.check(current_user(request))
    return await handler(request)


# -- request bodies --
class Strict(RegistryStrict):
    """Bodies refuse unknown fields and control characters, and trim strings."""


class Done(Model):
    """An action that answers only that it was done."""

    ok: bool


async def openapi_doc(request: web.Request) -> web.Response:
    """The OpenAPI document of this API."""
    return ok(API.document(title="医敬 Yijing API", version="1"))


__all__ = [
    "ADMINS",
    "API",
    "LOGGED_IN",
    "MERCHANTS",
    "OPERATORS",
    "OPERATORS_AND_MERCHANTS",
    "PUBLIC",
    "SUPERVISORS",
    "Access",
    "Done",
    "Download",
    "Forbidden",
    "Model",
    "OpenModel",
    "Unauthorized",
    "auth_middleware",
    "openapi_doc",
]
