"""Native histograms and exemplars through remote write 1.0, on both backends: integer and float
histograms, negative and zero buckets, custom buckets (schema -53), reset hints and stale markers
are stored and come back in Prometheus's `histogram` / `histograms` JSON; exemplars come back from
/api/v1/query_exemplars, bounded per series; a malformed histogram costs only itself."""

from __future__ import annotations

import asyncio
import struct
import time
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import cramjam
import pytest
from fastapi.testclient import TestClient

from rtpm.api.app import create_app
from rtpm.ingest.proto import WriteRequest
from rtpm.ingest.proto.histograms import encode_exemplar, encode_histogram
from rtpm.ingest.remote_write import varint
from rtpm.model.histograms import RESET_NO, Exemplar, Histogram
from rtpm.model.samples import STALE_NAN
from rtpm.settings import Settings
from rtpm.storage.histograms import EXEMPLARS_PER_SERIES
from tests._auth import grant

# Every test runs over the native and the pure-Python decoder paths.
pytestmark = pytest.mark.usefixtures("rw_path")

HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}
NOW = (int(time.time() * 1000) // 1000) * 1000 - 60_000
OLD = NOW - 1_800_000  # the retention test's samples, half an hour before the others

INT_H = Histogram(
    schema=1,
    zero_threshold=0.001,
    zero_count=2,
    count=12,
    sum=-3.5,
    positive_spans=((0, 2), (1, 1)),
    positive=(3.0, 1.0, 2.0),
    negative_spans=((1, 1),),
    negative=(4.0,),
    reset_hint=RESET_NO,
    is_int=True,
)
FLOAT_H = Histogram(schema=0, count=2.5, sum=4.0, positive_spans=((1, 2),), positive=(0.5, 2.0))
CUSTOM_H = Histogram(
    schema=-53,
    count=6,
    sum=9.0,
    positive_spans=((0, 3),),
    positive=(1.0, 2.0, 3.0),
    custom_values=(0.5, 2.0),
    is_int=True,
)


def _series(name: str, extra: bytes) -> bytes:
    label = b"\x0a\x08__name__\x12" + varint(len(name)) + name.encode()
    series = b"\x0a" + varint(len(label)) + label + extra
    return b"\x0a" + varint(len(series)) + series


def _field(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + varint(len(body)) + body


def _hists(*items: tuple[Histogram, int]) -> bytes:
    return b"".join(_field(0x22, encode_histogram(h, t)) for h, t in items)


def _post(client: TestClient, body: bytes) -> Any:
    return client.post("/api/v1/write", content=bytes(cramjam.snappy.compress_raw(body)), headers=HEADERS)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One app per backend for the module (the tests use distinct series and times)."""
    overrides: dict[str, Any] = {"data_dir": tmp_path_factory.mktemp("rwh"), "environment": "test"}
    schema = f"t_{uuid.uuid4().hex[:12]}"
    if request.param == "postgres":
        overrides.update(database_url=request.getfixturevalue("pg_dsn"), database_schema=schema)
    settings = Settings(_env_file=None, **overrides)  # type: ignore[call-arg]
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        grant(c)
        yield c
    if request.param == "postgres":

        async def drop() -> None:
            conn = await asyncpg.connect(overrides["database_url"])
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()

        asyncio.run(drop())


def _query(client: TestClient, q: str, t_ms: int) -> Any:
    r = client.get("/api/v1/query", params={"query": q, "time": t_ms / 1000})
    assert r.status_code == 200, r.text
    return r.json()


def test_histograms_are_stored_and_answered_in_prometheus_shape(client: TestClient) -> None:
    stale = Histogram(sum=STALE_NAN)
    body = (
        _series("int_h", _hists((INT_H, NOW - 20_000), (INT_H, NOW - 10_000)))
        + _series("float_h", _hists((FLOAT_H, NOW - 10_000)))
        + _series("custom_h", _hists((CUSTOM_H, NOW - 10_000)))
        + _series("gone_h", _hists((FLOAT_H, NOW - 20_000), (stale, NOW - 10_000)))
        + _series("bad_h", _field(0x22, b"\x20\x7f"))  # schema 127 (zigzag -64): not a valid schema
        + WriteRequest(
            timeseries=[{"labels": [{"name": "__name__", "value": "f"}], "samples": [{"value": 1, "timestamp": NOW}]}]
        ).SerializeToString()
    )
    r = _post(client, body)
    assert r.status_code == 204, r.text
    at = NOW
    got = {s["metric"]["__name__"]: s["histogram"] for s in _query(client, '{__name__=~".+_h"}', at)["data"]["result"]}
    assert set(got) == {"int_h", "float_h", "custom_h"}  # gone_h ended with its stale marker, bad_h refused
    assert got["int_h"] == [
        at / 1000,
        {
            "count": "12",
            "sum": "-3.5",
            "buckets": [
                [1, "-1.4142135623730951", "-1", "4"],
                [3, "-0.001", "0.001", "2"],
                [0, "0.7071067811865476", "1", "3"],
                [0, "1", "1.4142135623730951", "1"],
                [0, "2", "2.8284271247461903", "2"],
            ],
        },
    ]
    assert got["float_h"][1] == {"count": "2.5", "sum": "4", "buckets": [[0, "1", "2", "0.5"], [0, "2", "4", "2"]]}
    assert got["custom_h"][1]["buckets"] == [[3, "-Inf", "0.5", "1"], [0, "0.5", "2", "2"], [0, "2", "+Inf", "3"]]
    assert _query(client, "histogram_count(int_h)", at)["data"]["result"] == [
        {"metric": {}, "value": [at / 1000, "12"]}
    ]
    assert _query(client, "histogram_sum(custom_h)", at)["data"]["result"][0]["value"][1] == "9"
    # a range query answers "histograms" per series
    r = client.get(
        "/api/v1/query_range", params={"query": "int_h", "start": (NOW - 20_000) / 1000, "end": at / 1000, "step": 10}
    )
    res = r.json()["data"]["result"]
    assert len(res) == 1 and "values" not in res[0] and len(res[0]["histograms"]) == 3
    # a raw range vector too
    raw = _query(client, "int_h[1m]", at)["data"]["result"]
    assert [p[0] for p in raw[0]["histograms"]] == [(NOW - 20_000) / 1000, (NOW - 10_000) / 1000]
    # series holding only histograms are listed by the metadata endpoints too
    span = {"start": (NOW - 60_000) / 1000, "end": at / 1000}
    r = client.get("/api/v1/series", params={"match[]": '{__name__=~"int_h|f"}', **span})
    assert r.json()["data"] == [{"__name__": "f"}, {"__name__": "int_h"}]
    r = client.get("/api/v1/label/__name__/values", params=span)
    assert {"int_h", "float_h", "custom_h", "f"} <= set(r.json()["data"])
    # the float series beside them is unaffected
    assert _query(client, "f", at)["data"]["result"][0]["value"][1] == "1"


def test_exemplars_are_stored_bounded_and_answered(client: TestClient) -> None:
    n = EXEMPLARS_PER_SERIES + 5
    exemplars = b"".join(
        _field(0x1A, encode_exemplar(Exemplar((("trace_id", f"t{i}"),), float(i), NOW - 100_000 + i * 100)))
        for i in range(n)
    )
    sample = _field(0x12, b"\x09" + struct.pack("<d", 1.0) + b"\x10" + varint(NOW))
    r = _post(client, _series("ex_total", sample + exemplars) + _series("other", sample))
    assert r.status_code == 204, r.text
    r = client.get(
        "/api/v1/query_exemplars", params={"query": "rate(ex_total[5m]) or other", "start": 0, "end": NOW / 1000 + 1}
    )
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert [d["seriesLabels"] for d in data] == [{"__name__": "ex_total"}]
    ex = data[0]["exemplars"]
    assert len(ex) == EXEMPLARS_PER_SERIES  # the newest are kept
    assert ex[-1] == {
        "labels": {"trace_id": f"t{n - 1}"},
        "value": str(n - 1),
        "timestamp": (NOW - 100_000 + (n - 1) * 100) / 1000,
    }
    assert ex[0]["labels"] == {"trace_id": "t5"}
    # a range that holds none, and a query that is not PromQL
    r = client.get("/api/v1/query_exemplars", params={"query": "ex_total", "start": 0, "end": 1})
    assert r.json()["data"] == []
    assert client.get("/api/v1/query_exemplars", params={"query": "sum("}).status_code == 400


def test_otlp_exponential_histograms_become_native_histograms(client: TestClient) -> None:
    from rtpm.ingest.proto import ExportMetricsServiceRequest

    req = ExportMetricsServiceRequest()
    m = req.resource_metrics.add().scope_metrics.add().metrics.add(name="rpc.duration", unit="s")
    m.exponential_histogram.aggregation_temporality = 2
    dp = m.exponential_histogram.data_points.add(
        time_unix_nano=NOW * 1_000_000, count=7, sum=12.5, scale=9, zero_count=1
    )
    # scale 9 is reduced to 8: OTLP buckets 0,1 (offset 0) merge into Prometheus bucket 1 at schema 8
    dp.positive.offset = 0
    dp.positive.bucket_counts.extend([2, 3, 1])
    ex = dp.exemplars.add(
        time_unix_nano=NOW * 1_000_000, as_double=1.01, trace_id=bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
    )
    ex.span_id = bytes.fromhex("b7ad6b7169203331")
    r = client.post("/v1/metrics", content=req.SerializeToString(), headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 200, r.text
    got = _query(client, "rpc_duration_seconds", NOW)["data"]["result"]
    assert len(got) == 1
    h = got[0]["histogram"][1]
    assert h["count"] == "7" and h["sum"] == "12.5"
    assert [b[3] for b in h["buckets"]] == ["1", "5", "1"]  # zero bucket, then the merged and the next
    assert h["buckets"][0][1:3] == ["-1e-128", "1e-128"]
    data = client.get("/api/v1/query_exemplars", params={"query": "rpc_duration_seconds"}).json()["data"]
    assert data[0]["exemplars"][0]["labels"] == {
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": "b7ad6b7169203331",
    }


def test_retention_removes_histograms_and_exemplars(client: TestClient) -> None:
    sample = _field(0x12, b"\x09" + struct.pack("<d", 1.0) + b"\x10" + varint(OLD - 20_000))
    exemplar = _field(0x1A, encode_exemplar(Exemplar((("trace_id", "x"),), 1.0, OLD - 20_000)))
    body = (
        _series("old_h", _hists((INT_H, OLD - 20_000)))
        + _series("new_h", _hists((INT_H, OLD)))
        + _series("ex", sample + exemplar)
    )
    assert _post(client, body).status_code == 204
    services = client.app.state.services  # type: ignore[attr-defined]
    assert client.portal is not None
    client.portal.call(services.storage.maintenance.delete_raw_before, OLD - 10_000)
    got = _query(client, '{__name__=~"old_h|new_h"}[1m]', OLD)["data"]["result"]
    assert [s["metric"]["__name__"] for s in got] == ["new_h"]
    assert client.get("/api/v1/query_exemplars", params={"query": "ex"}).json()["data"] == []
    # the other tests' recent data is untouched
    assert _query(client, "f", NOW)["data"]["result"]


def test_remote_write_2_histograms_and_exemplars(client: TestClient) -> None:
    from rtpm.ingest.proto import WriteRequestV2

    req = WriteRequestV2()
    req.symbols.extend(["", "__name__", "v2_h", "trace_id", "abc"])
    ts = req.timeseries.add()
    ts.labels_refs.extend([1, 2])
    ts.histograms.add().MergeFromString(encode_histogram(CUSTOM_H, NOW - 1000))
    ts.histograms.add().MergeFromString(b"\x20\x7f")  # schema -64: refused alone
    ts.exemplars.add(labels_refs=[3, 4], value=0.7, timestamp=NOW - 1000)
    r = client.post(
        "/api/v1/write",
        content=bytes(cramjam.snappy.compress_raw(req.SerializeToString())),
        headers={**HEADERS, "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"},
    )
    assert r.status_code == 400, r.text  # the spec's partial write: the rest is stored, the counts say so
    assert r.headers["X-Prometheus-Remote-Write-Histograms-Written"] == "1"
    assert r.headers["X-Prometheus-Remote-Write-Exemplars-Written"] == "1"
    got = _query(client, "histogram_count(v2_h)", NOW)["data"]["result"]
    assert got[0]["value"][1] == "6"
    data = client.get("/api/v1/query_exemplars", params={"query": "v2_h"}).json()["data"]
    assert data[0]["exemplars"] == [{"labels": {"trace_id": "abc"}, "value": "0.7", "timestamp": (NOW - 1000) / 1000}]
