"""Domain errors translated to HTTP in one middleware: `{"error_id", "message", "details"}`.

Exception tree mapped here:
  registry.repository.NotFound            -> 404 not_found
  dispatch.machines.IllegalTransition     -> 409 illegal_transition
  dispatch.errors.Conflict                -> 409 conflict
  dispatch.errors.Invalid, ValidationError  -> 422 invalid_input (an Invalid subclass
                                             names its own: OperatorTask -> operator_task)
  Unauthorized / Forbidden                -> 401 / 403
  sqlalchemy OperationalError             -> 503 database_unavailable
  providers.base.TelephonyError           -> 503 telephony_unavailable
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from dispatch.errors import Conflict, Invalid
from dispatch.machines import IllegalTransition
from providers.base import TelephonyError
from registry.repository import NotFound

log = logging.getLogger(__name__)


class Unauthorized(Exception):
    """No valid login."""


class Forbidden(Exception):
    """Logged in, but not allowed."""


def error_response(status: int, error_id: str, message: str, details: Any = None) -> web.Response:
    """The one error shape of the API."""
    body = {"error_id": error_id, "message": message, "details": details}
    return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))


def _validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]


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
        return error_response(403, "forbidden", str(exc) or "not allowed for your role")
    except NotFound as exc:
        return error_response(404, "not_found", str(exc))
    except (IllegalTransition, Conflict) as exc:
        error_id = "illegal_transition" if isinstance(exc, IllegalTransition) else "conflict"
        return error_response(409, error_id, str(exc), getattr(exc, "details", None))
    except ValidationError as exc:
        return error_response(
            422, "invalid_input", "the request body is not valid", _validation_details(exc)
        )
    except Invalid as exc:
        return error_response(422, exc.error_id, str(exc), getattr(exc, "details", None))
    except OperationalError:
        log.exception("database unavailable on %s", request.path)
        return error_response(503, "database_unavailable", "the database is not reachable")
    except TelephonyError as exc:
        log.warning("telephony refused %s: %s", request.path, type(exc).__name__)
        return error_response(503, "telephony_unavailable", "the phone system could not do it")
