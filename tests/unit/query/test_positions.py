"""`_positions` (PromQL selectors): both strategies agree with a plain per-series searchsorted,
for random series, empty ones, and step times sorted or not."""

from __future__ import annotations

import numpy as np
import pytest

import rtpm.query.promql.selectors as sel
from rtpm.model.samples import Series


def reference(flat: sel.Flat, t: np.ndarray) -> np.ndarray:
    rows = [
        np.searchsorted(flat.ts[flat.offsets[i] : flat.offsets[i + 1]], t, "right") + flat.offsets[i]
        for i in range(len(flat.labels))
    ]
    return np.array(rows, dtype=np.int64).reshape(len(flat.labels), len(t))


@pytest.mark.parametrize("strategy", [(0, 0), (10**9, 10**9)], ids=["per-series", "counting"])
def test_both_strategies_match_searchsorted(monkeypatch: pytest.MonkeyPatch, strategy: tuple[int, int]) -> None:
    monkeypatch.setattr(sel, "_LOOP_MIN_AVG_LEN", strategy[0])
    monkeypatch.setattr(sel, "_LOOP_MIN_SAMPLES_PER_POINT", strategy[1])
    rng = np.random.default_rng(7)
    for trial in range(200):
        series = []
        for i in range(int(rng.integers(0, 6))):
            ts = np.unique(rng.integers(0, 1000, int(rng.integers(0, 80)))).astype(np.int64)
            series.append(Series((("i", str(i)),), ts, rng.random(len(ts))))
        flat = sel.Flat.of(series)
        t = rng.integers(-10, 1100, int(rng.integers(0, 50))).astype(np.int64)
        if trial % 2:
            t = np.sort(t)
        got, got_back = sel._positions(flat, t, t - 100)
        assert np.array_equal(got, reference(flat, t))
        assert np.array_equal(got_back, reference(flat, t - 100))
