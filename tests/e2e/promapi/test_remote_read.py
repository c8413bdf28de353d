"""Remote read (`/api/v1/read`).

Against real peers: a real Prometheus (Debian's 2.42) with `remote_read:` pointed at a real
`rtpm serve` (with its API key) answers queries over data that only RTPM holds, exactly as RTPM's
own /api/v1/query and query_range answer them. The same Prometheus is the reference for the
STREAMED_XOR_CHUNKS format (its own client only asks for SAMPLES): samples remote-written into it
come back from its /api/v1/read as chunks that RTPM's decoder reads, and that RTPM's encoder
rebuilds byte for byte; RTPM's streamed answer for the same samples decodes to the same samples.

In process: per-tenant auth (metrics:read), the sample limit, bad requests.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cramjam
import httpx
import numpy as np
import pytest

from rtpm.api.routes import remote_read as remote_read_route
from rtpm.ingest.proto import ChunkedReadResponse, ReadRequest, ReadResponse
from rtpm.model.labels import Labels, make_labels
from rtpm.model.samples import STALE_NAN, WriteBatch
from rtpm.query import remote_read as rr
from rtpm.query.xor_chunk import decode_xor, encode_xor
from rtpm.settings import LimitsSettings, Settings
from tests._app import App
from tests._auth import bearer, create_key
from tests._prometheus import Prometheus
from tests._server import RtpmServer
from tests.e2e.promql.difftest_data import encode_write_request
from tests.e2e.promql.test_differential import _compare

NOW_S = int(time.time()) // 60 * 60
T0_MS = (NOW_S - 1800) * 1000  # data: the last 30 minutes, every 15 s, 123 ms off the second
EVAL_S = NOW_S - 61
RANGE = {"start": NOW_S - 1500, "end": NOW_S - 1, "step": "30"}

EXPRS = [
    "rr_requests_total",
    'rr_requests_total{job=~"a|b"}',
    'rr_requests_total{job!~"a.*",code="200"}',
    "rate(rr_requests_total[5m])",
    'sum by (job) (rate(rr_requests_total{job!="c"}[5m]))',
    "rr_temp_celsius",
    "max_over_time(rr_temp_celsius[10m])",
    'count({__name__=~"rr_.*"})',
    "rr_gone",  # ends in a staleness marker 10 minutes before NOW
]
RANGE_EXPRS = ['rate(rr_requests_total{code="500"}[2m])', "rr_temp_celsius", "rr_gone"]


def _rtpm_series() -> list[tuple[Labels, list[int], list[float]]]:
    ts = [T0_MS + i * 15_000 + 123 for i in range(120)]
    out: list[tuple[Labels, list[int], list[float]]] = []
    for j, job in enumerate(("a", "b", "c", "abc")):
        for code in ("200", "500"):
            vals = [float(i * (j + 1) * (3 if code == "200" else 1)) for i in range(len(ts))]
            out.append((make_labels("rr_requests_total", {"job": job, "code": code}), ts, vals))
    for room in ("kitchen", "hall"):
        out.append((make_labels("rr_temp_celsius", {"room": room}), ts, [20 + math.sin(i / 7) for i in range(len(ts))]))
    gone = [t for t in ts if t < (NOW_S - 600) * 1000]
    out.append((make_labels("rr_gone", {}), gone, [1.0] * (len(gone) - 1) + [STALE_NAN]))
    return out


def _reference_series() -> tuple[Labels, list[int], list[float]]:
    """Timestamps whose deltas of deltas fall in every bucket of the XOR encoding, and values that
    repeat, grow, jump, turn NaN and end stale."""
    rng = np.random.default_rng(3)
    steps = [15_000, 15_000, 15_001, 14_990, 30_000, 1, 15_000, 70_000]  # dod buckets of 14 and 17 bits
    ts = [T0_MS - 4_200_000 + 7]
    for i in range(199):
        ts.append(ts[-1] + {60: 200_000, 150: 900_000}.get(i, steps[i % len(steps)]))  # 20 and 64 bits
    values = []
    for i in range(200):
        pick = i % 7
        values.append([1.0, float(i), 1e6 * rng.random(), math.nan, -2.5, float(i // 10), 0.1 * i][pick])
    values[-1] = STALE_NAN
    return make_labels("rrx_reference", {"kind": "xor"}), ts, values


def _write(url: str, series: list[tuple[Labels, list[int], list[float]]], headers: dict[str, str]) -> None:
    body = bytes(cramjam.snappy.compress_raw(encode_write_request(series)))
    r = httpx.post(
        url + "/api/v1/write",
        content=body,
        headers={**headers, "Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"},
        timeout=30,
    )
    assert r.status_code in (200, 204), r.text


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RtpmServer, str]]:
    """A real rtpm serve holding the rr_* data, and a real Prometheus remote-reading it. Both
    start at once: Prometheus reads its credentials file per request, written once RTPM is up."""
    tmp = tmp_path_factory.mktemp("remote_read")
    rtpm = RtpmServer(env={"RTPM_DATA_DIR": str(tmp / "rtpm")}, log_path=tmp / "rtpm.log")
    credentials = tmp / "rtpm.key"
    config = f"""
