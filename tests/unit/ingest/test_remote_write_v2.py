"""Remote write 2.0 receiver (COMPAT.md 3.2): negotiated by Content-Type, symbols table, per-series
metadata, the Written headers, and the spec's partial write (stored what it could, 400 with the
counts for the rest)."""

from __future__ import annotations

from typing import Any

import cramjam
import pytest

from rtpm.ingest.proto import WriteRequestV2
from rtpm.model.labels import make_labels
from rtpm.model.samples import MetricType
from tests._pusher import Pusher, now_ms

HEADERS = {
    "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "2.0.0",
}


class V2:
    """A Request under construction, interning strings as a sender does."""

    def __init__(self) -> None:
        self.req = WriteRequestV2()
        self.req.symbols.append("")
        self.refs: dict[str, int] = {"": 0}

    def sym(self, s: str) -> int:
        if s not in self.refs:
            self.refs[s] = len(self.req.symbols)
            self.req.symbols.append(s)
        return self.refs[s]

    def series(self, labels: dict[str, str], samples: list[tuple[int, float]], **md: Any) -> Any:
        ts = self.req.timeseries.add()
        for k, v in sorted(labels.items()):
            ts.labels_refs.extend([self.sym(k), self.sym(v)])
        for t, v in samples:
            ts.samples.add(timestamp=t, value=v)
        if md:
            ts.metadata.type = md.get("type", 0)
            ts.metadata.help_ref = self.sym(md.get("help", ""))
            ts.metadata.unit_ref = self.sym(md.get("unit", ""))
        return ts

    def body(self) -> bytes:
        return bytes(cramjam.snappy.compress_raw(self.req.SerializeToString()))


def post(pusher: Pusher, body: bytes) -> Any:
    return pusher.client.post("/api/v1/write", content=body, headers=HEADERS)


def written(r: Any) -> tuple[int, int, int]:
    h = r.headers
    return (
        int(h["X-Prometheus-Remote-Write-Samples-Written"]),
        int(h["X-Prometheus-Remote-Write-Histograms-Written"]),
        int(h["X-Prometheus-Remote-Write-Exemplars-Written"]),
    )


def test_samples_and_metadata_are_stored_with_the_written_counts(pusher: Pusher) -> None:
    t = now_ms()
    w = V2()
    w.series({"__name__": "req_total", "job": "a"}, [(t - 2000, 1.0), (t - 1000, 2.0)], type=1, help="Requests.")
    w.series({"__name__": "req_total", "job": "b"}, [(t, 5.0)])
    w.series({"__name__": "temp_celsius", "job": "a"}, [(t, 21.5)], type=2, unit="celsius")
    r = post(pusher, w.body())
    assert r.status_code == 204, r.text
    assert written(r) == (4, 0, 0)
    assert r.headers["X-Prometheus-Remote-Write-Version"] == "2.0.0"
    assert pusher.stored() == {
        make_labels("req_total", {"job": "a"}): [(t - 2000, 1.0), (t - 1000, 2.0)],
        make_labels("req_total", {"job": "b"}): [(t, 5.0)],
        make_labels("temp_celsius", {"job": "a"}): [(t, 21.5)],
    }
    md = pusher.metadata()
    assert md["req_total"].type is MetricType.COUNTER and md["req_total"].help == "Requests."
    assert md["temp_celsius"].type is MetricType.GAUGE and md["temp_celsius"].unit == "celsius"


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"labels_refs": [1]}, id="odd-refs"),
        pytest.param({"labels_refs": [1, 999]}, id="ref-past-symbols"),
        pytest.param({"labels": {"job": "no-name"}}, id="no-metric-name"),
        pytest.param({"labels": {"__name__": "ok", "bad-label": "x"}}, id="invalid-label-name"),
    ],
)
def test_a_partial_write_stores_the_rest_and_answers_400_with_the_counts(pusher: Pusher, bad: dict[str, Any]) -> None:
    t = now_ms()
    w = V2()
    w.series({"__name__": "good"}, [(t, 1.0)])
    if "labels" in bad:
        w.series(bad["labels"], [(t, 2.0), (t + 1, 3.0)])
    else:
        w.sym("__name__")
        ts = w.req.timeseries.add()
        ts.labels_refs.extend(bad["labels_refs"])
        ts.samples.add(timestamp=t, value=2.0)
        ts.samples.add(timestamp=t + 1, value=3.0)
    w.series({"__name__": "good"}, [(t + 5, 4.0)])
    r = post(pusher, w.body())
    assert r.status_code == 400, r.text
    assert written(r) == (2, 0, 0)
    assert "partial write: 2 samples not written" in r.text and "timeseries 1" in r.text
    assert pusher.stored() == {make_labels("good"): [(t, 1.0), (t + 5, 4.0)]}
    assert pusher.refused("remote_write", "invalid_series") == 2


def test_samples_outside_the_window_are_a_partial_write(pusher: Pusher) -> None:
    t = now_ms()
    w = V2()
    w.series({"__name__": "m"}, [(t - 10 * 3600 * 1000, 1.0), (t, 2.0)])
    r = post(pusher, w.body())
    assert r.status_code == 400 and written(r) == (1, 0, 0)
    assert pusher.stored() == {make_labels("m"): [(t, 2.0)]}
    assert pusher.refused("remote_write", "too_old") == 1


@pytest.mark.parametrize(
    ("body", "where"),
    [
        pytest.param(b"\xff\xff\xff", "snappy", id="not-snappy"),
        pytest.param(bytes(cramjam.snappy.compress_raw(b"\x22\x05hello")), "Request", id="not-a-request"),
    ],
)
def test_a_body_that_is_not_a_request_is_400(pusher: Pusher, body: bytes, where: str) -> None:
    r = post(pusher, body)
    assert r.status_code == 400
    assert pusher.stored() == {}


def test_the_symbols_table_must_start_with_the_empty_string(pusher: Pusher) -> None:
    req = WriteRequestV2()
    req.symbols.extend(["__name__", "m"])
    req.timeseries.add(labels_refs=[0, 1]).samples.add(timestamp=now_ms(), value=1.0)
    r = post(pusher, bytes(cramjam.snappy.compress_raw(req.SerializeToString())))
    assert r.status_code == 400 and "symbols[0]" in r.text
    assert pusher.stored() == {}
