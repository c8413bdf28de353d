"""A real Prometheus (Debian's, 2.42 with `--enable-feature=native-histograms,exemplar-storage`)
scrapes a target serving the protobuf exposition format (a native histogram, a classic histogram
and a counter, with exemplars) and remote-writes with `send_native_histograms: true` and
`send_exemplars: true` into a real `rtpm serve`. The same histogram queries answer the same in
both, value by value; the exemplars come back from /api/v1/query_exemplars; Prometheus fails
no sample, histogram or exemplar.

Prometheus 2.42 predates Prometheus 3's left-open windows, its exponential interpolation in
histogram_quantile and its limit of the extrapolation to a counter's zero point for histograms,
so the data are chosen where both agree: queries are evaluated between scrapes, the counts start
high, and the 0.9 quantile falls on a bucket boundary (9 of 10 observations in (0.5, 1], 1 in
(1, 2]).
"""

from __future__ import annotations

import math
import struct
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

JOB = "nh_target"
PROTO_TYPE = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"


# ---- the io.prometheus.client MetricFamily encoding (prompb/io/prometheus/client/metrics.proto) ----


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def _len(field: int, body: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(body)) + body


def _double(field: int, v: float) -> bytes:
    return _varint(field << 3 | 1) + struct.pack("<d", v)


def _uint(field: int, v: int) -> bytes:
    return _varint(field << 3) + _varint(v)


def _sint(field: int, v: int) -> bytes:
    return _varint(field << 3) + _varint(_zigzag(v))


def _label(name: str, value: str) -> bytes:
    return _len(1, name.encode()) + _len(2, value.encode())


def _exemplar(trace_id: str, value: float, ts: float) -> bytes:
    stamp = _uint(1, int(ts)) + _uint(2, int((ts - int(ts)) * 1e9))
    return _len(1, _label("trace_id", trace_id)) + _double(2, value) + _len(3, stamp)


def _family(name: str, help_text: str, mtype: int, metrics: list[bytes]) -> bytes:
    body = _len(1, name.encode()) + _len(2, help_text.encode()) + _uint(3, mtype)
    body += b"".join(_len(4, m) for m in metrics)
    return _varint(len(body)) + body


class _Target:
    """Per scrape: 10 observations in the native histogram (9 in (0.5, 1], 1 in (1, 2], schema 0;
    5 in its zero bucket from the start), 10 in the classic one, 3 requests."""

    def __init__(self) -> None:
        self.scrapes = 0
        self.lock = threading.Lock()

    def render(self) -> bytes:
        with self.lock:
            self.scrapes += 1
            n = self.scrapes + 1000  # counts start high (see the module docstring)
        now = time.time()
        a, b, z = 9 * n, n, 5
        native = (
            _uint(1, a + b + z)
            + _double(2, 0.8 * a + 1.5 * b)
            + _sint(5, 0)
            + _double(6, 0.001)
            + _uint(7, z)
            + _len(12, _sint(1, 0) + _uint(2, 2))  # buckets 0: (0.5, 1] and 1: (1, 2]
            + _len(13, _varint(_zigzag(a)) + _varint(_zigzag(b - a)))  # deltas, packed
        )
        classic_buckets = [(0.1, 2 * n), (0.5, 6 * n), (1.0, 9 * n)]
        classic = _uint(1, 10 * n) + _double(2, 4.2 * n)
        for i, (le, cum) in enumerate(classic_buckets):
            bucket = _uint(1, cum) + _double(2, le)
            if i == 1:
                bucket += _len(3, _exemplar(f"trace{n}", 0.3, now))
            classic += _len(3, bucket)
        counter = _double(1, 3.0 * n) + _len(2, _exemplar(f"req{n}", 1.0, now))
        return (
            _family("app_native_seconds", "A native histogram.", 4, [_len(1, _label("path", "/a")) + _len(7, native)])
            + _family("app_classic_seconds", "A classic histogram.", 4, [_len(7, classic)])
            + _family("app_requests_total", "Requests.", 0, [_len(3, counter)])
        )


@pytest.fixture
def target() -> Iterator[str]:
    with scrape_target(_Target().render, PROTO_TYPE) as address:
        yield address


def _config(target: str, rtpm: RtpmServer) -> str:
    return f"""
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
scrape_configs:
  - job_name: {JOB}
    static_configs:
      - targets: ["{target}"]
remote_write:
  - url: {rtpm.url}/api/v1/write
    basic_auth:
      username: prometheus
      password: {rtpm.api_key}
    send_native_histograms: true
    send_exemplars: true
    queue_config:
      batch_send_deadline: 500ms
      min_backoff: 50ms
      max_backoff: 500ms
"""


def _get(client: httpx.Client, path: str, **params: Any) -> Any:
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]


