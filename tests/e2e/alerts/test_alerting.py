"""End to end with real `rtpm serve` processes, a real local webhook receiver and a real
Alertmanager: samples cross a threshold, the alert goes pending then firing, receivers get exactly
one notification per transition; restarts and a second process do not change that."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rtpm.model.alerts import label_fingerprint
from tests._receivers import Alertmanager, WebhookReceiver, wait_for
from tests._server import RtpmServer

pytestmark = pytest.mark.integration

SECRET = "s3cret-for-tests"


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    yield r
    r.close()


def alerting_env(webhook: WebhookReceiver | None = None, **extra: str) -> dict[str, str]:
    env = {
        "RTPM_AUTH__ENABLED": "false",
        "RTPM_ALERTING__POLL_SECONDS": "0.2",
        "RTPM_ALERTING__LEASE_SECONDS": "3",
        "RTPM_ALERTING__NOTIFY_BACKOFF_SECONDS": "0.2",
    }
    if webhook is not None:
        env["RTPM_ALERTING__WEBHOOKS"] = json.dumps({"ops": {"url": webhook.url, "secret": SECRET}})
    env.update(extra)
    return env


def ingest(c: httpx.Client, value: float, host: str = "web-1", name: str = "cpu_usage") -> None:
    r = c.post("/api/v1/metrics/ingest", json={"name": name, "value": value, "labels": {"host": host}})
    assert r.status_code == 201, r.text


CPU_RULE = {
    "name": "HighCPU",
    "metric_name": "cpu_usage",
    "labels": {"host": "web-1"},
    "condition": "> 75",
    "threshold": 75.0,
    "for_duration": "2s",
    "evaluation_interval": "1s",
    "severity": "critical",
    "annotations": {"summary": "CPU on {{ $labels.host }} is {{ $value }}%"},
}


def create_rule(c: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    r = c.post("/api/v1/alerts/rules", json=body)
    assert r.status_code == 201, r.text
    rule: dict[str, Any] = r.json()
    assert isinstance(rule["id"], int)
    return rule


def active(c: httpx.Client) -> list[dict[str, Any]]:
    r = c.get("/api/v1/alerts/active")
    assert r.status_code == 200, r.text
    return list(r.json())


def evaluations_after(c: httpx.Client, rule_id: int, count: int) -> None:
    """Wait until the rule has been evaluated `count` more times (by its last-evaluation time)."""
    for _ in range(count):
        before = c.get(f"/api/v1/alerts/rules/{rule_id}").json()["last_evaluation_ms"]
        wait_for(
            "another evaluation",
            lambda b=before: c.get(f"/api/v1/alerts/rules/{rule_id}").json()["last_evaluation_ms"] != b,
            timeout=20,
        )


def test_threshold_alert_goes_pending_then_firing_then_resolved_with_one_webhook_each(
    server_factory: Callable[..., RtpmServer], webhook: WebhookReceiver
) -> None:
    server = server_factory(env=alerting_env(webhook))
    with httpx.Client(base_url=server.url, timeout=30, headers=server.headers) as c:
        rule = create_rule(c, CPU_RULE)
        assert rule["expr"] == 'cpu_usage{host="web-1"} > 75'
        assert c.get("/api/v1/alerts/rules").json()[0]["name"] == "HighCPU"
        bad = c.post("/api/v1/alerts/rules", json={"name": "Bad", "expr": "rate(x[5m]"})
        assert bad.status_code == 400 and "parse error" in bad.json()["error"]["message"]

        ingest(c, 80.0)
        pending = wait_for("a pending alert", lambda: [a for a in active(c) if a["status"] == "pending"])
        assert pending[0]["rule_id"] == rule["id"] and pending[0]["metric_name"] == "cpu_usage"
        firing = wait_for("a firing alert", lambda: [a for a in active(c) if a["status"] == "firing"])[0]
        assert firing["severity"] == "critical" and firing["current_value"] == 80.0
        assert (firing["threshold"], firing["condition"]) == (75.0, ">")
        assert firing["annotations"] == {"summary": "CPU on web-1 is 80%"}
        assert firing["fingerprint"] == label_fingerprint(firing["labels"])
        assert firing["started_at"] and firing["resolved_at"] is None

        [payload] = wait_for("the firing webhook", lambda: webhook.payloads("firing"))
        path, headers, body, _ = webhook.requests[0]
        assert path == "/hook"
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-RTPM-Signature-256"] == expected
        assert payload["version"] == "4" and payload["receiver"] == "ops"
        assert payload["groupLabels"] == {"alertname": "HighCPU"}
        [alert] = payload["alerts"]
        assert alert["status"] == "firing"
        assert alert["labels"] == {"alertname": "HighCPU", "host": "web-1", "severity": "critical"}
        assert alert["annotations"]["summary"] == "CPU on web-1 is 80%"
        assert alert["fingerprint"] == firing["fingerprint"]
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", alert["startsAt"])
        assert "g0.expr=cpu_usage" in alert["generatorURL"]

        # The Prometheus-format views and the ALERTS series show the same alert.
        prom = c.get("/api/v1/alerts").json()["data"]["alerts"]
        assert [(a["state"], a["labels"]["host"], a["value"]) for a in prom] == [("firing", "web-1", "8e+01")]
        groups = c.get("/api/v1/rules").json()["data"]["groups"]
        [prule] = groups[0]["rules"]
        assert (prule["name"], prule["state"], prule["health"], prule["duration"]) == ("HighCPU", "firing", "ok", 2)
        series = wait_for(
            "the ALERTS series",
            lambda: c.get("/api/v1/query", params={"query": 'ALERTS{alertname="HighCPU"}'}).json()["data"]["result"],
        )
        assert series[0]["metric"]["alertstate"] == "firing"

        ingest(c, 10.0)
        [resolved] = wait_for("the resolved webhook", lambda: webhook.payloads("resolved"))
        assert resolved["alerts"][0]["status"] == "resolved"
        assert resolved["alerts"][0]["fingerprint"] == firing["fingerprint"]
        assert resolved["alerts"][0]["endsAt"] >= alert["startsAt"]
        evaluations_after(c, rule["id"], 2)
        assert len(webhook.payloads("firing")) == 1 and len(webhook.payloads("resolved")) == 1
        assert active(c) == []

        hist = c.get("/api/v1/alerts/history", params={"rule": "HighCPU", "state": "resolved"}).json()
        assert hist["total"] == 1 and hist["alerts"][0]["resolved_at"] is not None
        assert c.get("/api/v1/alerts/history", params={"severity": "info"}).json()["total"] == 0


def test_manual_resolve_is_recorded_and_a_new_alert_opens_while_the_condition_holds(
    server_factory: Callable[..., RtpmServer], webhook: WebhookReceiver
) -> None:
    server = server_factory(env=alerting_env(webhook))
    with httpx.Client(base_url=server.url, timeout=30, headers=server.headers) as c:
        create_rule(c, {**CPU_RULE, "for_duration": 0})
        ingest(c, 90.0)
        first = wait_for("a firing alert", lambda: [a for a in active(c) if a["status"] == "firing"])[0]
        wait_for("the firing webhook", lambda: webhook.payloads("firing"))
        r = c.post(f"/api/v1/alerts/resolve/{first['id']}")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "resolved" and r.json()["resolved_by"] == "anonymous"
        assert c.post(f"/api/v1/alerts/resolve/{first['id']}").status_code == 400
        assert c.post("/api/v1/alerts/resolve/999999").status_code == 404
        wait_for("the resolved webhook", lambda: webhook.payloads("resolved"))
        again = wait_for("a new alert", lambda: [a for a in active(c) if a["id"] != first["id"]])[0]
        assert again["fingerprint"] == first["fingerprint"]
        wait_for("a second firing webhook", lambda: len(webhook.payloads("firing")) == 2)
        hist = c.get("/api/v1/alerts/history").json()
        assert hist["total"] == 2
        closed = [a for a in hist["alerts"] if a["id"] == first["id"]][0]
        assert closed["resolved_by"] == "anonymous"
        # Deleting the rule resolves (and notifies) what it had firing; history stays.
        assert c.delete(f"/api/v1/alerts/rules/{again['rule_id']}").status_code == 204
        wait_for("a second resolved webhook", lambda: len(webhook.payloads("resolved")) == 2)
        assert active(c) == [] and c.get("/api/v1/alerts/history").json()["total"] == 2


def test_rule_crud(server_factory: Callable[..., RtpmServer]) -> None:
    server = server_factory(env=alerting_env(RTPM_ALERTING__EVALUATION_ENABLED="false"))
    with httpx.Client(base_url=server.url, timeout=30, headers=server.headers) as c:
        rule = create_rule(c, {"name": "Up", "expr": "up == 0", "for": "5m"})
        assert (rule["for_duration"], rule["evaluation_interval"], rule["severity"]) == (300, 60, "warning")
        dup = c.post("/api/v1/alerts/rules", json={"name": "Up", "expr": "up == 0"})
        assert dup.status_code == 409, dup.text
        r = c.put(f"/api/v1/alerts/rules/{rule['id']}", json={"severity": "high", "enabled": False})
        assert r.status_code == 200 and r.json()["severity"] == "high" and r.json()["expr"] == "up == 0"
        assert c.get(f"/api/v1/alerts/rules/{rule['id']}").json()["enabled"] is False
        bad = c.put(f"/api/v1/alerts/rules/{rule['id']}", json={"condition": "> 80", "threshold": 75})
        assert bad.status_code == 422
        unknown = c.post("/api/v1/alerts/rules", json={"name": "X", "expr": "up", "receivers": ["nope"]})
        assert unknown.status_code == 422
        assert c.delete(f"/api/v1/alerts/rules/{rule['id']}").status_code == 204
        assert c.get(f"/api/v1/alerts/rules/{rule['id']}").status_code == 404
        assert c.delete(f"/api/v1/alerts/rules/{rule['id']}").status_code == 404


def test_alertmanager_receives_and_lists_the_alert(server_factory: Callable[..., RtpmServer], tmp_path: Path) -> None:
    am = Alertmanager(tmp_path / "am")
    try:
        server = server_factory(env=alerting_env(RTPM_ALERTING__ALERTMANAGER_URLS=json.dumps([am.url])))
        with httpx.Client(base_url=server.url, timeout=30, headers=server.headers) as c:
            create_rule(c, {**CPU_RULE, "for_duration": "1s"})
            ingest(c, 99.0)
            firing = wait_for("a firing alert", lambda: [a for a in active(c) if a["status"] == "firing"])[0]
            listed = wait_for("the alert in Alertmanager", am.alerts)
            [am_alert] = listed
            assert am_alert["labels"] == {"alertname": "HighCPU", "host": "web-1", "severity": "critical"}
            assert am_alert["fingerprint"] == firing["fingerprint"]  # same LabelSet fingerprint
            assert am_alert["status"]["state"] == "active"
            assert am_alert["annotations"]["summary"] == "CPU on web-1 is 99%"
            ingest(c, 1.0)
            wait_for("the alert resolved in Alertmanager", lambda: am.alerts() == [])
    finally:
        am.stop()


def test_restart_neither_renotifies_nor_loses_the_resolve(
    server_factory: Callable[..., RtpmServer], webhook: WebhookReceiver
) -> None:
    server = server_factory(env=alerting_env(webhook))
    with httpx.Client(base_url=server.url, timeout=30, headers=server.headers) as c:
        rule = create_rule(c, {**CPU_RULE, "for_duration": "1s"})
        ingest(c, 95.0)
        wait_for("the firing webhook", lambda: webhook.payloads("firing"))
    server.kill()
    server.start()
    with httpx.Client(base_url=server.url, timeout=30, headers=server.headers) as c:
        evaluations_after(c, rule["id"], 3)  # the new process is leading and evaluating
        assert [a["status"] for a in active(c)] == ["firing"]
        assert len(webhook.payloads("firing")) == 1
        ingest(c, 5.0)
        wait_for("the resolved webhook", lambda: webhook.payloads("resolved"))
        evaluations_after(c, rule["id"], 1)
        assert len(webhook.payloads("firing")) == 1 and len(webhook.payloads("resolved")) == 1


def _leader(servers: list[RtpmServer]) -> RtpmServer:
    def find() -> RtpmServer | None:
        leaders = [
            s
            for s in servers
            if any(
                "alert_leadership_changed" in line and re.search(r"leader\W{0,4}[Tt]rue", line)
                for line in s.log_path.read_text(errors="replace").splitlines()
            )
        ]
        return leaders[0] if len(leaders) == 1 else None

    found: RtpmServer = wait_for("exactly one leader", find, timeout=20)
    return found


@pytest.mark.parametrize("engine", ["rows", "head"])  # head: the samples reach the leader through the WAL
def test_two_processes_on_postgres_notify_once_and_survive_leader_death(
    server_factory: Callable[..., RtpmServer], webhook: WebhookReceiver, pg_dsn: str, pg_schema: str, engine: str
) -> None:
    env = alerting_env(
        webhook,
        RTPM_DATABASE_URL=pg_dsn,
        RTPM_DATABASE_SCHEMA=pg_schema,
        RTPM_LOG_FORMAT="json",
        RTPM_STORAGE_ENGINE=engine,
    )
    a = server_factory(env=env)
    b = server_factory(env=env)
    with (
        httpx.Client(base_url=a.url, timeout=30, headers=a.headers) as ca,
        httpx.Client(base_url=b.url, timeout=30, headers=b.headers) as cb,
    ):
        rule = create_rule(ca, {**CPU_RULE, "for_duration": "1s"})
        ingest(cb, 85.0)
        wait_for("the firing webhook", lambda: webhook.payloads("firing"))
        evaluations_after(ca, rule["id"], 3)
        assert len(webhook.payloads("firing")) == 1
        leader = _leader([a, b])
        survivor, client = (b, cb) if leader is a else (a, ca)
        leader.kill()
        evaluations_after(client, rule["id"], 2)  # the survivor took over
        assert "alert_leadership_changed" in survivor.log_path.read_text(errors="replace")
        assert len(webhook.payloads("firing")) == 1
        ingest(client, 20.0)
        wait_for("the resolved webhook", lambda: webhook.payloads("resolved"))
        evaluations_after(client, rule["id"], 2)
        assert len(webhook.payloads("firing")) == 1 and len(webhook.payloads("resolved")) == 1


def test_transitions_reach_the_live_websocket_channel(server_factory: Callable[..., RtpmServer]) -> None:
    from websockets.sync.client import connect

    server = server_factory(env=alerting_env())
    ws_url = server.url.replace("http://", "ws://") + "/ws/metrics"
    with (
        connect(ws_url, open_timeout=10, additional_headers=server.headers) as ws,
        httpx.Client(base_url=server.url, timeout=30, headers=server.headers) as c,
    ):
        ws.send(json.dumps({"type": "subscribe", "data": {"subscription": "alerts", "labels": {"host": "web-1"}}}))

        def next_alert() -> dict[str, Any]:
            while True:
                msg = json.loads(ws.recv(timeout=20))
                if msg["type"] == "alert":
                    return dict(msg["alert"])

        create_rule(c, {**CPU_RULE, "for_duration": 0})
        ingest(c, 88.0)
        fired = next_alert()
        assert (fired["event"], fired["status"], fired["rule_name"]) == ("firing", "firing", "HighCPU")
        assert fired["labels"]["host"] == "web-1" and fired["current_value"] == 88.0
        ingest(c, 8.0)
        resolved = next_alert()
        assert (resolved["event"], resolved["status"], resolved["id"]) == ("resolved", "resolved", fired["id"])
