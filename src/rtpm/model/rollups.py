"""Rollups: per-bucket summaries of one series (count, sum, min, max, first, last, increase).

`compute` builds them from samples; `coarsen` builds a coarser resolution from a finer one and
gives exactly what `compute` would give from the samples (the increase across bucket edges is
rebuilt from each bucket's first and last value). NaN samples (and staleness markers) are not
values and are left out. `increase` is a counter's increase within the bucket, resets counted
as restarts from zero, like Prometheus' `increase` without extrapolation."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

RESOLUTIONS_MS = (60_000, 300_000, 3_600_000, 86_400_000)
RESOLUTION_NAMES = {60_000: "1m", 300_000: "5m", 3_600_000: "1h", 86_400_000: "1d"}


@dataclass(slots=True)
class RollupRows:
    bucket: I64
    count: I64
    sum: F64
    min: F64
    max: F64
    first_ts: I64
    first_value: F64
    last_ts: I64
    last_value: F64
    increase: F64

    def __len__(self) -> int:
        return len(self.bucket)

    def take(self, mask_or_index: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> RollupRows:
        return RollupRows(*(getattr(self, f.name)[mask_or_index] for f in fields(self)))

    def rows(self) -> list[tuple[int, int, float, float, float, int, float, int, float, float]]:
        return list(
            zip(
                self.bucket.tolist(),
                self.count.tolist(),
                self.sum.tolist(),
                self.min.tolist(),
                self.max.tolist(),
                self.first_ts.tolist(),
                self.first_value.tolist(),
                self.last_ts.tolist(),
                self.last_value.tolist(),
                self.increase.tolist(),
                strict=True,
            )
        )

    @classmethod
    def from_rows(cls, rows: list[tuple[object, ...]]) -> RollupRows:
        if not rows:
            return empty()
        cols = list(zip(*rows, strict=True))

        def ints(i: int) -> I64:
            return np.array(cols[i], dtype=np.int64)

        def floats(i: int) -> F64:  # a NULL reads as NaN
            return np.array([np.nan if x is None else x for x in cols[i]], dtype=np.float64)

        return cls(ints(0), ints(1), floats(2), floats(3), floats(4), ints(5), floats(6), ints(7), floats(8), floats(9))


@dataclass(frozen=True, slots=True)
class RollupRead:
    """What `Querier.rollups` answers: the rollup rows of the matching series for the buckets from
    the querier's start up to `complete_until`, exactly what the samples there would give."""

    complete_until: int
    series: list[tuple[tuple[tuple[str, str], ...], RollupRows]]  # (labels, rows) per series


def empty() -> RollupRows:
    i, f = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    return RollupRows(i, i, f, f, f, i, f, i, f, f)


def _segments(keys: I64) -> tuple[I64, I64, I64]:
    """For sorted keys: the distinct keys, where each run starts and where it ends (exclusive)."""
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.empty(0, dtype=np.int64)
    ends = np.r_[starts[1:], len(keys)] if len(keys) else starts
    return keys[starts], starts, ends


def _increase_steps(values: F64) -> F64:
    """Increase from each sample to the next: the difference, or the new value after a reset."""
    d = np.diff(values)
    return np.where(d >= 0, d, values[1:])


def compute(ts: I64, values: F64, width_ms: int) -> RollupRows:
    """Rollups of one series' sorted samples in buckets [k*width, (k+1)*width)."""
    keep = ~np.isnan(values)
    ts, values = ts[keep], values[keep]
    if not len(ts):
        return empty()
    keys = ts - ts % width_ms
    buckets, starts, ends = _segments(keys)
    steps = _increase_steps(values) if len(values) > 1 else np.empty(0, dtype=np.float64)
    same_bucket = keys[1:] == keys[:-1]
    inner = np.where(same_bucket, steps, 0.0)
    csum = np.r_[0.0, np.cumsum(inner)]
    increase = csum[ends - 1] - csum[starts]
    return RollupRows(
        bucket=buckets,
        count=(ends - starts).astype(np.int64),
        sum=np.add.reduceat(values, starts),
        min=np.minimum.reduceat(values, starts),
        max=np.maximum.reduceat(values, starts),
        first_ts=ts[starts],
        first_value=values[starts],
        last_ts=ts[ends - 1],
        last_value=values[ends - 1],
        increase=increase,
    )


def coarsen(fine: RollupRows, width_ms: int) -> RollupRows:
    """Rollups at `width_ms` from sorted rollups of one series at a finer, dividing resolution."""
    if not len(fine):
        return empty()
    keys = fine.bucket - fine.bucket % width_ms
    buckets, starts, ends = _segments(keys)
    # the increase from one fine bucket's last value to the next one's first value
    edge = np.where(
        fine.first_value[1:] >= fine.last_value[:-1], fine.first_value[1:] - fine.last_value[:-1], fine.first_value[1:]
    )
    edge = np.where(keys[1:] == keys[:-1], edge, 0.0)
    inc = fine.increase.copy()
    inc[1:] += edge
    return RollupRows(
        bucket=buckets,
        count=np.add.reduceat(fine.count, starts),
        sum=np.add.reduceat(fine.sum, starts),
        min=np.minimum.reduceat(fine.min, starts),
        max=np.maximum.reduceat(fine.max, starts),
        first_ts=fine.first_ts[starts],
        first_value=fine.first_value[starts],
        last_ts=fine.last_ts[ends - 1],
        last_value=fine.last_value[ends - 1],
        increase=np.add.reduceat(inc, starts),
    )
