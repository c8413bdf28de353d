"""OTLP/HTTP metrics (`ExportMetricsServiceRequest`, protobuf or JSON) -> Prometheus-style series,
following the OpenTelemetry "OTLP Metric points to Prometheus" mapping as Prometheus' own OTLP
receiver does by default (COMPAT.md section 5; the README's "OpenTelemetry naming" lists it):

- names: as Prometheus's translation strategy UnderscoreEscapingWithSuffixes (`metric_name`):
  tokens split at characters outside [a-zA-Z0-9:], the unit's main part appended unless already a
  token (`ms` -> `milliseconds`; annotated units such as `{packet}` and `1` add nothing), then its
  per part (`/s` -> `per_second`), `_total` on monotonic sums, `_ratio` on gauges of unit `1`;
  the metadata's unit likewise (`By/s` -> `bytes_per_second`); a name with nothing left is refused;
- gauges and non-monotonic cumulative sums -> gauges; monotonic cumulative sums -> counters;
  cumulative explicit-bucket histograms -> `_bucket{le}` (cumulative counts, `+Inf` last), `_sum`,
  `_count`; summaries -> `{quantile}`, `_sum`, `_count`;
- attributes -> labels (invalid characters -> `_`, a leading digit or `_` gets `key`/`key_`;
  names colliding after that joined with `;`); `service.namespace`/`service.name` -> `job`,
  `service.instance.id` -> `instance`, the other resource attributes -> one
  `target_info{job, instance, ...} 1` series; scope name and version -> `otel_scope_name`,
  `otel_scope_version` (the OpenTelemetry specification's SHOULD; Prometheus does it only with
  `promote_scope_metadata: true`);
- cumulative exponential histograms -> native histograms (otlp_histograms.py), with exemplars;
- NO_RECORDED_VALUE points -> Prometheus stale markers.

Refused, reported through `partial_success` (the rest of the request is stored): delta temporality
(sums and histograms; RTPM does not accumulate deltas: a collector's `deltatocumulative` processor
does), exponential histogram scales below -4, unspecified temporality, malformed histograms,
and points that fail validation (timestamp window, label limits).
"""

from __future__ import annotations

import base64
import functools
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError

from rtpm.errors import BadDataError
from rtpm.ingest import otlp_histograms
from rtpm.ingest.batching import INVALID_SERIES, MISSING, BatchBuilder, Refused
from rtpm.ingest.proto import ExportMetricsServiceRequest, ExportMetricsServiceResponse, KeyValue
from rtpm.ingest.proto._descriptors import FILE_DESCRIPTOR_SET
from rtpm.ingest.validate import Validator
from rtpm.model.labels import Labels
from rtpm.model.samples import STALE_NAN, MetricType, WriteBatch

DELTA, CUMULATIVE = 1, 2
NO_RECORDED_VALUE = 1

UNITS = {
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "TiBy": "tibibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "TBy": "terabytes",
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "Cel": "celsius",
    "Hz": "hertz",
    "1": "",
    "%": "percent",
}
PER_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}

_SPLIT = re.compile(r"[^a-zA-Z0-9:]+")
_BAD_LABEL = re.compile(r"[^a-zA-Z0-9_]")
_BAD_METRIC_CHAR = re.compile(r"[^a-zA-Z0-9:]")
_UNDERSCORES = re.compile(r"__+")

DELTA_REFUSED = "delta temporality is not supported (use the collector's deltatocumulative processor)"
EMPTY_NAME = "metric name has no character of [a-zA-Z0-9:] (nothing left once translated)"


@dataclass(slots=True)
class OtlpResult:
    """The acceptable samples; `rejected_points` data points left out (partial_success), with
    `reasons` (message -> data points). `refused`: samples the shared validation left out."""

    batch: WriteBatch
    rejected_points: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    refused: Refused | None = None

    def error_message(self) -> str:
        return "; ".join(f"{n} data points: {reason}" for reason, n in self.reasons.items())


