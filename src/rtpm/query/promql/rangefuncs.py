"""Functions over range vectors: rate/increase/delta, irate/idelta, deriv, predict_linear, the
*_over_time family, changes, resets, holt_winters. Each maps a `RangeVec` (plus per-step scalar
arguments) to a `Vector`, computed for all series and steps together.

Windows are either reduced from prefix sums (counts, resets, changes) or gathered into a
(windows, max_window_len) matrix in bounded chunks and reduced along the last axis.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rtpm.errors import QueryError
from rtpm.query.promql.numerics import quantile_rows, stable_mean, stable_sum, variance
from rtpm.query.promql.values import F64, I64, RangeVec, Vector, drop_name

CHUNK_ELEMS = 2_000_000

# fn(values (n, W), mask (n, W), counts (n,), timestamps (n, W), step index (n,)) -> values (n,)
Reducer = Callable[[F64, np.ndarray, I64, I64, I64], F64]


def _out(rv: RangeVec, values: F64, present: np.ndarray, keep_name: bool = False) -> Vector:
    labels = list(rv.labels) if keep_name else [drop_name(lb) for lb in rv.labels]
    return Vector(labels, values, present)


def gather(rv: RangeVec, fn: Reducer, min_count: int = 1, keep_name: bool = False) -> Vector:
    s, t = rv.lo.shape
    lo = rv.lo.ravel()
    n = (rv.hi - rv.lo).ravel()
    out = np.full(s * t, np.nan)
    sel = np.flatnonzero(n >= min_count)
    if len(sel):
        w = int(n[sel].max())
        per = max(1, CHUNK_ELEMS // max(w, 1))
        ar = np.arange(w, dtype=np.int64)
        for i in range(0, len(sel), per):
            part = sel[i : i + per]
            cnt = n[part]
            mask = ar[None, :] < cnt[:, None]
            idx = np.where(mask, lo[part][:, None] + ar[None, :], 0)
            out[part] = fn(rv.vals[idx], mask, cnt, rv.ts[idx], part % t)
    present = (n >= min_count).reshape(s, t)
    return _out(rv, out.reshape(s, t), present, keep_name)


# ---- rate family ---------------------------------------------------------------------------


def extrapolated_rate(rv: RangeVec, is_counter: bool, is_rate: bool) -> Vector:
    s, t = rv.lo.shape
    n = rv.hi - rv.lo
    ok = n >= 2
    out = np.full((s, t), np.nan)
    if not ok.any():
        return _out(rv, out, ok)
    every = bool(ok.all())  # the usual case: no masking, flat views instead of copies
    if every:
        first, last, count = rv.lo.ravel(), rv.hi.ravel() - 1, n.ravel()
        end = np.tile(rv.end_ms, s)
    else:
        first, last, count = rv.lo[ok], rv.hi[ok] - 1, n[ok]
        end = np.broadcast_to(rv.end_ms[None, :], (s, t))[ok]
    v, ts = rv.vals, rv.ts
    fv = v[first]
    result = v[last] - fv
    if is_counter:
        result += _reset_correction(v, first, last)
    first_t, last_t = ts[first], ts[last]
    to_start = (first_t - (end - rv.range_ms)) / 1000.0
    to_end = (end - last_t) / 1000.0
    sampled = (last_t - first_t) / 1000.0
    avg = sampled / (count - 1)
    # Prometheus 3: a boundary further than 1.1 average intervals away is extrapolated by half an
    # interval; then a counter is not extrapolated below zero (the zero point, when nearer, wins).
    threshold = avg * 1.1
    half = avg / 2
    to_start = np.where(to_start >= threshold, half, to_start)
    if is_counter:
        zero_ok = (result > 0) & (fv >= 0)
        to_zero = np.where(zero_ok, sampled * (fv / np.where(result == 0, 1.0, result)), np.inf)
        np.minimum(to_start, to_zero, out=to_start, where=zero_ok)
    interval = sampled + to_start + np.where(to_end >= threshold, half, to_end)
    factor = interval / sampled
    if is_rate:
        factor /= rv.range_ms / 1000.0
    result *= factor
    if every:
        out = result.reshape(s, t)
    else:
        out[ok] = result
    return _out(rv, out, ok)


def _reset_correction(v: F64, first: I64, last: I64) -> F64:
    """Per window [first, last]: the sum of v[i-1] over the counter resets (v[i] < v[i-1]) at
    first < i <= last. Resets are rare, so they are found once and summed by position."""
    resets = np.flatnonzero(v[1:] < v[:-1]) + 1
    if not len(resets):
        return np.zeros(len(first))
    c = np.concatenate(([0.0], np.cumsum(v[resets - 1])))
    return c[np.searchsorted(resets, last, "right")] - c[np.searchsorted(resets, first, "right")]


def instant_delta(rv: RangeVec, is_rate: bool) -> Vector:
    s, t = rv.lo.shape
    n = rv.hi - rv.lo
    ok = n >= 2
    out = np.full((s, t), np.nan)
    if ok.any():
        last = rv.hi[ok] - 1
        prev = last - 1
        lv, pv = rv.vals[last], rv.vals[prev]
        dt = rv.ts[last] - rv.ts[prev]
        res = lv - pv
        if is_rate:
            res = np.where(lv < pv, lv, res) / (dt / 1000.0)
        good = dt != 0
        sub = np.full(len(res), np.nan)
        sub[good] = res[good]
        out[ok] = sub
        ok = ok.copy()
        ok[ok] = good
    return _out(rv, out, ok)


def _pair_count(rv: RangeVec, pred: Callable[[F64, F64], np.ndarray]) -> Vector:
    """Number of consecutive sample pairs within each window for which pred(prev, cur) holds."""
    v = rv.vals
    d = np.zeros(len(v), np.int64)
    if len(v) > 1:
        d[1:] = pred(v[:-1], v[1:])
    c = np.cumsum(d)
    n = rv.hi - rv.lo
    ok = n >= 1
    out = np.full(rv.lo.shape, np.nan)
    if ok.any():
        first = rv.lo[ok]
        last = rv.hi[ok] - 1
        out[ok] = (c[last] - c[first]).astype(np.float64)
    return _out(rv, out, ok)


def changes(rv: RangeVec) -> Vector:
    return _pair_count(rv, lambda a, b: (a != b) & ~(np.isnan(a) & np.isnan(b)))


def resets(rv: RangeVec) -> Vector:
    return _pair_count(rv, lambda a, b: b < a)


# ---- regressions -----------------------------------------------------------------------------


def _regression(v: F64, mask: np.ndarray, cnt: I64, x: F64) -> tuple[F64, F64]:
    nf = cnt.astype(np.float64)
    xm = np.where(mask, x, 0.0)
    ym = np.where(mask, v, 0.0)
    sum_x = xm.sum(axis=1)
    sum_y = ym.sum(axis=1)
    sum_xy = (xm * ym).sum(axis=1)
    sum_x2 = (xm * xm).sum(axis=1)
    cov = sum_xy - sum_x * sum_y / nf
    var = sum_x2 - sum_x * sum_x / nf
    slope = cov / var
    intercept = sum_y / nf - slope * sum_x / nf
    first = v[:, 0]
    const = np.all(~mask | (v == first[:, None]), axis=1)
    inf_first = np.isinf(first)
    slope = np.where(const, np.where(inf_first, np.nan, 0.0), slope)
    intercept = np.where(const, np.where(inf_first, np.nan, first), intercept)
    return slope, intercept


def deriv(rv: RangeVec) -> Vector:
    def fn(v: F64, mask: np.ndarray, cnt: I64, ts: I64, col: I64) -> F64:
        x = (ts - ts[:, :1]) / 1e3
        return _regression(v, mask, cnt, x)[0]

    return gather(rv, fn, min_count=2)


def predict_linear(rv: RangeVec, duration: F64) -> Vector:
    def fn(v: F64, mask: np.ndarray, cnt: I64, ts: I64, col: I64) -> F64:
        x = (ts - rv.eval_ms[col][:, None]) / 1e3
        slope, intercept = _regression(v, mask, cnt, x)
        return slope * duration[col] + intercept

    return gather(rv, fn, min_count=2)


def holt_winters(rv: RangeVec, sf: F64, tf: F64) -> Vector:
    for name, arr in (("smoothing", sf), ("trend", tf)):
        bad = (arr <= 0) | (arr >= 1)
        if bad.any():
            raise QueryError(
                f"invalid {name} factor. Expected: 0 < {'sf' if name == 'smoothing' else 'tf'} < 1, "
                f"got: {float(arr[np.argmax(bad)]):f}"
            )

    def fn(v: F64, mask: np.ndarray, cnt: I64, ts: I64, col: I64) -> F64:
        a, b_ = sf[col], tf[col]
        s1 = v[:, 0].copy()
        b = v[:, 1] - v[:, 0]
        s0 = np.zeros(len(s1))
        for i in range(1, v.shape[1]):
            live = i < cnt
            if i > 1:
                nb = b_ * (s1 - s0) + (1 - b_) * b
            else:
                nb = b
            x = a * v[:, i]
            y = (1 - a) * (s1 + nb)
            ns1 = x + y
            s0 = np.where(live, s1, s0)
            s1 = np.where(live, ns1, s1)
            b = np.where(live, nb, b)
        return s1

    return gather(rv, fn, min_count=2)


# ---- *_over_time -----------------------------------------------------------------------------


def _masked(v: F64, mask: np.ndarray, fill: float) -> F64:
    return np.where(mask, v, fill)


def _sum(v: F64, mask: np.ndarray, cnt: I64, ts: I64, col: I64) -> F64:
    return stable_sum(v, mask, 1)


def _avg(v: F64, mask: np.ndarray, cnt: I64, ts: I64, col: I64) -> F64:
    return stable_mean(v, mask, 1)


def _count(v: F64, mask: np.ndarray, cnt: I64, ts: I64, col: I64) -> F64:
    return cnt.astype(np.float64)


def _min(v: F64, mask: np.ndarray, cnt: I64, ts: I64, col: I64) -> F64:
    real = mask & ~np.isnan(v)
    out = np.where(real, v, np.inf).min(axis=1)
    return np.where(real.any(axis=1), out, np.nan)


def _max(v: F64, mask: np.ndarray, cnt: I64, ts: I64, col: I64) -> F64:
    real = mask & ~np.isnan(v)
    out = np.where(real, v, -np.inf).max(axis=1)
    return np.where(real.any(axis=1), out, np.nan)


def _variance(v: F64, mask: np.ndarray, cnt: I64) -> F64:
    return variance(v, mask, 1)


def _stdvar(v: F64, mask: np.ndarray, cnt: I64, ts: I64, col: I64) -> F64:
    return _variance(v, mask, cnt)


def _stddev(v: F64, mask: np.ndarray, cnt: I64, ts: I64, col: I64) -> F64:
    return np.sqrt(_variance(v, mask, cnt))


def _last(v: F64, mask: np.ndarray, cnt: I64, ts: I64, col: I64) -> F64:
    return v[np.arange(len(cnt)), cnt - 1]


def _first(v: F64, mask: np.ndarray, cnt: I64, ts: I64, col: I64) -> F64:
    return v[:, 0].copy()


def _present(v: F64, mask: np.ndarray, cnt: I64, ts: I64, col: I64) -> F64:
    return np.ones(len(cnt))


def quantile_over_time(rv: RangeVec, q: F64) -> Vector:
    def fn(v: F64, mask: np.ndarray, cnt: I64, ts: I64, col: I64) -> F64:
        return quantile_rows(v, mask, cnt, q[col])

    return gather(rv, fn)


def _mad(v: F64, mask: np.ndarray, cnt: I64, ts: I64, col: I64) -> F64:
    half = np.full(len(cnt), 0.5)
    med = quantile_rows(v, mask, cnt, half)
    return quantile_rows(np.abs(v - med[:, None]), mask, cnt, half)


OVER_TIME: dict[str, Reducer] = {
    "sum_over_time": _sum,
    "avg_over_time": _avg,
    "count_over_time": _count,
    "min_over_time": _min,
    "max_over_time": _max,
    "stddev_over_time": _stddev,
    "stdvar_over_time": _stdvar,
    "last_over_time": _last,
    "first_over_time": _first,
    "present_over_time": _present,
    "mad_over_time": _mad,
}
KEEPS_NAME = frozenset({"last_over_time", "first_over_time"})


def over_time(name: str, rv: RangeVec) -> Vector:
    return gather(rv, OVER_TIME[name], keep_name=name in KEEPS_NAME)


# ---- ts_of_*_over_time: the timestamp (seconds) of the chosen sample -------------------------


def _ts_of_extreme(v: F64, mask: np.ndarray, cnt: I64, ts: I64, largest: bool) -> F64:
    """The last sample holding the window's largest (smallest) value, as Prometheus picks it:
    NaN never wins over a number; a window of NaN only gives its last sample."""
    real = mask & ~np.isnan(v)
    fill = -np.inf if largest else np.inf
    masked = np.where(real, v, fill)
    ext = masked.max(axis=1) if largest else masked.min(axis=1)
    hit = real & (v == ext[:, None])
    w = v.shape[1]
    last_hit = w - 1 - np.argmax(hit[:, ::-1], axis=1)
    idx = np.where(real.any(axis=1), last_hit, cnt - 1)
    return ts[np.arange(len(cnt)), idx] / 1000.0


TS_OF_OVER_TIME: dict[str, Reducer] = {
    "ts_of_max_over_time": lambda v, m, c, ts, col: _ts_of_extreme(v, m, c, ts, True),
    "ts_of_min_over_time": lambda v, m, c, ts, col: _ts_of_extreme(v, m, c, ts, False),
    "ts_of_last_over_time": lambda v, m, c, ts, col: ts[np.arange(len(c)), c - 1] / 1000.0,
    "ts_of_first_over_time": lambda v, m, c, ts, col: ts[:, 0] / 1000.0,
}


def ts_of_over_time(name: str, rv: RangeVec) -> Vector:
    return gather(rv, TS_OF_OVER_TIME[name])
