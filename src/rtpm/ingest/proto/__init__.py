"""Protobuf message classes for remote write and OTLP, built at import from the descriptor set
generated from the .proto files here (see generate.py), in a private descriptor pool."""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from rtpm.ingest.proto._descriptors import FILE_DESCRIPTOR_SET
from rtpm.ingest.proto._remote_read_descriptors import FILE_DESCRIPTOR_SET as REMOTE_READ_DESCRIPTOR_SET
from rtpm.ingest.proto._remote_write_v2_descriptors import FILE_DESCRIPTOR_SET as REMOTE_WRITE_V2_DESCRIPTOR_SET

_pool = descriptor_pool.DescriptorPool()
for _set in (FILE_DESCRIPTOR_SET, REMOTE_READ_DESCRIPTOR_SET, REMOTE_WRITE_V2_DESCRIPTOR_SET):
    for _file in descriptor_pb2.FileDescriptorSet.FromString(_set).file:
        _pool.Add(_file)


def _message(full_name: str) -> Any:
    return message_factory.GetMessageClass(_pool.FindMessageTypeByName(full_name))


# Remote write 1.0
WriteRequest = _message("prometheus.WriteRequest")
WriteRequestLite = _message("prometheus.WriteRequestLite")
TimeSeries = _message("prometheus.TimeSeries")
Label = _message("prometheus.Label")
Sample = _message("prometheus.Sample")
PromMetricMetadata = _message("prometheus.MetricMetadata")

# Remote read
ReadRequest = _message("prometheus.ReadRequest")
ReadResponse = _message("prometheus.ReadResponse")
ChunkedReadResponse = _message("prometheus.ChunkedReadResponse")

# Remote write 2.0
WriteRequestV2 = _message("io.prometheus.write.v2.Request")
TimeSeriesV2 = _message("io.prometheus.write.v2.TimeSeries")

# OTLP metrics
ExportMetricsServiceRequest = _message("opentelemetry.proto.metrics.v1.ExportMetricsServiceRequest")
ExportMetricsServiceResponse = _message("opentelemetry.proto.metrics.v1.ExportMetricsServiceResponse")
ResourceMetrics = _message("opentelemetry.proto.metrics.v1.ResourceMetrics")
ScopeMetrics = _message("opentelemetry.proto.metrics.v1.ScopeMetrics")
Metric = _message("opentelemetry.proto.metrics.v1.Metric")
NumberDataPoint = _message("opentelemetry.proto.metrics.v1.NumberDataPoint")
HistogramDataPoint = _message("opentelemetry.proto.metrics.v1.HistogramDataPoint")
SummaryDataPoint = _message("opentelemetry.proto.metrics.v1.SummaryDataPoint")
KeyValue = _message("opentelemetry.proto.common.v1.KeyValue")
AnyValue = _message("opentelemetry.proto.common.v1.AnyValue")

__all__ = [
    "AnyValue",
    "ChunkedReadResponse",
    "ExportMetricsServiceRequest",
    "ExportMetricsServiceResponse",
    "HistogramDataPoint",
    "KeyValue",
    "Label",
    "Metric",
    "NumberDataPoint",
    "PromMetricMetadata",
    "ReadRequest",
    "ReadResponse",
    "ResourceMetrics",
    "Sample",
    "ScopeMetrics",
    "SummaryDataPoint",
    "TimeSeries",
    "WriteRequest",
    "WriteRequestLite",
    "TimeSeriesV2",
    "WriteRequestV2",
]
