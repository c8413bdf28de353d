"""OTLP/HTTP metrics (`ExportMetricsServiceRequest`, protobuf or JSON) -> Prometheus-style series,
following the OpenTelemetry "OTLP Metric points to Prometheus" mapping as Prometheus' own OTLP
receiver does by default (COMPAT.md section 5):

- names: characters outside [a-zA-Z0-9:] become `_` (repeats collapsed); the unit is appended as a
  suffix unless already present (`ms` -> `milliseconds`, `By/s` -> `bytes_per_second`, `{packet}`
  dropped, `1` -> `ratio` for gauges); monotonic cumulative sums end in `_total`;
- gauges and non-monotonic cumulative sums -> gauges; monotonic cumulative sums -> counters;
  cumulative explicit-bucket histograms -> `_bucket{le}` (cumulative counts, `+Inf` last), `_sum`,
  `_count`; summaries -> `{quantile}`, `_sum`, `_count`;
- attributes -> labels (invalid characters -> `_`; names colliding after that joined with `;`);
  `service.namespace`/`service.name` -> `job`, `service.instance.id` -> `instance`, the other
  resource attributes -> one `target_info{job, instance, ...} 1` series; scope name and version ->
  `otel_scope_name`, `otel_scope_version`;
- NO_RECORDED_VALUE points -> Prometheus stale markers.

Refused, reported through `partial_success` (the rest of the request is stored): delta temporality
(sums and histograms; RTPM does not accumulate deltas: a collector's `deltatocumulative` processor
does), exponential histograms (native histograms are not supported), unspecified temporality and
malformed histograms. Points that fail validation (timestamp window, label limits) fail the whole
request with BadDataError, as in every other protocol.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from rtpm.errors import BadDataError
from rtpm.ingest.batching import MISSING, BatchBuilder
from rtpm.ingest.proto import ExportMetricsServiceRequest, ExportMetricsServiceResponse
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
_ANNOTATION = re.compile(r"\{[^}]*\}")

DELTA_REFUSED = "delta temporality is not supported (use the collector's deltatocumulative processor)"
EXPONENTIAL_REFUSED = "exponential histograms are not supported (native histograms); use explicit buckets"


@dataclass(slots=True)
class OtlpResult:
    batch: WriteBatch
    rejected_points: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def error_message(self) -> str:
        return "; ".join(f"{n} data points: {reason}" for reason, n in self.reasons.items())


def metric_name(name: str, unit: str, kind: MetricType) -> str:
    """The Prometheus name of an OTLP metric (UnderscoreEscapingWithSuffixes)."""
    tokens = [t for t in _SPLIT.split(name) if t]
    main, _, per = unit.partition("/")
    main = _ANNOTATION.sub("", main).strip()
    per = _ANNOTATION.sub("", per).strip()
    main_suffix = "_".join(t for t in _SPLIT.split(UNITS.get(main, main)) if t)
    per_suffix = "_".join(t for t in _SPLIT.split(PER_UNITS.get(per, per)) if t)
    if main_suffix and main_suffix not in tokens:
        tokens.append(main_suffix)
    if per_suffix and per_suffix not in tokens:
        tokens += ["per", per_suffix]
    if kind is MetricType.COUNTER:
        tokens = [t for t in tokens if t != "total"] + ["total"]
    if kind is MetricType.GAUGE and main == "1" and "ratio" not in tokens:
        tokens.append("ratio")
    out = "_".join(tokens)
    if not out:
        return "_"
    return "_" + out if out[0].isdigit() else out


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


SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


class _Decoder:
    def __init__(self, b: BatchBuilder, now_ms: int, known: dict[SeriesKey, Labels]) -> None:
        self.b = b
        self.known = known
        self.fresh: dict[SeriesKey, Labels] = {}
        self.now_ms = now_ms
        self.result = OtlpResult(b.batch)
        self.point = 0

    def reject(self, reason: str, n: int) -> None:
        if n:
            self.result.rejected_points += n
            self.result.reasons[reason] = self.result.reasons.get(reason, 0) + n

    def ts(self, time_unix_nano: int) -> int:
        return time_unix_nano // 1_000_000 if time_unix_nano else self.now_ms

    def emit(self, name: str, labels: Mapping[str, str], ts_ms: int, value: float) -> None:
        b = self.b
        key = (name, tuple(labels.items()))
        series = self.known.get(key)
        if series is None:
            found = b.cache.get(key, MISSING)
            if found is MISSING:
                found = b.cache[key] = b.make_series(name, labels, self.point)
                if found is not None:
                    self.fresh[key] = found
            if found is None:
                return
            assert isinstance(found, tuple)
            series = found
        b.add(series, ts_ms, value, self.point)

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
            for dp in data.data_points:
                self.point += 1
                which = dp.WhichOneof("value")
                if dp.flags & NO_RECORDED_VALUE:
                    value = STALE_NAN
                elif which == "as_double":
                    value = dp.as_double
                elif which == "as_int":
                    value = float(dp.as_int)
                else:
                    self.reject("data point without a value", 1)
                    continue
                t = self.ts(dp.time_unix_nano)
                self.emit(prom, {**attributes(dp.attributes), **common}, t, value)
                latest = t if latest is None else max(latest, t)
        elif kind == "histogram":
            data = metric.histogram
            if data.aggregation_temporality != CUMULATIVE:
                reason = DELTA_REFUSED if data.aggregation_temporality == DELTA else "unspecified temporality"
                self.reject(reason, len(data.data_points))
                return None
            prom = metric_name(name, unit, MetricType.HISTOGRAM)
            for dp in data.data_points:
                self.point += 1
                bounds, counts = list(dp.explicit_bounds), list(dp.bucket_counts)
                if counts and len(counts) != len(bounds) + 1:
                    self.reject("histogram with bucket_counts not one longer than explicit_bounds", 1)
                    continue
                t = self.ts(dp.time_unix_nano)
                stale = bool(dp.flags & NO_RECORDED_VALUE)
                labels = {**attributes(dp.attributes), **common}
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
            for dp in metric.summary.data_points:
                self.point += 1
                t = self.ts(dp.time_unix_nano)
                stale = bool(dp.flags & NO_RECORDED_VALUE)
                labels = {**attributes(dp.attributes), **common}
                for q in dp.quantile_values:
                    ql = {**labels, "quantile": format_float(q.quantile)}
                    self.emit(prom, ql, t, STALE_NAN if stale else q.value)
                self.emit(prom + "_sum", labels, t, STALE_NAN if stale else dp.sum)
                self.emit(prom + "_count", labels, t, STALE_NAN if stale else float(dp.count))
                latest = t if latest is None else max(latest, t)
            mtype = MetricType.SUMMARY
        elif kind == "exponential_histogram":
            self.reject(EXPONENTIAL_REFUSED, len(metric.exponential_histogram.data_points))
            return None
        else:
            return None
        if latest is not None and (metric.description or unit):
            b.metadata(prom, mtype, _metadata_unit(unit), metric.description, self.point)
        elif latest is not None:
            b.metadata(prom, mtype, "", "", self.point)
        return latest


def _metadata_unit(unit: str) -> str:
    main, _, per = unit.partition("/")
    main = _ANNOTATION.sub("", main).strip()
    main = UNITS.get(main, main)
    per = PER_UNITS.get(per.strip(), per.strip())
    return f"{main}_per_{per}" if main and per else main


class OtlpDecoder:
    """Decodes OTLP requests; remembers (up to `cache_size`) the validated Labels of series seen."""

    def __init__(self, validator: Validator, *, cache_size: int = 100_000) -> None:
        self.validator = validator
        self.cache_size = cache_size
        self._known: dict[SeriesKey, Labels] = {}

    def decode(
        self, data: bytes, *, json: bool, tenant: str, now_ms: int, extra_labels: Mapping[str, str] | None = None
    ) -> OtlpResult:
        req = parse_request(data, json=json)
        b = BatchBuilder(tenant=tenant, validator=self.validator, where="data point", extra_labels=extra_labels)
        d = _Decoder(b, now_ms, self._known if not extra_labels else {})
        for rm in req.resource_metrics:
            d.resource(rm)
        d.result.batch = b.finish()
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
