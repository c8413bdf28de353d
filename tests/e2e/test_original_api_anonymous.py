"""The original RTPM API's clients that send no credential (the k6 script, the pytest suite, the
locustfile after its login of a made-up user fails), against a real `rtpm serve` with the opt-in
anonymous role (RTPM_AUTH__ANONYMOUS_ROLE=editor); and what that role must never allow."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests._server import RtpmServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtpmServer]:
    tmp: Path = tmp_path_factory.mktemp("original_api_anonymous")
    env = {
        "RTPM_DATA_DIR": str(tmp / "data"),
        "RTPM_AUTH__ANONYMOUS_ROLE": "editor",
        "RTPM_REALTIME__SUBSCRIBE_ON_CONNECT": "true",  # the original's WebSocket clients never subscribe
        "RTPM_QUERY__CACHE_ENABLED": "false",  # /api/v1/status reports the cache as disabled
    }
    s = RtpmServer(env=env, log_path=tmp / "server.log")
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def anon(server: RtpmServer) -> Iterator[httpx.Client]:
    """What the original's clients use: no Authorization header at all."""
    with httpx.Client(base_url=server.url, timeout=30, headers={"Content-Type": "application/json"}) as c:
        yield c


def test_start_warns_loudly(server: RtpmServer) -> None:
    log = server.log()
    assert "ANONYMOUS ACCESS IS ON (RTPM_AUTH__ANONYMOUS_ROLE=editor)" in log
    assert "anonymous_access_enabled" in log


def _agent(agent_id: str) -> dict[str, Any]:
    """The k6 script's generateMetrics()."""
    return {
        "agentId": agent_id,
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "cpu": 12.5,
        "memory": 50.0,
        "requestRate": 300.0,
        "errorRate": 1.0,
        "responseTime": 80.0,
        "throughput": 900.0,
        "activeConnections": 7,
        "queueDepth": 3,
        "diskUsage": 40.0,
        "networkLatency": 9.5,
    }


_AGENT_METRICS = [
    {"name": f"agent_{n}"}
    for n in (
        "cpu",
        "memory",
        "request_rate",
        "error_rate",
        "response_time",
        "throughput",
        "active_connections",
        "queue_depth",
        "disk_usage",
        "network_latency",
    )
]


def test_the_k6_scripts_calls_without_a_credential(server: RtpmServer, anon: httpx.Client) -> None:
    for i in range(3):
        r = anon.post("/api/v1/metrics", content=json.dumps(_agent(f"agent-{i:04d}")))
        assert r.status_code == 200 and r.json()["status"] == "success", r.text
        assert r.json()["processed_count"] == 10
    health = anon.get("/health").json()
    assert health["status"] == "healthy" and health["service"] == "rtpm-api"
    status = anon.get("/api/v1/status").json()  # the real state of each service
    assert status["status"] == "operational"
    assert status["services"] == {"api": "healthy", "database": "healthy", "cache": "disabled"}
    current = anon.get("/api/v1/metrics/current")
    assert current.status_code == 200 and len(current.json()["metrics"]) == 30  # 10 metrics x 3 agents
    cpu = sorted(m["labels"]["agent_id"] for m in current.json()["metrics"] if m["name"] == "agent_cpu")
    assert cpu == ["agent-0000", "agent-0001", "agent-0002"]
    text = anon.get("/metrics").text
    assert "rtpm_request_total" in text and "rtpm_request_latency_seconds" in text

    # WebSocket without a token and without a subscribe (RTPM_REALTIME__SUBSCRIBE_ON_CONNECT): every
    # message has a type and a timestamp, and the metrics come as the original's `payload`
    with connect(server.url.replace("http://", "ws://") + "/ws/metrics") as ws:
        hello = json.loads(ws.recv(timeout=10))
        assert hello["type"] == "connection" and hello["status"] == "connected" and "timestamp" in hello
        assert json.loads(ws.recv(timeout=10))["type"] == "subscribed"
        assert anon.post("/api/v1/metrics", content=json.dumps(_agent("agent-ws"))).status_code == 200
        deadline = time.monotonic() + 10
        names = set()
        while names != {m["name"] for m in _AGENT_METRICS}:
            msg = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            assert "type" in msg and "timestamp" in msg
            if msg["type"] == "metric":
                assert msg["payload"]["labels"] == {"agent_id": "agent-ws"}
                names.add(msg["payload"]["name"])
                if msg["payload"]["name"] == "agent_cpu":
                    assert msg["payload"]["value"] == 12.5


def test_the_locustfiles_tasks_after_its_login_fails(anon: httpx.Client) -> None:
    # the locustfile logs in as a made-up user: refused, so it carries on without a token
    r = anon.post("/api/v1/auth/login", json={"username": "load_test_user_1234", "password": "load_test_password"})
    assert r.status_code == 401
    now = datetime.now(UTC).replace(tzinfo=None)
    body = {
        "metrics": [
            {
                "metric_name": "cpu_usage",
                "value": 10.0 * i,
                "timestamp": (now - timedelta(seconds=i)).isoformat(),
                "labels": {"host": f"load-test-host-{i}", "environment": "load-test"},
            }
            for i in range(1, 5)
        ]
    }
    r = anon.post("/api/v1/metrics", json=body)
    assert r.status_code == 200 and r.json()["processed_count"] == 4, r.text
    window = {"start_time": (now - timedelta(minutes=30)).isoformat(), "end_time": now.isoformat()}
    r = anon.get(
        "/api/v1/metrics/query", params={"metric_name": "cpu_usage", "labels": "environment=load-test"} | window
    )
    assert r.status_code == 200 and len(r.json()["metrics"]) == 4, r.text
    r = anon.get(
        "/api/v1/metrics/aggregated",
        params={"metric_name": "cpu_usage", "aggregation": "avg", "interval": "15m"}
        | {"start_time": (now - timedelta(hours=1)).isoformat(), "end_time": now.isoformat()},
    )
    assert r.status_code == 200, r.text
    rule = {"name": "Load Test Rule 1", "metric": "cpu_usage", "condition": "greater_than", "threshold": 80}
    r = anon.post("/api/v1/alerts/rules", json=rule | {"duration": 300, "severity": "warning", "enabled": True})
    assert r.status_code == 201, r.text
    rule_id = r.json()["id"]
    assert anon.put(f"/api/v1/alerts/rules/{rule_id}", json={"threshold": 85.0}).status_code == 200
    assert anon.delete(f"/api/v1/alerts/rules/{rule_id}").status_code == 204
    assert anon.get("/api/v1/alerts/active").status_code == 200


def test_the_anonymous_role_is_never_admin_and_a_bad_credential_is_still_refused(anon: httpx.Client) -> None:
    r = anon.get("/api/v1/auth/keys")
    assert r.status_code == 403 and "admin" in r.text
    r = anon.post("/api/v1/auth/keys", json={"name": "x", "scopes": ["admin"]})
    assert r.status_code == 403
    r = anon.get("/api/v1/metrics/current", headers={"Authorization": "Bearer not-a-key"})
    assert r.status_code == 401
    me = anon.get("/api/v1/auth/me").json()
    assert me["kind"] == "anonymous" and me["tenant"] == "default"
