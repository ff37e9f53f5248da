"""Domain errors translated to HTTP in one middleware: `{"error_id", "message", "details"}`.

Exception tree mapped here:
  registry.repository.NotFound            -> 404 not_found
  dispatch.machines.IllegalTransition     -> 409 illegal_transition
  dispatch.errors.Conflict                -> 409 conflict (a subclass names its own:
                                             TicketExists -> ticket_exists, OnCall -> on_call)
  dispatch.errors.Invalid, ValidationError  -> 422 invalid_input (an Invalid subclass
                                             names its own: OperatorTask -> operator_task)
  FieldInvalid (an Invalid)               -> 422 invalid_input, naming the field
  Unauthorized / Forbidden                -> 401 / 403
  UnsupportedBody                         -> 415 unsupported_media_type
  TooManyAttempts                         -> 429 rate_limited, with Retry-After
  Busy                                    -> 503 busy, with Retry-After
  sqlalchemy OperationalError             -> 503 database_unavailable
  providers.base.TelephonyError           -> 503 telephony_unavailable
  anything else                           -> 500 internal_error, with an incident id

Every field at fault in `details` carries a machine code, `type`: pydantic's error type
(`string_too_long`, `missing`, ...), or the domain's own (`bad_phone`, `unknown_grid`,
`phone_taken`, `stale_version`, ...), with `ctx` (the numbers a message needs, such as
`max_length`). The browser words them from the i18n catalog (`e_<type>`, and `e_<error_id>`
for the whole answer); `message` stays English, for API clients and logs.

Nothing a request sent reaches a log line from here: an unexpected error is logged by
its type, the route's pattern and the stack (file, line, code), never its message nor
a database statement's parameters, which may hold a name or a health note.
"""

from __future__ import annotations

import json
import logging
import secrets
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError

from dispatch.errors import Conflict, Invalid
from dispatch.machines import IllegalTransition
from providers.base import TelephonyError
from registry.repository import NotFound

log = logging.getLogger(__name__)


class Unauthorized(Exception):
    """No valid login."""


class Forbidden(Exception):
    """Logged in, but not allowed; `reason` is a machine-readable why (in `details`)."""

    def __init__(self, message: str = "", reason: str | None = None) -> None:
        super().__init__(message)
        self.details = {"reason": reason} if reason else None


def field_error(
    field: str, message: str, code: str, ctx: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """One field at fault in `details`: where, the English message, the machine code."""
    return {"field": field, "message": message, "type": code, "ctx": ctx or {}, **extra}


class FieldInvalid(Invalid):
    """A 422 that names the field (or the query or path parameter) at fault; `code` is the
    machine code the browser words (`e_<code>` in the i18n catalog)."""

    def __init__(
        self,
        message: str,
        field: str | None = None,
        *,
        code: str = "invalid",
        ctx: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.details = [field_error(field, message, code, ctx)] if field else None


class UnsupportedBody(Exception):
    """A body that is not JSON where JSON is wanted (a form post from another site)."""


class TooManyAttempts(Exception):
    """Too many attempts from this client or on this account; retry after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, int(retry_after_s))


class Busy(Exception):
    """The service is shedding this kind of work for a moment; retry after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: int = 2) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, int(retry_after_s))


def error_response(status: int, error_id: str, message: str, details: Any = None) -> web.Response:
    """The one error shape of the API."""
    body = {"error_id": error_id, "message": message, "details": details}
    return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))


def _retry_later(status: int, error_id: str, message: str, retry_after_s: int) -> web.Response:
    response = error_response(status, error_id, message, {"retry_after_s": retry_after_s})
    response.headers["Retry-After"] = str(retry_after_s)
    return response


def _where(request: web.Request) -> str:
    """The route's pattern (`/api/v1/calls/{call_id}`), never the path as sent."""
    info = request.match_info.route.resource
    return info.canonical if info is not None else "(no route)"


def log_unexpected(request: web.Request, exc: BaseException) -> str:
    """Log an unexpected error without anything the request sent; returns the incident id."""
    incident = secrets.token_hex(6)
    code = (
        getattr(getattr(exc, "orig", None), "sqlstate", None)
        if isinstance(exc, DBAPIError)
        else None
    )
    # the stack is the code's own text (files, lines, source): part of the message, so the
    # log formatter keeps its lines; the exception's message is left out
    frames = "".join(traceback.format_tb(exc.__traceback__)).rstrip().replace("%", "%%")
    log.error(
        "incident %s: unhandled %s%s on %s %s\n" + frames,
        incident,
        type(exc).__name__,
        f" (sqlstate {code})" if code else "",
        request.method,
        _where(request),
    )
    return incident


def _validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """Each field at fault with pydantic's error type, or the domain's code when a
    validator's `ValueError` has one (`BadPhone.code`, `registry.schemas.Rule`)."""
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        ctx = err.get("ctx") or {}
        code = getattr(ctx.get("error"), "code", None) or err["type"]
        plain = {k: v for k, v in ctx.items() if isinstance(v, str | int | float | bool)}
        out.append(field_error(".".join(str(p) for p in err["loc"]), err["msg"], code, plain))
    return out


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Turn domain errors raised below into API errors."""
    try:
        return await handler(request)
    except Unauthorized as exc:
        if not request.path.startswith("/api/"):
            raise web.HTTPFound("/login") from exc
        return error_response(401, "unauthorized", str(exc) or "login required")
    except Forbidden as exc:
        return error_response(
            403, "forbidden", str(exc) or "not allowed for your role", exc.details
        )
    except NotFound as exc:
        return error_response(404, "not_found", str(exc))
    except (IllegalTransition, Conflict) as exc:
        error_id = (
            "illegal_transition"
            if isinstance(exc, IllegalTransition)
            else getattr(exc, "error_id", "conflict")
        )
        return error_response(409, error_id, str(exc), getattr(exc, "details", None))
    except ValidationError as exc:
        return error_response(
            422, "invalid_input", "the request body is not valid", _validation_details(exc)
        )
    except Invalid as exc:
        return error_response(422, exc.error_id, str(exc), getattr(exc, "details", None))
    except UnsupportedBody as exc:
        return error_response(415, "unsupported_media_type", str(exc), [{"field": "body"}])
    except TooManyAttempts as exc:
        return _retry_later(429, "rate_limited", str(exc), exc.retry_after_s)
    except Busy as exc:
        return _retry_later(503, "busy", str(exc), exc.retry_after_s)
    except OperationalError as exc:
        # the message may quote a statement's parameters: the type and where only
        log.error(
            "database unavailable on %s %s: %s",
            request.method,
            _where(request),
            type(getattr(exc, "orig", exc)).__name__,
        )
        return error_response(503, "database_unavailable", "the database is not reachable")
    except TelephonyError as exc:
        log.warning(
            "telephony refused %s %s: %s", request.method, _where(request), type(exc).__name__
        )
        return error_response(503, "telephony_unavailable", "the phone system could not do it")
    except web.HTTPException:
        raise  # redirects, 404 / 405 from the router, a webhook's 403: already answers
    except Exception as exc:  # the last line: a 500 that says nothing the request sent
        incident = log_unexpected(request, exc)
        return error_response(
            500,
            "internal_error",
            "something went wrong on our side; the incident id helps to find it",
            {"incident": incident},
        )
