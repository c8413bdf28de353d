"""Float numerics shared by aggregations and range functions, following Prometheus' own:
quantiles over values sorted with NaN first (promql/quantile.go), Kahan-Neumaier compensated
sums, the overflow-safe mean and Welford variance. Every function reduces one axis of a block
and is vectorised over the other."""

from __future__ import annotations

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
