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

    otlp.py            OtlpDecoder: points -> samples, the series cache, refusals
    otlp_wire.py       the wire reader (the lite protobuf parse, JSON, the number point layout)
    otlp_naming.py     OpenTelemetry -> Prometheus names, labels and units
    otlp_histograms.py exponential histograms -> native histograms
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from rtpm.errors import BadDataError
from rtpm.ingest import otlp_histograms
from rtpm.ingest.batching import INVALID_SERIES, MISSING, BatchBuilder, Refused
from rtpm.ingest.otlp_naming import attributes, format_float, metadata_unit, metric_name
from rtpm.ingest.otlp_wire import (
    TIME_DOUBLE,
    TIME_INT,
    LiteNumberDataPoint,
    encoded_attributes,
    parse_request,
    read_request,
)
from rtpm.ingest.proto import ExportMetricsServiceResponse, KeyValue
from rtpm.ingest.validate import Validator
from rtpm.model.labels import Labels
from rtpm.model.samples import STALE_NAN, MetricType, WriteBatch

DELTA, CUMULATIVE = 1, 2
NO_RECORDED_VALUE = 1

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
        timestamp (None when there were none). A point in the usual layout (`otlp_wire.TIME_DOUBLE`) whose
        attribute bytes are known is read in place: its series is found by those bytes and its
        sample goes straight into the batch's columns. Any other point takes `number`."""
        b, known, fresh = self.b, self.known, self.fresh
        batch = b.batch
        series_ref = batch.ref  # the index of a series in the batch (added when new)
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
                t, value = (TIME_DOUBLE if tag == 0x21 else TIME_INT).unpack_from(raw, o + 1)
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
                    refs.append(series_ref(series))
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
            dp = LiteNumberDataPoint.FromString(raw)
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
        if series is not None and key is not None and key[2] == encoded_attributes(attrs):
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
            b.metadata(prom, mtype, metadata_unit(unit), metric.description, self.point)
        elif latest is not None:
            b.metadata(prom, mtype, "", "", self.point)
        return latest


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
        req, unchecked = read_request(data, json=json)
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
