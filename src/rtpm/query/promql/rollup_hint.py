"""Rollups as a read hint: `sum|count|avg|min|max_over_time(s[range])` from rollup rows instead of
samples, where that gives the same answer.

PromQL's window at time t is `(t - range, t]`; a rollup bucket of resolution `res` is
`[b, b + res)`. They hold the same milliseconds when `range` is a multiple of `res` and
`t + 1ms` is on the `res` grid, so a call qualifies when, at every step of the query (no `@`, not
under a subquery, whose steps are its own), its effective window ends there:
`(first step - offset + 1) % res == 0`, and `step % res == 0` when there is more than one step.
The coarsest such resolution is used.

The querier answers (`Querier.rollups`) with the rollups of the buckets that are complete (rolled
up, and no late samples waiting to be rolled up again) or not at all (also where retention has
deleted rollups the samples may still have); steps whose window reaches
past them are evaluated from samples as usual, and so is everything when the selector has native
histogram samples there (rollups hold floats only). Rollups leave NaN samples out as they leave
staleness markers out: a window holding a NaN sample that is not a staleness marker answers
without it, where the samples would answer NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from rtpm.model.rollups import RESOLUTIONS_MS, RollupRead
from rtpm.query.promql import ast as a
from rtpm.query.promql.values import I64, Vector, drop_name

FUNCTIONS = frozenset({"sum_over_time", "count_over_time", "avg_over_time", "min_over_time", "max_over_time"})


@dataclass(slots=True)
class Hint:
    """One qualifying call; `steps` of its prefix are answered from `read` once loaded."""

    call: a.Call
    sel: a.VectorSel
    range_ms: int
    resolution_ms: int
    read: RollupRead | None = None
    steps: int = 0  # how many of the query's first steps come from `read`


def resolution_for(first_end_ms: int, step_ms: int, n_steps: int, range_ms: int) -> int | None:
    """The coarsest rollup resolution whose buckets tile every window exactly, or None."""
    for res in reversed(RESOLUTIONS_MS):
        if range_ms % res == 0 and (first_end_ms + 1) % res == 0 and (n_steps == 1 or step_ms % res == 0):
            return res
    return None


def find(node: a.Node, first_ms: int, step_ms: int, n_steps: int, out: list[Hint]) -> None:
    """The qualifying calls of `node`, evaluated at the query's own steps."""
    if isinstance(node, a.Call):
        arg = node.args[0] if len(node.args) == 1 else None
        if node.name in FUNCTIONS and isinstance(arg, a.MatrixSel) and arg.sel.at is None:
            res = resolution_for(first_ms - arg.sel.offset_ms, step_ms, n_steps, arg.range_ms)
            if res is not None:
                out.append(Hint(node, arg.sel, arg.range_ms, res))
                return
        for x in node.args:
            find(x, first_ms, step_ms, n_steps, out)
    elif isinstance(node, a.Aggregate):
        find(node.expr, first_ms, step_ms, n_steps, out)
        if node.param is not None:
            find(node.param, first_ms, step_ms, n_steps, out)
    elif isinstance(node, a.Binary):
        find(node.lhs, first_ms, step_ms, n_steps, out)
        find(node.rhs, first_ms, step_ms, n_steps, out)
    elif isinstance(node, (a.Negate, a.Info)):
        find(node.expr, first_ms, step_ms, n_steps, out)
    # subqueries evaluate their expression at steps of their own: never hinted


def evaluate(hint: Hint, ends: I64) -> Vector:
    """The call at the window ends `ends` (effective times, offset applied) from the rollups."""
    assert hint.read is not None
    res, width = hint.resolution_ms, hint.range_ms // hint.resolution_ms
    t = len(ends)
    grid0 = int(ends[0]) + 1 - hint.range_ms  # first bucket of the first window
    n_buckets = (int(ends[-1]) + 1 - grid0) // res
    stride = (int(ends[1]) - int(ends[0])) // res if t > 1 else 1
    name = hint.call.name
    labels, values, present = [], [], []
    for series_labels, rows in hint.read.series:
        idx = (rows.bucket - grid0) // res
        keep = (idx >= 0) & (idx < n_buckets)
        if not keep.any():
            continue
        idx = idx[keep]
        count = np.zeros(n_buckets)
        count[idx] = rows.count[keep]
        windows_count = _window_sums(count, width, stride, t)
        if name in ("min_over_time", "max_over_time"):
            low = name == "min_over_time"
            dense = np.full(n_buckets, np.inf if low else -np.inf)
            dense[idx] = (rows.min if low else rows.max)[keep]
            view = sliding_window_view(dense, width)[::stride][:t]
            out = view.min(axis=1) if low else view.max(axis=1)
        elif name == "count_over_time":
            out = windows_count
        else:
            total = np.zeros(n_buckets)
            total[idx] = rows.sum[keep]
            out = _window_sums(total, width, stride, t)
            if name == "avg_over_time":
                out = out / np.where(windows_count > 0, windows_count, 1.0)
        labels.append(drop_name(series_labels))
        values.append(out.astype(np.float64))
        present.append(windows_count > 0)
    if not labels:
        return Vector.empty(t)
    return Vector(labels, np.vstack(values), np.vstack(present))


def _window_sums(dense: np.ndarray, width: int, stride: int, t: int) -> np.ndarray:
    """Sums of `width` buckets from every `stride`-th (summed per window, not by differences of a
    running sum, which would lose digits)."""
    out: np.ndarray = sliding_window_view(dense, width)[::stride][:t].sum(axis=1)
    return out