remote_read:
  - url: {rtpm.url}/api/v1/read
    read_recent: true
    authorization:
      credentials_file: {credentials}
"""
    prometheus = Prometheus(tmp, config, flags=["--web.enable-remote-write-receiver"])
    prometheus.start(wait_ready=False)
    try:
        rtpm.start()
        credentials.write_text(rtpm.api_key)
        _write(rtpm.url, _rtpm_series(), rtpm.headers)
        prometheus.wait_ready()
        yield rtpm, prometheus.url
    finally:
        prometheus.stop()
        rtpm.stop()


def _both(peers: tuple[RtpmServer, str], path: str, params: dict[str, Any]) -> tuple[Any, Any]:
    rtpm, prom = peers
    ours = httpx.get(rtpm.url + path, params=params, headers=rtpm.headers, timeout=30)
    theirs = httpx.get(prom + path, params=params, timeout=30)
    assert ours.status_code == 200, ours.text
    assert theirs.status_code == 200, theirs.text
    assert not theirs.json().get("warnings"), theirs.json()["warnings"]  # a failed remote read is a warning
    return ours.json()["data"], theirs.json()["data"]


@pytest.mark.integration
def test_prometheus_remote_reading_rtpm_answers_as_rtpm(peers: tuple[RtpmServer, str]) -> None:
    diffs: list[str] = []
    for expr in EXPRS:
        ours, theirs = _both(peers, "/api/v1/query", {"query": expr, "time": EVAL_S})
        diffs += [f"{expr}: {d}" for d in _compare(ours, theirs)]
        if expr == 'rr_requests_total{job=~"a|b"}':
            assert len(theirs["result"]) == 4  # the data really came through remote read
    for expr in RANGE_EXPRS:
        ours, theirs = _both(peers, "/api/v1/query_range", {"query": expr, **RANGE})
        diffs += [f"{expr} range: {d}" for d in _compare(ours, theirs)]
    assert not diffs, "\n".join(diffs[:20])
    ours, theirs = _both(peers, "/api/v1/query", {"query": "rr_gone", "time": NOW_S - 300})
    assert ours["result"] == theirs["result"] == []  # stale, in both


def _streamed(url: str, matchers: list[tuple[int, str, str]], headers: dict[str, str]) -> list[Any]:
    req = ReadRequest()
    q = req.queries.add(start_timestamp_ms=0, end_timestamp_ms=(NOW_S + 60) * 1000)
    for kind, name, value in matchers:
        q.matchers.add(type=kind, name=name, value=value)
    req.accepted_response_types.append(1)
    r = httpx.post(
        url + "/api/v1/read",
        content=bytes(cramjam.snappy.compress_raw(req.SerializeToString())),
        headers={**headers, "Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == rr.STREAMED_CONTENT_TYPE
    return [ChunkedReadResponse.FromString(m) for m in rr.read_frames(r.content)]


def _bits(values: list[float]) -> list[int]:
    return np.array(values, dtype=np.float64).view(np.uint64).tolist()


@pytest.mark.integration
def test_xor_chunks_are_byte_for_byte_prometheus_chunks(peers: tuple[RtpmServer, str]) -> None:
    rtpm, prom = peers
    labels, ts, values = _reference_series()
    _write(prom, [(labels, ts, values)], {})
    _write(rtpm.url, [(labels, ts, values)], rtpm.headers)
    selector = [(0, "__name__", "rrx_reference"), (2, "kind", "x.r")]

    theirs = _streamed(prom, selector, {})
    chunks = [c for m in theirs for s in m.chunked_series for c in s.chunks]
    assert [(lb.name, lb.value) for lb in theirs[0].chunked_series[0].labels] == list(labels)
    assert len(chunks) >= 2 and all(c.type == 1 for c in chunks)
    got_ts: list[int] = []
    got_bits: list[int] = []
    for c in chunks:
        t, v = decode_xor(c.data)  # RTPM's decoder reads Prometheus's chunks
        assert (c.min_time_ms, c.max_time_ms) == (t[0], t[-1])
        assert encode_xor(t, v) == c.data  # and RTPM's encoder writes the same bytes
        got_ts += t
        got_bits += v
    assert got_ts == ts
    assert got_bits == _bits(values)

    ours = _streamed(rtpm.url, selector, rtpm.headers)
    assert all(m.query_index == 0 and len(m.chunked_series) == 1 for m in ours)
    our_ts: list[int] = []
    our_bits: list[int] = []
    for m in ours:
        assert [(lb.name, lb.value) for lb in m.chunked_series[0].labels] == list(labels)
        for c in m.chunked_series[0].chunks:
            t, v = decode_xor(c.data)
            our_ts += t
            our_bits += v
    assert (our_ts, our_bits) == (got_ts, got_bits)


# ---- in process: auth, limits, errors ------------------------------------------------------------


def _post(app: App, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return app.client.post(
        "/api/v1/read",
        content=bytes(cramjam.snappy.compress_raw(body)),
        headers={"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf", **(headers or {})},
    )


BASE_MS = (NOW_S - 120) * 1000  # recent: older samples may meet the retention job


def _samples_request(name: str, accepted: list[int] | None = None) -> bytes:
    req = ReadRequest()
    q = req.queries.add(start_timestamp_ms=BASE_MS, end_timestamp_ms=BASE_MS + 10_000)
    q.matchers.add(type=0, name="__name__", value=name)
    req.accepted_response_types.extend(accepted or [])
    return bytes(req.SerializeToString())


def _batch(tenant: str, name: str, n: int) -> WriteBatch:
    b = WriteBatch(tenant)
    for i in range(n):
        b.add(make_labels(name, {"i": str(i % 2)}), BASE_MS + i, float(i))
    return b


def test_samples_answer_and_tenant_isolation(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    app.write(_batch(app.tenant, "rr_local", 6))
    app.write(_batch("other", "rr_local", 3))
    r = _post(app, _samples_request("rr_local"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-protobuf" and r.headers["content-encoding"] == "snappy"
    (result,) = ReadResponse.FromString(bytes(cramjam.snappy.decompress_raw(r.content))).results
    got = {
        tuple((lb.name, lb.value) for lb in s.labels): [(x.timestamp, x.value) for x in s.samples]
        for s in result.timeseries
    }
    assert got == {
        (("__name__", "rr_local"), ("i", "0")): [(BASE_MS, 0.0), (BASE_MS + 2, 2.0), (BASE_MS + 4, 4.0)],
        (("__name__", "rr_local"), ("i", "1")): [(BASE_MS + 1, 1.0), (BASE_MS + 3, 3.0), (BASE_MS + 5, 5.0)],
    }
    other = create_key(app.client, "metrics:read", tenant="other")
    monkeypatch.setattr(remote_read_route, "_ENCODE_IN_PLACE_SAMPLES", 0)  # a big answer: encoded in a thread
    r = _post(app, _samples_request("rr_local"), bearer(other))
    (result,) = ReadResponse.FromString(bytes(cramjam.snappy.decompress_raw(r.content))).results
    assert sum(len(s.samples) for s in result.timeseries) == 3  # the other tenant's own samples only


def test_remote_read_needs_metrics_read(app: App) -> None:
    assert _post(app, _samples_request("x"), {"Authorization": ""}).status_code == 401
    writer = create_key(app.client, "metrics:write")
    r = _post(app, _samples_request("x"), bearer(writer))
    assert r.status_code == 403 and "metrics:read" in r.text


def test_sample_limit_is_a_clear_error(settings_factory: Callable[..., Settings], tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from rtpm.api.app import create_app
    from tests._auth import grant

    settings = settings_factory(limits=LimitsSettings(max_query_samples=5))
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        grant(c)
        small = App(c)
        small.write(_batch(small.tenant, "rr_big", 6))
        for accepted in ([0], [1]):
            r = _post(small, _samples_request("rr_big", accepted))
            assert r.status_code == 400, r.text
            assert "exceeded sample limit (5, limits.max_query_samples) at queries[0]" in r.text
        small.write(_batch(small.tenant, "rr_small", 4))
        assert _post(small, _samples_request("rr_small")).status_code == 200


def test_bad_requests_are_4xx(app: App) -> None:
    r = _post(app, b"\x0a\x05garbage")
    assert r.status_code == 400 and "ReadRequest" in r.text
    r = app.client.post("/api/v1/read", content=b"\x00\x01", headers={"Content-Encoding": "snappy"})
    assert r.status_code == 400 and "snappy" in r.text
    r = app.client.post("/api/v1/read", content=_samples_request("x"), headers={"Content-Encoding": "gzip"})
    assert r.status_code == 415
    req = ReadRequest()
    req.queries.add().matchers.add(type=2, name="job", value="[")
    r = _post(app, bytes(req.SerializeToString()))
    assert r.status_code == 400 and "queries[0].matchers[0]" in r.text
