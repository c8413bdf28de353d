"""Credentials for tests: API keys made through the app's own AuthService (TestClient), and the
admin password every `rtpm serve` started by the tests gets."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi.testclient import TestClient

from rtpm.security.scopes import ALL_SCOPES

TEST_ADMIN_PASSWORD = "test-admin-password-0123456789"


def create_key(client: TestClient, *scopes: str, tenant: str | None = None, name: str = "tests") -> str:
    """A new API key with `scopes` (all when none given) in `tenant` (the default tenant when None)."""
    services: Any = client.app.state.services  # type: ignore[attr-defined]
    assert client.portal is not None, "enter the TestClient first"
    created = client.portal.call(
        partial(
            services.auth.create_api_key,
            tenant=tenant or services.settings.default_tenant,
            name=name,
            scopes=list(scopes or sorted(ALL_SCOPES)),
            created_by="tests",
        )
    )
    return str(created.key)


def grant(client: TestClient, *scopes: str, tenant: str | None = None) -> str:
    """Make `client` send a new API key (all scopes unless given) on every request; returns the key."""
    key = create_key(client, *scopes, tenant=tenant)
    client.headers["Authorization"] = f"Bearer {key}"
    return key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
