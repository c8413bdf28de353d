"""vmagent (Debian's victoria-metrics package, /usr/bin/vmagent) scrapes a local exporter and
remote-writes into a real `rtpm serve` with its default remote-write settings (only the URL and the
bearer token given): every scraped value arrives, and nothing is refused, by either side's count
(vmagent's own vmagent_remotewrite_* metrics, RTPM's rtpm_ingest_samples_rejected_total)."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests._prometheus import scrape_target, wait_until
from tests._server import RtpmServer, free_port
from tests.conftest import IN_CI

pytestmark = pytest.mark.integration

JOB = "vm_target"


def _exposition(n: int) -> bytes:
    """Scrape number n: a counter growing by 3 (and by 1) per scrape, a gauge, a histogram."""
    return (
        "# HELP vm_requests_total Requests served.\n"
        "# TYPE vm_requests_total counter\n"
        f'vm_requests_total{{method="GET",code="200"}} {n * 3}\n'
        f'vm_requests_total{{method="POST",code="500"}} {n}\n'
        "# TYPE vm_temperature_celsius gauge\n"
        f'vm_temperature_celsius{{room="a \\"quoted\\" room"}} {20 + n * 0.25}\n'
        "# TYPE vm_latency_seconds histogram\n"
        f'vm_latency_seconds_bucket{{le="0.1"}} {n}\n'
        f'vm_latency_seconds_bucket{{le="+Inf"}} {2 * n}\n'
        f"vm_latency_seconds_sum {n * 0.5}\n"
        f"vm_latency_seconds_count {2 * n}\n"
    ).encode()


@pytest.fixture(scope="module")
def exporter() -> Iterator[str]:
    scrapes = [0]
    lock = threading.Lock()

    def render() -> bytes:
        with lock:
            scrapes[0] += 1
            return _exposition(scrapes[0])

    with scrape_target(render) as address:
        yield address


@pytest.fixture(scope="module")
def vmagent_into_rtpm(tmp_path_factory: pytest.TempPathFactory, exporter: str) -> Iterator[tuple[RtpmServer, str]]:
    binary = shutil.which("vmagent")
    if binary is None:
        if IN_CI:
            pytest.fail("vmagent is required under CI=true (apt-get install victoria-metrics)")
        pytest.skip("vmagent is not installed (apt-get install victoria-metrics)")
    tmp = tmp_path_factory.mktemp("vmagent")
    rtpm = RtpmServer(env={"RTPM_DATA_DIR": str(tmp / "rtpm")}, log_path=tmp / "rtpm.log")
    rtpm.start()
    config = tmp / "scrape.yml"
    config.write_text(
        f"""
scrape_configs:
  - job_name: {JOB}
    scrape_interval: 1s
    static_configs:
      - targets: ["{exporter}"]
"""
    )
    port = free_port()
    with open(tmp / "vmagent.log", "wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"-promscrape.config={config}",
                f"-remoteWrite.url={rtpm.url}/api/v1/write",
                f"-remoteWrite.bearerToken={rtpm.api_key}",
                f"-remoteWrite.tmpDataPath={tmp / 'vmagent-data'}",
                f"-httpListenAddr=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield rtpm, f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        rtpm.stop()
        print((tmp / "vmagent.log").read_text(errors="replace")[-2000:])  # shown when a test failed


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [(s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]


def test_vmagent_scrapes_and_remote_writes_into_rtpm(vmagent_into_rtpm: tuple[RtpmServer, str]) -> None:
    rtpm, vmagent = vmagent_into_rtpm
    with httpx.Client(base_url=rtpm.url, headers=rtpm.headers, timeout=10) as ours:

        def series(query: str) -> list[dict[str, Any]]:
            r = ours.get("/api/v1/query", params={"query": query})
            r.raise_for_status()
            return list(r.json()["data"]["result"])

        def scraped(times: int) -> Callable[[], bool]:
            return lambda: any(float(s["value"][1]) >= times for s in series(f'count_over_time(up{{job="{JOB}"}}[5m])'))

        wait_until("three scrapes stored in RTPM", scraped(3))
        stored = {
            (s["metric"]["__name__"], s["metric"].get("method", ""), s["metric"].get("le", "")): [
                float(v) for _, v in s["values"]
            ]
            for s in series(f'{{job="{JOB}", __name__=~"vm_.*"}}[5m]')
        }
        up = series(f'up{{job="{JOB}"}}')
    assert up and up[0]["metric"]["instance"] and float(up[0]["value"][1]) == 1.0
    assert set(stored) == {
        ("vm_requests_total", "GET", ""),
        ("vm_requests_total", "POST", ""),
        ("vm_temperature_celsius", "", ""),
        ("vm_latency_seconds_bucket", "", "0.1"),
        ("vm_latency_seconds_bucket", "", "+Inf"),
        ("vm_latency_seconds_sum", "", ""),
        ("vm_latency_seconds_count", "", ""),
    }
    # Each stored value is the exporter's value of one scrape n (n = 1, 2, ...), in scrape order.
    scrape_no = [v / 3 for v in stored[("vm_requests_total", "GET", "")]]
    assert len(scrape_no) >= 3 and scrape_no == sorted(scrape_no) and all(n.is_integer() for n in scrape_no)
    for key, per_n in {
        ("vm_requests_total", "POST", ""): lambda n: n,
        ("vm_temperature_celsius", "", ""): lambda n: 20 + n * 0.25,
        ("vm_latency_seconds_bucket", "", "+Inf"): lambda n: 2 * n,
        ("vm_latency_seconds_sum", "", ""): lambda n: n * 0.5,
    }.items():
        got = stored[key]
        assert all(any(v == per_n(n) for n in range(1, 1000)) for v in got), (key, got)
        assert got == sorted(got)

    # Nothing refused, by vmagent's count and by RTPM's.
    text = httpx.get(vmagent + "/metrics", timeout=10).text
    requests = _samples(text, "vmagent_remotewrite_requests_total")
    assert sum(v for lb, v in requests if lb.get("status_code", "").startswith("2")) > 0, requests
    assert sum(v for lb, v in requests if not lb.get("status_code", "").startswith("2")) == 0, requests
    assert sum(v for _, v in _samples(text, "vmagent_remotewrite_blocks_sent_total")) > 0
    for name in (
        "vmagent_remotewrite_packets_dropped_total",
        "vmagent_remotewrite_retries_count_total",
        "vmagent_remotewrite_errors_total",
    ):
        found = _samples(text, name)
        assert found and sum(v for _, v in found) == 0, (name, found)
    own = httpx.get(rtpm.url + "/metrics", headers=rtpm.headers, timeout=10).text
    assert sum(v for _, v in _samples(own, "rtpm_ingest_samples_rejected_total")) == 0
    written = _samples(own, "rtpm_ingest_samples_total")
    assert sum(v for lb, v in written if lb.get("protocol") == "remote_write") > 0, written
