"""Prometheus' staleness marker: a NaN with one exact bit pattern, written when a series ends."""

from __future__ import annotations

import numpy as np

STALE_NAN_BITS = 0x7FF0000000000002
STALE_NAN: float = float(np.array([STALE_NAN_BITS], dtype=np.uint64).view(np.float64)[0])


def is_stale_nan(value: float) -> bool:
    return bool(np.array([value], dtype=np.float64).view(np.uint64)[0] == STALE_NAN_BITS)
