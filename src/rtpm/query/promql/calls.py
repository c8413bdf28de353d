"""Dispatch of PromQL function calls to their implementations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rtpm.errors import QueryError
from rtpm.model.labels import METRIC_NAME, Labels, MatchType
from rtpm.query.promql import ast as a
from rtpm.query.promql import functions as f
from rtpm.query.promql import histograms as histo
from rtpm.query.promql import rangefuncs as r
from rtpm.query.promql.values import F64, I64, RangeVec, Scalar, String, Value, Vector, drop_name

Eval = Callable[[a.Node, I64, Any], Value]

RATE_LIKE = {"rate": (True, True), "increase": (True, False), "delta": (False, False)}
UNSUPPORTED: set[str] = set()


def _absent_labels(node: a.Node) -> Labels:
    sel = node.sel if isinstance(node, a.MatrixSel) else node
    if not isinstance(sel, a.VectorSel):
        return ()
    seen: dict[str, str] = {}
    named: set[str] = set()
    dup: set[str] = set()
    for m in sel.matchers:
        if m.name in named:  # a label with two matchers of any kind gives absent() no value
            dup.add(m.name)
        named.add(m.name)
        if m.type is MatchType.EQUAL and m.name != METRIC_NAME:
            seen[m.name] = m.value
    return tuple(sorted((k, v) for k, v in seen.items() if k not in dup and v != ""))


def _one_row(labels: Labels, values: F64, present: np.ndarray) -> Vector:
    return Vector([labels], values[None, :], present[None, :])


def call(node: a.Call, steps: I64, q: Any, ev: Eval) -> Value:
    name = node.name
    t = len(steps)
    if name in UNSUPPORTED:
        raise QueryError(f"function {name}() is not supported")
    if name == "time":
        return Scalar(steps / 1000.0)
    if name == "pi":
        return Scalar(np.full(t, np.pi))
    if name in ("start", "end", "range", "step"):  # the query's own parameters, in seconds
        value = {"start": q.start_ms, "end": q.end_ms, "range": q.end_ms - q.start_ms, "step": q.step_ms}[name]
        return Scalar(np.full(t, value / 1000.0))
    args = [ev(arg, steps, q) for arg in node.args]
    handled = histo.call(node, args, steps, q)
    if handled is not None:
        return handled
    args = [histo.floats_only(v) for v in args]

    def scalar(i: int, default: float | None = None) -> F64:
        if i >= len(args):
            assert default is not None
            return np.full(t, default)
        v = args[i]
        assert isinstance(v, Scalar)
        return v.values

    def string(i: int) -> str:
        v = args[i]
        assert isinstance(v, String)
        return v.value

    def vector(i: int) -> Vector:
        v = args[i]
        assert isinstance(v, Vector)
        return v

    def matrix(i: int) -> RangeVec:
        v = args[i]
        assert isinstance(v, RangeVec)
        return v

    if name in RATE_LIKE:
        return r.extrapolated_rate(matrix(0), *RATE_LIKE[name])
    if name in ("irate", "idelta"):
        return r.instant_delta(matrix(0), name == "irate")
    if name in r.OVER_TIME:
        return r.over_time(name, matrix(0))
    if name == "quantile_over_time":
        return r.quantile_over_time(matrix(1), scalar(0))
    if name in r.TS_OF_OVER_TIME:
        return r.ts_of_over_time(name, matrix(0))
    if name in ("min_of", "max_of"):  # math.Min / math.Max: NaN when either is NaN
        pick = np.minimum if name == "min_of" else np.maximum
        return Scalar(pick(scalar(0), scalar(1)))
    if name == "changes":
        return r.changes(matrix(0))
    if name == "resets":
        return r.resets(matrix(0))
    if name == "deriv":
        return r.deriv(matrix(0))
    if name == "predict_linear":
        return r.predict_linear(matrix(0), scalar(1))
    if name in ("holt_winters", "double_exponential_smoothing"):
        return r.holt_winters(matrix(0), scalar(1), scalar(2))
    if name == "absent_over_time":
        rv = matrix(0)
        any_present = np.any(rv.hi > rv.lo, axis=0) if len(rv.labels) else np.zeros(t, dtype=bool)
        return _one_row(_absent_labels(node.args[0]), np.ones(t), ~any_present)
    if name == "absent":
        vec = vector(0)
        any_present = np.any(vec.present, axis=0) if len(vec) else np.zeros(t, dtype=bool)
        return _one_row(_absent_labels(node.args[0]), np.ones(t), ~any_present)
    if name in f.VECTOR_MATH:
        return f.math_fn(name, vector(0))
    if name == "clamp":
        return f.clamp(vector(0), scalar(1), scalar(2))
    if name == "clamp_min":
        return f.clamp(vector(0), scalar(1), np.full(t, np.inf))
    if name == "clamp_max":
        return f.clamp(vector(0), np.full(t, -np.inf), scalar(1))
    if name == "round":
        return f.round_fn(vector(0), scalar(1, 1.0))
    if name in f.DATE_FUNCS:
        if not args:
            return f.date_fn(name, Vector([()], (steps / 1000.0)[None, :], np.ones((1, t), dtype=bool)))
        return f.date_fn(name, vector(0))
    if name == "timestamp":
        vec = vector(0)
        if vec.sample_ts is not None:
            values = vec.sample_ts / 1000.0
        else:
            values = np.broadcast_to(steps / 1000.0, vec.values.shape).copy()
        return Vector([drop_name(lb) for lb in vec.labels], values, vec.present)
    if name == "scalar":
        vec = vector(0)
        if not len(vec):
            return Scalar(np.full(t, np.nan))
        cnt = vec.present.sum(axis=0)
        pick = np.argmax(vec.present, axis=0)
        val = vec.values[pick, np.arange(t)]
        return Scalar(np.where(cnt == 1, val, np.nan))
    if name == "vector":
        return _one_row((), scalar(0), np.ones(t, dtype=bool))
    if name in ("sort", "sort_desc"):
        return f.sort_fn(vector(0), name == "sort_desc")
    if name in ("sort_by_label", "sort_by_label_desc"):
        return f.sort_by_label(vector(0), [string(i) for i in range(1, len(args))], name.endswith("_desc"))
    if name == "label_replace":
        return f.label_replace(vector(0), string(1), string(2), string(3), string(4))
    if name == "label_join":
        return f.label_join(vector(0), string(1), string(2), [string(i) for i in range(3, len(args))])
    if name == "histogram_quantile":
        return f.histogram_quantile(scalar(0), vector(1))
    raise QueryError(f"function {name}() is not supported")
