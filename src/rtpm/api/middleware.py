"""Request id, request log and request metrics: one pure ASGI middleware, cheap enough for ingest.

Each HTTP request gets an id: the caller's `X-Request-ID` when it is a sane token (at most 128
characters of `[A-Za-z0-9._:-]`), otherwise a new one. It is echoed back in the response's
`X-Request-ID` header and bound into the structlog context, so every line logged while the
request runs carries `request_id`. When the response is done the request is counted in
`rtpm_http_requests_total` / `rtpm_http_request_duration_seconds` by method, route *template*
(never the raw path) and status, and logged as `request_finished` (debug; info for 5xx),
after a debug `request_started`.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rtpm.metrics import METHODS, UNMATCHED_ROUTE, HttpMetrics

REQUEST_ID_HEADER = b"x-request-id"
_VALID_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")

log = structlog.get_logger("rtpm.api.access")


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER:
            if _VALID_ID.match(value):
                return value.decode("ascii")
            break
    return uuid.uuid4().hex


def route_template(scope: Scope) -> str:
    """The matched route's path template (`/api/v1/metrics/latest/{name}`), or `unmatched`."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics
        # (method, route, status) -> (counter, histogram, original-name counter) children: .labels()
        # costs more than a lookup.
        self._children: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        if kind == "websocket":
            try:
                await self.app(scope, receive, send)
            finally:
                structlog.contextvars.reset_contextvars(**tokens)
            return

        started = time.perf_counter()
        status = 500
        log.debug("request_started", method=scope["method"], path=scope["path"])
        header = (REQUEST_ID_HEADER, request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            method = scope["method"]
            if method not in METHODS:
                method = "OTHER"
            route = route_template(scope)
            self._observe(method, route, status, elapsed)
            if status >= 500:
                log.info("request_finished", method=method, route=route, status=status, duration_seconds=elapsed)
            else:
                log.debug("request_finished", method=method, route=route, status=status, duration_seconds=elapsed)
            structlog.contextvars.reset_contextvars(**tokens)

    def _observe(self, method: str, route: str, status: int, elapsed: float) -> None:
        key = (method, route, str(status))
        children = self._children.get(key)
        if children is None:
            children = (
                self.metrics.requests.labels(*key),
                self.metrics.duration.labels(*key),
                self.metrics.legacy_requests.labels(*key),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(elapsed)
        children[2].inc()
        self.metrics.legacy_latency.observe(elapsed)
