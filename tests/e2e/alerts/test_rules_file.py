"""A Prometheus rules file with a dozen alerting rules moves into a real `rtpm serve` unchanged:
imported, evaluated, and exported back as equivalent YAML."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
import yaml

from tests._receivers import wait_for
from tests._server import RtpmServer
from tests.e2e.alerts.test_alerting import alerting_env, ingest

pytestmark = pytest.mark.integration

RULES = """
groups:
  - name: node
    interval: 1s
    rules:
      - alert: HostDown
        expr: node_up == 0
        for: 1m
        labels:
          severity: critical
        annotations:
          summary: "{{ $labels.host }} is down"
      - alert: HighCPU
        expr: cpu_usage > 75
        labels:
          severity: warning
        annotations:
          summary: "CPU {{ $value }}% on {{ $labels.host }}"
      - alert: CPUAverageHigh
        expr: avg by (host) (cpu_usage) > 50
        for: 5m
      - alert: LowMemory
        expr: mem_free_bytes < 1e9
        keep_firing_for: 2m
        labels:
          team: infra
      - alert: DiskAlmostFull
        expr: disk_used_ratio > 0.9
        for: 10m
        labels:
          severity: high
      - alert: LoadHigh
        expr: node_load1 > 4
        for: 30s
  - name: api
    interval: 1s
    rules:
      - alert: ErrorRateHigh
        expr: sum by (job) (rate(http_errors_total[5m])) / sum by (job) (rate(http_requests_total[5m])) > 0.05
        for: 2m
        labels:
          severity: critical
        annotations:
          summary: "error ratio {{ $value | humanizePercentage }}"
          runbook_url: https://runbooks.example/errors
      - alert: LatencyP99High
        expr: histogram_quantile(0.99, sum by (le) (rate(http_latency_seconds_bucket[5m]))) > 0.5
        for: 5m
      - alert: NoTraffic
        expr: absent(http_requests_total)
        for: 15m
      - alert: TooManyRestarts
        expr: increase(restarts_total[1h]) > 3
      - alert: AlwaysFiring
        expr: vector(1)
        labels:
          severity: info
        annotations:
          description: watchdog
      - alert: CertExpiring
        expr: (cert_expiry_seconds - time()) / 86400 < 14
        for: 1h
        labels:
          severity: medium
      - record: job:http_requests:rate5m
        expr: sum by (job) (rate(http_requests_total[5m]))
"""


def alerting_rules_only(doc: dict) -> dict:  # type: ignore[type-arg]
    return {"groups": [{**g, "rules": [r for r in g["rules"] if "alert" in r]} for g in doc["groups"]]}


def test_a_dozen_rules_import_evaluate_and_export_back(server_factory: Callable[..., RtpmServer]) -> None:
    server = server_factory(env=alerting_env())
    with httpx.Client(base_url=server.url, timeout=30, headers=server.headers) as c:
        ingest(c, 90.0)  # cpu_usage{host="web-1"} = 90: HighCPU fires at once, CPUAverageHigh goes pending
        r = c.post("/api/v1/alerts/rules/import", content=RULES, headers={"Content-Type": "application/yaml"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["created"], body["updated"], body["skipped_recording_rules"]) == (
            12,
            0,
            ["job:http_requests:rate5m"],
        )

        def states() -> dict[str, tuple[str, str]] | None:
            groups = c.get("/api/v1/rules").json()["data"]["groups"]
            rules = {r["name"]: (r["state"], r["health"]) for g in groups for r in g["rules"]}
            return rules if all(h == "ok" for _, h in rules.values()) and len(rules) == 12 else None

        got = wait_for("every rule evaluated", states)
        assert got["HighCPU"] == ("firing", "ok")
        assert got["AlwaysFiring"] == ("firing", "ok")
        assert got["CPUAverageHigh"] == ("pending", "ok")
        assert got["NoTraffic"] == ("pending", "ok")  # absent(): nothing was ever sent
        assert got["HostDown"] == ("inactive", "ok")
        firing = {a["labels"]["alertname"] for a in c.get("/api/v1/alerts").json()["data"]["alerts"]}
        assert {"HighCPU", "AlwaysFiring"} <= firing

        exported = c.get("/api/v1/alerts/rules/export")
        assert exported.status_code == 200 and exported.headers["content-type"].startswith("application/yaml")
        assert yaml.safe_load(exported.text) == alerting_rules_only(yaml.safe_load(RULES))

        # Importing the export again changes nothing but updates in place.
        again = c.post("/api/v1/alerts/rules/import", content=exported.text, headers={"Content-Type": "text/yaml"})
        assert (again.json()["created"], again.json()["updated"]) == (0, 12)
        assert c.get("/api/v1/alerts/rules/export").text == exported.text
