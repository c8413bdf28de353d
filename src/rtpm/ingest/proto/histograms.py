"""Remote write 1.0's `Histogram`, `BucketSpan` and `Exemplar` messages (prompb/types.proto field
numbers), built at import in a private descriptor pool, and their conversion to RTPM's model.

The TimeSeries decoder keeps a series' histograms and exemplars as raw bytes; they are parsed here.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from rtpm.model.histograms import CUSTOM_BUCKETS_SCHEMA, Exemplar, Histogram

_F = descriptor_pb2.FieldDescriptorProto


def _file() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(name="rtpm_prompb_histograms.proto", package="rtpmprom", syntax="proto3")

    def msg(name: str, fields: list[tuple[str, int, int, int, str | None, int | None]]) -> None:
        m = f.message_type.add(name=name)
        oneofs: dict[int, None] = {}
        for fname, number, ftype, label, type_name, oneof in fields:
            fd = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                fd.type_name = type_name
            if oneof is not None:
                fd.oneof_index = oneof
                oneofs[oneof] = None
        for i in oneofs:
            m.oneof_decl.add(name=("count", "zero_count")[i])

    opt, rep = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    msg("BucketSpan", [("offset", 1, _F.TYPE_SINT32, opt, None, None), ("length", 2, _F.TYPE_UINT32, opt, None, None)])
    msg(
        "Histogram",
        [
            ("count_int", 1, _F.TYPE_UINT64, opt, None, 0),
            ("count_float", 2, _F.TYPE_DOUBLE, opt, None, 0),
            ("sum", 3, _F.TYPE_DOUBLE, opt, None, None),
            ("schema", 4, _F.TYPE_SINT32, opt, None, None),
            ("zero_threshold", 5, _F.TYPE_DOUBLE, opt, None, None),
            ("zero_count_int", 6, _F.TYPE_UINT64, opt, None, 1),
            ("zero_count_float", 7, _F.TYPE_DOUBLE, opt, None, 1),
            ("negative_spans", 8, _F.TYPE_MESSAGE, rep, ".rtpmprom.BucketSpan", None),
            ("negative_deltas", 9, _F.TYPE_SINT64, rep, None, None),
            ("negative_counts", 10, _F.TYPE_DOUBLE, rep, None, None),
            ("positive_spans", 11, _F.TYPE_MESSAGE, rep, ".rtpmprom.BucketSpan", None),
            ("positive_deltas", 12, _F.TYPE_SINT64, rep, None, None),
            ("positive_counts", 13, _F.TYPE_DOUBLE, rep, None, None),
            ("reset_hint", 14, _F.TYPE_INT32, opt, None, None),
            ("timestamp", 15, _F.TYPE_INT64, opt, None, None),
            ("custom_values", 16, _F.TYPE_DOUBLE, rep, None, None),
        ],
    )
    msg("Label", [("name", 1, _F.TYPE_STRING, opt, None, None), ("value", 2, _F.TYPE_STRING, opt, None, None)])
    msg(
        "Exemplar",
        [
            ("labels", 1, _F.TYPE_MESSAGE, rep, ".rtpmprom.Label", None),
            ("value", 2, _F.TYPE_DOUBLE, opt, None, None),
            ("timestamp", 3, _F.TYPE_INT64, opt, None, None),
        ],
    )
    return f


_pool = descriptor_pool.DescriptorPool()
_pool.Add(_file())
HistogramProto: Any = message_factory.GetMessageClass(_pool.FindMessageTypeByName("rtpmprom.Histogram"))
BucketSpanProto: Any = message_factory.GetMessageClass(_pool.FindMessageTypeByName("rtpmprom.BucketSpan"))
ExemplarProto: Any = message_factory.GetMessageClass(_pool.FindMessageTypeByName("rtpmprom.Exemplar"))


class HistogramDecodeError(ValueError):
    pass


def _absolute(deltas: Any) -> tuple[float, ...]:
    out = []
    c = 0
    for d in deltas:
        c += d
        out.append(float(c))
    return tuple(out)


def decode_histogram(raw: bytes) -> tuple[int, Histogram]:
    """(timestamp ms, Histogram) of one encoded prometheus.Histogram; HistogramDecodeError if it
    does not parse or is inconsistent."""
    try:
        m = HistogramProto.FromString(raw)
    except DecodeError as exc:
        raise HistogramDecodeError(f"invalid Histogram message: {exc}") from None
    is_int = m.WhichOneof("count") != "count_float"
    if is_int:
        if len(m.positive_counts) or len(m.negative_counts):
            raise HistogramDecodeError("integer histogram with float bucket counts")
        count = float(m.count_int)
        zero = float(m.zero_count_int)
        pos = _absolute(m.positive_deltas)
        neg = _absolute(m.negative_deltas)
    else:
        if len(m.positive_deltas) or len(m.negative_deltas):
            raise HistogramDecodeError("float histogram with integer bucket deltas")
        count = m.count_float
        zero = m.zero_count_float
        pos = tuple(m.positive_counts)
        neg = tuple(m.negative_counts)
    h = Histogram(
        schema=m.schema,
        zero_threshold=m.zero_threshold,
        zero_count=zero,
        count=count,
        sum=m.sum,
        positive_spans=tuple((s.offset, s.length) for s in m.positive_spans),
        positive=pos,
        negative_spans=tuple((s.offset, s.length) for s in m.negative_spans),
        negative=neg,
        custom_values=tuple(m.custom_values) if m.schema == CUSTOM_BUCKETS_SCHEMA else tuple(m.custom_values),
        reset_hint=m.reset_hint if 0 <= m.reset_hint <= 3 else 0,
        is_int=is_int,
    )
    problem = h.validate()
    if problem:
        raise HistogramDecodeError(problem)
    return m.timestamp, h


def decode_exemplar(raw: bytes) -> Exemplar:
    try:
        m = ExemplarProto.FromString(raw)
    except DecodeError as exc:
        raise HistogramDecodeError(f"invalid Exemplar message: {exc}") from None
    labels = tuple(sorted((lb.name, lb.value) for lb in m.labels))
    return Exemplar(labels, m.value, m.timestamp)


def encode_histogram(h: Histogram, ts_ms: int) -> bytes:
    """The prometheus.Histogram encoding of `h` (integer form when `h.is_int`): for tests and tools."""
    m = HistogramProto(sum=h.sum, schema=h.schema, zero_threshold=h.zero_threshold, reset_hint=h.reset_hint)
    m.timestamp = ts_ms
    for spans, field in ((h.positive_spans, m.positive_spans), (h.negative_spans, m.negative_spans)):
        for off, length in spans:
            field.add(offset=off, length=length)
    if h.is_int:
        m.count_int = int(h.count)
        m.zero_count_int = int(h.zero_count)
        for counts, field in ((h.positive, m.positive_deltas), (h.negative, m.negative_deltas)):
            prev = 0
            for c in counts:
                field.append(int(c) - prev)
                prev = int(c)
    else:
        m.count_float = h.count
        m.zero_count_float = h.zero_count
        m.positive_counts.extend(h.positive)
        m.negative_counts.extend(h.negative)
    m.custom_values.extend(h.custom_values)
    return bytes(m.SerializeToString())


def encode_exemplar(e: Exemplar) -> bytes:
    m = ExemplarProto(value=e.value, timestamp=e.ts_ms)
    for k, v in e.labels:
        m.labels.add(name=k, value=v)
    return bytes(m.SerializeToString())
