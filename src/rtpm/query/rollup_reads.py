"""Answers from rollups: per-bucket aggregates of closed buckets at 1m, 5m, 1h or 1d."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import numpy as np

from rtpm.errors import BadDataError
from rtpm.model.labels import METRIC_NAME, Matcher
from rtpm.model.rollups import RESOLUTION_NAMES, RESOLUTIONS_MS, RollupRows, coarsen
from rtpm.model.time import format_duration, parse_duration
from rtpm.query.seed import Aggregation, BucketedSeries, bucketize
from rtpm.storage.base import Storage
from rtpm.storage.chunks import F64, I64
from rtpm.storage.maintenance import MaintenanceStore

RESOLUTION_BY_NAME = {name: width for width, name in RESOLUTION_NAMES.items()}


class RollupAggregation(StrEnum):
    AVG = "avg"
    SUM = "sum"
    MIN = "min"
    MAX = "max"
    COUNT = "count"
    FIRST = "first"
    LAST = "last"
    INCREASE = "increase"
    RATE = "rate"


def parse_resolution(raw: str) -> int:
    """`1m`, `5m`, `1h`, `1d`, any duration that is a whole multiple of one of them (`15m`, `2h`,
    `7d`: built from the largest resolution that divides it), or the same in seconds."""
    if raw in RESOLUTION_BY_NAME:
        return RESOLUTION_BY_NAME[raw]
    try:
        width = parse_duration(raw)
    except ValueError:
        width = 0
    if width <= 0 or source_resolution(width) is None:
        raise BadDataError(
            f"interval: {raw!r} is not a rollup resolution (1m, 5m, 1h, 1d) or a whole multiple of one, like 15m"
        )
    return width


def source_resolution(width_ms: int) -> int | None:
    """The largest rollup resolution that divides `width_ms` (None when none does)."""
    for res in reversed(RESOLUTIONS_MS):
        if width_ms % res == 0:
            return res
    return None


def interval_name(width_ms: int) -> str:
    return RESOLUTION_NAMES.get(width_ms) or format_duration(width_ms / 1000)


def _values(rows: RollupRows, agg: RollupAggregation, width_ms: int) -> np.ndarray:
    if agg is RollupAggregation.AVG:
        return rows.sum / rows.count
    if agg is RollupAggregation.SUM:
        return rows.sum
    if agg is RollupAggregation.MIN:
        return rows.min
    if agg is RollupAggregation.MAX:
        return rows.max
    if agg is RollupAggregation.COUNT:
        return rows.count.astype(np.float64)
    if agg is RollupAggregation.FIRST:
        return rows.first_value
    if agg is RollupAggregation.LAST:
        return rows.last_value
    if agg is RollupAggregation.INCREASE:
        return rows.increase
    return rows.increase / (width_ms / 1000.0)


async def aggregated(
    store: MaintenanceStore,
    *,
    tenant: str,
    matchers: Sequence[Matcher],
    start_ms: int,
    end_ms: int,
    width_ms: int,
    aggregation: RollupAggregation,
) -> tuple[list[BucketedSeries], int | None]:
    """Per matching series, one point per closed bucket wholly in [start_ms, end_ms]; and the time up to
    which rollups are complete (later buckets are not rolled up yet)."""
    found = await store.find_series(tenant, list(matchers))
    source = source_resolution(width_ms) or width_ms
    # buckets wholly inside [start_ms, end_ms]
    loaded = await store.load_rollups(source, [sid for sid, _ in found], start_ms, end_ms + 2 - source)
    complete_until = await store.get_watermark("rolled_up_until")
    out = []
    for sid, labels in found:
        rows = loaded.get(sid)
        if rows is None or not len(rows):
            continue
        if source != width_ms:  # a multiple of a resolution: merged from it, whole buckets only
            rows = coarsen(rows, width_ms)
            last = min(end_ms + 1, complete_until) if complete_until is not None else end_ms + 1
            rows = rows.take((rows.bucket >= start_ms) & (rows.bucket + width_ms <= last))
            if not len(rows):
                continue
        out.append(
            BucketedSeries(
                {k: v for k, v in labels if k != METRIC_NAME},
                rows.bucket,
                _values(rows, aggregation, width_ms).astype(np.float64),
            )
        )
    return out, complete_until


_SEED_FROM_ROLLUPS = {
    Aggregation.AVG,
    Aggregation.SUM,
    Aggregation.MIN,
    Aggregation.MAX,
    Aggregation.COUNT,
    Aggregation.RATE,
}


def rollup_width_for(start_ms: int, step_ms: int, aggregation: Aggregation) -> int | None:
    """The coarsest rollup resolution whose buckets tile the seed query's buckets exactly."""
    if aggregation not in _SEED_FROM_ROLLUPS:
        return None
    for width in reversed(RESOLUTIONS_MS):
        if step_ms % width == 0 and start_ms % width == 0:
            return width
    return None


