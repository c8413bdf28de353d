"""Through the HTTP API, on both backends: every read (PromQL, the seed's JSON query, stats,
latest, series) answers the same before and after compaction and rollups, late and duplicate
samples around window edges included; and the rollup and status endpoints report what the jobs
did. Jobs are run directly with an injected clock (RTPM_JOBS=off keeps the runner out)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rtpm.api.app import create_app
from rtpm.jobs.maintenance import compact, rollup
from rtpm.settings import MaintenanceSettings, QuerySettings, Settings
from tests._auth import grant

HOUR = 3600.0
OPTS = MaintenanceSettings()


@pytest.fixture
def client(backend_settings: Settings) -> Iterator[TestClient]:
    settings = backend_settings.model_copy(update={"jobs": "off", "query": QuerySettings(cache_enabled=False)})
    with TestClient(create_app(settings)) as c:
        grant(c)
        yield c


def run_jobs(client: TestClient, now: float) -> None:
    store: Any = client.app.state.services.storage.maintenance  # type: ignore[attr-defined]
    assert client.portal is not None
    client.portal.call(partial(rollup, store, now_ms=int(now * 1000), opts=OPTS))
    client.portal.call(partial(compact, store, now_ms=int(now * 1000), opts=OPTS))


def answers(client: TestClient, base: float) -> dict[str, Any]:
    start, end = base, base + 2 * HOUR
    rng = {"start": start, "end": end, "step": 60}
    out = {
        "rate": client.post("/api/v1/query_range", data={"query": "sum by (dc) (rate(req_total[5m]))", **rng}).json(),
        "raw": client.get("/api/v1/query_range", params={"query": "req_total", **rng}).json(),
        "over_time": client.get(
            "/api/v1/query", params={"query": "max_over_time(req_total[30m])", "time": base + HOUR}
        ).json(),
        "instant": client.get("/api/v1/query", params={"query": "req_total", "time": base + 7170}).json(),
        "seed": client.post(
            "/api/v1/metrics/query",
            json={
                "metric_name": "req_total",
                "start_time": start,
                "end_time": end,
                "step": "5m",
                "aggregation": "avg",
                "group_by": ["dc"],
            },
        ).json(),
        "seed_raw": client.post(
            "/api/v1/metrics/query",
            json={"metric_name": "req_total", "labels": {"host": "h1"}, "start_time": start, "end_time": end},
        ).json(),
        "stats": client.get("/api/v1/metrics/stats/req_total", params={"start_time": start, "end_time": end}).json(),
        "latest": client.get("/api/v1/metrics/latest/req_total").json(),
        "series": client.get("/api/v1/series", params={"match[]": "req_total", "start": start, "end": end}).json(),
    }
    for name, body in out.items():
        assert "error" not in body or body.get("status") == "success", (name, body)
    return out


def push(client: TestClient, items: list[dict[str, Any]]) -> None:
    r = client.post("/api/v1/metrics/batch", json={"metrics": items})
    assert r.status_code == 201, r.text


def test_reads_are_unchanged_by_compaction_and_rollups(client: TestClient) -> None:
    now = time.time()
    base = (now - now % HOUR) - 4 * HOUR  # an hour boundary: also a chunk window edge
    items = []
    for h in range(4):
        value = 0.0
        for i in range(240):
            value = 0.0 if i == 100 and h == 2 else value + i % 7  # one counter reset
            items.append(
                {
                    "name": "req_total",
                    "value": value,
                    "timestamp": base + i * 30 + h,
                    "labels": {"host": f"h{h}", "dc": f"dc{h % 2}"},
                }
            )
    push(client, items)
    before = answers(client, base)
    assert before["rate"]["data"]["result"] and before["seed"]
    later = now + 4 * HOUR  # every window and bucket of the data has closed
    run_jobs(client, later)
    tsdb = client.get("/api/v1/status/tsdb").json()["data"]["rtpm"]
    assert tsdb["raw"]["samples"] == 0 and tsdb["compressed"]["samples"] == 960
    assert set(tsdb["rollups"]) >= {"1m", "5m", "1h"}
    assert answers(client, base) == before

    # late samples on both sides of a window edge, one overwriting a compacted sample
    push(
        client,
        [
            {
                "name": "req_total",
                "value": 5000.0,
                "timestamp": base + 2 * HOUR - 0.001,
                "labels": {"host": "h1", "dc": "dc1"},
            },
            {
                "name": "req_total",
                "value": 6000.0,
                "timestamp": base + 2 * HOUR + 1,
                "labels": {"host": "h1", "dc": "dc1"},
            },
        ],
    )
    with_late = answers(client, base)
    assert with_late != before
    run_jobs(client, later)
    assert answers(client, base) == with_late

    agg = client.get(
        "/api/v1/metrics/aggregated",
        params={
            "metric_name": "req_total",
            "labels": "host=h1",
            "start_time": base,
            "end_time": base + 2 * HOUR,
            "aggregation": "count",
            "interval": "1h",
        },
    ).json()
    assert [p["value"] for p in agg["series"][0]["data_points"]] == [120.0, 121.0]
    bad = client.get(
        "/api/v1/metrics/aggregated",
        params={"metric_name": "req_total", "start_time": base, "end_time": base + 60, "interval": "90s"},
    )
    assert bad.status_code == 400 and "interval" in bad.json()["error"]["message"]
