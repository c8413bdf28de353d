"""PostgreSQL going away degrades RTPM with clear errors; it recovers by itself when it returns."""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest

from tests._proxy import TcpProxy
from tests._server import RtpmServer

pytestmark = pytest.mark.integration


def test_outage_gives_503_and_recovery_is_automatic(
    server_factory: Callable[..., RtpmServer], pg_dsn: str, pg_schema: str
) -> None:
    target = urlsplit(pg_dsn)
    with TcpProxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        dsn = pg_dsn.replace(f"{target.hostname}:{target.port or 5432}", f"127.0.0.1:{proxy.port}")
        server = server_factory(env={"RTPM_DATABASE_URL": dsn, "RTPM_DATABASE_SCHEMA": pg_schema})
        sample = {"name": "outage_probe", "value": 1.0}
        with httpx.Client(base_url=server.url, timeout=30, headers=server.headers) as c:
            assert c.post("/api/v1/metrics/ingest", json=sample).status_code == 201

            proxy.cut()
            r = c.post("/api/v1/metrics/ingest", json=sample | {"value": 2.0})
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"]
            assert "postgres" in r.json()["error"]["message"]
            ready = c.get("/health/ready")
            assert ready.status_code == 503 and ready.json()["checks"]["storage"]["status"] == "down"
            assert c.get("/health/live").status_code == 200
            status = c.get("/api/v1/status")  # the original RTPM API's report: the real state (issue 16)
            assert status.status_code == 200, status.text
            assert status.json()["status"] == "unavailable" and status.json()["services"]["database"] == "unavailable"
            assert c.get("/api/v1/metrics/latest/outage_probe").status_code == 503

            proxy.restore()
            deadline = time.monotonic() + 30
            status = 0
            while time.monotonic() < deadline:
                status = c.post("/api/v1/metrics/ingest", json=sample | {"value": 3.0}).status_code
                if status == 201:
                    break
                time.sleep(0.2)
            assert status == 201, "RTPM did not recover after PostgreSQL came back"
            assert c.get("/health/ready").status_code == 200
            assert c.get("/api/v1/metrics/latest/outage_probe").json()["value"] == 3.0
