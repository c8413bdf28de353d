"""/health/detailed and /health/system against a real server."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests._ops import OPEN_ENV
from tests._server import RtpmServer, free_port

pytestmark = pytest.mark.integration


def test_detailed_reports_every_dependency(server_factory: Callable[..., RtpmServer]) -> None:
    # Redis configured but unreachable: degraded, not unhealthy (storage is what readiness needs).
    server = server_factory(env=OPEN_ENV | {"RTPM_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    r = httpx.get(server.url + "/health/detailed", timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    checks = body["checks"]
    assert set(checks) >= {"storage", "redis", "job_runner", "write_buffer"}
    assert checks["storage"]["status"] == "up"
    assert checks["storage"]["backend"] == "sqlite"
    assert checks["storage"]["latency_seconds"] >= 0
    assert checks["redis"]["status"] == "down"
    assert checks["job_runner"]["status"] in ("embedded", "celery", "off")
    assert checks["write_buffer"]["status"] == "up"
    assert checks["write_buffer"]["pending_samples"] == 0
    assert body["status"] == "degraded"
    # the original RTPM API's status report tells the same (issue 16)
    status = httpx.get(server.url + "/api/v1/status", timeout=30).json()
    assert status["status"] == "degraded"
    assert status["services"] == {"api": "healthy", "database": "healthy", "cache": "degraded"}
    assert httpx.get(server.url + "/health/ready").json()["status"] == "ready"
    assert httpx.get(server.url + "/health/live").json() == {"status": "alive"}


def test_detailed_with_redis_up(server_factory: Callable[..., RtpmServer], redis_url: str) -> None:
    server = server_factory(env=OPEN_ENV | {"RTPM_REDIS_URL": redis_url})
    body = httpx.get(server.url + "/health/detailed", timeout=30).json()
    assert body["checks"]["redis"]["status"] == "up"
    assert body["checks"]["redis"]["latency_seconds"] >= 0
    assert body["status"] == "healthy"


def test_system_resources(server_factory: Callable[..., RtpmServer]) -> None:
    server = server_factory(env=OPEN_ENV)
    with httpx.Client(base_url=server.url) as c:  # one kept-alive connection: at least one is open
        body = c.get("/health/system").json()
    assert body["cpu"]["count"] >= 1
    assert 0 <= body["memory"]["used_percent"] <= 100
    assert body["disk"]["total_bytes"] > 0 and body["disk"]["free_bytes"] >= 0
    assert server.env["RTPM_DATA_DIR"].startswith(body["disk"]["path"])
    assert body["connections"]["open"] >= 1
    assert body["process"]["memory_rss_bytes"] > 0
