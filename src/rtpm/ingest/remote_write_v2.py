"""Prometheus remote write 2.0: `io.prometheus.write.v2.Request` (snappy-compressed protobuf).

Labels, help and unit texts are references into the request's `symbols` table (whose first entry
is the empty string); each series carries its own metadata. Every sample that can be stored is
stored, native histograms and exemplars included (as in 1.0: ingest/proto/histograms.py, the
Histogram message has the same field numbers); what cannot (invalid series, samples outside the
accepted window, malformed histograms) is left out and reported: the spec's partial write answers
400 with the `X-Prometheus-Remote-Write-*-Written` counts of what was stored, so the sender
neither retries nor double-counts. `start_timestamp` (created timestamps) is read and not stored.

Speed: a series' labels are validated once per label set, not once per request: without extra
labels, the strings its labels_refs point at are the key of the validator's series cache (symbol
refs change from request to request, the strings do not). Metadata repeated on every series of a
family is applied once per request while it stays the same.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from rtpm.errors import BadDataError
from rtpm.ingest import remote_write
from rtpm.ingest.batching import INVALID_SERIES, NATIVE_HISTOGRAM, BatchBuilder, Refused
from rtpm.ingest.proto import TimeSeriesV2, WriteRequestV2
from rtpm.ingest.proto.histograms import HistogramDecodeError, decode_histogram
from rtpm.ingest.remote_write import _TYPES as METRIC_TYPES
from rtpm.ingest.validate import Validator
from rtpm.model.histograms import Exemplar
from rtpm.model.labels import METRIC_NAME, Labels, metric_name_of
from rtpm.model.samples import MetricType, WriteBatch

CONTENT_TYPE_PROTO = "io.prometheus.write.v2.Request"

# The first item of this decoder's keys in Validator.series_cache (whose other users key by a str).
_CACHE_KEY = object()


@dataclass(frozen=True, slots=True)
class Written:
    """What the X-Prometheus-Remote-Write-*-Written headers report."""

    samples: int = 0
    histograms: int = 0
    exemplars: int = 0

    def headers(self) -> dict[str, str]:
        return {
            "X-Prometheus-Remote-Write-Samples-Written": str(self.samples),
            "X-Prometheus-Remote-Write-Histograms-Written": str(self.histograms),
            "X-Prometheus-Remote-Write-Exemplars-Written": str(self.exemplars),
        }


def _parse(data: bytes) -> Any:
    try:
        return WriteRequestV2.FromString(data)
    except DecodeError as exc:
        raise BadDataError(f"body is not a remote write 2.0 Request: {exc}") from None


# Per TimeSeries: labels_refs, timestamps, values, (type, help_ref, unit_ref) or None; histograms
# and exemplars (upb messages).
_Series = tuple[
    tuple[int, ...], Sequence[int], Sequence[float], "tuple[int, int, int] | None", Sequence[Any], Sequence[Any]
]


def _from_upb(ts: Any) -> _Series:
    samples = ts.samples
    md = ts.metadata
    return (
        tuple(ts.labels_refs),
        [s.timestamp for s in samples],
        [s.value for s in samples],
        (md.type, md.help_ref, md.unit_ref) if ts.HasField("metadata") else None,
        ts.histograms,
        ts.exemplars,
    )


def _read(data: bytes, native: bool) -> tuple[list[str], Iterator[_Series]]:
    """The symbols and the series of a Request: read by the native module's parse_v2 where it can
    (plain series as tuples, the others parsed here by upb), else by upb whole."""
    module = remote_write.native_module() if native else None
    parsed = module.parse_v2(data) if module is not None else None
    if parsed is None:
        req = _parse(data)
        return list(req.symbols), (_from_upb(ts) for ts in req.timeseries)
    symbols, items = parsed

    def series() -> Iterator[_Series]:
        for item in items:
            if type(item) is tuple:
                yield (*item, (), ())
                continue
            try:
                ts = TimeSeriesV2.FromString(item)
            except DecodeError:
                _parse(data)  # raises the error of the whole message
                raise
            yield _from_upb(ts)

    return symbols, series()


def decode_v2(
    data: bytes,
    *,
    tenant: str,
    validator: Validator,
    extra_labels: Mapping[str, str] | None = None,
    native: bool | None = None,
) -> tuple[WriteBatch, Refused, Written]:
    """The acceptable samples, what was left out, and the written counts. BadDataError only for a
    body that is not a remote write 2.0 Request (or one with a broken symbols table). `native`
    (default: remote_write.NATIVE) reads the message with the C module when it was built."""
    symbols, items = _read(data, remote_write.NATIVE if native is None else native)
    if len(symbols) and symbols[0] != "":
        raise BadDataError('symbols[0] must be the empty string ""', details=[{"field": "symbols", "index": 0}])
    b = BatchBuilder(tenant=tenant, validator=validator, where="timeseries", extra_labels=extra_labels)
    series: dict[tuple[int, ...], Labels | None] = {}  # labels_refs -> validated labels
    cache = validator.series_cache if not extra_labels else None
    symbol = symbols.__getitem__
    help_limit = validator.limits.max_help_length
    applied: dict[str, tuple[MetricType, str, str]] = {}  # metric name -> metadata last applied
    for i, (refs, stamps, values, md, histograms, exemplars) in enumerate(items):
        n_samples, n_hist = len(stamps), len(histograms)
        if refs in series:
            labels = series[refs]
        else:
            key = None
            labels = None
            if cache is not None:
                try:
                    key = (_CACHE_KEY, *map(symbol, refs))
                except IndexError:  # a reference past the end: _labels says so
                    pass
                else:
                    labels = cache.get(key)
            if labels is None:
                labels = _labels(b, symbols, refs, i)
                if labels is not None and key is not None:
                    validator.remember_series(key, labels)
            series[refs] = labels
        if labels is None:
            b.refuse(INVALID_SERIES, n_samples, i)
            b.refuse(NATIVE_HISTOGRAM, n_hist, i)
            continue
        if n_samples == 1:
            b.add(labels, stamps[0], values[0], i)
        elif n_samples:
            b.extend(labels, stamps, values, i)
        for h in histograms:
            try:
                t, value = decode_histogram(h.SerializeToString())
            except HistogramDecodeError as exc:
                b.problem("histograms", str(exc), i)
                b.refuse(NATIVE_HISTOGRAM, 1, i)
                continue
            b.add_histogram(labels, t, value, i)
        for e in exemplars:
            pairs = [
                (_symbol(symbols, e.labels_refs[k]), _symbol(symbols, e.labels_refs[k + 1]))
                for k in range(0, len(e.labels_refs) - 1, 2)
            ]
            if len(e.labels_refs) % 2 or any(k is None or v is None for k, v in pairs):
                b.problem("exemplars.labels_refs", "not name, value pairs of references into symbols", i)
                continue
            b.add_exemplar(labels, Exemplar(tuple(sorted((str(k), str(v)) for k, v in pairs)), e.value, e.timestamp))
        if md is not None:
            md_type, help_ref, unit_ref = md
            help_text, unit = _symbol(symbols, help_ref), _symbol(symbols, unit_ref)
            type_ = METRIC_TYPES.get(md_type, MetricType.UNKNOWN)
            if help_text is None or unit is None:
                b.problem("metadata", "help_ref or unit_ref past the end of symbols", i)
            elif type_ is not MetricType.UNKNOWN or help_text or unit:
                name = metric_name_of(labels)
                # Applying what was last applied to a name again changes nothing (a help text over
                # the limit is a problem each time: not skipped).
                if applied.get(name) != (type_, unit, help_text):
                    b.metadata(name, type_, unit, help_text, i)
                    if len(help_text) <= help_limit:
                        applied[name] = (type_, unit, help_text)
    batch = b.finish(partial=True)
    written = Written(samples=len(batch.ts_ms), histograms=len(batch.h_ts_ms), exemplars=len(batch.exemplars))
    return batch, b.refused(), written


def _symbol(symbols: list[str], ref: int) -> str | None:
    return symbols[ref] if ref < len(symbols) else None


def _labels(b: BatchBuilder, symbols: list[str], refs: tuple[int, ...], index: int) -> Labels | None:
    if len(refs) % 2:
        b.problem("labels_refs", "an odd number of references (they come in name, value pairs)", index)
        return None
    name = ""
    others: dict[str, str] = {}
    for k in range(0, len(refs), 2):
        key, value = _symbol(symbols, refs[k]), _symbol(symbols, refs[k + 1])
        if key is None or value is None:
            b.problem("labels_refs", f"reference past the end of symbols ({len(symbols)} entries)", index)
            return None
        if key == METRIC_NAME:
            name = value
        elif key in others:
            b.problem(f"labels.{key}", "duplicate label name", index)
            return None
        elif value != "":
            others[key] = value
    if not name:
        b.problem("__name__", "series has no __name__ label (metric name)", index)
        return None
    made = b.make_series(name, others, index)
    return b.validator.intern(made) if made is not None else None
