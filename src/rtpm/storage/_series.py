"""Backend-neutral pieces of the storage implementations: label encoding, series matching,
and flattening write batches into deduplicated columns."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import orjson

from rtpm.model.labels import Labels, Matcher, matches_all
from rtpm.model.samples import MetricMetadata, WriteBatch


def encode_labels(labels: Labels) -> str:
    return orjson.dumps(dict(labels)).decode()


def decode_labels(raw: str | bytes) -> Labels:
    return tuple(sorted(orjson.loads(raw).items()))


class LabelsCache:
    """series id -> decoded labels. Series never change once made, so entries never go stale;
    the cache is cleared when it grows past its bound."""

    def __init__(self, max_entries: int = 500_000) -> None:
        self._max = max_entries
        self._by_id: dict[int, Labels] = {}

    def get(self, series_id: int, raw: str | bytes) -> Labels:
        labels = self._by_id.get(series_id)
        if labels is None:
            if len(self._by_id) >= self._max:
                self._by_id.clear()
            labels = decode_labels(raw)
            self._by_id[series_id] = labels
        return labels


def filter_series(
    rows: Iterable[tuple[int, str | bytes]], matchers: Sequence[Matcher], cache: LabelsCache
) -> list[tuple[int, Labels]]:
    """Keep the (id, labels) of rows whose labels satisfy every matcher."""
    out = []
    for series_id, raw in rows:
        labels = cache.get(series_id, raw)
        if matches_all(labels, matchers):
            out.append((series_id, labels))
    out.sort(key=lambda item: item[1])
    return out


class SeriesIdCache:
    """tenant -> labels -> series id, bounded. Only ids of committed series go in (`remember`)."""

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self._max = max_entries
        self._size = 0
        self._by_tenant: dict[str, dict[Labels, int]] = {}
        # tenant -> id(labels) -> (labels, series id), for the very Labels objects remembered. The
        # decoders hand out one object per label set (Validator.intern), so a batch's series are
        # usually found here by identity, without hashing the whole label tuple. Holding the
        # object keeps its id from being reused while the entry lives.
        self._by_object: dict[str, dict[int, tuple[Labels, int]]] = {}

    def resolve(self, batches: Sequence[WriteBatch]) -> tuple[list[list[int]], list[tuple[str, Labels]]]:
        """Per batch, the id of each of its series (-1 where unknown), and the unknown (tenant, labels)."""
        per_batch: list[list[int]] = []
        missing: dict[tuple[str, Labels], None] = {}
        for b in batches:
            get = self._by_tenant.get(b.tenant, {}).get
            oget = self._by_object.get(b.tenant, {}).get
            ids = [
                hit[1] if (hit := oget(id(labels))) is not None and hit[0] is labels else get(labels, -1)
                for labels in b.series
            ]
            if -1 in ids:
                for labels, sid in zip(b.series, ids, strict=True):
                    if sid == -1:
                        missing[(b.tenant, labels)] = None
            per_batch.append(ids)
        return per_batch, list(missing)

    @staticmethod
    def complete(batches: Sequence[WriteBatch], per_batch: list[list[int]], new: dict[tuple[str, Labels], int]) -> None:
        """Fill the -1 holes left by `resolve` with the ids of newly made series."""
        if not new:
            return
        for b, ids in zip(batches, per_batch, strict=True):
            if -1 in ids:
                for i, sid in enumerate(ids):
                    if sid == -1:
                        ids[i] = new[(b.tenant, b.series[i])]

    def remember(self, entries: dict[tuple[str, Labels], int]) -> None:
        if self._size + len(entries) > self._max:
            self._by_tenant.clear()
            self._by_object.clear()
            self._size = 0
        for (tenant, labels), sid in entries.items():
            self._by_tenant.setdefault(tenant, {})[labels] = sid
            self._by_object.setdefault(tenant, {})[id(labels)] = (labels, sid)
        self._size += len(entries)


def order_by_series_ts(sids: npt.NDArray[np.int64], ts: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
    """The stable order by (series, ts). Usually one int64 key (series id shifted above the
    timestamps' span) sorted with numpy's stable sort, which merges sorted runs in linear time
    (the head merges two sorted blocks this way); lexsort when the ids are too large for that."""
    if len(ts) < 2:
        return np.arange(len(ts))
    base = int(ts.min())
    shift = max(1, int(ts.max() - base).bit_length())
    if shift < 62 and int(sids.min()) >= 0 and int(sids.max()) < (1 << (62 - shift)):
        return np.argsort((sids << shift) | (ts - base), kind="stable")
    return np.lexsort((ts, sids))


@dataclass(slots=True)
class FlatSamples:
    series_ids: npt.NDArray[np.int64]
    ts_ms: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.ts_ms)


def flatten(batches: Sequence[WriteBatch], per_batch_ids: list[list[int]]) -> FlatSamples:
    """All samples of `batches` as columns, sorted by (series, ts); for a repeated (series, ts) only
    the last written value is kept, so one flush never writes the same key twice. `per_batch_ids`
    gives the series id of each batch's series (from SeriesIdCache.resolve/complete)."""
    sid_parts, ts_parts, val_parts = [], [], []
    for b, ids in zip(batches, per_batch_ids, strict=True):
        if not b.ts_ms:
            continue
        lookup = np.asarray(ids, dtype=np.int64)
        sid_parts.append(lookup[np.asarray(b.refs, dtype=np.int64)])
        ts_parts.append(np.asarray(b.ts_ms, dtype=np.int64))
        val_parts.append(np.asarray(b.values, dtype=np.float64))
    if not sid_parts:
        empty_i = np.empty(0, dtype=np.int64)
        return FlatSamples(empty_i, empty_i, np.empty(0, dtype=np.float64))
    sids = np.concatenate(sid_parts)
    ts = np.concatenate(ts_parts)
    vals = np.concatenate(val_parts)
    order = order_by_series_ts(sids, ts)  # stable: equal keys keep write order
    sids, ts, vals = sids[order], ts[order], vals[order]
    if len(ts) > 1:
        last = np.ones(len(ts), dtype=bool)
        last[:-1] = (sids[1:] != sids[:-1]) | (ts[1:] != ts[:-1])
        if not last.all():
            sids, ts, vals = sids[last], ts[last], vals[last]
    return FlatSamples(sids, ts, vals)


def merged_metadata(batches: Sequence[WriteBatch]) -> dict[tuple[str, str], MetricMetadata]:
    """The last metadata given for each (tenant, metric name) across the batches."""
    out: dict[tuple[str, str], MetricMetadata] = {}
    for b in batches:
        for md in b.metadata:
            out[(b.tenant, md.name)] = md
    return out


def late_marks(flat: FlatSamples, late_before_ms: int, window_ms: int) -> list[tuple[str, int, int]]:
    """(kind, series_id, bucket) marks for samples older than `late_before_ms`: their rollup hour and
    their chunk window must be computed again by the background jobs."""
    late = flat.ts_ms < late_before_ms
    if not late.any():
        return []
    sids, ts = flat.series_ids[late], flat.ts_ms[late]
    out: list[tuple[str, int, int]] = []
    for kind, width in (("rollup", 3_600_000), ("compact", window_ms)):
        keys = np.unique(np.stack([sids, ts - ts % width]), axis=1)
        out.extend((kind, int(a), int(b)) for a, b in keys.T.tolist())
    return out
