"""The one error shape of the HTTP API, and the middleware that guarantees it.

Every failure answers ``{"status", "error_id", "message", "details"}`` with the
same HTTP status: refused operations of the call model (:class:`ControlError`,
raised by :class:`~ccserver.calls.control.CallControl` and by the API itself),
aiohttp's own HTTP errors (unknown route, wrong method), and anything
unexpected, which is logged with its traceback and answered ``500
internal-error`` without a word about what went wrong inside.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import ValidationError

from ccserver.calls.control import ControlError

__all__ = [
    "ControlError",
    "error_middleware",
    "error_response",
    "forbidden",
    "invalid_json",
    "not_implemented",
    "unauthorized",
    "validation_failed",
]

log = logging.getLogger(__name__)

# aiohttp's HTTP errors as error ids (the rest become "http-<status>").
_HTTP_IDS = {
    400: "bad-request",
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
    415: "unsupported-media-type",
}


def error_response(error: ControlError, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(error.as_dict(), status=error.status, headers=headers)


def unauthorized(message: str = "a valid API token is required") -> ControlError:
    return ControlError(401, "unauthorized", message)


def forbidden(message: str, details: dict[str, Any] | None = None) -> ControlError:
    return ControlError(403, "forbidden", message, details)


def invalid_json(reason: str) -> ControlError:
    return ControlError(
        400, "invalid-json", "the request body is not valid JSON", {"reason": reason}
    )


def not_implemented(message: str, details: dict[str, Any] | None = None) -> ControlError:
    return ControlError(501, "not-implemented", message, details)


def validation_failed(exc: ValidationError) -> ControlError:
    """A 422 naming every offending field (dotted path) with pydantic's reason."""
    errors = [
        {
            "field": ".".join(str(p) for p in err["loc"]) or "(body)",
            "message": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors(include_url=False, include_input=False)
    ]
    fields = ", ".join(e["field"] for e in errors)
    return ControlError(422, "invalid-data", f"invalid request body: {fields}", {"errors": errors})


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ControlError as exc:
        headers = {"WWW-Authenticate": 'Bearer realm="ccserver"'} if exc.status == 401 else None
        return error_response(exc, headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error_id = _HTTP_IDS.get(exc.status, f"http-{exc.status}")
        details: dict[str, Any] = {"method": request.method, "path": request.path}
        if isinstance(exc, web.HTTPMethodNotAllowed):
            details["allowed"] = sorted(exc.allowed_methods)
        message = exc.reason
        if exc.status == 404:
            message = f"no route {request.method} {request.path}"
        return error_response(ControlError(exc.status, error_id, message, details))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(
            ControlError(500, "internal-error", "internal server error; the error was logged")
        )
