"""Remote write 1.0 receiver: status codes of COMPAT.md 3.1, validation, nothing half-written."""

from __future__ import annotations

import math
import struct
from typing import Any

import cramjam
import pytest

from rtpm.errors import OverloadedError
from rtpm.ingest.proto import WriteRequest
from rtpm.ingest.remote_write import varint
from rtpm.model.samples import STALE_NAN, MetricType, WriteBatch, is_stale_nan
from tests._pusher import Pusher, now_ms

# Every test runs over the native and the pure-Python decoder paths.
pytestmark = pytest.mark.usefixtures("rw_path")

HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": "Prometheus/2.42.0",
}


def request(series: list[tuple[dict[str, str], list[tuple[int, float]]]], metadata: Any = ()) -> Any:
    w = WriteRequest()
    for labels, samples in series:
        ts = w.timeseries.add()
        for k, v in sorted(labels.items()):
            ts.labels.add(name=k, value=v)
        for t, v in samples:
            ts.samples.add(timestamp=t, value=v)
    for md in metadata:
        w.metadata.add(**md)
    return w


def snappy(w: Any) -> bytes:
    return bytes(cramjam.snappy.compress_raw(w.SerializeToString()))


def post(pusher: Pusher, body: bytes, **headers: str) -> Any:
    return pusher.client.post("/api/v1/write", content=body, headers={**HEADERS, **headers})


def test_samples_and_metadata_are_stored_and_answered_with_204(pusher: Pusher) -> None:
    t = now_ms()
    w = request(
        [
            ({"__name__": "http_requests_total", "job": "api", "code": "200"}, [(t - 2000, 1.0), (t - 1000, 5.0)]),
            ({"__name__": "up", "job": "api", "instance": "a:80"}, [(t, 1.0)]),
            ({"__name__": "up", "job": "api", "instance": "b:80"}, [(t, STALE_NAN)]),
        ],
        metadata=[{"type": 1, "metric_family_name": "http_requests_total", "help": "Requests.", "unit": ""}],
    )
    r = post(pusher, snappy(w))
    assert r.status_code == 204
    assert r.content == b""
    stored = pusher.stored()
    assert stored[(("__name__", "http_requests_total"), ("code", "200"), ("job", "api"))] == [
        (t - 2000, 1.0),
        (t - 1000, 5.0),
    ]
    assert stored[(("__name__", "up"), ("instance", "a:80"), ("job", "api"))] == [(t, 1.0)]
    [(ts, stale)] = stored[(("__name__", "up"), ("instance", "b:80"), ("job", "api"))]
    assert ts == t and math.isnan(stale) and is_stale_nan(stale)
    md = pusher.metadata()["http_requests_total"]
    assert (md.type, md.help) == (MetricType.COUNTER, "Requests.")


def test_metadata_only_request_updates_metadata(pusher: Pusher) -> None:
    w = request([], metadata=[{"type": 2, "metric_family_name": "temp", "help": "Temperature.", "unit": "celsius"}])
    assert post(pusher, snappy(w)).status_code == 204
    md = pusher.metadata()["temp"]
    assert (md.type, md.unit, md.help) == (MetricType.GAUGE, "celsius", "Temperature.")


def test_a_repeated_series_is_decoded_the_same_way_again(pusher: Pusher) -> None:
    t = now_ms()
    for i in range(3):
        w = request([({"__name__": "x", "a": "1"}, [(t - 3000 + i * 1000, float(i))])])
        assert post(pusher, snappy(w)).status_code == 204
    assert pusher.stored("x") == {(("__name__", "x"), ("a", "1")): [(t - 3000, 0.0), (t - 2000, 1.0), (t - 1000, 2.0)]}


GOOD = (("__name__", "good"), ("a", "1"))


