"""The opt-in anonymous role (RTPM_AUTH__ANONYMOUS_ROLE): off by default, viewer reads only,
the tenant is chosen by settings, a credential that is sent is still checked (the editor role is
run against a real server in tests/e2e/test_original_api_anonymous.py)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from rtpm.api.app import create_app
from rtpm.cli_auth import login_hint
from rtpm.settings import AuthSettings, Settings
from tests._auth import bearer, create_key


def test_off_by_default(settings_factory: Callable[..., Settings]) -> None:
    # (that every route but the public ones answers 401 without a credential: tests/unit/api/test_authz_matrix.py)
    settings = settings_factory()
    assert settings.auth.anonymous_role is None
    assert "ANONYMOUS" not in login_hint(settings)


def test_viewer_reads_one_tenant_and_writes_nothing(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(
        auth=AuthSettings(anonymous_role="viewer", anonymous_tenant="demo"),
        current_metrics=["anon_view", "not_stored"],  # what /api/v1/metrics/current answers
    )
    assert "ANONYMOUS ACCESS IS ON (RTPM_AUTH__ANONYMOUS_ROLE=viewer)" in login_hint(settings)
    with TestClient(create_app(settings)) as c:
        demo_key = create_key(c, tenant="demo")
        other_key = create_key(c)  # the default tenant
        for key, value in ((demo_key, 1.0), (other_key, 2.0)):
            r = c.post("/api/v1/metrics", json={"name": "anon_view", "value": value}, headers=bearer(key))
            assert r.status_code == 200, r.text
        r = c.get("/api/v1/metrics/latest/anon_view")
        assert r.status_code == 200 and r.json()["value"] == 1.0  # the demo tenant's, not the default's
        assert c.post("/api/v1/metrics", json={"name": "anon_other", "value": 5}, headers=bearer(demo_key)).is_success
        current = c.get("/api/v1/metrics/current").json()["metrics"]
        assert [(m["name"], m["value"]) for m in current] == [("anon_view", 1.0)]  # the configured list only
        me = c.get("/api/v1/auth/me").json()
        assert me["kind"] == "anonymous" and me["tenant"] == "demo"
        assert me["scopes"] == ["alerts:read", "metrics:read"]
        r = c.post("/api/v1/metrics", json={"name": "anon_view", "value": 3})
        assert r.status_code == 403 and "metrics:write" in r.text
        assert c.post("/api/v1/alerts/rules", json={"name": "n", "expr": "up > 0"}).status_code == 403
        assert c.get("/api/v1/auth/keys").status_code == 403
        assert c.get("/api/v1/metrics/current", headers=bearer("wrong")).status_code == 401
        # a valid credential is the credential's own principal, not the anonymous one
        assert c.get("/api/v1/auth/me", headers=bearer(other_key)).json()["kind"] == "api_key"
