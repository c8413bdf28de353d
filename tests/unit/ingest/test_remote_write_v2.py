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

# Every test runs over the native and the pure-Python paths.
pytestmark = pytest.mark.usefixtures("rw_path")

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


def _decode(v: V2, validator: Any, **kw: Any) -> Any:
    from rtpm.ingest.remote_write_v2 import decode_v2

    return decode_v2(v.req.SerializeToString(), tenant="t", validator=validator, **kw)


def test_labels_validated_in_one_request_are_the_same_in_the_next_whatever_the_symbol_refs() -> None:
    from rtpm.ingest.validate import Validator
    from rtpm.settings import LimitsSettings

    validator = Validator(LimitsSettings(max_label_value_length=8))
    t = now_ms()
    first, second = V2(), V2()
    first.series({"__name__": "up", "job": "a"}, [(t, 1.0)])
    first.series({"__name__": "up", "job": "way-too-long"}, [(t, 1.0)])
    second.sym("zzz")  # every ref shifted
    second.series({"__name__": "up", "job": "way-too-long"}, [(t, 2.0)])
    second.series({"__name__": "up", "job": "a"}, [(t, 2.0)])
    second.series({"__name__": "up", "job": "a"}, [(t + 1, 3.0)], type=1, help="Up.")
    batch1, refused1, _ = _decode(first, validator)
    batch2, refused2, _ = _decode(second, validator)
    up_a = make_labels("up", {"job": "a"})
    assert batch1.series == batch2.series == [up_a]
    assert batch2.refs == [0, 0] and batch2.values == [2.0, 3.0]
    # an invalid series is refused, and said why, in every request
    assert refused1.samples == refused2.samples == {"invalid_series": 1}
    assert [p.index for p in refused2.problems] == [0]
    # extra labels: validated again, with them
    batch3, _, _ = _decode(second, validator, extra_labels={"cluster": "c1"})
    assert batch3.series == [make_labels("up", {"job": "a", "cluster": "c1"})]


def test_metadata_repeated_on_every_series_is_the_last_one_sent_and_each_too_long_help_a_problem() -> None:
    from rtpm.ingest.validate import Validator
    from rtpm.settings import LimitsSettings

    validator = Validator(LimitsSettings(max_help_length=10))
    t = now_ms()
    v = V2()
    for i, (type_, help_text) in enumerate([(1, "A."), (1, "A."), (2, "B."), (1, "A."), (0, "C.")]):
        v.series({"__name__": "m", "i": str(i)}, [(t, 1.0)], type=type_, help=help_text)
    v.series({"__name__": "n", "i": "0"}, [(t, 1.0)], type=2, help="far too long a help text")
    v.series({"__name__": "n", "i": "1"}, [(t, 1.0)], type=2, help="far too long a help text")
    batch, refused, _ = _decode(v, validator)
    # the last one wins; an unknown type keeps the type sent before it
    assert [(m.name, m.type, m.help) for m in batch.metadata] == [("m", MetricType.COUNTER, "C.")]
    assert [(p.field, p.index) for p in refused.problems] == [("metadata.help", 5), ("metadata.help", 6)]
