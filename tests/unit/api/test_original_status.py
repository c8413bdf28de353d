"""GET /api/v1/status reports the real state of each service (issue 16): the result cache is
`disabled` when it is off. Redis down (cache `degraded`, status `degraded`) is checked against a
real server in tests/ops/test_health.py."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from rtpm.api.app import create_app
from rtpm.settings import QuerySettings, Settings


def test_status_reports_a_disabled_cache(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(query=QuerySettings(cache_enabled=False))
    with TestClient(create_app(settings)) as c:
        body = c.get("/api/v1/status").json()
    assert body["status"] == "operational"
    assert body["services"] == {"api": "healthy", "database": "healthy", "cache": "disabled"}
