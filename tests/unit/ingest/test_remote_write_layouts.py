"""The remote write decoder reads a TimeSeries in the usual layout (its Label fields, then one
Sample) in place once its labels are known; every other layout is parsed in full. Both must give
exactly what a complete parse of the message gives."""

from __future__ import annotations

import struct
import time
from typing import Any

import pytest

from rtpm.errors import BadDataError
from rtpm.ingest.proto import WriteRequest
from rtpm.ingest.remote_write import RemoteWriteDecoder
from rtpm.ingest.validate import Validator
from rtpm.model.labels import make_labels
from rtpm.model.samples import STALE_NAN, WriteBatch
from rtpm.settings import LimitsSettings

# Every test runs over the native and the pure-Python decoder paths.
pytestmark = pytest.mark.usefixtures("rw_path")

LIMITS = LimitsSettings(max_past_seconds=60 * 365 * 86400, max_future_seconds=600)
NOW = int(time.time() * 1000)


def expected(data: bytes) -> list[tuple[Any, int, bytes]]:
    """(labels, ts, value bits) of every sample, by a complete parse."""
    out = []
    for ts in WriteRequest.FromString(data).timeseries:
        labels = {lb.name: lb.value for lb in ts.labels}
        name = labels.pop("__name__")
        for s in ts.samples:
            out.append((make_labels(name, labels), s.timestamp, struct.pack("<d", s.value)))
    return out


def got(batch: WriteBatch) -> list[tuple[Any, int, bytes]]:
    return [
        (batch.series[r], t, struct.pack("<d", v))
        for r, t, v in zip(batch.refs, batch.ts_ms, batch.values, strict=True)
    ]


def body(series: list[tuple[dict[str, str], list[tuple[int, float]]]]) -> bytes:
    w = WriteRequest()
    for labels, samples in series:
        ts = w.timeseries.add()
        for k, v in labels.items():
            ts.labels.add(name=k, value=v)
        for t, v in samples:
            ts.samples.add(timestamp=t, value=v)
    return bytes(w.SerializeToString())


WEIRD_DOUBLE = struct.unpack("<d", b"\x10\x12\x09\x10\x12\x09\x10\x40")[0]
LAYOUTS = {
    "one-sample": [({"__name__": "a", "x": "1"}, [(NOW, 2.5)])],
    "value-zero-omitted": [({"__name__": "a", "x": "1"}, [(NOW, 0.0)])],
    "negative-zero": [({"__name__": "a", "x": "1"}, [(NOW, -0.0)])],
    "stale-marker": [({"__name__": "a"}, [(NOW, STALE_NAN)])],
    "tag-bytes-in-value": [({"__name__": "a"}, [(NOW, WEIRD_DOUBLE)])],
    "tag-bytes-in-labels": [({"__name__": "a", "x": "\x10\x12\x09"}, [(NOW, 1.0)])],
    "timestamp-with-0x10-byte": [({"__name__": "a"}, [(0x10 << 35 | 0x10, 1.0)])],
    "small-timestamp": [({"__name__": "a"}, [(16, 1.0), (1, 2.0)])],
    "many-samples": [({"__name__": "a"}, [(NOW - 2000, 1.0), (NOW - 1000, 2.0), (NOW, 3.0)])],
    "labels-not-sorted": [({"x": "1", "__name__": "a"}, [(NOW, 1.0)])],
    "same-series-twice": [({"__name__": "a"}, [(NOW - 1000, 1.0)]), ({"__name__": "a"}, [(NOW, 2.0)])],
    "mixed": [
        ({"__name__": "a", "x": "1"}, [(NOW, 1.0)]),
        ({"__name__": "b"}, [(NOW, 0.0), (NOW + 1, 1.0)]),
        ({"__name__": "a", "x": "1"}, [(NOW + 5, 7.0)]),
    ],
}


@pytest.mark.parametrize("series", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_every_layout_decodes_as_a_complete_parse_first_and_second_time(series: Any) -> None:
    data = body(series)
    decoder = RemoteWriteDecoder(Validator(LIMITS))
    first = decoder.decode(data, tenant="t")
    again = decoder.decode(data, tenant="t")  # labels known now: the usual layout is read in place
    assert got(first) == expected(data)
    assert got(again) == expected(data)
    assert first.series == again.series


def _field(number: int, payload: bytes) -> bytes:
    return bytes([number << 3 | 2, len(payload)]) + payload


def _label(name: str, value: str) -> bytes:
    return _field(1, _field(1, name.encode()) + _field(2, value.encode()))


def test_hand_written_layouts_are_parsed_in_full() -> None:
    sample = b"\x09" + struct.pack("<d", 4.0) + b"\x10" + bytes([0x80 | (NOW & 0x7F)]) + _varint(NOW >> 7)
    labels = _label("__name__", "a") + _label("x", "1")
    name_label = _field(1, b"__name__") + _field(2, b"a")
    exemplar = _field(3, b"\x11" + struct.pack("<d", 1.0))
    cases = [
        labels + _field(2, sample),
        _field(2, sample) + labels,  # samples first
        labels + _field(2, sample) + exemplar,  # an exemplar after the sample
        _label("__name__", "a") + _field(2, sample) + _label("x", "1"),  # a label after the sample
        # the label's length as a non-minimal varint: the same series, another encoding
        b"\x0a" + bytes([0x80 | len(name_label), 0]) + name_label + _label("x", "1") + _field(2, sample),
    ]
    decoder = RemoteWriteDecoder(Validator(LIMITS))
    for ts in cases:
        data = _field(1, ts) if len(ts) < 128 else b"\x0a" + _varint(len(ts)) + ts
        for _ in range(2):
            assert got(decoder.decode(data, tenant="t")) == expected(data)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def test_a_truncated_series_is_the_whole_message_s_error_even_when_its_labels_are_known() -> None:
    decoder = RemoteWriteDecoder(Validator(LIMITS))
    good = body([({"__name__": "a", "x": "1"}, [(NOW, 1.0)])])
    decoder.decode(good, tenant="t")
    inner = good[2:]
    broken = b"\x0a" + bytes([len(inner) - 3]) + inner[:-3]  # the sample cut short inside the series
    with pytest.raises(BadDataError, match="not a valid remote write WriteRequest protobuf"):
        decoder.decode(broken, tenant="t")


def test_equal_series_from_every_decoder_are_one_object() -> None:
    from rtpm.ingest.influx import InfluxDecoder
    from rtpm.ingest.json import decode_items
    from rtpm.ingest.otlp import OtlpDecoder
    from rtpm.ingest.proto import ExportMetricsServiceRequest

    v = Validator(LIMITS)
    rw = RemoteWriteDecoder(v).decode(body([({"__name__": "m_v", "x": "1"}, [(NOW, 1.0)])]), tenant="t")
    js = decode_items([{"name": "m_v", "labels": {"x": "1"}, "value": 1.0}], tenant="t", validator=v, now_ms=NOW)
    ix = InfluxDecoder(v).decode(b"m,x=1 v=1\n", tenant="t", now_ms=NOW, precision="ns", db=None)
    req = ExportMetricsServiceRequest()
    dp = req.resource_metrics.add().scope_metrics.add().metrics.add(name="m_v").gauge.data_points.add(as_double=1.0)
    dp.attributes.add(key="x").value.string_value = "1"
    ot = OtlpDecoder(v).decode(req.SerializeToString(), json=False, tenant="t", now_ms=NOW).batch
    assert rw.series[0] is js.series[0] is ix.series[0] is ot.series[0]
