"""Security headers on every response, and the X-RateLimit-* headers of the budget a request used
(pure ASGI middleware; the budget is left in the request state by `api/auth.py`)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rtpm.security.ratelimit import RateDecision

_ALWAYS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"permissions-policy", b"interest-cohort=()"),
]
# Sent on every response as the original RTPM API did; browsers ignore it over plain HTTP (RFC 6797
# section 8.1), so it only takes effect behind TLS.
_HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
# The Swagger UI page loads its script and style from a CDN.
_DOCS_PATHS = ("/docs", "/redoc")


def rate_limit_headers(decision: RateDecision) -> list[tuple[bytes, bytes]]:
    return [
        (b"x-ratelimit-limit", str(decision.limit).encode()),
        (b"x-ratelimit-remaining", str(decision.remaining).encode()),
        (b"x-ratelimit-reset", str(int(decision.reset_epoch_seconds)).encode()),
    ]


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                extra = [h for h in _ALWAYS if h[0] not in present]
                if not path.startswith(_DOCS_PATHS) and _CSP[0] not in present:
                    extra.append(_CSP)
                if path.startswith("/api/v1/auth/"):
                    extra.append((b"cache-control", b"no-store"))
                if _HSTS[0] not in present:
                    extra.append(_HSTS)
                decision = scope.get("state", {}).get("rate_limit")
                if isinstance(decision, RateDecision) and b"x-ratelimit-limit" not in present:
                    extra.extend(rate_limit_headers(decision))
                message = {**message, "headers": headers + extra}
            await send(message)

        await self.app(scope, receive, send_with_headers)
