"""The original RTPM API's contract (issue 16), against a real `rtpm serve`: the routes, fields and
shapes its README, test client, locustfile and k6 script use, answered from RTPM's own data.

Every request here carries a credential unless a test says otherwise (the anonymous role tests
run where the original sent none)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests._server import RtpmServer

pytestmark = pytest.mark.integration

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)$")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtpmServer]:
    tmp: Path = tmp_path_factory.mktemp("original_api")
    s = RtpmServer(env={"RTPM_DATA_DIR": str(tmp / "data")}, log_path=tmp / "server.log")
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def client(server: RtpmServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30, headers=server.headers) as c:
        yield c


def _iso_utc(text: str) -> datetime:
    assert ISO_UTC.match(text), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---- /, /health, /api/v1/status, 404, headers, /metrics ---------------------------------------


def test_root_answers_the_api_index_to_api_clients_and_the_ui_to_browsers(server: RtpmServer) -> None:
    for headers in ({}, {"Accept": "application/json"}, {"Accept": "*/*"}):
        r = httpx.get(server.url + "/", headers=headers)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json"), headers
        body = r.json()
        assert body["message"] == "RTPM Dashboard API"
        assert isinstance(body["version"], str) and body["version"]
        assert {k: body["endpoints"][k] for k in ("health", "metrics", "api_docs", "websocket")} == {
            "health": "/health",
            "metrics": "/metrics",
            "api_docs": "/docs",
            "websocket": "/ws/metrics",
        }
        assert "accept" in r.headers["vary"].lower()
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    r = httpx.get(server.url + "/", headers={"Accept": browser})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "<html" in r.text.lower()


def test_health_has_the_original_fields(server: RtpmServer) -> None:
    r = httpx.get(server.url + "/health")  # no credential: a probe
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "healthy" and body["service"] == "rtpm-api"
    assert isinstance(body["version"], str) and body["version"]
    stamp = _iso_utc(body["timestamp"])
    assert abs(stamp.timestamp() - datetime.now().timestamp()) < 300
    assert body["uptime_seconds"] >= 0
    assert httpx.get(server.url + "/health/ready").json()["status"] == "ready"
    assert httpx.patch(server.url + "/health").status_code == 405


def test_status_reports_the_real_state_of_each_service(server: RtpmServer) -> None:
    r = httpx.get(server.url + "/api/v1/status")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "operational"
    assert body["services"] == {"api": "healthy", "database": "healthy", "cache": "healthy"}
    assert body["backends"] == {"database": "sqlite", "cache": "memory"}
    _iso_utc(body["timestamp"])


def test_unknown_route_answers_the_original_404_shape(server: RtpmServer) -> None:
    r = httpx.get(server.url + "/non-existent-endpoint?x=1")
    assert r.status_code == 404
    body = r.json()
    assert body["error"] == "Not found"
    assert body["path"] == server.url + "/non-existent-endpoint?x=1"
    assert body["code"] == "not_found" and "/non-existent-endpoint" in body["message"]


def test_security_headers_include_hsts_and_rtpms_own(server: RtpmServer) -> None:
    for path in ("/health", "/api/v1/status", "/nothing-here"):
        h = httpx.get(server.url + path).headers
        assert h["strict-transport-security"].startswith("max-age=31536000")
        assert h["x-content-type-options"] == "nosniff" and h["x-frame-options"] == "DENY"
        assert "referrer-policy" in h and "permissions-policy" in h and "content-security-policy" in h
        assert "x-request-id" in h


def _sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', head))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return None


def test_metrics_expose_the_original_request_names_by_route_template(server: RtpmServer, client: httpx.Client) -> None:
    for name in ("no_such_metric_a", "no_such_metric_b"):
        assert client.get(f"/api/v1/metrics/latest/{name}").status_code == 404
    assert httpx.get(server.url + "/health").status_code == 200
    text = httpx.get(server.url + "/metrics").text
    template = "/api/v1/metrics/latest/{name}"
    assert _sample(text, "rtpm_request_total", method="GET", endpoint=template, status="404") == 2
    assert (_sample(text, "rtpm_request_total", method="GET", endpoint="/health", status="200") or 0) >= 1
    assert "no_such_metric_a" not in text  # never a raw path
    for le in ("0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.0", "5.0", "+Inf"):
        assert _sample(text, "rtpm_request_latency_seconds_bucket", le=le) is not None, le
    assert (_sample(text, "rtpm_request_latency_seconds_count") or 0) >= 3
    assert _sample(text, "rtpm_http_requests_total", route=template, status="404") == 2
    assert "rtpm_websocket_connections" in text
