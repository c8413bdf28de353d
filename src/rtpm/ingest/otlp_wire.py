"""The OTLP wire reader: `ExportMetricsServiceRequest` bodies, protobuf or JSON, as the decoder reads them.

The protobuf body is read with a "lite" variant of the message type (`LiteRequest`): the same wire
format, except that the attributes of number, histogram and summary data points, and the data points
of gauges and sums, are left as raw bytes. The decoder (`rtpm.ingest.otlp`) finds a known series
by those bytes (one dictionary lookup) and reads a number data point in the usual layout in place
(`TIME_DOUBLE`, `TIME_INT`); everything else is decoded as usual. JSON bodies are parsed in full
(their exemplars dropped: hex trace ids are not proto3 JSON bytes) and re-read the same way.
"""

from __future__ import annotations

import struct
from typing import Any

import orjson
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError

from rtpm.errors import BadDataError
from rtpm.ingest.proto import ExportMetricsServiceRequest
from rtpm.ingest.proto._descriptors import FILE_DESCRIPTOR_SET

__all__ = [
    "TIME_DOUBLE",
    "TIME_INT",
    "LiteNumberDataPoint",
    "LiteRequest",
    "encoded_attributes",
    "parse_request",
    "read_request",
]


def _lite_request_class() -> Any:
    """ExportMetricsServiceRequest as the decoder reads it: the same wire format, except that the
    attributes of number, histogram and summary data points are left as the raw bytes of each
    encoded KeyValue. A data point's series is then found by those bytes (one dictionary lookup),
    and its attributes are only decoded, checked and turned into labels when they are new.
    The data points of gauges and sums are left as raw bytes too (see `rtpm.ingest.otlp._Decoder.numbers`)."""
    files = descriptor_pb2.FileDescriptorSet.FromString(FILE_DESCRIPTOR_SET)
    pool = descriptor_pool.DescriptorPool()
    raw = {
        "NumberDataPoint": "attributes",
        "HistogramDataPoint": "attributes",
        "SummaryDataPoint": "attributes",
        "Gauge": "data_points",
        "Sum": "data_points",
    }
    for f in files.file:
        if f.package == "opentelemetry.proto.metrics.v1":
            for m in f.message_type:
                for fd in m.field:
                    if raw.get(m.name) == fd.name:
                        fd.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
                        fd.ClearField("type_name")
        pool.Add(f)
    package = "opentelemetry.proto.metrics.v1"
    return tuple(
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
        for name in ("ExportMetricsServiceRequest", "NumberDataPoint")
    )


LiteRequest, LiteNumberDataPoint = _lite_request_class()
# A number data point as protobuf encoders write it (fields in number order): optional
# start_time_unix_nano (tag 0x11), time_unix_nano (0x19), as_double (0x21) or as_int (0x31), then
# only attributes (0x3a each) when there are no exemplars and no flags.
TIME_DOUBLE = struct.Struct("<Qxd")
TIME_INT = struct.Struct("<Qxq")


def parse_request(data: bytes, *, json: bool) -> Any:
    if json:
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise BadDataError(f"body is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise BadDataError("body must be a JSON object (ExportMetricsServiceRequest)")
        _drop_exemplars(doc)
        try:
            return json_format.ParseDict(doc, ExportMetricsServiceRequest(), ignore_unknown_fields=True)
        except json_format.ParseError as exc:
            raise BadDataError(f"body is not a valid OTLP JSON ExportMetricsServiceRequest: {exc}") from None
    try:
        return ExportMetricsServiceRequest.FromString(data)
    except DecodeError as exc:
        raise BadDataError(f"body is not a valid OTLP ExportMetricsServiceRequest protobuf: {exc}") from None


def _drop_exemplars(doc: dict[str, Any]) -> None:
    """Exemplars are not stored, and their hex trace/span ids are not proto3 JSON bytes: drop them."""
    for rm in _list(doc, "resourceMetrics", "resource_metrics"):
        for sm in _list(rm, "scopeMetrics", "scope_metrics"):
            for m in _list(sm, "metrics"):
                if not isinstance(m, dict):
                    continue
                for kind in ("gauge", "sum", "histogram", "exponentialHistogram", "exponential_histogram", "summary"):
                    data = m.get(kind)
                    if isinstance(data, dict):
                        for dp in _list(data, "dataPoints", "data_points"):
                            if isinstance(dp, dict):
                                dp.pop("exemplars", None)


def _list(obj: Any, *keys: str) -> list[Any]:
    if not isinstance(obj, dict):
        return []
    for k in keys:
        v = obj.get(k)
        if isinstance(v, list):
            return v
    return []


def encoded_attributes(attributes: tuple[bytes, ...]) -> bytes:
    """The attributes field of a NumberDataPoint as encoded on the wire (tag 7, length, KeyValue)."""
    out = bytearray()
    for item in attributes:
        out.append(0x3A)
        n = len(item)
        while n >= 0x80:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        out.append(n)
        out += item
    return bytes(out)


def read_request(data: bytes, *, json: bool) -> tuple[Any, bytes | None]:
    """The request as `LiteRequest`, and the protobuf body when it has not been checked in full yet
    (the lite parse leaves data point attributes undecoded: the decoder parses the body once with
    the complete message type, `parse_request`, before it relies on what it skipped). JSON bodies
    are parsed in full first. BadDataError when the body is not an ExportMetricsServiceRequest."""
    if json:
        return LiteRequest.FromString(parse_request(data, json=True).SerializeToString()), None
    try:
        return LiteRequest.FromString(data), data
    except DecodeError as exc:
        parse_request(data, json=False)  # the complete message type's error
        raise BadDataError(f"body is not a valid OTLP ExportMetricsServiceRequest protobuf: {exc}") from None
