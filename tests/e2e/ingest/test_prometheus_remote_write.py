"""A real Prometheus scrapes a target and remote-writes to a real `rtpm serve`: afterwards RTPM holds
the same series and values that Prometheus's own /api/v1/query returns for them."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._prometheus import Prometheus, prometheus_binary, scrape_target
from tests._server import RtpmServer

pytestmark = pytest.mark.integration

JOB = "rw_target"


class _Exposition:
    """The target's metrics: a counter that grows per scrape, a gauge, a histogram, an escaped label."""

    def __init__(self) -> None:
        self.scrapes = 0
        self.lock = threading.Lock()

    def render(self) -> bytes:
        with self.lock:
            self.scrapes += 1
            n = self.scrapes
        return (
            "# HELP app_requests_total Requests served.\n"
            "# TYPE app_requests_total counter\n"
            f'app_requests_total{{method="GET",code="200"}} {n * 3}\n'
            f'app_requests_total{{method="POST",code="500"}} {n}\n'
            "# HELP app_temperature_celsius Room temperature.\n"
            "# TYPE app_temperature_celsius gauge\n"
            f'app_temperature_celsius{{room="a \\"quoted\\" \\\\ room"}} {20 + n * 0.37:.2f}\n'
            "# TYPE app_latency_seconds histogram\n"
            f'app_latency_seconds_bucket{{le="0.1"}} {n}\n'
            f'app_latency_seconds_bucket{{le="1"}} {2 * n}\n'
            f'app_latency_seconds_bucket{{le="+Inf"}} {2 * n + 1}\n'
            f"app_latency_seconds_sum {n * 1.25}\n"
            f"app_latency_seconds_count {2 * n + 1}\n"
        ).encode()


@pytest.fixture
def target() -> Iterator[str]:
    with scrape_target(_Exposition().render) as address:
        yield address


def _config(target: str, rtpm_url: str, api_key: str) -> str:
    return f"""
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
scrape_configs:
  - job_name: {JOB}
    static_configs:
      - targets: ["{target}"]
remote_write:
  - url: {rtpm_url}/api/v1/write
    basic_auth:
      username: prometheus
      password: {api_key}
    remote_timeout: 10s
    queue_config:
      batch_send_deadline: 500ms
      min_backoff: 50ms
      max_backoff: 500ms
    metadata_config:
      send: true
      send_interval: 1s
"""


def _matrix(client: httpx.Client, query: str, at: float) -> dict[frozenset[tuple[str, str]], list[tuple[int, float]]]:
    r = client.get("/api/v1/query", params={"query": query, "time": f"{at:.3f}"})
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    assert body["data"]["resultType"] == "matrix"
    return {
        frozenset(s["metric"].items()): [(round(float(t) * 1000), float(v)) for t, v in s["values"]]
        for s in body["data"]["result"]
    }


def _same(a: dict[Any, list[tuple[int, float]]], b: dict[Any, list[tuple[int, float]]]) -> bool:
    if a.keys() != b.keys():
        return False
    for k, left in a.items():
        right = b[k]
        if len(left) != len(right):
            return False
        for (t1, v1), (t2, v2) in zip(left, right, strict=True):
            if t1 != t2 or not (v1 == v2 or (math.isnan(v1) and math.isnan(v2))):
                return False
    return True


def test_rtpm_holds_what_prometheus_scraped_and_remote_wrote(
    tmp_path: Path, target: str, server_factory: Callable[..., RtpmServer]
) -> None:
    prometheus_binary()  # skip (or fail under CI) before starting rtpm
    rtpm = server_factory()
    with (
        Prometheus(tmp_path, _config(target, rtpm.url, rtpm.api_key)) as prometheus,
        httpx.Client(base_url=prometheus.url, timeout=10) as prom,
        httpx.Client(base_url=rtpm.url, timeout=10, headers=rtpm.headers) as ours,
    ):

        def scraped_enough() -> bool:
            r = prom.get("/api/v1/query", params={"query": f'count_over_time(up{{job="{JOB}"}}[1m])'})
            result = r.json()["data"]["result"]
            return bool(result) and float(result[0]["value"][1]) >= 5

        prometheus.wait("five scrapes", scraped_enough, 30)
        at = time.time() - 1.5
        query = f'{{job="{JOB}"}}[5m]'
        expected = _matrix(prom, query, at)
        names = {dict(k)["__name__"] for k in expected}
        assert {"up", "app_requests_total", "app_temperature_celsius", "app_latency_seconds_bucket"} <= names
        assert all(len(v) >= 3 for v in expected.values())

        got: dict[Any, list[tuple[int, float]]] = {}

        def rtpm_caught_up() -> bool:
            nonlocal got
            got = _matrix(ours, query, at)
            return _same(expected, got)

        try:
            prometheus.wait("RTPM to hold every sample Prometheus has", rtpm_caught_up, 20)
        except AssertionError:
            assert got == expected  # shows the difference
            raise

        # Metadata sent by Prometheus reached RTPM too.
        def metadata_arrived() -> bool:
            r = ours.get("/api/v1/metadata", params={"metric": "app_requests_total"})
            data = r.json().get("data", {})
            return bool(data.get("app_requests_total")) and data["app_requests_total"][0]["type"] == "counter"

        prometheus.wait("metadata", metadata_arrived, 15)
