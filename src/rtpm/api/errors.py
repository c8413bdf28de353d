"""The one place that maps RtpmError (and framework errors) to HTTP statuses and bodies.

Most routes answer errors as `{"error": {"code", "message", "details"}}`. Routes of the Prometheus
HTTP API set `request.state.prometheus_envelope` and get `{"status": "error", "errorType", "error"}`.
"""

from __future__ import annotations

import math
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from rtpm import errors as e
from rtpm.api.responses import OrjsonResponse

log = structlog.get_logger("rtpm.api")

# (class, status, Prometheus errorType), most specific first.
_TABLE: list[tuple[type[e.RtpmError], int, str]] = [
    (e.ValidationFailed, 422, "bad_data"),
    (e.PayloadTooLarge, 413, "bad_data"),
    (e.UnsupportedMediaType, 415, "bad_data"),
    (e.BadDataError, 400, "bad_data"),
    (e.Unauthenticated, 401, "unauthorized"),
    (e.PermissionDenied, 403, "forbidden"),
    (e.RateLimited, 429, "unavailable"),
    (e.AlreadyExists, 409, "bad_data"),
    (e.NotFoundError, 404, "not_found"),
    (e.OverloadedError, 503, "unavailable"),
    (e.StorageUnavailable, 503, "unavailable"),
    (e.StorageError, 503, "internal"),
    (e.QueryTimeout, 503, "timeout"),
    (e.QueryCanceled, 499, "canceled"),
    (e.QueryError, 422, "execution"),
]


def status_for(exc: e.RtpmError) -> tuple[int, str]:
    for cls, status, prom_type in _TABLE:
        if isinstance(exc, cls):
            return status, prom_type
    return 500, "internal"


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    details: Any = None,
    prom_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    if getattr(request.state, "prometheus_envelope", False):
        body: dict[str, Any] = {"status": "error", "errorType": prom_type or code, "error": message}
    else:
        body = {"error": {"code": code, "message": message, "details": details}}
    return OrjsonResponse(body, status_code=status, headers=headers)


async def _rtpm_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, e.RtpmError)
    status, prom_type = status_for(exc)
    headers = None
    if isinstance(exc, e.OverloadedError):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_seconds)))}
    elif status == 503:
        headers = {"Retry-After": "1"}
    elif isinstance(exc, e.RateLimited):
        headers = {
            "Retry-After": str(max(1, math.ceil(exc.retry_after_seconds))),
            "X-RateLimit-Limit": str(exc.limit),
            "X-RateLimit-Remaining": str(exc.remaining),
            "X-RateLimit-Reset": str(int(exc.reset_epoch_seconds)),
        }
    elif isinstance(exc, e.Unauthenticated):
        headers = {"WWW-Authenticate": 'Bearer realm="rtpm"'}
    if status >= 500:
        log.warning("request_failed", error_code=exc.code, error=exc.message)
    return error_response(request, status, exc.code, exc.message, exc.details, prom_type, headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"field": ".".join(str(p) for p in err.get("loc", ())), "reason": err.get("msg", "")} for err in exc.errors()
    ]
    first = details[0] if details else {"field": "", "reason": "invalid request"}
    message = f"invalid request: {first['field']}: {first['reason']}"
    return error_response(request, 422, "validation_failed", message, details, "bad_data")


def unknown_route(request: Request) -> Response:
    """An unknown route answers as the original RTPM API did, `{"error": "Not found", "path": <url>}`,
    with RTPM's `code`, `message` and `details` beside it (flat: `error` is the original's string)."""
    body = {
        "error": "Not found",
        "path": str(request.url),
        "code": "not_found",
        "message": f"Not found: no route {request.method} {request.url.path}",
        "details": {"method": request.method, "path": request.url.path},
    }
    return OrjsonResponse(body, status_code=404)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if (
        exc.status_code == 404
        and request.scope.get("route") is None
        and not getattr(request.state, "prometheus_envelope", False)
    ):
        return unknown_route(request)
    code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden"}.get(
        exc.status_code, "http_error"
    )
    return error_response(
        request, exc.status_code, code, str(exc.detail), None, "bad_data", dict(exc.headers or {}) or None
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled_error", path=request.url.path)
    return error_response(request, 500, "internal", "internal server error", None, "internal")


def install(app: FastAPI) -> None:
    app.add_exception_handler(e.RtpmError, _rtpm_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
