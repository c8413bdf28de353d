"""End to end: a real `rtpm serve` subprocess on each backend, spoken to over HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests._server import RtpmServer

pytestmark = pytest.mark.integration


@pytest.fixture
def server(server_factory: Callable[..., RtpmServer], backend_env: dict[str, str]) -> RtpmServer:
    return server_factory(env=backend_env)


def test_sample_comes_back_from_latest_query_and_stats(server: RtpmServer) -> None:
    now = time.time()
    with httpx.Client(base_url=server.url, timeout=30, headers=server.headers) as c:
        r = c.post(
            "/api/v1/metrics/ingest",
            json={
                "name": "cpu_usage",
                "value": 42.5,
                "labels": {"host": "web-1"},
                "type": "gauge",
                "unit": "percent",
                "help_text": "CPU busy",
            },
        )
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "success"
        r = c.post(
            "/api/v1/metrics/batch",
            json={
                "metrics": [
                    {"name": "cpu_usage", "value": 10.0, "labels": {"host": "web-2"}, "timestamp": now - 30},
                    {
                        "name": "cpu_usage",
                        "value": 20.0,
                        "labels": {"host": "web-2"},
                        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 20)),
                    },
                ]
            },
        )
        assert r.status_code == 201, r.text
        assert r.json() == {"status": "success", "message": "2 metrics ingested", "metrics_count": 2}

        latest = c.get("/api/v1/metrics/latest/cpu_usage").json()
        assert latest["value"] == 42.5
        assert {s["labels"]["host"]: s["value"] for s in latest["series"]} == {"web-1": 42.5, "web-2": 20.0}
        only = c.get("/api/v1/metrics/latest/cpu_usage", params={"host": "web-2"}).json()
        assert [s["value"] for s in only["series"]] == [20.0]

        stats = c.get("/api/v1/metrics/stats/cpu_usage", params={"start_time": now - 60, "end_time": now + 60}).json()
        assert (stats["count"], stats["sum"], stats["min"], stats["max"], stats["series_count"]) == (
            3,
            72.5,
            10.0,
            42.5,
            2,
        )
        assert stats["avg"] == pytest.approx(72.5 / 3)

        q = c.post(
            "/api/v1/metrics/query",
            json={"metric_name": "cpu_usage", "labels": {"host": "web-2"}, "start_time": now - 60, "end_time": now + 1},
        ).json()
        assert [p["value"] for p in q[0]["data_points"]] == [10.0, 20.0]  # an array, as the original's
        # One bucket from the first sample to past the server's clock at the untimed ingest (which may
        # lag `now` by seconds on a busy machine): no sample is after end_time.
        end = time.time() + 1
        q = c.post(
            "/api/v1/metrics/query",
            json={
                "metric_name": "cpu_usage",
                "start_time": now - 60,
                "end_time": end,
                "step": f"{int(end - (now - 60)) + 1}s",
                "aggregation": "max",
                "group_by": [],
            },
        ).json()
        assert [[p["value"] for p in s["data_points"]] for s in q] == [[42.5]]

        names = c.get("/api/v1/metrics/names").json()
        assert names["metrics"] == [
            {"name": "cpu_usage", "type": "gauge", "unit": "percent", "help": "CPU busy", "series_count": 2}
        ]
        assert c.get("/api/v1/metrics/latest/nothing_here").status_code == 404
        assert c.get("/health").json()["status"] == "healthy"  # the original RTPM API's value
        assert c.get("/health/live").status_code == 200
        assert c.get("/health/ready").json()["status"] == "ready"
        assert c.get("/docs").status_code == 200
        spec = c.get("/openapi.json").json()
        assert "/api/v1/metrics/batch" in spec["paths"]


def test_data_survives_restart(server: RtpmServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30, headers=server.headers) as c:
        assert c.post("/api/v1/metrics/ingest", json={"name": "up", "value": 1}).status_code == 201
    server.terminate()
    server.start()
    with httpx.Client(base_url=server.url, timeout=30, headers=server.headers) as c:
        assert c.get("/api/v1/metrics/latest/up").json()["value"] == 1.0
