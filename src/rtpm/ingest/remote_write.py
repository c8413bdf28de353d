"""Prometheus remote write 1.0: a snappy-compressed (block format) protobuf `WriteRequest`.

`RemoteWriteDecoder.decode(raw_protobuf, ...)` -> WriteBatch, or BadDataError naming every invalid
series (by its index in the request). `decode_partial` (what the receiver uses) never refuses a
request for its series: it returns the acceptable samples and a `Refused` naming the series and
samples left out (invalid labels, samples outside the accepted window, native histograms that do
not decode). Samples may be any float, stale markers included. Native histograms (integer and
float, every schema, custom buckets) and exemplars are decoded (proto/histograms.py) and stored
beside the float samples. Metadata entries become metric metadata.

Speed: each TimeSeries is kept as the raw bytes of its encoding, and the decoder remembers (up to
`cache_size`) the validated Labels of series it has seen, keyed by the canonical encoding of their
Label fields. A series sent again in the usual layout (its labels, then one sample) costs a look
at the sample's bytes and one dictionary lookup; any other layout is parsed in full.

Native fast path: when the optional C extension `rtpm.ingest._rwdecode` was built (`pip install`
builds it where a C compiler is present; see _rwdecode.c), a request of plain TimeSeries is read
by hand in one call: series whose labels are known (the same keys and dictionaries as above) are
appended to the batch's columns, every other series is handed back to `_series_of` in request
order, and requests with anything else at the top level (metadata, unknown fields, a malformed
body) take the pure path whole. The batch, the refusals and the errors are the pure path's.
`RTPM_NATIVE=0` in the environment (or `RemoteWriteDecoder(..., native=False)`) turns it off.
"""

from __future__ import annotations

import importlib
import os
import struct
import threading
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from rtpm.errors import BadDataError
from rtpm.ingest.batching import INVALID_SERIES, MISSING, NATIVE_HISTOGRAM, BatchBuilder, Refused
from rtpm.ingest.proto import Label, WriteRequestLite
from rtpm.ingest.proto._descriptors import FILE_DESCRIPTOR_SET
from rtpm.ingest.proto.histograms import HistogramDecodeError, decode_exemplar, decode_histogram
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

_DOUBLE = struct.Struct("<d")


# The _rwdecode.c this code calls (its RWDECODE_API_VERSION): a module built from another source
# (an editable install not rebuilt since) is not used.
NATIVE_API_VERSION = 3


def _load_native() -> ModuleType | None:
    try:
        module = importlib.import_module("rtpm.ingest._rwdecode")
    except ImportError:
        return None
    if getattr(module, "API_VERSION", None) != NATIVE_API_VERSION:
        return None
    return module


_NATIVE_MODULE = _load_native()
# Whether decoders made without an explicit `native=` use the C fast path (when it was built).
NATIVE: bool = os.environ.get("RTPM_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def native_module() -> ModuleType | None:
    """The compiled fast path, or None where it was not built (the pure path is then used)."""
    return _NATIVE_MODULE


def parse_write_request(data: bytes) -> Any:
    try:
        return WriteRequestLite.FromString(data)
    except DecodeError as exc:
        raise BadDataError(f"body is not a valid remote write WriteRequest protobuf: {exc}") from None


def _raw_request_class() -> Any:
    """WriteRequestLite with each TimeSeries left as the raw bytes of its encoding (the same wire
    format; the decoder reads the usual layout in place and parses the rest as TimeSeriesLite)."""
    files = descriptor_pb2.FileDescriptorSet.FromString(FILE_DESCRIPTOR_SET)
    pool = descriptor_pool.DescriptorPool()
    for f in files.file:
        if f.package == "prometheus":
            for m in f.message_type:
                if m.name == "WriteRequestLite":
                    for fd in m.field:
                        if fd.name == "timeseries":
                            fd.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
                            fd.ClearField("type_name")
        pool.Add(f)
    return tuple(
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"prometheus.{name}"))
        for name in ("WriteRequestLite", "TimeSeriesLite")
    )


_RawWriteRequest, TimeSeriesLite = _raw_request_class()


def _parse_raw(data: bytes) -> Any:
    try:
        return _RawWriteRequest.FromString(data)
    except DecodeError:
        return parse_write_request(data)  # raises the error of the complete message type