def _close(a: Any, b: Any) -> bool:
    """Equal JSON results, sample values compared as floats with a 1e-9 relative tolerance."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, str) and isinstance(b, str) and a != b:
        try:
            x, y = float(a), float(b)
        except ValueError:
            return False
        return math.isclose(x, y, rel_tol=1e-9) or (math.isnan(x) and math.isnan(y))
    return bool(a == b)


def _by_metric(result: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(result, key=lambda s: sorted(s["metric"].items()))


def _failed(prom: httpx.Client) -> dict[str, float]:
    """Prometheus's own remote-storage failure counters (from its /metrics)."""
    out: dict[str, float] = {}
    for line in prom.get("/metrics").text.splitlines():
        for name in (
            "prometheus_remote_storage_samples_failed_total",
            "prometheus_remote_storage_histograms_failed_total",
            "prometheus_remote_storage_exemplars_failed_total",
            "prometheus_remote_storage_samples_dropped_total",
        ):
            if line.startswith(name):
                out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


QUERIES = [
    "histogram_quantile(0.9, rate(app_native_seconds[5m]))",
    "histogram_count(rate(app_native_seconds[5m]))",
    "histogram_sum(rate(app_native_seconds[5m]))",
    "histogram_count(app_native_seconds)",
    "histogram_sum(app_native_seconds)",
    "rate(app_native_seconds[5m])",
    "app_native_seconds",
    "sum(app_native_seconds)",
    "sum by (le) (rate(app_classic_seconds_bucket[5m]))",
    "histogram_quantile(0.9, sum by (le) (rate(app_classic_seconds_bucket[5m])))",
    "rate(app_requests_total[5m])",
]


def test_native_histograms_and_exemplars_end_to_end(
    tmp_path: Path, target: str, server_factory: Callable[..., RtpmServer]
) -> None:
    prometheus_binary()  # skip (or fail under CI) before starting rtpm
    rtpm = server_factory()
    with (
        Prometheus(
            tmp_path, _config(target, rtpm), flags=["--enable-feature=native-histograms,exemplar-storage"]
        ) as prometheus,
        httpx.Client(base_url=prometheus.url, timeout=10) as prom,
        httpx.Client(base_url=rtpm.url, timeout=10, headers=rtpm.headers) as ours,
    ):

        def scraped(n: int) -> Callable[[], bool]:
            def check() -> bool:
                r = prom.get("/api/v1/query", params={"query": f'count_over_time(up{{job="{JOB}"}}[1m])'})
                result = r.json()["data"]["result"]
                return bool(result) and float(result[0]["value"][1]) >= n

            return check

        prometheus.wait("six scrapes", scraped(6), 30)
        # the native histogram arrived as one (not as classic series)
        raw = _get(prom, "/api/v1/query", query="app_native_seconds")["result"]
        assert raw and "histogram" in raw[0], raw
        # evaluate between scrapes: the newest scrape's timestamp + 0.5 s (and 5m before it)
        stamps = _get(prom, "/api/v1/query", query=f'timestamp(up{{job="{JOB}"}})')["result"]
        at = float(stamps[0]["value"][1]) - 2 + 0.5
        start, end = at - 3, at

        def same(query: str) -> tuple[bool, Any, Any]:
            want = _get(prom, "/api/v1/query_range", query=query, start=start, end=end, step=1)["result"]
            got = _get(ours, "/api/v1/query_range", query=query, start=start, end=end, step=1)["result"]
            return _close(_by_metric(want), _by_metric(got)), want, got

        def all_same() -> bool:
            return all(same(q)[0] for q in QUERIES)

        try:
            prometheus.wait("RTPM to answer every query as Prometheus does", all_same, 20)
        except AssertionError:
            for q in QUERIES:
                ok, want, got = same(q)
                assert ok, f"{q}\nprometheus: {want}\nrtpm:       {got}"
            raise
        for q in QUERIES:  # each answered something (not two empty results)
            assert same(q)[1], q

        # exemplars: RTPM has every one Prometheus has for the range
        def exemplars(client: httpx.Client) -> dict[str, set[tuple[str, str, float]]]:
            data = _get(
                client,
                "/api/v1/query_exemplars",
                query="app_classic_seconds_bucket or app_requests_total",
                start=start - 60,
                end=end,
            )
            out: dict[str, set[tuple[str, str, float]]] = {}
            for s in data:
                key = s["seriesLabels"]["__name__"] + s["seriesLabels"].get("le", "")
                out[key] = {(e["labels"]["trace_id"], e["value"], e["timestamp"]) for e in s["exemplars"]}
            return out

        want_ex = exemplars(prom)
        assert want_ex and all(want_ex.values()), want_ex
        got_ex: dict[str, set[tuple[str, str, float]]] = {}

        def exemplars_arrived() -> bool:
            nonlocal got_ex
            got_ex = exemplars(ours)
            return all(v <= got_ex.get(k, set()) for k, v in want_ex.items())

        try:
            prometheus.wait("exemplars in RTPM", exemplars_arrived, 15)
        except AssertionError:
            assert got_ex == want_ex
            raise
        failed = _failed(prom)
        assert "prometheus_remote_storage_samples_failed_total" in failed, failed
        assert set(failed.values()) == {0.0}, failed
