"""/metrics: the documented instruments move as requests, ingests and queries happen, with one
process and with several workers (multi-process mode), and promtool finds nothing to lint."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests._ops import OPEN_ENV, promtool_problems, scrape, value
from tests._server import RtpmServer
from tests.conftest import IN_CI

pytestmark = pytest.mark.integration

DOCUMENTED = [
    "rtpm_build_info",
    "rtpm_http_requests_total",
    "rtpm_http_request_duration_seconds_count",
    "rtpm_ingest_samples_total",
    "rtpm_ingest_samples_rejected_total",
    "rtpm_ingest_requests_rejected_total",
    "rtpm_write_buffer_pending_samples",
    "rtpm_write_buffer_flush_duration_seconds_count",
    "rtpm_storage_samples_written_total",
    "rtpm_query_duration_seconds_count",
]


def _lint(text: str) -> None:
    problems = promtool_problems(text)
    if problems is None:
        if IN_CI:
            pytest.fail("promtool is required under CI=true (Debian package prometheus)")
        return
    assert problems == "", f"promtool check metrics: {problems}"


def _exercise(url: str, *, requests: int) -> None:
    """Each call on a fresh connection, so that several workers share the work."""
    now = time.time()
    for i in range(requests):
        r = httpx.post(
            url + "/api/v1/metrics/ingest",
            json={"name": "ops_json", "value": i, "labels": {"i": str(i)}, "timestamp": now - 60 + i * 0.01},
        )
        assert r.status_code == 201, r.text
    r = httpx.post(
        url + "/api/v1/metrics/batch",
        json={"metrics": [{"name": "ops_json", "value": 1}, {"name": "bad name", "value": 2}]},
    )
    assert r.status_code == 422
    r = httpx.post(url + "/api/v1/import/prometheus", content=b'ops_text 1\nops_text_two{a="b"} 2\n')
    assert r.status_code == 204, r.text
    r = httpx.post(url + "/write", content=b"ops_influx,host=a value=1\n")
    assert r.status_code == 204, r.text
    for _ in range(3):
        assert httpx.get(url + "/api/v1/query", params={"query": "sum(ops_json)"}).status_code == 200
    r = httpx.get(url + "/api/v1/query_range", params={"query": "ops_json", "start": now - 120, "end": now, "step": 15})
    assert r.status_code == 200
    assert httpx.get(url + "/api/v1/query", params={"query": "sum("}).status_code == 400
    assert httpx.get(url + "/no/such/route").status_code == 404


def _check(url: str, requests: int) -> None:
    text, s = scrape(url)
    for name in DOCUMENTED:
        assert any(n == name for n, _ in s), f"{name} missing from /metrics"
    assert value(s, "rtpm_build_info") >= 1
    assert value(s, "rtpm_ingest_samples_total", protocol="json") == requests
    assert value(s, "rtpm_ingest_samples_total", protocol="prom_text") == 2
    assert value(s, "rtpm_ingest_samples_total", protocol="influx") == 1
    assert value(s, "rtpm_ingest_samples_rejected_total", protocol="json", reason="invalid") == 1
    assert value(s, "rtpm_ingest_requests_rejected_total", protocol="json", reason="invalid") == 1
    assert value(s, "rtpm_storage_samples_written_total") >= requests + 3
    assert value(s, "rtpm_write_buffer_flush_duration_seconds_count") >= 1
    assert value(s, "rtpm_write_buffer_pending_samples") == 0
    assert value(s, "rtpm_query_duration_seconds_count", kind="instant") == 4
    assert value(s, "rtpm_query_duration_seconds_count", kind="range") == 1
    assert value(s, "rtpm_query_failures_total", kind="instant", reason="bad_data") == 1
    route = "/api/v1/metrics/ingest"
    assert value(s, "rtpm_http_requests_total", method="POST", route=route, status="201") == requests
    assert value(s, "rtpm_http_request_duration_seconds_count", route=route, status="201") == requests
    assert value(s, "rtpm_http_requests_total", route="/api/v1/metrics/batch", status="422") == 1
    assert value(s, "rtpm_http_requests_total", route="unmatched", status="404") == 1
    # Route templates only, never raw paths.
    assert not any(dict(lb).get("route") == "/no/such/route" for _, lb in s)
    _lint(text)


def test_metrics_move_in_one_process(server_factory: Callable[..., RtpmServer]) -> None:
    server = server_factory(env=OPEN_ENV)
    _exercise(server.url, requests=5)
    _check(server.url, 5)
    text, s = scrape(server.url)
    assert value(s, "process_cpu_seconds_total") > 0
    # Scrapes count themselves: the second scrape saw the first.
    assert value(s, "rtpm_http_requests_total", route="/metrics") >= 1


def test_metrics_aggregate_several_workers(server_factory: Callable[..., RtpmServer], tmp_path: Path) -> None:
    metrics_dir = tmp_path / "prom-multiproc"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"stale")  # from a previous run: wiped at start
    server = server_factory(env=OPEN_ENV | {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}, args=["--workers", "2"])
    # Both workers are up once both wrote their build info.
    deadline = time.monotonic() + 30
    pids: set[str] = set()
    while time.monotonic() < deadline:
        pids = {p.stem.rsplit("_", 1)[-1] for p in metrics_dir.glob("gauge_max_*.db")}
        if len(pids) >= 2:
            break
        time.sleep(0.1)
    assert len(pids) >= 2, f"expected two worker processes writing metrics, got {sorted(pids)}"
    assert not (metrics_dir / "counter_999999.db").exists()
    requests = 30
    _exercise(server.url, requests=requests)
    # Whichever worker answers the scrape, the totals are those of every worker.
    for _ in range(4):
        _check(server.url, requests)
    counter_pids = {p.stem.rsplit("_", 1)[-1] for p in metrics_dir.glob("counter_*.db")}
    assert len(counter_pids) >= 1
    assert server.terminate(timeout=60) in (0, -15)