def _timestamp(varint: bytes) -> int | None:
    """A Sample's timestamp from its encoded varint if that is well formed and at most 9 bytes
    (0 <= t < 2**63); None otherwise (the series is then parsed in full)."""
    n = len(varint)
    if n > 9 or varint[-1] >= 0x80:
        return None
    t = 0
    for shift, byte in enumerate(varint):
        if shift < n - 1 and byte < 0x80:
            return None
        t |= (byte & 0x7F) << (7 * shift)
    return t


def varint(n: int) -> bytes:
    """Protobuf's base-128 varint encoding of a non-negative int."""
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _labels_key(items: tuple[bytes, ...]) -> bytes:
    """The canonical encoding of a TimeSeries' Label fields: each as tag 0x0a, minimal length, bytes."""
    return b"".join([b"\x0a" + varint(len(item)) + item for item in items])


class RemoteWriteDecoder:
    """Decodes WriteRequests; keeps validated series between requests (bounded by `cache_size`)."""

    def __init__(self, validator: Validator, *, cache_size: int = 100_000, native: bool | None = None) -> None:
        self.validator = validator
        self.cache_size = cache_size
        # None: the module's NATIVE flag at each decode; False: always the pure path.
        self.native = native
        # The canonical encoding of a series' Label fields (see `_labels_key`) -> its Labels.
        self._known: dict[bytes, Labels] = {}
        # The same entries for the native path (a _rwdecode.KnownSeries), made at its first use.
        # One decode at a time uses or changes it: a big body is decoded in a thread while others
        # are decoded on the event loop, and a native decode gives up the GIL in its callbacks.
        self._table: Any = None
        self._table_lock = threading.RLock()

    def decode(self, data: bytes, *, tenant: str, extra_labels: Mapping[str, str] | None = None) -> WriteBatch:
        """Every sample, or BadDataError if any series or sample cannot be accepted."""
        return self._decode(data, tenant, extra_labels, partial=False)[0]

    def decode_partial(
        self, data: bytes, *, tenant: str, extra_labels: Mapping[str, str] | None = None
    ) -> tuple[WriteBatch, Refused]:
        """The acceptable samples, and what was left out. Raises only for a body that is not a
        WriteRequest at all, or one over the batch limits."""
        return self._decode(data, tenant, extra_labels, partial=True)

    def _decode(
        self, data: bytes, tenant: str, extra_labels: Mapping[str, str] | None, *, partial: bool
    ) -> tuple[WriteBatch, Refused]:
        b = BatchBuilder(tenant=tenant, validator=self.validator, where="series", extra_labels=extra_labels)
        # Series validated in earlier requests are reused only when no extra labels apply.
        known = self._known if not extra_labels else {}
        fresh: dict[bytes, Labels] = {}
        lo, hi = b.lo_ms, b.hi_ms
        batch = b.batch
        series_list = batch.series
        refs, ts_col, value_col = batch.refs, batch.ts_ms, batch.values
        ref_of: dict[bytes, int] = {}  # labels key -> the series' index in this batch
        native = _NATIVE_MODULE if (NATIVE if self.native is None else self.native) else None
        if native is not None:
            with self._table_lock:
                if self._table is None:
                    self._table = native.KnownSeries()
                    for key, known_labels in self._known.items():
                        self._table.add(key, known_labels)
                if native.decode(
                    data,
                    self._table if not extra_labels else None,
                    fresh,
                    batch.series_index,
                    series_list,
                    refs,
                    ts_col,
                    value_col,
                    lo,
                    hi,
                    b.add,
                    lambda raw, i: self._series_of(b, data, raw, i, known, fresh, ref_of),
                ):
                    return self._finish(b, fresh, extra_labels, partial=partial)
        req = _parse_raw(data)
        stamps: dict[bytes, int] = {}  # encoded timestamp varint -> its value (one request's)
        rfind, unpack_double = bytes.rfind, _DOUBLE.unpack_from
        for i, raw in enumerate(req.timeseries):
            # The usual layout: the Label fields, then one Sample {value, timestamp} (or one without
            # a value, i.e. 0). The tail is checked field by field; the head is used only when it is
            # exactly the encoding of a series already validated, so the split is the one a full
            # parse makes. Everything else is parsed in full by `_series_of`.
            n = len(raw)
            pos = rfind(raw, b"\x10", n - 11, n - 1)  # the timestamp's tag
            if pos >= 2:
                varint = raw[pos + 1 :]
                t = stamps.get(varint)
                if t is None:
                    t = _timestamp(varint)
                    if t is not None:
                        stamps[varint] = t
                if t is not None:
                    size = n - pos
                    if pos >= 11 and raw[pos - 11] == 0x12 and raw[pos - 10] == size + 9 and raw[pos - 9] == 0x09:
                        head = raw[: pos - 11]
                        value = unpack_double(raw, pos - 8)[0]
                    elif raw[pos - 2] == 0x12 and raw[pos - 1] == size:
                        head = raw[: pos - 2]
                        value = 0.0
                    else:
                        head = None
                    if head is not None:
                        ref = ref_of.get(head)
                        if ref is None:
                            labels = known.get(head) or fresh.get(head)
                            if labels is not None:
                                ref = ref_of[head] = batch.ref(labels)
                        if ref is not None:
                            if lo <= t <= hi:
                                refs.append(ref)
                                ts_col.append(t)
                                value_col.append(value)
                            else:
                                b.add(series_list[ref], t, value, i)
                            continue
            self._series_of(b, data, raw, i, known, fresh, ref_of)
        for j, md in enumerate(req.metadata):
            b.metadata(md.metric_family_name, _TYPES.get(md.type, MetricType.UNKNOWN), md.unit, md.help, j)
        return self._finish(b, fresh, extra_labels, partial=partial)

    def _finish(
        self, b: BatchBuilder, fresh: dict[bytes, Labels], extra_labels: Mapping[str, str] | None, *, partial: bool
    ) -> tuple[WriteBatch, Refused]:
        batch = b.finish(partial=partial)
        if fresh and not extra_labels:
            with self._table_lock:
                table = self._table
                if len(self._known) + len(fresh) > self.cache_size:
                    self._known.clear()
                    if table is not None:
                        table.clear()
                if len(fresh) <= self.cache_size:
                    self._known.update(fresh)
                    if table is not None:
                        for key, labels in fresh.items():
                            table.add(key, labels)
        return batch, b.refused()

    def _series_of(
        self,
        b: BatchBuilder,
        data: bytes,
        raw: bytes,
        i: int,
        known: dict[bytes, Labels],
        fresh: dict[bytes, Labels],
        ref_of: dict[bytes, int],
    ) -> None:
        """Add the samples of TimeSeries `i` (its encoding `raw`), parsed in full."""
        try:
            ts = TimeSeriesLite.FromString(raw)
        except DecodeError:
            parse_write_request(data)  # raises the error of the whole message
            raise
        samples = ts.samples
        if not samples and not ts.histograms and not ts.exemplars:
            return
        items = tuple(ts.labels)
        key = _labels_key(items)
        batch = b.batch
        series_list = batch.series
        ref = ref_of.get(key)
        if ref is None:
            labels = known.get(key) or fresh.get(key)
            if labels is None:
                found = b.cache.get(key, MISSING)
                if found is MISSING:
                    found = b.cache[key] = self._series(b, items, i)
                    if found is not None:
                        fresh[key] = found
                if found is None:
                    b.refuse(INVALID_SERIES, len(samples) + len(ts.histograms), i)
                    return
                assert isinstance(found, tuple)
                labels = found
            ref = ref_of[key] = batch.ref(labels)
        labels = series_list[ref]
        if len(samples) == 1:
            s = samples[0]
            b.add(labels, s.timestamp, s.value, i)
        elif samples:
            b.extend(labels, [s.timestamp for s in samples], [s.value for s in samples], i)
        for raw_h in ts.histograms:
            try:
                t, h = decode_histogram(raw_h)
            except HistogramDecodeError as exc:
                b.problem("histograms", str(exc), i)
                b.refuse(NATIVE_HISTOGRAM, 1, i)
                continue
            b.add_histogram(labels, t, h, i)
        for raw_e in ts.exemplars:
            try:
                b.add_exemplar(labels, decode_exemplar(raw_e))
            except HistogramDecodeError as exc:
                b.problem("exemplars", str(exc), i)

    @staticmethod
    def _series(b: BatchBuilder, raw: tuple[bytes, ...], index: int) -> Labels | None:
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
        made = b.make_series(name, others, index)
        return b.validator.intern(made) if made is not None else None


def decode_write_request(
    data: bytes,
    *,
    tenant: str,
    validator: Validator,
    extra_labels: Mapping[str, str] | None = None,
) -> WriteBatch:
    """One-off decode (no series remembered between calls)."""
    return RemoteWriteDecoder(validator).decode(data, tenant=tenant, extra_labels=extra_labels)
