"""An in-process app with auth on, and API keys of chosen scopes and tenants."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from rtpm.api.app import create_app
from rtpm.settings import Settings
from tests._auth import create_key


@pytest.fixture
def app_client(settings_factory: Callable[..., Settings]) -> Iterator[TestClient]:
    settings = settings_factory(admin_password="admin-password-for-tests-0123")
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def key_factory(app_client: TestClient) -> Callable[..., str]:
    def make(*scopes: str, tenant: str | None = None) -> str:
        return create_key(app_client, *scopes, tenant=tenant)

    return make
