"""Acceptance 4: budgets per credential (per IP when anonymous), the X-RateLimit-* and Retry-After
headers, health probes exempt, one budget shared by two `rtpm serve` processes through Redis, and
per-process counting (reported in /health/detailed) while Redis is unreachable."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from rtpm.api.app import create_app
from rtpm.settings import AuthSettings, RateLimitSettings, Settings
from tests._auth import bearer, create_key
from tests._server import RtpmServer


def _client(settings_factory: Callable[..., Settings], **budgets: str) -> TestClient:
    auth = AuthSettings(rate_limit=RateLimitSettings(**budgets))
    return TestClient(create_app(settings_factory(auth=auth)), raise_server_exceptions=False)


def test_budget_headers_and_429(settings_factory: Callable[..., Settings]) -> None:
    with _client(settings_factory, query="3/minute") as client:
        key = create_key(client, "metrics:read")
        remaining = []
        for _ in range(3):
            r = client.get("/api/v1/metrics/names", headers=bearer(key))
            assert r.status_code == 200
            assert r.headers["x-ratelimit-limit"] == "3"
            remaining.append(int(r.headers["x-ratelimit-remaining"]))
            assert int(r.headers["x-ratelimit-reset"]) > 0
        assert remaining == [2, 1, 0]
        r = client.get("/api/v1/metrics/names", headers=bearer(key))
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert r.headers["x-ratelimit-remaining"] == "0" and r.headers["x-ratelimit-limit"] == "3"
        assert r.json()["error"]["code"] == "rate_limited"
        # Another credential has its own budget; health probes are never limited.
        assert (
            client.get("/api/v1/metrics/names", headers=bearer(create_key(client, "metrics:read"))).status_code == 200
        )
        for path in ("/health", "/health/live", "/health/ready", "/health/detailed", "/metrics"):
            for _ in range(5):
                assert client.get(path).status_code == 200, path


def test_budgets_are_separate_for_ingest_query_and_admin(settings_factory: Callable[..., Settings]) -> None:
    with _client(settings_factory, query="2/minute", ingest="4/minute", admin="1/minute") as client:
        key = create_key(client)
        h = bearer(key)
        assert [client.get("/api/v1/metrics/names", headers=h).status_code for _ in range(3)] == [200, 200, 429]
        writes = [client.post("/api/v1/metrics/ingest", json={"name": "x", "value": 1}, headers=h) for _ in range(5)]
        assert [r.status_code for r in writes] == [201, 201, 201, 201, 429]
        assert [client.get("/api/v1/auth/keys", headers=h).status_code for _ in range(2)] == [200, 429]


def test_anonymous_callers_are_limited_per_ip(settings_factory: Callable[..., Settings]) -> None:
    with _client(settings_factory, anonymous="3/minute") as client:
        codes = [client.get("/api/v1/metrics/names", headers=bearer("rtpm_guess_guess")).status_code for _ in range(4)]
        assert codes == [401, 401, 401, 429]
        assert client.get("/health").status_code == 200


def test_redis_down_falls_back_to_per_process_and_says_so(settings_factory: Callable[..., Settings]) -> None:
    auth = AuthSettings(rate_limit=RateLimitSettings(query="2/minute"))
    settings = settings_factory(auth=auth, redis_url="redis://127.0.0.1:1/0")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        key = create_key(client, "metrics:read")
        codes = [client.get("/api/v1/metrics/names", headers=bearer(key)).status_code for _ in range(3)]
        assert codes == [200, 200, 429]  # still limited, per process, and no request failed
        detailed = client.get("/health/detailed").json()
        assert detailed["checks"]["rate_limits"]["status"] == "degraded"
        assert detailed["checks"]["rate_limits"]["backend"] == "memory"
        assert detailed["status"] == "degraded"


@pytest.mark.integration
def test_two_serve_processes_share_one_budget_through_redis(
    server_factory: Callable[..., RtpmServer], redis_url: str, tmp_path: Path
) -> None:
    env = {
        "RTPM_REDIS_URL": redis_url,
        "RTPM_DATA_DIR": str(tmp_path / "shared"),  # one database: the same users and keys
        "RTPM_AUTH__RATE_LIMIT__QUERY": "10/minute",
    }
    first = server_factory(env=dict(env))
    second = server_factory(env=dict(env))
    headers = first.headers  # a fresh key: its budget starts empty
    codes = []
    with httpx.Client(timeout=30, headers=headers) as c:
        for i in range(16):
            server = first if i % 2 == 0 else second
            codes.append(c.get(server.url + "/api/v1/metrics/names").status_code)
        assert codes.count(200) == 10 and codes.count(429) == 6
        assert codes[:10] == [200] * 10
        r = c.get(second.url + "/api/v1/metrics/names")
        assert r.status_code == 429 and r.headers["x-ratelimit-limit"] == "10"
        # Health stays open, and says the counters are shared.
        for server in (first, second):
            assert httpx.get(server.url + "/health/ready", timeout=30).status_code == 200
            rl = httpx.get(server.url + "/health/detailed", timeout=30).json()["checks"]["rate_limits"]
            assert rl == {"status": "up", "backend": "redis", "shared": True}