@pytest.mark.parametrize(
    ("labels", "samples_age_ms", "reason"),
    [
        pytest.param({"job": "x"}, 0, "invalid_series", id="missing-name"),
        pytest.param({"__name__": "bad-name"}, 0, "invalid_series", id="bad-metric-name"),
        pytest.param({"__name__": "ok", "bad-label": "v"}, 0, "invalid_series", id="bad-label-name"),
        pytest.param({"__name__": "ok", "__reserved__": "v"}, 0, "invalid_series", id="reserved-label-name"),
        pytest.param({"__name__": "ok", "v": "x" * 65}, 0, "invalid_series", id="label-value-too-long"),
        pytest.param({"__name__": "ok"}, 2 * 3600 * 1000, "too_old", id="too-old"),
        pytest.param({"__name__": "ok"}, -600 * 1000, "too_new", id="too-new"),
    ],
)
def test_a_series_that_can_never_be_accepted_costs_only_itself(
    pusher: Pusher, labels: dict[str, str], samples_age_ms: int, reason: str
) -> None:
    # Prometheus treats any 4xx as final and drops the whole batch: the good series must be
    # stored and the answer must be 2xx, with the refused samples counted by reason.
    t = now_ms()
    w = request(
        [
            ({"__name__": "good", "a": "1"}, [(t - 1000, 1.0)]),
            (labels, [(t - samples_age_ms, 2.0), (t - samples_age_ms + 1, 3.0)]),
            ({"__name__": "good", "a": "1"}, [(t, 4.0)]),
        ]
    )
    for attempt in (1, 2):  # the second time the bad series is found in the decoder's caches
        r = post(pusher, snappy(w))
        assert r.status_code == 204, r.text
        assert pusher.stored() == {GOOD: [(t - 1000, 1.0), (t, 4.0)]}
        assert pusher.refused("remote_write", reason) == 2 * attempt


def test_duplicate_label_names_cost_only_their_series(pusher: Pusher) -> None:
    t = now_ms()
    w = request([({"__name__": "good", "a": "1"}, [(t, 1.0)])])
    ts = w.timeseries.add()
    ts.labels.add(name="__name__", value="x")
    ts.labels.add(name="a", value="1")
    ts.labels.add(name="a", value="2")
    ts.samples.add(timestamp=t, value=1)
    assert post(pusher, snappy(w)).status_code == 204
    assert pusher.stored() == {GOOD: [(t, 1.0)]}
    assert pusher.refused("remote_write", "invalid_series") == 1


def test_a_request_of_only_invalid_series_is_still_204(pusher: Pusher) -> None:
    # As Prometheus's receiver: a request that parses is acknowledged; what it held is counted.
    w = request([({"__name__": "bad-name"}, [(now_ms(), 1.0)])])
    assert post(pusher, snappy(w)).status_code == 204
    assert pusher.stored() == {}
    assert pusher.refused("remote_write", "invalid_series") == 1


def _histogram_series(name: str, t: int, *, with_sample: bool) -> bytes:
    """A TimeSeries with one native histogram (field 4: Histogram{count_int=1, timestamp=t}),
    optionally also one float sample (1.5 at t)."""
    label = b"\x0a\x08__name__\x12" + bytes([len(name)]) + name.encode()
    series = b"\x0a" + bytes([len(label)]) + label
    if with_sample:
        sample = b"\x09" + struct.pack("<d", 1.5) + b"\x10" + varint(t)
        series += b"\x12" + bytes([len(sample)]) + sample
    hist = b"\x08\x01" + b"\x78" + varint(t)  # count_int = 1; timestamp (field 15)
    series += b"\x22" + bytes([len(hist)]) + hist
    return b"\x0a" + varint(len(series)) + series


def test_native_histograms_are_stored_beside_the_floats(pusher: Pusher) -> None:
    t = now_ms()
    floats = request([({"__name__": "good", "a": "1"}, [(t, 1.0)])]).SerializeToString()
    body = (
        floats + _histogram_series("hist_only", t, with_sample=False) + _histogram_series("mixed", t, with_sample=True)
    )
    r = post(pusher, bytes(cramjam.snappy.compress_raw(body)))
    assert r.status_code == 204, r.text
    assert pusher.stored() == {GOOD: [(t, 1.0)], (("__name__", "mixed"),): [(t, 1.5)]}
    assert pusher.refused("remote_write", "native_histogram") == 0
    for name in ("hist_only", "mixed"):
        r = pusher.client.get("/api/v1/query", params={"query": f"histogram_count({name})", "time": t / 1000})
        assert r.status_code == 200, r.text
        assert [s["value"][1] for s in r.json()["data"]["result"]] == ["1"]


