"""Decoding PostgreSQL's per-series sample strings (storage/postgres.py `_decode_raw`): boundaries
between series are not steps back; a series that arrives out of order is sorted, alone."""

from __future__ import annotations

import numpy as np

from rtpm.storage.postgres import _decode_raw


def row(sid: int, ts: list[int], values: list[float]) -> tuple[int, bytes, bytes, int]:
    return sid, np.array(ts, ">i8").tobytes(), np.array(values, ">f8").tobytes(), len(ts)


def test_series_split_at_their_counts_and_sorted_only_where_needed() -> None:
    rows = [row(1, [1, 2, 3], [1, 2, 3]), row(2, [0, 5, 4], [0, 5, 4]), row(3, [2], [9]), row(4, [7, 8], [7, 8])]
    got = {sid: (ts.tolist(), vals.tolist()) for sid, (ts, vals) in _decode_raw(rows).items()}  # type: ignore[arg-type]
    assert got == {
        1: ([1, 2, 3], [1.0, 2.0, 3.0]),
        2: ([0, 4, 5], [0.0, 4.0, 5.0]),
        3: ([2], [9.0]),
        4: ([7, 8], [7.0, 8.0]),
    }
    assert all(ts.dtype == np.int64 and vals.dtype == np.float64 for ts, vals in _decode_raw(rows).values())  # type: ignore[arg-type]


def test_nothing_in_range() -> None:
    assert _decode_raw([]) == {}