def _unit_parts(unit: str) -> tuple[str, str]:
    """The Prometheus spellings of a UCUM unit's main and per parts (`By/s` -> `bytes`,
    `per_second`), each cleaned (invalid characters -> `_`, runs collapsed, one leading `_`
    dropped). A part with an annotation (`{packet}`) contributes nothing; `1` maps to nothing."""
    main_otel, sep, per_otel = unit.partition("/")
    main_otel, per_otel = main_otel.strip(), per_otel.strip()
    main = per = ""
    if main_otel and "{" not in main_otel and "}" not in main_otel:
        main = UNITS.get(main_otel, main_otel)
    if sep and per_otel and "{" not in per_otel and "}" not in per_otel:
        per = PER_UNITS.get(per_otel, per_otel)
        per = "per_" + per if per else ""
    return _clean_unit(main), _clean_unit(per)


def _clean_unit(unit: str) -> str:
    out = _UNDERSCORES.sub("_", _BAD_METRIC_CHAR.sub("_", unit))
    return out[1:] if out.startswith("_") else out


def metric_name(name: str, unit: str, kind: MetricType) -> str:
    """The Prometheus name of an OTLP metric, as Prometheus's OTLP translation (strategy
    UnderscoreEscapingWithSuffixes) builds it: the name split into tokens at every character
    outside [a-zA-Z0-9:]; the unit's main part appended unless already a token, then its per
    part (`per_second`); counters (monotonic sums) end in `_total` and gauges of unit `1` in
    `_ratio` (each token moved to the end if present); a leading digit gets a `_`. Empty when
    nothing is left (such a metric is refused)."""
    tokens = [t for t in _SPLIT.split(name) if t]
    main, per = _unit_parts(unit)
    if main in tokens:
        main = ""
    if per == "per_":
        per = ""
    else:
        per = per.removesuffix("_")
        if per in tokens:
            per = ""
    if per:
        main = main.removesuffix("_")
    tokens += [t for t in (main, per) if t]
    if kind is MetricType.COUNTER:
        tokens = [t for t in tokens if t != "total"] + ["total"]
    if kind is MetricType.GAUGE and unit == "1":
        tokens = [t for t in tokens if t != "ratio"] + ["ratio"]
    out = "_".join(tokens)
    return "_" + out if out[:1].isdigit() else out


@functools.lru_cache(maxsize=8192)
def label_name(key: str) -> str:
    out = _BAD_LABEL.sub("_", key)
    if not out:
        return "_"
    if out[0].isdigit():
        return "key_" + out
    if out[0] == "_":
        return "key" + out
    return out


def format_float(v: float) -> str:
    """Like Go's strconv.FormatFloat(v, 'g', -1, 64) for the values seen in `le` and `quantile`."""
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    s = repr(v)
    return s[:-2] if s.endswith(".0") else s


def _any_value(v: Any) -> str:
    if v.HasField("string_value"):
        return str(v.string_value)
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return str(v.string_value)
    if kind == "bool_value":
        return "true" if v.bool_value else "false"
    if kind == "int_value":
        return str(v.int_value)
    if kind == "double_value":
        return format_float(v.double_value)
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    if kind == "array_value":
        return orjson.dumps([_any_value(x) for x in v.array_value.values]).decode()
    if kind == "kvlist_value":
        return orjson.dumps({kv.key: _any_value(kv.value) for kv in v.kvlist_value.values}).decode()
    return ""


def attributes(kvs: Any) -> dict[str, str]:
    """OTLP attributes -> label pairs (names sanitized, colliding values joined with ';')."""
    out: dict[str, str] = {}
    for kv in kvs:
        name = label_name(kv.key)
        value = _any_value(kv.value)
        if value == "":
            continue
        out[name] = f"{out[name]};{value}" if name in out else value
    return out


