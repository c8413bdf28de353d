"""The seed's JSON query: samples of one metric bucketed by `step` and aggregated per bucket,
per series or per group of series (`group_by`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from rtpm.errors import LimitExceeded
from rtpm.model.labels import METRIC_NAME, Labels
from rtpm.model.samples import Series


class Aggregation(StrEnum):
    AVG = "avg"
    SUM = "sum"
    MIN = "min"
    MAX = "max"
    COUNT = "count"
    P50 = "p50"
    P90 = "p90"
    P95 = "p95"
    P99 = "p99"
    RATE = "rate"


_PERCENTILES = {Aggregation.P50: 50.0, Aggregation.P90: 90.0, Aggregation.P95: 95.0, Aggregation.P99: 99.0}


@dataclass(frozen=True, slots=True)
class BucketedSeries:
    labels: dict[str, str]
    ts_ms: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]


def bucket_count(start_ms: int, end_ms: int, step_ms: int) -> int:
    return (end_ms - start_ms) // step_ms + 1


def check_points(start_ms: int, end_ms: int, step_ms: int, max_points: int) -> None:
    n = bucket_count(start_ms, end_ms, step_ms)
    if n > max_points:
        raise LimitExceeded(
            f"the range and step give {n} points per series, more than the limit of {max_points}; "
            "use a larger step or a shorter range"
        )


def bucketize(
    series: Sequence[Series],
    *,
    start_ms: int,
    end_ms: int,
    step_ms: int,
    aggregation: Aggregation,
    group_by: Sequence[str] | None,
) -> list[BucketedSeries]:
    """Aggregate samples in buckets `[start + k*step, start + (k+1)*step)`, each reported at its
    start. Without `group_by` every series is its own group; with it, series sharing those label
    values are pooled (an empty `group_by` pools everything). Stale markers (NaN) are ignored."""
    groups: dict[Labels, list[Series]] = {}
    for s in series:
        if group_by is None:
            key = s.labels
        else:
            d = dict(s.labels)
            key = tuple((k, d.get(k, "")) for k in group_by)
        groups.setdefault(key, []).append(s)
    out = []
    for key, members in sorted(groups.items()):
        ts, vals = _aggregate(members, start_ms, step_ms, aggregation)
        if len(ts):
            labels = dict(key)
            if group_by is not None:
                labels = {k: v for k, v in labels.items() if v != ""}
            out.append(BucketedSeries(labels, ts, vals))
    return out


def _aggregate(
    members: list[Series], start_ms: int, step_ms: int, agg: Aggregation
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    if agg is Aggregation.RATE:
        return _rate(members, start_ms, step_ms)
    ts = np.concatenate([m.ts_ms for m in members])
    vals = np.concatenate([m.values for m in members])
    keep = ~np.isnan(vals)
    ts, vals = ts[keep], vals[keep]
    if not len(ts):
        return ts, vals
    idx = (ts - start_ms) // step_ms
    order = np.argsort(idx, kind="stable")
    idx, vals = idx[order], vals[order]
    buckets, starts = np.unique(idx, return_index=True)
    bucket_ts = start_ms + buckets * step_ms
    if agg is Aggregation.SUM:
        res = np.add.reduceat(vals, starts)
    elif agg is Aggregation.AVG:
        res = np.add.reduceat(vals, starts) / np.diff(np.append(starts, len(vals)))
    elif agg is Aggregation.MIN:
        res = np.minimum.reduceat(vals, starts)
    elif agg is Aggregation.MAX:
        res = np.maximum.reduceat(vals, starts)
    elif agg is Aggregation.COUNT:
        res = np.diff(np.append(starts, len(vals))).astype(np.float64)
    else:
        q = _PERCENTILES[agg]
        res = np.array([np.percentile(part, q) for part in np.split(vals, starts[1:])], dtype=np.float64)
    return bucket_ts.astype(np.int64), res.astype(np.float64)


def _rate(members: list[Series], start_ms: int, step_ms: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Per-second increase of a counter within each bucket (resets counted as restarts from 0),
    summed over the group's series. Buckets with fewer than two samples of a series give nothing."""
    per_bucket: dict[int, float] = {}
    for m in members:
        keep = ~np.isnan(m.values)
        ts, vals = m.ts_ms[keep], m.values[keep]
        if len(ts) < 2:
            continue
        idx = (ts - start_ms) // step_ms
        buckets, starts = np.unique(idx, return_index=True)
        ends = np.append(starts[1:], len(ts))
        for b, lo, hi in zip(buckets.tolist(), starts.tolist(), ends.tolist(), strict=True):
            if hi - lo < 2:
                continue
            v = vals[lo:hi]
            deltas = np.diff(v)
            increase = float(np.where(deltas < 0, v[1:], deltas).sum())
            seconds = (int(ts[hi - 1]) - int(ts[lo])) / 1000.0
            if seconds > 0:
                per_bucket[b] = per_bucket.get(b, 0.0) + increase / seconds
    if not per_bucket:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    keys = sorted(per_bucket)
    return (
        np.array([start_ms + k * step_ms for k in keys], dtype=np.int64),
        np.array([per_bucket[k] for k in keys], dtype=np.float64),
    )


def raw_points(series: Sequence[Series]) -> list[BucketedSeries]:
    """Samples as they are (no step): stale markers dropped."""
    out = []
    for s in series:
        keep = ~np.isnan(s.values)
        labels = {k: v for k, v in s.labels if k != METRIC_NAME}
        out.append(BucketedSeries(labels, s.ts_ms[keep], s.values[keep]))
    return out
