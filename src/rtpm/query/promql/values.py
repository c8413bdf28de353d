"""The value types the evaluator passes around, and Prometheus' float and timestamp formats.

Every expression is evaluated over all steps of a query at once:

- `Scalar`: one float per step, shape (T,).
- `Vector`: an instant vector per step. `labels[i]` names row i; `values` and `present` are (S, T)
  arrays: a row has a sample at step j only where `present[i, j]` (NaN is a value, not an absence).
  `sample_ts` (ms) is kept only by plain selectors, for `timestamp()`.
- `RangeVec`: a range vector per step. Every series' samples are concatenated into flat `ts`/`vals`
  arrays; the window of series i at step j is `[lo[i, j], hi[i, j])` of those arrays.
- `String`: a string literal.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from rtpm.model.labels import METRIC_NAME, Labels

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


@dataclass(slots=True)
class Scalar:
    values: F64


@dataclass(slots=True)
class String:
    value: str


@dataclass(slots=True)
class Vector:
    labels: list[Labels]
    values: F64
    present: Bools
    sample_ts: I64 | None = None
    # Row order to print an instant result in (set by sort functions); None keeps row order.
    order: list[int] | None = None
    # Native histogram samples: an (S, T) object array, a Histogram where row i has one at step j
    # (`present` is true there and `values` NaN), None elsewhere. None when there are none at all.
    hist: np.ndarray | None = None

    @classmethod
    def empty(cls, steps: int) -> Vector:
        return cls([], np.empty((0, steps)), np.zeros((0, steps), dtype=bool))

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(slots=True)
class RangeVec:
    labels: list[Labels]
    ts: I64  # flat sample timestamps, series after series
    vals: F64
    lo: I64  # (S, T) window start index into ts/vals
    hi: I64  # (S, T) window end index (exclusive)
    range_ms: int
    end_ms: I64  # (T,) end of each step's window (the selector's effective time)
    eval_ms: I64  # (T,) the evaluation time of each step
    hvals: np.ndarray | None = None  # object array beside `vals`: the Histogram samples, None for floats


Value = Scalar | String | Vector | RangeVec


_DROPPED_WITH_NAME = frozenset({METRIC_NAME, "__type__", "__unit__"})


def drop_name(labels: Labels) -> Labels:
    """The labels without the metric name, and without the type and unit labels that belong to it
    (`__type__`, `__unit__`, as Prometheus drops them with the name)."""
    if labels and labels[0][0] == METRIC_NAME and (len(labels) == 1 or labels[1][0] > "__unit__"):
        return labels[1:]  # sorted labels: nothing else to drop
    return tuple(p for p in labels if p[0] not in _DROPPED_WITH_NAME)


# ---- Prometheus' JSON number formats --------------------------------------------------------


def format_float(f: float) -> str:
    """Go's strconv.FormatFloat(f, 'f' or 'e', -1, 64) as Prometheus marshals sample values."""
    if f != f:
        return "NaN"
    if f == float("inf"):
        return "+Inf"
    if f == float("-inf"):
        return "-Inf"
    r = repr(f)
    a = abs(f)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        return r  # Python's exponent form matches Go's here (1e-07, 1.5e+21)
    if "e" in r:
        r = format(Decimal(r), "f")
    if r.endswith(".0"):
        r = r[:-2]
    return r


def format_float_fixed(f: float) -> str:
    """Go's strconv.FormatFloat(f, 'f', -1, 64): always fixed notation (count_values labels)."""
    if f != f:
        return "NaN"
    if f == float("inf"):
        return "+Inf"
    if f == float("-inf"):
        return "-Inf"
    r = repr(f)
    if "e" in r:
        r = format(Decimal(r), "f")
    if r.endswith(".0"):
        r = r[:-2]
    return r


def format_ts(ts_ms: int) -> str:
    """Milliseconds as Prometheus' JSON timestamp: seconds with a 3-digit fraction when non-zero."""
    t = int(ts_ms)
    sign = "-" if t < 0 else ""
    sec, ms = divmod(abs(t), 1000)
    if ms == 0:
        return f"{sign}{sec}"
    return f"{sign}{sec}.{ms:03d}"
