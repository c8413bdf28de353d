"""The original RTPM API's contract (issue 16), against a real `rtpm serve`: the routes, fields and
shapes its README, test client, locustfile and k6 script use, answered from RTPM's own data.

Every request here carries a credential unless a test says otherwise (the anonymous role tests
run where the original sent none)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests._server import RtpmServer

pytestmark = pytest.mark.integration

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)$")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtpmServer]:
    tmp: Path = tmp_path_factory.mktemp("original_api")
    # rollups every second, so /api/v1/metrics/aggregated has buckets to answer from
    env = {"RTPM_DATA_DIR": str(tmp / "data"), "RTPM_MAINTENANCE__ROLLUP_INTERVAL_SECONDS": "1"}
    s = RtpmServer(env=env, log_path=tmp / "server.log")
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


# ---- the test client's flow: ingest, batch, latest, query as an array -------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # the original's datetime.utcnow(): naive, UTC


def _point(name: str, value: float, at: datetime, **labels: str) -> dict[str, Any]:
    """A MetricPoint as the original's test_client.py builds it (isoformat() + "Z")."""
    return {
        "name": name,
        "type": "gauge",
        "value": value,
        "timestamp": at.isoformat() + "Z",
        "labels": labels,
        "help_text": f"{name} help",
        "unit": "percent",
    }


def test_the_original_clients_ingest_batch_latest_and_query(client: httpx.Client) -> None:
    base = _utcnow() - timedelta(minutes=20)
    points = [
        _point("tc_cpu_usage_percent", 10.0 * (i + 1), base + timedelta(seconds=30 * i), host="s1") for i in range(6)
    ]
    r = client.post("/api/v1/metrics/ingest", json=points[0])
    assert r.status_code == 201 and r.json()["status"] == "success", r.text
    r = client.post("/api/v1/metrics/batch", json={"metrics": points[1:]})
    assert r.status_code == 201 and r.json()["metrics_count"] == 5, r.text
    latest = client.get("/api/v1/metrics/latest/tc_cpu_usage_percent").json()
    assert latest["value"] == 60.0

    query = {
        "metric_name": "tc_cpu_usage_percent",
        "start_time": (base - timedelta(minutes=1)).isoformat() + "Z",
        "end_time": (base + timedelta(minutes=10)).isoformat() + "Z",
        "step": "5m",
        "aggregation": "avg",
    }
    results = client.post("/api/v1/metrics/query", json=query).json()
    assert isinstance(results, list) and len(results) == 1  # what the client's len(results) counts
    series = results[0]
    assert series["metric_name"] == "tc_cpu_usage_percent" and series["labels"] == {"host": "s1"}
    values = [p["value"] for p in series["data_points"]]
    assert sum(values) > 0 and max(values) <= 60.0 and min(values) >= 10.0
    raw = client.post("/api/v1/metrics/query", json={k: query[k] for k in ("metric_name", "start_time", "end_time")})
    assert [p["value"] for p in raw.json()[0]["data_points"]] == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    wrapped = client.post("/api/v1/metrics/query", params={"format": "object"}, json=query).json()
    assert wrapped["series"] == results and wrapped["aggregation"] == "avg" and wrapped["step"] == 300
    assert client.post("/api/v1/metrics/query", params={"format": "xml"}, json=query).status_code == 422


# ---- POST /api/v1/metrics in each shape, and the locustfile's query ---------------------------


def _post(client: httpx.Client, body: Any) -> dict[str, Any]:
    r = client.post("/api/v1/metrics", json=body)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    assert answer["status"] == "success" and answer["message"] == "Metric ingested"
    _iso_utc(answer["timestamp"])
    return answer