def _pool(parts: list[tuple[I64, RollupRows]], agg: Aggregation, n_buckets: int) -> tuple[I64, F64]:
    """Combine the rollup rows of a group's series (each row tagged with its step-bucket index)
    into one value per step bucket, as `seed.bucketize` computes it from samples."""
    if agg is Aggregation.RATE:
        total = np.zeros(n_buckets)
        seen = np.zeros(n_buckets, dtype=bool)
        for idx, rows in parts:
            # per series and step bucket: coarsen the rollup rows that fall in it
            starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
            for lo, hi in zip(starts.tolist(), np.r_[starts[1:], len(idx)].tolist(), strict=True):
                piece = coarsen(rows.take(np.arange(lo, hi)), 1 << 62)
                seconds = (int(piece.last_ts[0]) - int(piece.first_ts[0])) / 1000.0
                if int(piece.count[0]) >= 2 and seconds > 0:
                    total[idx[lo]] += float(piece.increase[0]) / seconds
                    seen[idx[lo]] = True
        keep = np.flatnonzero(seen)
        return keep.astype(np.int64), total[keep]
    idx = np.concatenate([i for i, _ in parts])
    rows = [r for _, r in parts]
    sums = np.concatenate([r.sum for r in rows])
    counts = np.concatenate([r.count for r in rows]).astype(np.float64)
    mins = np.concatenate([r.min for r in rows])
    maxs = np.concatenate([r.max for r in rows])
    present = np.zeros(n_buckets, dtype=bool)
    present[idx] = True
    if agg in (Aggregation.SUM, Aggregation.AVG, Aggregation.COUNT):
        s = np.bincount(idx, weights=sums, minlength=n_buckets)
        c = np.bincount(idx, weights=counts, minlength=n_buckets)
        values = s if agg is Aggregation.SUM else c if agg is Aggregation.COUNT else s / np.where(c == 0, 1, c)
    elif agg is Aggregation.MIN:
        values = np.full(n_buckets, np.inf)
        np.minimum.at(values, idx, mins)
    else:
        values = np.full(n_buckets, -np.inf)
        np.maximum.at(values, idx, maxs)
    keep = np.flatnonzero(present)
    return keep.astype(np.int64), values[keep]


async def seed_buckets_from_rollups(
    store: MaintenanceStore,
    *,
    tenant: str,
    matchers: Sequence[Matcher],
    start_ms: int,
    split_ms: int,
    step_ms: int,
    width_ms: int,
    aggregation: Aggregation,
    group_by: Sequence[str] | None,
) -> dict[tuple[tuple[str, str], ...], tuple[I64, F64]] | None:
    """The seed query's buckets in [start_ms, split_ms) from rollups of `width_ms`, keyed like
    `seed.bucketize` groups them; None when rollups cannot give the same answer as the samples
    (not rolled up that far yet, or late samples there that are not rolled up yet)."""
    complete_until = await store.get_watermark("rolled_up_until")
    if complete_until is None or split_ms > complete_until:
        return None
    found = await store.find_series(tenant, list(matchers))
    ids = [sid for sid, _ in found]
    if await store.has_late_writes("rollup", ids, start_ms, split_ms):
        return None
    loaded = await store.load_rollups(width_ms, ids, start_ms, split_ms)
    n_buckets = max(1, (split_ms - start_ms) // step_ms)
    groups: dict[tuple[tuple[str, str], ...], list[tuple[I64, RollupRows]]] = {}
    for sid, labels in found:
        rows = loaded.get(sid)
        if rows is None or not len(rows):
            continue
        if group_by is None:
            key = labels
        else:
            d = dict(labels)
            key = tuple((k, d.get(k, "")) for k in group_by)
        groups.setdefault(key, []).append(((rows.bucket - start_ms) // step_ms, rows))
    out = {}
    for key, parts in groups.items():
        idx, values = _pool(parts, aggregation, n_buckets)
        out[key] = (start_ms + idx * step_ms, values.astype(np.float64))
    return out


async def seed_query(
    storage: Storage,
    *,
    tenant: str,
    matchers: Sequence[Matcher],
    start_ms: int,
    end_ms: int,
    step_ms: int,
    aggregation: Aggregation,
    group_by: Sequence[str] | None,
    max_samples: int,
    max_series: int,
) -> tuple[list[BucketedSeries], str]:
    """The seed's bucketed query, from rollups where they give the same answer as the samples
    (buckets aligned to a rollup resolution, closed and rolled up), the rest from samples.
    Returns the series and where they came from ("raw" or "rollup")."""
    width = rollup_width_for(start_ms, step_ms, aggregation)
    split = start_ms + ((end_ms + 1 - start_ms) // step_ms) * step_ms  # buckets wholly in range end here
    store: MaintenanceStore = storage.maintenance  # type: ignore[attr-defined]
    head = None
    if width is not None and split > start_ms:
        head = await seed_buckets_from_rollups(
            store,
            tenant=tenant,
            matchers=matchers,
            start_ms=start_ms,
            split_ms=split,
            step_ms=step_ms,
            width_ms=width,
            aggregation=aggregation,
            group_by=group_by,
        )
    raw_from = split if head is not None else start_ms
    found = await storage.querier(tenant, raw_from, end_ms).select(matchers, max_samples=max_samples)
    if len(found) > max_series:
        raise BadDataError(f"query matches {len(found)} series, more than max_query_series={max_series}")
    tail = bucketize(
        found, start_ms=start_ms, end_ms=end_ms, step_ms=step_ms, aggregation=aggregation, group_by=group_by
    )
    if head is None:
        return tail, "raw"
    if len(head) > max_series:
        raise BadDataError(f"query matches {len(head)} series, more than max_query_series={max_series}")
    merged: dict[tuple[tuple[str, str], ...], tuple[I64, F64]] = dict(head)
    for t in tail:
        key = tuple(sorted(t.labels.items())) if group_by is None else tuple((k, t.labels.get(k, "")) for k in group_by)
        if key in merged:
            ts, vals = merged[key]
            merged[key] = (np.concatenate([ts, t.ts_ms]), np.concatenate([vals, t.values]))
        else:
            merged[key] = (t.ts_ms, t.values)
    out = []
    for key, (ts, vals) in sorted(merged.items()):
        labels = dict(key) if group_by is None else {k: v for k, v in key if v != ""}
        out.append(BucketedSeries(labels, ts, vals))
    return out, "rollup"