def _lite_request_class() -> Any:
    """ExportMetricsServiceRequest as the decoder reads it: the same wire format, except that the
    attributes of number, histogram and summary data points are left as the raw bytes of each
    encoded KeyValue. A data point's series is then found by those bytes (one dictionary lookup),
    and its attributes are only decoded, checked and turned into labels when they are new.
    The data points of gauges and sums are left as raw bytes too (see `_Decoder.numbers`)."""
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


_LiteRequest, _LiteNumberDataPoint = _lite_request_class()
# A number data point as protobuf encoders write it (fields in number order): optional
# start_time_unix_nano (tag 0x11), time_unix_nano (0x19), as_double (0x21) or as_int (0x31), then
# only attributes (0x3a each) when there are no exemplars and no flags.
_TIME_DOUBLE = struct.Struct("<Qxd")
_TIME_INT = struct.Struct("<Qxq")


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


def encode_response(result: OtlpResult | None, *, json: bool) -> bytes:
    resp = ExportMetricsServiceResponse()
    if result is not None and result.rejected_points:
        resp.partial_success.rejected_data_points = result.rejected_points
        resp.partial_success.error_message = result.error_message()
    if json:
        return orjson.dumps(json_format.MessageToDict(resp))
    return bytes(resp.SerializeToString())


# (name, label items); for number data points also (name, common label items, attributes as bytes)
SeriesKey = tuple[Any, ...]
RawAttributes = tuple[bytes, ...]