def test_post_metrics_takes_every_shape_the_original_clients_send(client: httpx.Client) -> None:
    now = _utcnow()
    # the locustfile's batch: metric_name, labels; processed_count must equal the items sent
    locust = {
        "metrics": [
            {
                "metric_name": "lc_response_time",
                "value": float(i),
                "timestamp": (now - timedelta(seconds=60 - i)).isoformat(),
                "labels": {"host": f"load-test-host-{i % 2}", "environment": "load-test"},
            }
            for i in range(7)
        ]
    }
    assert _post(client, locust)["processed_count"] == 7
    # one MetricPoint, and a list of them
    assert _post(client, {"name": "lc_single", "value": 1.5})["processed_count"] == 1
    assert (
        _post(client, [{"name": "lc_list", "value": 1.0}, {"metric_name": "lc_list", "value": 2.0}])["processed_count"]
        == 2
    )
    # the k6 script's and the pytest suite's agent object: numeric fields become agent_<field>
    agent = {
        "agentId": "agent-001",
        "timestamp": now.isoformat(),
        "cpu": 45.5,
        "memory": 62.3,
        "requestRate": 150.2,
        "errorRate": 2.1,
        "responseTime": 95.7,
        "throughput": 200.0,
        "activeConnections": 25,
        "queueDepth": 5,
        "diskUsage": 35.8,
        "networkLatency": 12.3,
        "healthy": True,
    }
    answer = _post(client, agent)
    assert answer["processed_count"] == 10 and answer["ignored_fields"] == ["healthy"]
    latest = client.get("/api/v1/metrics/latest/agent_request_rate").json()
    assert latest["value"] == 150.2 and latest["labels"] == {"agent_id": "agent-001"}
    # the original accepted {} (nothing to store)
    assert _post(client, {})["processed_count"] == 0
    # invalid JSON is 422, as the original answered; invalid metrics are 422 naming the field
    for raw in ("invalid json", '{"invalid": json}'):
        r = client.post("/api/v1/metrics", content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and "JSON" in r.text, r.text
    r = client.post("/api/v1/metrics", json={"name": "<script>alert('xss')</script>", "description": "x"})
    assert r.status_code == 422 and "name" in r.text
    r = client.post("/api/v1/metrics", json={"data": "x" * 1000})
    assert r.status_code == 422 and "numeric" in r.text

    # the locustfile's GET query: naive ISO times, labels=k=v; an object with `metrics`
    params = {
        "metric_name": "lc_response_time",
        "start_time": (now - timedelta(minutes=30)).isoformat(),
        "end_time": (now + timedelta(seconds=1)).isoformat(),
        "labels": "environment=load-test",
    }
    r = client.get("/api/v1/metrics/query", params=params)
    assert r.status_code == 200, r.text
    metrics = r.json()["metrics"]
    assert sorted(m["labels"]["host"] for m in metrics) == ["load-test-host-0", "load-test-host-1"]
    by_host = {m["labels"]["host"]: [p["value"] for p in m["data_points"]] for m in metrics}
    assert by_host == {"load-test-host-0": [0.0, 2.0, 4.0, 6.0], "load-test-host-1": [1.0, 3.0, 5.0]}
    r = client.get("/api/v1/metrics/query", params=params | {"labels": "environment=other"})
    assert r.status_code == 200 and r.json()["metrics"] == []
    r = client.get("/api/v1/metrics/query", params=params | {"start_time": "yesterday"})
    assert r.status_code == 400 and "start_time" in r.text


def test_current_answers_the_latest_values_not_invented_numbers(client: httpx.Client) -> None:
    now = time.time()
    for name, value, unit in (("cur_cpu_usage", 41.0, "percent"), ("cur_memory_usage", 63.0, "percent")):
        r = client.post(
            "/api/v1/metrics/batch",
            json={
                "metrics": [{"name": name, "value": value, "timestamp": now - 1, "unit": unit, "labels": {"h": "a"}}]
            },
        )
        assert r.status_code == 201, r.text
    r = client.get("/api/v1/metrics/current")
    assert r.status_code == 200, r.text
    metrics = r.json()["metrics"]
    assert len(metrics) >= 3
    for m in metrics:
        assert {"name", "value", "unit", "timestamp"} <= m.keys()
        assert isinstance(m["value"], int | float)
        _iso_utc(m["timestamp"])
    found = {m["name"]: m for m in metrics}
    assert found["cur_cpu_usage"]["value"] == 41.0 and found["cur_cpu_usage"]["unit"] == "percent"
    assert found["cur_memory_usage"]["labels"] == {"h": "a"}
    only = client.get("/api/v1/metrics/current", params={"names": "cur_memory_usage,nothing_such"}).json()
    assert [m["name"] for m in only["metrics"]] == ["cur_memory_usage"] and only["truncated"] is False
    assert client.get("/api/v1/metrics/current", params={"names": " , "}).status_code == 400


# ---- aggregated with the locustfile's intervals -----------------------------------------------


def test_aggregated_takes_15m_and_any_multiple_of_a_rollup_resolution(client: httpx.Client) -> None:
    quarter = 900
    # samples 3 h old (rolled up as late data), from a half hour: whole 15m and 30m buckets
    start = (int(time.time()) // 1800) * 1800 - 3 * 3600
    items = [
        {"name": "agg_cpu_usage", "value": float(i % 15), "timestamp": start + 60 * i, "labels": {"h": "x"}}
        for i in range(60)
    ]
    assert client.post("/api/v1/metrics/batch", json={"metrics": items}).status_code == 201
    params = {
        "metric_name": "agg_cpu_usage",
        "start_time": start,
        "end_time": start + 3599.999,  # the last bucket ends at start + 3600 (exclusive)
        "aggregation": "max",
        "interval": "15m",
    }
    deadline = time.monotonic() + 20
    while True:  # the rollup job runs every second in this server; wait for it (bounded)
        r = client.get("/api/v1/metrics/aggregated", params=params)
        assert r.status_code == 200, r.text
        points = r.json()["series"][0]["data_points"] if r.json()["series"] else []
        if len(points) == 4 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    body = r.json()
    assert body["interval"] == "15m"
    assert [p["value"] for p in points] == [14.0] * 4
    assert [_iso_utc(p["timestamp"]).timestamp() for p in points] == [start + k * quarter for k in range(4)]
    avg = client.get("/api/v1/metrics/aggregated", params=params | {"aggregation": "avg", "interval": "30m"}).json()
    assert [p["value"] for p in avg["series"][0]["data_points"]] == [7.0, 7.0]
    # the locustfile's query of the last hour answers 200 with whatever buckets are closed
    now = _utcnow()
    for interval in ("1m", "5m", "15m"):
        r = client.get(
            "/api/v1/metrics/aggregated",
            params={
                "metric_name": "agg_cpu_usage",
                "start_time": (now - timedelta(hours=1)).isoformat(),
                "end_time": now.isoformat(),
                "aggregation": "avg",
                "interval": interval,
            },
        )
        assert r.status_code == 200, (interval, r.text)
    r = client.get("/api/v1/metrics/aggregated", params=params | {"interval": "90s"})
    assert r.status_code == 400 and "multiple" in r.json()["error"]["message"]


# ---- WebSocket: the original's message, subscribe and ping shapes ------------------------------


def _ws_url(server: RtpmServer, token: str | None) -> str:
    url = server.url.replace("http://", "ws://") + "/ws/metrics"
    return f"{url}?token={token}" if token else url


def _recv(ws: ClientConnection, kind: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        msg: dict[str, Any] = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        assert "timestamp" in msg and "type" in msg  # the k6 script's checks
        if msg["type"] == kind:
            return msg


def test_websocket_payload_subscribe_and_ping_shapes(server: RtpmServer, client: httpx.Client) -> None:
    with connect(_ws_url(server, server.api_key)) as ws:
        hello = _recv(ws, "connection")
        assert hello["status"] == "connected"
        # the locustfile's subscribe: the fields beside "type"
        ws.send(json.dumps({"type": "subscribe", "metrics": ["ws_cpu_usage"], "labels": {"environment": "load-test"}}))
        sub = _recv(ws, "subscribed")
        assert sub["data"]["metrics"] == ["ws_cpu_usage"] and sub["data"]["subscription"] == "metrics"
        # the test client's subscribe shape
        ws.send(json.dumps({"type": "subscribe", "data": {"subscription": "alerts"}}))
        assert _recv(ws, "subscribed")["data"]["subscription"] == "alerts"
        ws.send(json.dumps({"type": "ping", "timestamp": time.time()}))
        _recv(ws, "pong")
        body = {"metrics": [{"metric_name": "ws_cpu_usage", "value": 12.5, "labels": {"environment": "other"}}]}
        assert _post(client, body)["processed_count"] == 1
        body = {"metrics": [{"metric_name": "ws_cpu_usage", "value": 77.5, "labels": {"environment": "load-test"}}]}
        assert _post(client, body)["processed_count"] == 1
        msg = _recv(ws, "metric")
        payload = msg["payload"]
        assert payload["name"] == "ws_cpu_usage" and payload["value"] == 77.5
        assert payload["labels"] == {"environment": "load-test"}
        _iso_utc(payload["timestamp"])
        assert msg["series"]["__name__"] == "ws_cpu_usage" and msg["samples"][-1]["value"] == 77.5


# ---- alert rules in the locustfile's shape ------------------------------------------------------


def test_alert_rules_take_the_locustfiles_aliases(client: httpx.Client) -> None:
    rule = {
        "name": "Load Test Rule 1234",
        "metric": "cpu_usage",
        "condition": "greater_than",
        "threshold": 80.5,
        "duration": 300,
        "severity": "warning",
        "enabled": True,
    }
    r = client.post("/api/v1/alerts/rules", json=rule)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["expr"] == "cpu_usage > 80.5" and created["for_duration"] == 300
    rule_id = created["id"]
    r = client.put(f"/api/v1/alerts/rules/{rule_id}", json={"threshold": 90.25})
    assert r.status_code == 200 and r.json()["expr"] == "cpu_usage > 90.25", r.text
    assert client.delete(f"/api/v1/alerts/rules/{rule_id}").status_code == 204
    for condition, op in (("less_than", "<"), ("greater_than_or_equal", ">="), ("not_equal", "!=")):
        r = client.post("/api/v1/alerts/rules", json=rule | {"name": f"alias {condition}", "condition": condition})
        assert r.status_code == 201 and r.json()["expr"] == f"cpu_usage {op} 80.5", r.text
    # the test client's rule: metric_name, "> 75", for_duration, evaluation_interval
    r = client.post(
        "/api/v1/alerts/rules",
        json={
            "name": "Test High CPU Alert",
            "metric_name": "cpu_usage_percent",
            "condition": "> 75",
            "threshold": 75.0,
            "severity": "high",
            "evaluation_interval": 60,
            "for_duration": 300,
            "annotations": {"description": "CPU usage is above 75% for 5 minutes"},
        },
    )
    assert r.status_code == 201 and r.json()["name"] == "Test High CPU Alert", r.text
    r = client.post("/api/v1/alerts/rules", json=rule | {"name": "two names", "metric_name": "other"})
    assert r.status_code == 422 and "metric" in r.text
    r = client.post("/api/v1/alerts/rules", json=rule | {"name": "bad op", "condition": "bigger"})
    assert r.status_code == 422 and "condition" in r.text
    assert client.get("/api/v1/alerts/active").status_code == 200
