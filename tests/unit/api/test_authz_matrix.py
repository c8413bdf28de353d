"""Acceptance 1: every route of the app, read from its router (so new routes are included by
themselves): without a credential 401, with the wrong scope 403, with the right scope neither;
only the documented public routes are open, and a route that declares nothing is refused."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Route
from starlette.websockets import WebSocketDisconnect

from rtpm.api.app import create_app
from rtpm.api.auth import AccessRule, iter_routes
from rtpm.security.scopes import ALL_SCOPES
from rtpm.settings import Settings
from tests._auth import bearer, grant

# The documented open routes (docs/ARCHITECTURE.md, Security): health probes, self-monitoring,
# login and refresh, the docs, and buildinfo (Grafana's Prometheus data source probes it).
PUBLIC = {
    "/health",
    "/health/live",
    "/health/ready",
    "/health/detailed",
    "/health/system",
    "/-/healthy",  # Prometheus's probes
    "/-/ready",
    "/metrics",
    "/api/v1/auth/login",
    "/api/v1/auth/refresh",
    "/api/v1/status/buildinfo",
    # The original RTPM API's status report (service states only, no tenant data; rate limited per IP).
    "/api/v1/status",
    # The static web UI (HTML/JS only; it calls the API with the user's token).
    "/",
    "/ui",
    "/ui/{path:path}",
}
FASTAPI_DOCS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def _routes(app: FastAPI) -> list[tuple[str, str, AccessRule | None]]:
    """(method, path, rule) of every route, read from the app's routers; WebSocket routes get "WS"."""
    out: list[tuple[str, str, AccessRule | None]] = []
    for r in iter_routes(app.routes):
        if not r.methods:
            assert isinstance(r.route, Route) and r.path in FASTAPI_DOCS, f"unexpected route {r.path}"
            continue
        out.extend((method, r.path, r.rule) for method in sorted(r.methods - {"HEAD"}))
    return out


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return create_app(Settings(_env_file=None, environment="test"))  # type: ignore[call-arg]


def test_every_route_declares_its_access(app: FastAPI) -> None:
    undeclared = [f"{m} {p}" for m, p, rule in _routes(app) if rule is None]
    assert undeclared == [], f"routes without require(scope) or public(): {undeclared}"


def test_only_the_documented_routes_are_public(app: FastAPI) -> None:
    open_paths = {p for _, p, rule in _routes(app) if rule is not None and rule.public}
    assert open_paths <= PUBLIC, f"open but not documented: {sorted(open_paths - PUBLIC)}"
    assert {"/health", "/api/v1/auth/login", "/api/v1/auth/refresh", "/metrics"} <= open_paths


def _call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> int:
    kwargs: dict[str, Any] = {"headers": headers}
    if method in ("POST", "PUT", "PATCH"):
        kwargs["json"] = {}
    return client.request(method, _concrete(path), **kwargs).status_code


def _ws(client: TestClient, path: str, headers: dict[str, str]) -> str:
    """ "accepted", or the close code when the server refused the connection."""
    try:
        with client.websocket_connect(path, headers=headers) as ws:
            ws.receive_json()
            return "accepted"
    except WebSocketDisconnect as exc:
        return str(exc.code)


def test_matrix_no_credential_wrong_scope_right_scope(app_client: TestClient, key_factory: Callable[..., str]) -> None:
    app: Any = app_client.app
    keys = {scope: key_factory(scope) for scope in ALL_SCOPES}
    all_but = {scope: key_factory(*(ALL_SCOPES - {scope})) for scope in ALL_SCOPES}
    checked = 0
    for method, path, rule in _routes(app):
        assert rule is not None
        where = f"{method} {path}"
        if method == "WS":
            assert _ws(app_client, path, {}) == "1008", where
            assert _ws(app_client, path, bearer("rtpm_00000000_not-a-key")) == "1008", where
            assert _ws(app_client, path, bearer(keys["metrics:read"])) == "accepted", where
            checked += 1
            continue
        if rule.public:
            assert _call(app_client, method, path, {}) not in (401, 403), where
            continue
        assert _call(app_client, method, path, {}) == 401, where
        assert _call(app_client, method, path, bearer("rtpm_00000000_not-a-key")) == 401, where
        assert _call(app_client, method, path, {"Authorization": "Bearer not.a.jwt"}) == 401, where
        if rule.scope is not None:
            assert _call(app_client, method, path, bearer(all_but[rule.scope])) == 403, where
            right = keys[rule.scope]
        else:
            right = keys["metrics:read"]
        assert _call(app_client, method, path, bearer(right)) not in (401, 403), where
        checked += 1
    assert checked > 30  # the app really has its routes


def test_a_route_that_declares_nothing_is_refused(settings_factory: Callable[..., Settings]) -> None:
    app = create_app(settings_factory())

    @app.get("/api/v1/forgotten")
    async def forgotten() -> dict[str, str]:
        return {"leak": "everything"}

    with TestClient(app, raise_server_exceptions=False) as client:
        grant(client)  # even a credential with every scope
        r = client.get("/api/v1/forgotten")
        assert r.status_code == 403
        assert "declares no access rule" in r.json()["error"]["message"]
        assert "leak" not in r.text
    assert [p for _, p, rule in _routes(app) if rule is None] == ["/api/v1/forgotten"]


def test_unauthenticated_answer_says_how(app_client: TestClient) -> None:
    r = app_client.get("/api/v1/metrics/names")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = app_client.get("/api/v1/query", params={"query": "up"})
    assert r.status_code == 401
    assert r.json()["status"] == "error"  # the Prometheus envelope on Prometheus routes


def test_security_headers_and_no_cors_by_default(app_client: TestClient) -> None:
    r = app_client.get("/health", headers={"Origin": "https://evil.example"})
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert "access-control-allow-origin" not in r.headers


def test_cors_from_settings_without_wildcard_credentials(settings_factory: Callable[..., Settings]) -> None:
    from rtpm.settings import AuthSettings

    with pytest.raises(ValueError, match="cannot be combined"):
        AuthSettings(cors_origins=["*"], cors_allow_credentials=True)
    auth = AuthSettings(cors_origins=["https://grafana.example"], cors_allow_credentials=True)
    with TestClient(create_app(settings_factory(auth=auth)), raise_server_exceptions=False) as c:
        r = c.options(
            "/api/v1/query",
            headers={"Origin": "https://grafana.example", "Access-Control-Request-Method": "GET"},
        )
        assert r.headers["access-control-allow-origin"] == "https://grafana.example"
        r = c.options(
            "/api/v1/query", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
        )
        assert "access-control-allow-origin" not in r.headers