class _Decoder:
    def __init__(
        self,
        b: BatchBuilder,
        now_ms: int,
        known: dict[SeriesKey, Labels],
        attrs_seen: dict[RawAttributes, dict[str, str]],
        unchecked: bytes | None,
        cache_size: int,
    ) -> None:
        self.b = b
        self.known = known
        self.fresh: dict[SeriesKey, Labels] = {}
        self.attrs_seen = attrs_seen
        self.unchecked = unchecked
        self.cache_size = cache_size
        self.now_ms = now_ms
        self.result = OtlpResult(b.batch)
        self.point = 0

    def check(self) -> None:
        """Parse the body once with the complete message type (raising its DecodeError as BadDataError)
        before relying on data point attributes the lite parse left undecoded: new raw attributes,
        or data points that are rejected without looking at them. Known raw attributes were part of
        a body that passed this check, at the same place in the message."""
        if self.unchecked is not None:
            data, self.unchecked = self.unchecked, None
            parse_request(data, json=False)

    def reject(self, reason: str, n: int) -> None:
        if n:
            self.check()
            self.result.rejected_points += n
            self.result.reasons[reason] = self.result.reasons.get(reason, 0) + n

    def ts(self, time_unix_nano: int) -> int:
        return time_unix_nano // 1_000_000 if time_unix_nano else self.now_ms

    def attrs(self, raw: RawAttributes) -> dict[str, str]:
        """Labels of a data point's raw attributes (each an encoded KeyValue). Do not modify."""
        found = self.attrs_seen.get(raw)
        if found is None:
            self.check()
            try:
                found = attributes([KeyValue.FromString(item) for item in raw])
            except DecodeError as exc:
                raise BadDataError(f"body is not a valid OTLP ExportMetricsServiceRequest protobuf: {exc}") from None
            if len(self.attrs_seen) >= self.cache_size:
                self.attrs_seen.clear()
            self.attrs_seen[raw] = found
        return found

    def series(self, name: str, labels: Mapping[str, str]) -> Labels | None:
        """Validated Labels of a series (None if invalid: the problem is recorded once per request)."""
        b = self.b
        key = (name, tuple(labels.items()))
        series = self.known.get(key)
        if series is None:
            found = b.cache.get(key, MISSING)
            if found is MISSING:
                found = b.make_series(name, labels, self.point)
                if found is not None:
                    found = self.fresh[key] = b.validator.intern(found)
                b.cache[key] = found
            if found is None:
                return None
            assert isinstance(found, tuple)
            series = found
        return series

    def emit(self, name: str, labels: Mapping[str, str], ts_ms: int, value: float) -> None:
        series = self.series(name, labels)
        if series is not None:
            self.b.add(series, ts_ms, value, self.point)
        else:
            self.b.refuse(INVALID_SERIES, 1, self.point)

    def resource(self, rm: Any) -> None:
        res = attributes(rm.resource.attributes)
        service = res.pop("service_name", "")
        namespace = res.pop("service_namespace", "")
        instance = res.pop("service_instance_id", "")
        job = f"{namespace}/{service}" if namespace and service else service
        identity = {k: v for k, v in (("job", job), ("instance", instance)) if v}
        latest = 0
        emitted = False
        for sm in rm.scope_metrics:
            scope: dict[str, str] = {}
            if sm.scope.name:
                scope["otel_scope_name"] = sm.scope.name
                if sm.scope.version:
                    scope["otel_scope_version"] = sm.scope.version
            for metric in sm.metrics:
                t = self.metric(metric, {**scope, **identity})
                if t is not None:
                    emitted = True
                    latest = max(latest, t)
        if res and emitted:
            self.emit("target_info", {**res, **identity}, latest or self.now_ms, 1.0)

    def numbers(self, prom: str, raw_points: Any, common: dict[str, str]) -> int | None:
        """Emit the points of a gauge or sum (each the raw bytes of a NumberDataPoint); the latest
        timestamp (None when there were none). A point in the usual layout (`_TIME_DOUBLE`) whose
        attribute bytes are known is read in place: its series is found by those bytes and its
        sample goes straight into the batch's columns. Any other point takes `number`."""
        b, known, fresh = self.b, self.known, self.fresh
        batch = b.batch
        ref_of: dict[Labels, int] = {}  # this call's series -> their index in the batch
        refs, ts_col, values = batch.refs, batch.ts_ms, batch.values
        lo, hi = b.lo_ms, b.hi_ms
        common_key = tuple(common.items())
        now_ms = self.now_ms
        latest: int | None = None
        for raw in raw_points:
            self.point += 1
            o = 9 if raw[:1] == b"\x11" else 0
            key = None
            series: Labels | None = None
            if len(raw) >= o + 18 and raw[o] == 0x19:
                tag = raw[o + 9]
                if tag == 0x21 or tag == 0x31:
                    key = (prom, common_key, raw[o + 18 :])
                    series = known.get(key) or fresh.get(key)
            if series is not None:
                t, value = (_TIME_DOUBLE if tag == 0x21 else _TIME_INT).unpack_from(raw, o + 1)
                t = t // 1_000_000 if t else now_ms
                if tag == 0x31:
                    value = float(value)
            else:
                found = self.number(prom, raw, common, common_key, key)
                if found is None:
                    continue
                t, value, series = found
            if series is not None:
                if lo <= t <= hi:
                    ref = ref_of.get(series)
                    if ref is None:
                        ref = ref_of[series] = batch.ref(series)
                    refs.append(ref)
                    ts_col.append(t)
                    values.append(value)
                else:
                    b.add(series, t, value, self.point)
            else:
                b.refuse(INVALID_SERIES, 1, self.point)
            if latest is None or t > latest:
                latest = t
        return latest

    def number(
        self, prom: str, raw: bytes, common: dict[str, str], common_key: tuple[Any, ...], key: SeriesKey | None
    ) -> tuple[int, float, Labels | None] | None:
        """One NumberDataPoint decoded field by field: (timestamp, value, series or None if
        invalid), or None when it is rejected. `key`: its key by attribute bytes if in the usual
        layout; remembered when those bytes are exactly its attributes."""
        try:
            dp = _LiteNumberDataPoint.FromString(raw)
        except DecodeError as exc:
            self.check()  # raises the complete message type's error
            raise BadDataError(f"body is not a valid OTLP ExportMetricsServiceRequest protobuf: {exc}") from None
        which = dp.WhichOneof("value")
        if dp.flags & NO_RECORDED_VALUE:
            value = STALE_NAN
        elif which == "as_double":
            value = dp.as_double
        elif which == "as_int":
            value = float(dp.as_int)
        else:
            self.reject("data point without a value", 1)
            return None
        t = self.ts(dp.time_unix_nano)
        attrs = tuple(dp.attributes)
        raw_key = (prom, common_key, attrs)
        series = self.known.get(raw_key) or self.fresh.get(raw_key)
        if series is None:
            series = self.series(prom, {**self.attrs(attrs), **common})
            if series is not None:
                self.fresh[raw_key] = series
        if series is not None and key is not None and key[2] == _encoded(attrs):
            self.fresh[key] = series
        return t, value, series

    def metric(self, metric: Any, common: dict[str, str]) -> int | None:
        """Emit one metric's points; returns the latest timestamp emitted (None when nothing was)."""
        kind = metric.WhichOneof("data")
        name, unit, b = metric.name, metric.unit, self.b
        latest: int | None = None
        if kind == "gauge" or kind == "sum":
            data = metric.gauge if kind == "gauge" else metric.sum
            mtype = MetricType.GAUGE
            if kind == "sum":
                if data.aggregation_temporality != CUMULATIVE:
                    reason = DELTA_REFUSED if data.aggregation_temporality == DELTA else "unspecified temporality"
                    self.reject(reason, len(data.data_points))
                    return None
                if data.is_monotonic:
                    mtype = MetricType.COUNTER
            prom = metric_name(name, unit, mtype)
            if not prom:
                self.reject(EMPTY_NAME, len(data.data_points))
                return None
            latest = self.numbers(prom, data.data_points, common)
        elif kind == "histogram":
            data = metric.histogram
            if data.aggregation_temporality != CUMULATIVE:
                reason = DELTA_REFUSED if data.aggregation_temporality == DELTA else "unspecified temporality"
                self.reject(reason, len(data.data_points))
                return None
            prom = metric_name(name, unit, MetricType.HISTOGRAM)
            if not prom:
                self.reject(EMPTY_NAME, len(data.data_points))
                return None
            for dp in data.data_points:
                self.point += 1
                bounds, counts = list(dp.explicit_bounds), list(dp.bucket_counts)
                if counts and len(counts) != len(bounds) + 1:
                    self.reject("histogram with bucket_counts not one longer than explicit_bounds", 1)
                    continue
                t = self.ts(dp.time_unix_nano)
                stale = bool(dp.flags & NO_RECORDED_VALUE)
                labels = {**self.attrs(tuple(dp.attributes)), **common}
                cumulative = 0
                for bound, count in zip(bounds, counts, strict=False):
                    cumulative += count
                    le = {**labels, "le": format_float(bound)}
                    self.emit(prom + "_bucket", le, t, STALE_NAN if stale else float(cumulative))
                total = STALE_NAN if stale else float(dp.count)
                self.emit(prom + "_bucket", {**labels, "le": "+Inf"}, t, total)
                self.emit(prom + "_count", labels, t, total)
                if dp.HasField("sum"):
                    self.emit(prom + "_sum", labels, t, STALE_NAN if stale else dp.sum)
                latest = t if latest is None else max(latest, t)
            mtype = MetricType.HISTOGRAM
        elif kind == "summary":
            prom = metric_name(name, unit, MetricType.SUMMARY)
            if not prom:
                self.reject(EMPTY_NAME, len(metric.summary.data_points))
                return None
            for dp in metric.summary.data_points:
                self.point += 1
                t = self.ts(dp.time_unix_nano)
                stale = bool(dp.flags & NO_RECORDED_VALUE)
                labels = {**self.attrs(tuple(dp.attributes)), **common}
                for q in dp.quantile_values:
                    ql = {**labels, "quantile": format_float(q.quantile)}
                    self.emit(prom, ql, t, STALE_NAN if stale else q.value)
                self.emit(prom + "_sum", labels, t, STALE_NAN if stale else dp.sum)
                self.emit(prom + "_count", labels, t, STALE_NAN if stale else float(dp.count))
                latest = t if latest is None else max(latest, t)
            mtype = MetricType.SUMMARY
        elif kind == "exponential_histogram":
            data = metric.exponential_histogram
            if data.aggregation_temporality != CUMULATIVE:
                reason = DELTA_REFUSED if data.aggregation_temporality == DELTA else "unspecified temporality"
                self.reject(reason, len(data.data_points))
                return None
            prom = metric_name(name, unit, MetricType.HISTOGRAM)
            for dp in data.data_points:
                self.point += 1
                h = otlp_histograms.to_histogram(dp)
                if isinstance(h, str):
                    self.reject(h, 1)
                    continue
                t = self.ts(dp.time_unix_nano)
                series = self.series(prom, {**attributes(dp.attributes), **common})
                if series is None:
                    self.b.refuse(INVALID_SERIES, 1, self.point)
                    continue
                self.b.add_histogram(series, t, h, self.point)
                for e in otlp_histograms.exemplars(dp, attributes):
                    self.b.add_exemplar(series, e)
                latest = t if latest is None else max(latest, t)
            mtype = MetricType.HISTOGRAM
        else:
            return None
        if latest is not None and (metric.description or unit):
            b.metadata(prom, mtype, _metadata_unit(unit), metric.description, self.point)
        elif latest is not None:
            b.metadata(prom, mtype, "", "", self.point)
        return latest


