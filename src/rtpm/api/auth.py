"""Authentication and authorisation at the HTTP edge, as FastAPI dependencies.

Every route declares who may call it, with exactly one of:

* `require(scope)` (or `require()` for any authenticated caller): a credential with that scope;
  returns the Principal and sets `request.state.principal` and `request.state.tenant`;
* `public()`: open to anyone (health probes, login, the docs); rate limited per client IP unless
  `exempt=True`;
* `self_monitoring()`: `/metrics`, open unless `auth.public_metrics` is false.

`guard` is installed as an application-wide dependency, so it runs first for every route, present
and future: a route that declares nothing is refused (fail closed), and the authorisation matrix
test finds it too. Credentials are read from `Authorization: Bearer <key or token>`, `Token <key>`
(InfluxDB 2), HTTP basic auth (the password is the key: Prometheus remote write `basic_auth`,
Grafana), the `p` query parameter on the InfluxDB 1 routes, and `?token=` on WebSockets.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, WebSocketException
from fastapi.dependencies.models import Dependant
from starlette.requests import HTTPConnection

from rtpm.errors import AuthError, PermissionDenied, RateLimited, Unauthenticated
from rtpm.security.principal import Principal
from rtpm.security.ratelimit import Budget
from rtpm.security.scopes import ADMIN, ALERTS_WRITE, ALL_SCOPES, METRICS_READ, METRICS_WRITE, ROLE_SCOPES

ACCESS_ATTR = "__rtpm_access__"
INFLUX_V1_PATHS = frozenset({"/write", "/query"})
WS_POLICY_VIOLATION = 1008


@dataclass(frozen=True, slots=True)
class AccessRule:
    """What a route declared. `scope` None with `public` False: any authenticated caller."""

    public: bool
    scope: str | None = None
    budget: Budget | None = None  # None: not rate limited (health probes)
    configurable: bool = False  # self_monitoring(): public unless settings say otherwise


def budget_for(scope: str | None) -> Budget:
    if scope == METRICS_WRITE:
        return "ingest"
    if scope in (ADMIN, ALERTS_WRITE):
        return "admin"
    return "query"


def _mark(fn: Callable[..., Any], rule: AccessRule) -> None:
    setattr(fn, ACCESS_ATTR, rule)


# -- credentials --------------------------------------------------------------------------------


def client_ip(conn: HTTPConnection) -> str:
    services = conn.app.state.services
    if services.settings.auth.trust_forwarded_for:
        forwarded = conn.headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",")[0].strip()[:64]
    return conn.client.host if conn.client else "unknown"


def credential_of(conn: HTTPConnection) -> str | None:
    """The API key or access token the caller presented, if any."""
    header = conn.headers.get("authorization")
    if header:
        scheme, _, value = header.strip().partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme in ("bearer", "token") and value:
            return value
        if scheme == "basic" and value:
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise Unauthenticated("malformed basic credentials") from None
            _, sep, password = decoded.partition(":")
            if sep and password:
                return password
            raise Unauthenticated("basic credentials need an API key as the password")
        raise Unauthenticated("unsupported Authorization scheme; use Bearer, Token or Basic")
    if conn.scope["type"] == "websocket":
        return conn.query_params.get("token") or None
    if conn.url.path in INFLUX_V1_PATHS:
        return conn.query_params.get("p") or None
    return None


async def _rate_limit(conn: HTTPConnection, budget: Budget, identity: str) -> None:
    limiter = conn.app.state.services.limiter
    if limiter is None or not limiter.enabled:
        return
    decision = await limiter.hit(budget, identity)
    conn.state.rate_limit = decision
    if not decision.allowed:
        raise RateLimited(
            f"rate limit of {decision.limit} requests ({budget}) exceeded; retry in {decision.retry_after_seconds:.0f}s",
            retry_after_seconds=decision.retry_after_seconds,
            limit=decision.limit,
            remaining=0,
            reset_epoch_seconds=decision.reset_epoch_seconds,
        )


def _dev_principal(conn: HTTPConnection) -> Principal:
    tenant = conn.app.state.services.settings.default_tenant
    return Principal(tenant, "anonymous", "anonymous_dev", ALL_SCOPES, "auth disabled")


def _anonymous_principal(conn: HTTPConnection, role: str) -> Principal:
    """A caller that sent no credential, when `auth.anonymous_role` is set (the opt-in anonymous
    access of demos and the original RTPM API's test suites, like Grafana's): the role's scopes
    (viewer or editor, never admin) in one tenant, counted per client IP."""
    settings = conn.app.state.services.settings
    tenant = settings.auth.anonymous_tenant or settings.default_tenant
    return Principal(tenant, f"ip:{client_ip(conn)}", "anonymous", ROLE_SCOPES[role], f"anonymous {role}")


async def authenticate(conn: HTTPConnection, *, budget: Budget) -> Principal:
    """The caller's Principal, counted against its rate limit; Unauthenticated without a valid credential
    (such callers are counted per client IP, so guessing keys is rate limited too). With
    `auth.anonymous_role` set, a caller without any credential gets that role instead; a credential
    that is sent is checked as always (a wrong one is refused, never downgraded to anonymous)."""
    services = conn.app.state.services
    auth = services.settings.auth
    if not auth.enabled:
        await _rate_limit(conn, budget, f"ip:{client_ip(conn)}")
        return _dev_principal(conn)
    try:
        credential = credential_of(conn)
        if credential is None:
            if auth.anonymous_role is not None:
                anonymous = _anonymous_principal(conn, auth.anonymous_role)
                await _rate_limit(conn, budget, anonymous.rate_key)
                return anonymous
            raise Unauthenticated("authentication required: send Authorization: Bearer <API key or access token>")
        principal: Principal = await services.auth.authenticate(credential)
    except Unauthenticated:
        await _rate_limit(conn, "anonymous", f"ip:{client_ip(conn)}")
        raise
    await _rate_limit(conn, budget, principal.rate_key)
    return principal


def _ws_refusal(exc: AuthError | RateLimited) -> WebSocketException:
    return WebSocketException(code=WS_POLICY_VIOLATION, reason=exc.message[:120])


def require(scope: str | None = None) -> Callable[[HTTPConnection], Awaitable[Principal]]:
    """Dependency: the caller must hold `scope` (any authenticated caller when None)."""
    if scope is not None and scope not in ALL_SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    budget = budget_for(scope)

    async def dependency(conn: HTTPConnection) -> Principal:
        existing: Principal | None = getattr(conn.state, "principal", None)
        try:
            principal = existing or await authenticate(conn, budget=budget)
            if scope is not None and not principal.has(scope):
                raise PermissionDenied(f"this needs the scope {scope!r}; the credential has {sorted(principal.scopes)}")
        except (AuthError, RateLimited) as exc:
            if conn.scope["type"] == "websocket":
                raise _ws_refusal(exc) from None
            raise
        conn.state.principal = principal
        conn.state.tenant = principal.tenant
        return principal

    _mark(dependency, AccessRule(public=False, scope=scope, budget=budget))
    dependency.__name__ = f"require_{(scope or 'authenticated').replace(':', '_')}"
    return dependency


def public(*, exempt: bool = False, budget: Budget = "query") -> Callable[[HTTPConnection], Awaitable[None]]:
    """Dependency: open to anyone; rate limited per client IP unless `exempt` (health probes)."""

    async def dependency(conn: HTTPConnection) -> None:
        if not exempt:
            try:
                await _rate_limit(conn, budget, f"ip:{client_ip(conn)}")
            except RateLimited as exc:
                if conn.scope["type"] == "websocket":
                    raise _ws_refusal(exc) from None
                raise

    _mark(dependency, AccessRule(public=True, budget=None if exempt else budget))
    dependency.__name__ = "public_exempt" if exempt else f"public_{budget}"
    return dependency


def self_monitoring() -> Callable[[HTTPConnection], Awaitable[None]]:
    """Dependency for /metrics: open when `auth.public_metrics` (the default), else metrics:read."""
    inner = require(METRICS_READ)

    async def dependency(conn: HTTPConnection) -> None:
        if not conn.app.state.services.settings.auth.public_metrics:
            await inner(conn)

    _mark(dependency, AccessRule(public=True, scope=METRICS_READ, budget=None, configurable=True))
    dependency.__name__ = "self_monitoring"
    return dependency


# -- the fail-closed guard ----------------------------------------------------------------------


def _rules(dependant: Dependant) -> list[AccessRule]:
    found: list[AccessRule] = []
    rule = getattr(dependant.call, ACCESS_ATTR, None)
    if isinstance(rule, AccessRule):
        found.append(rule)
    for sub in dependant.dependencies:
        found.extend(_rules(sub))
    return found


def access_rule(route: Any) -> AccessRule | None:
    """The rule a route declared (the strictest if several), or None when it declared none."""
    cached = getattr(route, "_rtpm_access_rule", False)  # False: not looked up yet
    if cached is None or isinstance(cached, AccessRule):
        return cached
    dependant = getattr(route, "dependant", None)
    rules = _rules(dependant) if dependant is not None else []
    original = getattr(route, "original_route", None)
    if not rules and original is not None and original is not route:
        return access_rule(original)
    rule: AccessRule | None = None
    if rules:
        protected = [r for r in rules if not r.public]
        rule = protected[0] if protected else rules[0]
    route._rtpm_access_rule = rule
    return rule


async def guard(conn: HTTPConnection) -> None:
    """App-wide dependency: refuse any route that declared no access rule."""
    route = conn.scope.get("route")
    if route is None or access_rule(route) is None:
        exc = PermissionDenied("this route declares no access rule; refused")
        if conn.scope["type"] == "websocket":
            raise _ws_refusal(exc)
        raise exc


async def current_principal(conn: HTTPConnection) -> Principal:
    """The Principal an auth dependency set on this request; Unauthenticated (fail closed) if none."""
    principal: Principal | None = getattr(conn.state, "principal", None)
    if principal is None:
        raise Unauthenticated("authentication required")
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


@dataclass(frozen=True, slots=True)
class RouteAccess:
    path: str
    methods: frozenset[str]  # {"WS"} for a WebSocket route
    rule: AccessRule | None
    route: Any


def iter_routes(routes: Any) -> list[RouteAccess]:
    """Every API route of an app or router with its declared access rule, routers included
    (lazily included routers too), for the authorisation matrix test and audits."""
    from fastapi.routing import APIRoute, APIWebSocketRoute

    out: list[RouteAccess] = []
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:  # a router included lazily (FastAPI >= 0.16x)
            for ctx in contexts():
                original = ctx.original_route
                if isinstance(original, APIWebSocketRoute):
                    path = ctx.path or ctx.frontend_prefix + original.path
                    out.append(RouteAccess(path, frozenset({"WS"}), access_rule(original), ctx))
                    continue
                methods = frozenset(getattr(original, "methods", None) or ())
                out.append(RouteAccess(ctx.path, methods, access_rule(ctx), ctx))
        elif isinstance(route, APIWebSocketRoute):
            out.append(RouteAccess(route.path, frozenset({"WS"}), access_rule(route), route))
        elif isinstance(route, APIRoute):
            out.append(RouteAccess(route.path, frozenset(route.methods or ()), access_rule(route), route))
        else:
            out.append(RouteAccess(getattr(route, "path", "?"), frozenset(), None, route))
    return out
