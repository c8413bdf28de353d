"""Selecting samples per step from loaded series, vectorised over all series and steps at once.

Loaded series are kept flat (`Flat`): all timestamps and values one series after another, with
`offsets[i]:offsets[i+1]` the samples of series i. `_positions` finds every series' window at
every step for all of them at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtpm.model.labels import Labels
from rtpm.model.samples import Series
from rtpm.model.stale import STALE_NAN_BITS
from rtpm.query.promql.values import F64, I64, RangeVec, Vector


@dataclass(slots=True)
class Flat:
    labels: list[Labels]
    ts: I64
    vals: F64
    offsets: I64  # (S + 1,)
    hvals: np.ndarray | None = None  # object array beside `vals`: Histogram samples (query/promql/histograms.py)

    @classmethod
    def of(cls, series: list[Series]) -> Flat:
        labels = [s.labels for s in series]
        if not series:
            return cls(labels, np.empty(0, np.int64), np.empty(0), np.zeros(1, np.int64))
        lens = np.fromiter((len(s.ts_ms) for s in series), dtype=np.int64, count=len(series))
        offsets = np.zeros(len(series) + 1, np.int64)
        np.cumsum(lens, out=offsets[1:])
        ts = np.concatenate([np.asarray(s.ts_ms, dtype=np.int64) for s in series])
        vals = np.concatenate([np.asarray(s.values, dtype=np.float64) for s in series])
        return cls(labels, ts, vals, offsets)

    def stale_mask(self) -> np.ndarray:
        return self.vals.view(np.uint64) == np.uint64(STALE_NAN_BITS)

    def without_stale(self) -> Flat:
        """The same series with stale markers removed (range vectors never contain them)."""
        stale = self.stale_mask()
        if not stale.any():
            return self
        keep = ~stale
        sid = np.repeat(np.arange(len(self.labels)), np.diff(self.offsets))
        counts = np.bincount(sid[keep], minlength=len(self.labels))
        offsets = np.zeros(len(self.labels) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        hvals = self.hvals[keep] if self.hvals is not None else None
        return Flat(self.labels, self.ts[keep], self.vals[keep], offsets, hvals)


_LOOP_MIN_AVG_LEN = 32  # series at least this long on average, and
_LOOP_MIN_SAMPLES_PER_POINT = 2  # many more samples than output points: one searchsorted per series


def _positions(flat: Flat, *times: I64) -> list[I64]:
    """For every series i and every array of times t: searchsorted(series_i_ts, t, "right")
    as an index into the flat arrays, shaped (S, T).

    Long series with many samples per output point are searched one by one (work per series and
    point, not per sample). Otherwise every sample is put in the first step at or after it
    (one searchsorted over the few step times), counted per series and step, and the counts
    summed along the steps."""
    s = len(flat.labels)
    n = len(flat.ts)
    if s == 0 or n == 0:
        return [np.zeros((s, len(t)), np.int64) for t in times]
    points = s * max(len(t) for t in times)
    if n >= _LOOP_MIN_AVG_LEN * s and n >= _LOOP_MIN_SAMPLES_PER_POINT * points:
        outs = [np.empty((s, len(t)), np.int64) for t in times]
        offs = flat.offsets.tolist()
        for i in range(s):
            a, b = offs[i], offs[i + 1]
            seg = flat.ts[a:b]
            for out, t in zip(outs, times, strict=True):
                out[i] = seg.searchsorted(t, "right")
                out[i] += a
        return outs
    sid = np.repeat(np.arange(s, dtype=np.int64), np.diff(flat.offsets))
    starts = flat.offsets[:-1, None]
    outs = []
    for t in times:
        order = None if (t[1:] >= t[:-1]).all() else np.argsort(t, kind="stable")
        st = t if order is None else t[order]
        width = len(st) + 1
        first_step = np.searchsorted(st, flat.ts, "left")  # sample ts counts at every step with t >= ts
        counts = np.bincount(sid * width + first_step, minlength=s * width).reshape(s, width)[:, :-1]
        pos = np.cumsum(counts, axis=1)
        pos += starts
        if order is not None:
            unsorted = np.empty_like(pos)
            unsorted[:, order] = pos
            pos = unsorted
        outs.append(pos)
    return outs


def instant(flat: Flat, eff: I64, lookback_ms: int) -> Vector:
    """The newest sample in (t - lookback, t] per series and step; none if it is a stale marker."""
    s, t = len(flat.labels), len(eff)
    if s == 0:
        return Vector.empty(t)
    (hi,) = _positions(flat, eff)
    idx = hi - 1
    start = flat.offsets[:-1][:, None]
    ok = idx >= start
    safe = np.where(ok, idx, 0)
    if len(flat.ts):
        sts = flat.ts[safe]
        vals = flat.vals[safe]
        ok &= sts > (eff - lookback_ms)[None, :]
        ok &= vals.view(np.uint64) != np.uint64(STALE_NAN_BITS)
    else:
        sts = np.zeros((s, t), np.int64)
        vals = np.zeros((s, t))
    hist = (
        np.where(ok, flat.hvals[safe], np.array(None, dtype=object))
        if flat.hvals is not None and len(flat.ts)
        else None
    )
    return Vector(list(flat.labels), vals, ok, sample_ts=sts, hist=hist)


def windows(flat: Flat, eff: I64, range_ms: int, eval_ms: I64) -> RangeVec:
    """Every series' samples in (t - range, t] per step, as index windows into the flat arrays."""
    hi, lo = _positions(flat, eff, eff - range_ms)
    return RangeVec(list(flat.labels), flat.ts, flat.vals, lo, hi, range_ms, eff, eval_ms, flat.hvals)