def test_type_and_unit_labels_are_stored_as_labels(pusher: Pusher) -> None:
    t = now_ms()
    labels = {"__name__": "rpc_seconds_total", "__type__": "counter", "__unit__": "seconds", "job": "a"}
    assert post(pusher, snappy(request([(labels, [(t, 3.0)])]))).status_code == 204
    assert pusher.stored() == {tuple(sorted(labels.items())): [(t, 3.0)]}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({"Content-Type": "application/json"}, 415, id="json-content-type"),
        pytest.param({"Content-Type": "text/plain"}, 415, id="text-content-type"),
        pytest.param(
            {"Content-Type": "application/x-protobuf;proto=io.prometheus.write.v3.Request"}, 415, id="unknown-message"
        ),
        pytest.param({"Content-Encoding": "gzip"}, 415, id="gzip-encoding"),
        pytest.param(
            {"Content-Type": "application/x-protobuf;proto=prometheus.WriteRequest"}, 204, id="v1-proto-param"
        ),
    ],
)
def test_content_type_and_encoding(pusher: Pusher, headers: dict[str, str], status: int) -> None:
    w = request([({"__name__": "x"}, [(now_ms(), 1.0)])])
    assert post(pusher, snappy(w), **headers).status_code == status


def test_empty_body_is_400(pusher: Pusher) -> None:
    r = post(pusher, b"")
    assert r.status_code == 400
    assert "empty" in r.json()["error"]["message"]


def test_an_empty_write_request_is_204(pusher: Pusher) -> None:
    assert post(pusher, bytes(cramjam.snappy.compress_raw(b""))).status_code == 204


def test_truncated_protobuf_is_400(pusher: Pusher) -> None:
    raw = request([({"__name__": "x", "job": "j"}, [(now_ms(), 1.0)])]).SerializeToString()
    r = post(pusher, bytes(cramjam.snappy.compress_raw(raw[:-5])))
    assert r.status_code == 400
    assert "WriteRequest" in r.json()["error"]["message"]
    assert pusher.stored() == {}


def test_framed_snappy_and_garbage_are_400(pusher: Pusher) -> None:
    raw = request([({"__name__": "x"}, [(now_ms(), 1.0)])]).SerializeToString()
    r = post(pusher, bytes(cramjam.snappy.compress(raw)))
    assert r.status_code == 400
    assert "framed" in r.json()["error"]["message"]
    assert post(pusher, raw).status_code == 400  # not compressed at all


def test_a_decompression_bomb_is_refused_with_413(pusher: Pusher) -> None:
    # 10 MB of zeros compress to a few hundred KB... of which only the header is needed to refuse.
    bomb = bytes(cramjam.snappy.compress_raw(b"\x00" * (10 * 1024 * 1024)))
    r = post(pusher, bomb[:4096])
    assert r.status_code == 413
    # A snappy header that merely claims a huge size is refused the same way.
    assert post(pusher, b"\xff\xff\xff\xff\x0f" + b"\x00" * 16).status_code == 413


def test_too_many_samples_in_one_request_is_413(pusher_factory: Any) -> None:
    pusher = pusher_factory(max_batch_items=10)
    t = now_ms()
    w = request([({"__name__": "x", "i": str(i)}, [(t, 1.0)]) for i in range(11)])
    assert post(pusher, snappy(w)).status_code == 413


def test_a_full_write_buffer_answers_503_with_retry_after(pusher: Pusher, monkeypatch: pytest.MonkeyPatch) -> None:
    async def full(batch: WriteBatch) -> int:
        raise OverloadedError("write buffer full", retry_after_seconds=2)

    monkeypatch.setattr(pusher.services.buffer, "submit", full)
    r = post(pusher, snappy(request([({"__name__": "x"}, [(now_ms(), 1.0)])])))
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "2"


def test_extra_label_query_argument_adds_a_label(pusher: Pusher) -> None:
    t = now_ms()
    w = request([({"__name__": "x", "a": "1"}, [(t, 1.0)])])
    r = pusher.client.post("/api/v1/write?extra_label=cluster=eu", content=snappy(w), headers=HEADERS)
    assert r.status_code == 204
    assert list(pusher.stored("x")) == [(("__name__", "x"), ("a", "1"), ("cluster", "eu"))]