def _encoded(attributes: tuple[bytes, ...]) -> bytes:
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


def _metadata_unit(unit: str) -> str:
    """The unit of the metric's metadata, as Prometheus's OTLP translation writes it
    (`By/s` -> `bytes_per_second`, `1/s` -> `per_second`, `1` -> nothing)."""
    main, per = _unit_parts(unit)
    out = f"{main}_{per}" if main and per else main or per
    return out.removeprefix("_").removesuffix("_")


class OtlpDecoder:
    """Decodes OTLP requests; remembers (up to `cache_size`) the validated Labels of series seen."""

    def __init__(self, validator: Validator, *, cache_size: int = 100_000) -> None:
        self.validator = validator
        self.cache_size = cache_size
        self._known: dict[SeriesKey, Labels] = {}
        self._attrs_seen: dict[RawAttributes, dict[str, str]] = {}

    def decode(
        self, data: bytes, *, json: bool, tenant: str, now_ms: int, extra_labels: Mapping[str, str] | None = None
    ) -> OtlpResult:
        unchecked: bytes | None = None
        if json:
            req = _LiteRequest.FromString(parse_request(data, json=True).SerializeToString())
        else:
            try:
                req = _LiteRequest.FromString(data)
            except DecodeError as exc:
                parse_request(data, json=False)  # the complete message type's error
                raise BadDataError(f"body is not a valid OTLP ExportMetricsServiceRequest protobuf: {exc}") from None
            unchecked = data
        b = BatchBuilder(tenant=tenant, validator=self.validator, where="data point", extra_labels=extra_labels)
        known = self._known if not extra_labels else {}
        d = _Decoder(b, now_ms, known, self._attrs_seen, unchecked, self.cache_size)
        for rm in req.resource_metrics:
            d.resource(rm)
        d.result.batch = b.finish(partial=True)
        d.result.refused = refused = b.refused()
        if refused:
            d.result.rejected_points += refused.items
            d.result.reasons[refused.message()] = refused.items
        if d.fresh and not extra_labels:
            if len(self._known) + len(d.fresh) > self.cache_size:
                self._known.clear()
            if len(d.fresh) <= self.cache_size:
                self._known.update(d.fresh)
        return d.result


def decode_otlp(
    data: bytes,
    *,
    json: bool,
    tenant: str,
    validator: Validator,
    now_ms: int,
    extra_labels: Mapping[str, str] | None = None,
) -> OtlpResult:
    """One-off decode (nothing remembered between calls)."""
    return OtlpDecoder(validator).decode(data, json=json, tenant=tenant, now_ms=now_ms, extra_labels=extra_labels)
