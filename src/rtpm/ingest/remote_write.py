"""Prometheus remote write 1.0: a snappy-compressed (block format) protobuf `WriteRequest`.

`RemoteWriteDecoder.decode(raw_protobuf, ...)` -> WriteBatch, or BadDataError naming every invalid
series (by its index in the request). Samples may be any float, stale markers included. Exemplars
are ignored; native histograms are refused. Metadata entries become metric metadata.

Speed: a series' labels are kept as the raw bytes of its encoded Label messages, and the decoder
remembers (up to `cache_size`) the validated Labels of series it has seen, so a series sent again
costs one dictionary lookup instead of decoding and validating its labels again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf.message import DecodeError

from rtpm.errors import BadDataError
from rtpm.ingest.batching import MISSING, BatchBuilder
from rtpm.ingest.proto import Label, WriteRequestLite
from rtpm.ingest.validate import Validator
from rtpm.model.labels import METRIC_NAME, Labels
from rtpm.model.samples import MetricType, WriteBatch

# prometheus.MetricMetadata.MetricType -> ours (gauge histograms are histograms to a reader;
# info and stateset are exposed as gauges by Prometheus).
_TYPES = {
    0: MetricType.UNKNOWN,
    1: MetricType.COUNTER,
    2: MetricType.GAUGE,
    3: MetricType.HISTOGRAM,
    4: MetricType.HISTOGRAM,
    5: MetricType.SUMMARY,
    6: MetricType.GAUGE,
    7: MetricType.GAUGE,
}

NATIVE_HISTOGRAMS_REFUSED = (
    "native histograms are not supported; send classic histograms (disable native histogram "
    "ingestion for this target, or set send_native_histograms: false in remote_write)"
)

RawKey = tuple[bytes, ...]


def parse_write_request(data: bytes) -> Any:
    try:
        return WriteRequestLite.FromString(data)
    except DecodeError as exc:
        raise BadDataError(f"body is not a valid remote write WriteRequest protobuf: {exc}") from None


class RemoteWriteDecoder:
    """Decodes WriteRequests; keeps validated series between requests (bounded by `cache_size`)."""

    def __init__(self, validator: Validator, *, cache_size: int = 100_000) -> None:
        self.validator = validator
        self.cache_size = cache_size
        self._known: dict[RawKey, Labels] = {}

    def decode(self, data: bytes, *, tenant: str, extra_labels: Mapping[str, str] | None = None) -> WriteBatch:
        req = parse_write_request(data)
        b = BatchBuilder(tenant=tenant, validator=self.validator, where="series", extra_labels=extra_labels)
        # Series validated in earlier requests are reused only when no extra labels apply.
        known = self._known if not extra_labels else {}
        fresh: dict[RawKey, Labels] = {}
        lo, hi = b.lo_ms, b.hi_ms
        batch = b.batch
        series_list, index = batch.series, batch._index
        refs, ts_col, value_col = batch.refs, batch.ts_ms, batch.values
        ref_of: dict[RawKey, int] = {}  # raw labels -> the series' index in this batch
        for i, ts in enumerate(req.timeseries):
            samples = ts.samples
            if not samples:
                if len(ts.histograms):
                    b.problem("histograms", NATIVE_HISTOGRAMS_REFUSED, i)
                continue  # otherwise exemplars only
            key = tuple(ts.labels)
            ref = ref_of.get(key)
            if ref is None:
                labels = known.get(key)
                if labels is None:
                    found = b.cache.get(key, MISSING)
                    if found is MISSING:
                        found = b.cache[key] = self._series(b, key, i)
                        if found is not None:
                            fresh[key] = found
                    if found is None:
                        continue
                    assert isinstance(found, tuple)
                    labels = found
                ref = index.get(labels)
                if ref is None:
                    ref = index[labels] = len(series_list)
                    series_list.append(labels)
                ref_of[key] = ref
            if len(samples) == 1:
                s = samples[0]
                t = s.timestamp
                if lo <= t <= hi:
                    refs.append(ref)
                    ts_col.append(t)
                    value_col.append(s.value)
                else:
                    b.add(series_list[ref], t, s.value, i)
            else:
                b.extend(series_list[ref], [s.timestamp for s in samples], [s.value for s in samples], i)
        for j, md in enumerate(req.metadata):
            b.metadata(md.metric_family_name, _TYPES.get(md.type, MetricType.UNKNOWN), md.unit, md.help, j)
        batch = b.finish()
        if fresh and not extra_labels:
            if len(self._known) + len(fresh) > self.cache_size:
                self._known.clear()
            if len(fresh) <= self.cache_size:
                self._known.update(fresh)
        return batch

    @staticmethod
    def _series(b: BatchBuilder, raw: RawKey, index: int) -> Labels | None:
        name = ""
        others: dict[str, str] = {}
        for item in raw:
            try:
                label = Label.FromString(item)
            except DecodeError as exc:
                b.problem("labels", f"invalid Label message: {exc}", index)
                return None
            k, v = label.name, label.value
            if k == METRIC_NAME:
                name = v
            elif k in others:
                b.problem(f"labels.{k}", "duplicate label name", index)
                return None
            elif v != "":
                others[k] = v
        if not name:
            b.problem("__name__", "series has no __name__ label (metric name)", index)
            return None
        return b.make_series(name, others, index)


def decode_write_request(
    data: bytes,
    *,
    tenant: str,
    validator: Validator,
    extra_labels: Mapping[str, str] | None = None,
) -> WriteBatch:
    """One-off decode (no series remembered between calls)."""
    return RemoteWriteDecoder(validator).decode(data, tenant=tenant, extra_labels=extra_labels)
