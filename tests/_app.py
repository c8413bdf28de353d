"""An in-process app with a granted client, for the Prometheus-surface endpoints."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rtpm.api.app import create_app
from rtpm.model.samples import WriteBatch
from rtpm.settings import Settings
from tests._auth import grant


class App:
    def __init__(self, client: TestClient) -> None:
        self.client = client

    @property
    def services(self) -> Any:
        return self.client.app.state.services  # type: ignore[attr-defined]

    @property
    def tenant(self) -> str:
        return str(self.services.settings.default_tenant)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a coroutine function on the app's event loop."""
        assert self.client.portal is not None
        return self.client.portal.call(lambda: fn(*args, **kwargs))

    def write(self, batch: WriteBatch) -> None:
        self.call(self.services.storage.write, [batch])


@pytest.fixture
def app(settings_factory: Callable[..., Settings]) -> Iterator[App]:
    with TestClient(create_app(settings_factory()), raise_server_exceptions=False) as c:
        grant(c)
        yield App(c)
