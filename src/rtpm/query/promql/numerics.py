"""Float numerics shared by aggregations and range functions, following Prometheus' own:
quantiles over values sorted with NaN first (promql/quantile.go), Kahan-Neumaier compensated
sums, the overflow-safe mean and Welford variance. Every function reduces one axis of a block
and is vectorised over the other."""

from __future__ import annotations

import math

import numpy as np

from rtpm.query.promql.values import F64, I64


def quantile_rows(v: F64, mask: np.ndarray, cnt: I64, q: F64) -> F64:
    """Per row of v (n, W) with mask and count of valid entries: Prometheus' quantile, i.e.
    rank = q * (n - 1), linear interpolation between values[floor(rank)] and the next one, over
    the values sorted ascending with NaN before everything else. No shortcut for a zero weight:
    an upper neighbour of +-Inf makes the result NaN (Inf * 0), as it does in Prometheus."""
    real = mask & ~np.isnan(v)
    n_nan = (mask & np.isnan(v)).sum(axis=1)
    srt = np.sort(np.where(real, v, np.inf), axis=1)  # real values first; NaN and padding after
    rank = q * (cnt - 1)
    lower = np.clip(np.floor(np.nan_to_num(rank)), 0, None).astype(np.int64)
    lower = np.minimum(lower, cnt - 1)
    upper = np.minimum(lower + 1, cnt - 1)
    weight = rank - np.floor(rank)
    rows = np.arange(len(cnt))

    def at(k: I64) -> F64:
        # position k of the NaN-first order: NaN below n_nan, else the (k - n_nan)-th real value
        j = np.clip(k - n_nan, 0, srt.shape[1] - 1) if srt.shape[1] else k
        got = srt[rows, j] if srt.shape[1] else np.full(len(k), np.nan)
        return np.where(k < n_nan, np.nan, got)

    with np.errstate(invalid="ignore"):
        out = at(lower) * (1 - weight) + at(upper) * weight
    out = np.where(q < 0, -np.inf, out)
    out = np.where(q > 1, np.inf, out)
    return np.where(np.isnan(q) | (cnt == 0), np.nan, out)


# Plain (pairwise) summation is kept where it is exact enough: where the terms' magnitudes dwarf
# their sum by this factor, digits are lost, and those sums are redone exactly (math.fsum).
_CANCELLATION = 1e6


def stable_sum(v: F64, mask: np.ndarray, axis: int) -> F64:
    """Sum of the masked-in values along `axis`; sums that cancel (1e100 + 1 - 1e100) are exact
    (Prometheus compensates them with Kahan-Neumaier summation), and terms that are all finite
    but whose running sum overflows give +-Inf as Prometheus's do."""
    x = np.where(mask, v, 0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        s = x.sum(axis=axis)
        mag = np.abs(x).sum(axis=axis)
        redo = np.flatnonzero(np.isfinite(mag) & (mag > _CANCELLATION * np.abs(s)))
    if len(redo):
        xt = np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis])
        flat = s.reshape(-1)
        for k in redo:
            flat[k] = math.fsum(xt[k])
    return s


def stable_mean(v: F64, mask: np.ndarray, axis: int) -> F64:
    """Mean of the masked-in values along `axis` (NaN where none): the exact-where-it-matters sum
    over the count, and, where that sum overflows although every term is finite, the sum of the
    terms each divided by the count first (Prometheus switches to an incremental mean there)."""
    cnt = mask.sum(axis=axis)
    n = np.maximum(cnt, 1)
    with np.errstate(invalid="ignore", over="ignore"):
        mean = stable_sum(v, mask, axis) / n
    over = np.isinf(mean) & ~(mask & ~np.isfinite(v)).any(axis=axis)
    if over.any():
        scaled = stable_sum(v / np.expand_dims(n, axis), mask, axis)
        mean = np.where(over, scaled, mean)
    return np.where(cnt > 0, mean, np.nan)


def variance(v: F64, mask: np.ndarray, axis: int) -> F64:
    """Population variance of the masked-in values along `axis`: two passes over an accurate mean;
    exactly 0 where every value is the same (as Welford's method, which Prometheus uses, gives)."""
    cnt = mask.sum(axis=axis)
    mean = stable_mean(v, mask, axis)
    with np.errstate(invalid="ignore", over="ignore"):
        dev = np.where(mask, v - np.expand_dims(mean, axis), 0.0)
        var = stable_sum(dev * dev, mask, axis) / np.maximum(cnt, 1)
    big, small = np.where(mask, v, -np.inf).max(axis=axis), np.where(mask, v, np.inf).min(axis=axis)
    return np.where((big == small) & np.isfinite(big), 0.0, var)
