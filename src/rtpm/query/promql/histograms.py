"""Native histograms in the PromQL engine.

Histogram samples travel beside the float samples: `Flat.hvals`, `RangeVec.hvals` (object arrays
aligned with the flat sample arrays) and `Vector.hist` ((S, T) object arrays), a Histogram where a
sample is a histogram and None elsewhere; the float `values` hold NaN there. Every operation that
knows nothing of histograms gets its arguments through `floats_only` (histogram samples dropped,
as Prometheus ignores them in float-only functions); the operations Prometheus defines on
histograms are evaluated here, with Prometheus's semantics (promql/functions.go, quantile.go):

- `rate`, `increase`, `delta`: histogram subtraction with counter-reset handling, extrapolated as
  for floats (durationToZero from the first sample's count);
- `sum`, `avg`, `count`, `group` aggregations; `sum_over_time`, `avg_over_time`,
  `count_over_time`, `last_over_time`, `first_over_time`, `present_over_time`;
- `histogram_count`, `histogram_sum`, `histogram_avg`, `histogram_stddev`, `histogram_stdvar`,
  `histogram_fraction`, `histogram_quantile` (native and classic side by side).

A window or group that mixes floats and histograms yields nothing for that step, with Prometheus's
warning ("encountered a mix of histograms and floats for metric name ...") added to the query's
warnings, as do histograms with incompatible bucket layouts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, overload

import numpy as np
import orjson

from rtpm.model import histograms as hm
from rtpm.model.histograms import Histogram
from rtpm.model.labels import METRIC_NAME, Labels
from rtpm.model.samples import Series
from rtpm.query.promql import ast as a
from rtpm.query.promql import binops
from rtpm.query.promql import functions as fn
from rtpm.query.promql import rangefuncs as rf
from rtpm.query.promql.aggregations import group_key
from rtpm.query.promql.selectors import Flat
from rtpm.query.promql.values import I64, RangeVec, Scalar, String, Value, Vector, drop_name, format_float, format_ts
from rtpm.storage.histograms import HistogramSeries, HistogramStore

SIMPLE = {
    "histogram_count": lambda h: h.count,
    "histogram_sum": lambda h: h.sum,
    "histogram_avg": lambda h: hm.go_div(h.sum, h.count),
    "histogram_stdvar": hm.variance,
    "histogram_stddev": lambda h: math.sqrt(v) if (v := hm.variance(h)) >= 0 else math.nan,
}
RATES = {"rate": (True, True), "increase": (True, False), "delta": (False, False)}
OVER_TIME = {
    "sum_over_time",
    "avg_over_time",
    "count_over_time",
    "last_over_time",
    "first_over_time",
    "present_over_time",
}


def _name(labels: Labels) -> str:
    for k, v in labels:
        if k == METRIC_NAME:
            return v
    return ""


def warn(q: Any, text: str) -> None:
    found = getattr(q, "warnings", None)
    if found is not None and text not in found:
        found.append(text)


def _mixed(q: Any, labels: Labels) -> None:
    warn(q, f'PromQL warning: encountered a mix of histograms and floats for metric name "{_name(labels)}"')


# ---- loading -----------------------------------------------------------------------------------


def merge_flat(series: list[Series], hseries: list[HistogramSeries]) -> Flat:
    """The float and histogram samples of the selected series as one Flat (sorted by labels)."""
    if not hseries:
        return Flat.of(series)
    floats = {s.labels: s for s in series}
    hists = {h.labels: h for h in hseries}
    labels = sorted(floats.keys() | hists.keys())
    ts_parts: list[np.ndarray] = []
    val_parts: list[np.ndarray] = []
    h_parts: list[np.ndarray] = []
    offsets = np.zeros(len(labels) + 1, np.int64)
    for i, lb in enumerate(labels):
        f = floats.get(lb)
        h = hists.get(lb)
        fts = np.asarray(f.ts_ms, np.int64) if f is not None else np.empty(0, np.int64)
        fv = np.asarray(f.values, np.float64) if f is not None else np.empty(0)
        hts = np.asarray(h.ts_ms, np.int64) if h is not None else np.empty(0, np.int64)
        if len(hts) and len(fts):
            keep = ~np.isin(fts, hts)  # a histogram and a float at one timestamp: the histogram
            fts, fv = fts[keep], fv[keep]
        ts = np.concatenate([fts, hts])
        vals = np.concatenate([fv, np.full(len(hts), np.nan)])
        hv = np.empty(len(ts), dtype=object)
        if h is not None:
            hv[len(fts) :] = h.values
        order = np.argsort(ts, kind="stable")
        ts_parts.append(ts[order])
        val_parts.append(vals[order])
        h_parts.append(hv[order])
        offsets[i + 1] = offsets[i] + len(ts)
    return Flat(
        labels,
        np.concatenate(ts_parts) if ts_parts else np.empty(0, np.int64),
        np.concatenate(val_parts) if val_parts else np.empty(0),
        offsets,
        np.concatenate(h_parts) if h_parts else np.empty(0, dtype=object),
    )


# ---- floats only -------------------------------------------------------------------------------


def _is_hist(arr: np.ndarray) -> np.ndarray:
    return np.frompyfunc(lambda x: x is not None, 1, 1)(arr).astype(bool)


@overload
def floats_only(v: Vector) -> Vector: ...
@overload
def floats_only(v: RangeVec) -> RangeVec: ...
@overload
def floats_only(v: Value) -> Value: ...


def floats_only(v: Value) -> Value:
    """`v` without its histogram samples (of the same kind as `v`)."""
    if isinstance(v, Vector) and v.hist is not None:
        present = v.present & ~_is_hist(v.hist)
        return Vector(v.labels, v.values, present, v.sample_ts, v.order)
    if isinstance(v, RangeVec) and v.hvals is not None:
        keep = ~_is_hist(v.hvals) if len(v.hvals) else np.zeros(0, dtype=bool)
        before = np.zeros(len(keep) + 1, np.int64)
        np.cumsum(keep, out=before[1:])
        return RangeVec(v.labels, v.ts[keep], v.vals[keep], before[v.lo], before[v.hi], v.range_ms, v.end_ms, v.eval_ms)
    return v


def set_op_hist(op: str, lhs: Vector, rhs: Vector) -> np.ndarray | None:
    """The `hist` of binops.set_op's result: `and`/`unless` keep the rows of the left side, `or`
    the rows of both sides."""
    if lhs.hist is None and (op != "or" or rhs.hist is None):
        return None
    if op != "or":
        return lhs.hist
    lh = lhs.hist if lhs.hist is not None else np.full(lhs.values.shape, None, dtype=object)
    rh = rhs.hist if rhs.hist is not None else np.full(rhs.values.shape, None, dtype=object)
    return np.vstack([lh, rh]) if len(lhs) or len(rhs) else lh


def scalar_binop(out: Vector, op: str, vec: Vector, sc: Scalar, scalar_left: bool, q: Any) -> Vector:
    """Histogram samples of `vec` in `vec <op> scalar` (or `scalar <op> vec`): `*` scales them and
    `histogram / scalar` divides them (the metric name dropped); every other operator has no
    histogram result and says so, as Prometheus does."""
    if vec.hist is None:
        return out
    is_h = _is_hist(vec.hist) & vec.present
    if not is_h.any():
        return out
    ok = op == "*" or (op == "/" and not scalar_left)
    hist = _with_hist(out)
    for i, j in zip(*np.nonzero(is_h), strict=True):
        if not ok:
            kinds = ("float", "histogram") if scalar_left else ("histogram", "float")
            warn(
                q,
                f'PromQL info: incompatible sample types encountered for binary operator "{op}": {kinds[0]} {op} {kinds[1]}',
            )
            continue
        s = float(sc.values[j])
        h = vec.hist[i, j]
        hist[i, j] = h.scaled(s) if op == "*" else h.divided(s)
        out.present[i, j] = True
        out.values[i, j] = np.nan
    return out


def negate(vec: Vector) -> Vector:
    """-v: floats negated, histograms scaled by -1 (they become gauge histograms), name dropped."""
    hist = vec.hist
    assert hist is not None
    out = np.full(hist.shape, None, dtype=object)
    for i, j in zip(*np.nonzero(_is_hist(hist)), strict=True):
        out[i, j] = hist[i, j].scaled(-1.0)
    return Vector([drop_name(lb) for lb in vec.labels], -vec.values, vec.present, hist=out)


_ROW = float(1 << 24)  # row codes: lhs row * _ROW + rhs row, exact in a float64


def vector_binop(node: a.Binary, lhs: Vector, rhs: Vector, q: Any) -> Vector | None:
    """Arithmetic between two vectors of which one holds histograms, with Prometheus's matching:
    histogram + histogram, histogram - histogram, histogram * float, float * histogram,
    histogram / float; floats with floats as usual. Other combinations have no result (with
    Prometheus's info annotation). None (evaluate without the histograms) for comparisons, `bool`,
    fill modifiers, or no histograms at all."""

    if lhs.hist is None and rhs.hist is None:
        return None
    op = node.op
    if op not in ("+", "-", "*", "/") or node.return_bool or node.fill_left is not None or node.fill_right is not None:
        return None
    if len(lhs) >= 1 << 24 or len(rhs) >= 1 << 24:
        return None
    t = lhs.values.shape[1]
    lcode = Vector(lhs.labels, np.repeat(np.arange(len(lhs)) * _ROW, t).reshape(len(lhs), t), lhs.present)
    rcode = Vector(rhs.labels, np.repeat(np.arange(len(rhs), dtype=np.float64), t).reshape(len(rhs), t), rhs.present)
    matched = binops.vector_vector(
        "+",
        lcode,
        rcode,
        card=node.card,
        on=node.on,
        names=node.match_labels,
        include=node.include,
        return_bool=False,
    )
    n = len(matched)
    values = np.full((n, t), np.nan)
    present = np.zeros((n, t), dtype=bool)
    hist = np.full((n, t), None, dtype=object)
    lh = lhs.hist if lhs.hist is not None else np.full(lhs.values.shape, None, dtype=object)
    rh = rhs.hist if rhs.hist is not None else np.full(rhs.values.shape, None, dtype=object)
    for r, j in zip(*np.nonzero(matched.present), strict=True):
        code = int(matched.values[r, j])
        li, ri = divmod(code, int(_ROW))
        a_h, b_h = lh[li, j], rh[ri, j]
        a_f, b_f = float(lhs.values[li, j]), float(rhs.values[ri, j])
        if a_h is None and b_h is None:
            v = {"+": a_f + b_f, "-": a_f - b_f, "*": a_f * b_f}.get(op)
            values[r, j] = v if v is not None else hm.go_div(a_f, b_f)
            present[r, j] = True
            continue
        try:
            if a_h is not None and b_h is not None and op in ("+", "-"):
                res, reconciled = hm.combine(a_h, b_h, 1.0 if op == "+" else -1.0)
                if reconciled:
                    warn(
                        q,
                        "PromQL info: mismatched custom buckets were reconciled during histogram "
                        + ("addition" if op == "+" else "subtraction"),
                    )
                hist[r, j] = res.compact()
            elif a_h is not None and b_h is None and op in ("*", "/"):
                hist[r, j] = a_h.scaled(b_f) if op == "*" else a_h.divided(b_f)
            elif a_h is None and b_h is not None and op == "*":
                hist[r, j] = b_h.scaled(a_f)
            else:
                kinds = ("histogram" if a_h is not None else "float", "histogram" if b_h is not None else "float")
                warn(
                    q,
                    f'PromQL info: incompatible sample types encountered for binary operator "{op}": {kinds[0]} {op} {kinds[1]}',
                )
                continue
        except hm.HistogramError as exc:
            warn(q, f"PromQL warning: {exc}")
            continue
        present[r, j] = True
    return Vector(matched.labels, values, present, hist=hist)


def flat_of_vector(vec: Vector, steps: I64) -> Flat:
    """A subquery's inner vector (with histograms) as loaded series: its samples at its steps."""
    assert vec.hist is not None
    rows = [i for i in range(len(vec)) if vec.present[i].any()]
    offsets = np.zeros(len(rows) + 1, np.int64)
    ts_parts, v_parts, h_parts = [], [], []
    for n, i in enumerate(rows):
        p = vec.present[i]
        ts_parts.append(steps[p])
        v_parts.append(vec.values[i][p])
        h_parts.append(vec.hist[i][p])
        offsets[n + 1] = offsets[n] + int(p.sum())
    if not rows:
        return Flat([], np.empty(0, np.int64), np.empty(0), offsets, np.empty(0, dtype=object))
    return Flat(
        [vec.labels[i] for i in rows],
        np.concatenate(ts_parts),
        np.concatenate(v_parts),
        offsets,
        np.concatenate(h_parts),
    )


def has_histograms(v: Value) -> bool:
    if isinstance(v, Vector):
        return v.hist is not None
    if isinstance(v, RangeVec):
        return v.hvals is not None
    return False


# ---- functions ---------------------------------------------------------------------------------

HANDLED = set(SIMPLE) | set(RATES) | OVER_TIME
HANDLED |= {"histogram_fraction", "histogram_quantile", "histogram_quantiles", "changes", "resets"}
KEEP_ROWS = {"label_replace", "label_join", "sort_by_label", "sort_by_label_desc", "timestamp"}


def call(node: a.Call, args: list[Value], steps: I64, q: Any) -> Value | None:
    """The result of a call whose arguments hold histograms, or of a histogram function; None
    to evaluate it as a float function (over `floats_only` of the arguments)."""
    name = node.name
    if name in KEEP_ROWS and args and isinstance(args[0], Vector) and args[0].hist is not None:
        return _keep_rows(name, args)
    if name not in HANDLED:
        return None
    t = len(steps)
    if name in SIMPLE:
        vec = args[0]
        assert isinstance(vec, Vector)
        return _simple(vec, SIMPLE[name], t)
    if name == "histogram_fraction":
        lo, hi, vec = args[0], args[1], args[2]
        assert isinstance(lo, Scalar) and isinstance(hi, Scalar) and isinstance(vec, Vector)
        notes: list[str] = []
        native = _simple(vec, None, t, lambda h, j: hm.fraction(float(lo.values[j]), float(hi.values[j]), h, notes))
        for note in dict.fromkeys(notes):
            warn(q, f"PromQL info: {note}")
        return _concat(_classic_fraction(lo.values, hi.values, floats_only(vec)), native)
    if name == "histogram_quantiles":
        return _quantiles(args, t, q)
    if name == "histogram_quantile":
        qs, vec = args[0], args[1]
        assert isinstance(qs, Scalar) and isinstance(vec, Vector)
        if vec.hist is None:
            return None
        for qv in np.unique(qs.values):
            if not 0 <= qv <= 1 or qv != qv:
                warn(q, f"PromQL warning: quantile value should be between 0 and 1, got {_go_g(float(qv))}")

        classic = fn.histogram_quantile(qs.values, floats_only(vec))
        notes = []
        native = _simple(vec, None, t, lambda h, j: hm.quantile(float(qs.values[j]), h, notes))
        for note in dict.fromkeys(notes):
            warn(q, f"PromQL info: {note}")
        return _concat(classic, native)
    rv = args[0]
    if not isinstance(rv, RangeVec) or rv.hvals is None:
        return None
    if name in RATES:
        return _rate(rv, *RATES[name], q)
    if name in ("changes", "resets"):
        return _changes(rv, name == "resets")
    return _over_time(name, rv, q)


def _same(a: Histogram, b: Histogram) -> bool:
    return (
        (a.schema, a.zero_threshold, a.zero_count, a.count, a.sum, a.custom_values)
        == (
            b.schema,
            b.zero_threshold,
            b.zero_count,
            b.count,
            b.sum,
            b.custom_values,
        )
        and {k: v for k, v in a.positive_map().items() if v} == {k: v for k, v in b.positive_map().items() if v}
        and {k: v for k, v in a.negative_map().items() if v} == {k: v for k, v in b.negative_map().items() if v}
    )


def _changes(rv: RangeVec, resets: bool) -> Vector:
    """changes() and resets() over windows holding histograms: a switch between float and
    histogram counts as one; histograms change when they differ and reset as DetectReset says."""

    out = (rf.resets if resets else rf.changes)(floats_only(rv))
    for i, j, _ts, hs in _windows(rv):
        lo = int(rv.lo[i, j])
        vals = rv.vals[lo : lo + len(hs)]
        n = 0
        for k in range(1, len(hs)):
            prev, cur = hs[k - 1], hs[k]
            if (prev is None) != (cur is None):
                n += 1
            elif prev is None:
                a, b = float(vals[k - 1]), float(vals[k])
                if (b < a) if resets else (a != b and not (a != a and b != b)):
                    n += 1
            elif hm.detect_reset(cur, prev) if resets else not _same(cur, prev):
                n += 1
        out.values[i, j] = float(n)
        out.present[i, j] = True
    return out


def _keep_rows(name: str, args: list[Value]) -> Vector:
    """Functions of a vector's labels (or sample times) keep its histogram samples."""

    vec = args[0]
    assert isinstance(vec, Vector)
    strs = [v.value for v in args[1:] if isinstance(v, String)]
    if name == "label_replace":
        out = fn.label_replace(vec, *strs)
    elif name == "label_join":
        out = fn.label_join(vec, strs[0], strs[1], strs[2:])
    elif name == "timestamp":
        assert vec.sample_ts is not None
        return Vector([drop_name(lb) for lb in vec.labels], vec.sample_ts / 1000.0, vec.present)
    else:
        out = fn.sort_by_label(vec, strs, name.endswith("_desc"))
    out.hist = vec.hist
    return out


def _classic_fraction(lo: np.ndarray, hi: np.ndarray, vec: Vector) -> Vector:
    """histogram_fraction over classic `le` buckets (Prometheus's BucketFraction): linear
    interpolation within a bucket, the first bucket starting at 0 unless its bound is <= 0."""

    groups = fn.classic_buckets(vec)
    t = vec.values.shape[1]
    labels = list(groups)
    values = np.full((len(labels), t), np.nan)
    present = np.zeros((len(labels), t), dtype=bool)
    for g, key in enumerate(labels):
        members = sorted(groups[key])
        for j in range(t):
            buckets: list[list[float]] = []
            for bound, i in members:
                if vec.present[i, j]:
                    if buckets and buckets[-1][0] == bound:
                        buckets[-1][1] += float(vec.values[i, j])
                    else:
                        buckets.append([bound, float(vec.values[i, j])])
            if not buckets:
                continue
            present[g, j] = True
            values[g, j] = _bucket_fraction(float(lo[j]), float(hi[j]), buckets)
    return Vector(labels, values, present)


def _bucket_fraction(lower: float, upper: float, buckets: list[list[float]]) -> float:
    if buckets[-1][0] != math.inf:
        return math.nan
    count = buckets[-1][1]
    if count == 0 or lower != lower or upper != upper:
        return math.nan
    if lower >= upper:
        return 0.0
    rank = lower_rank = upper_rank = 0.0
    lower_set = upper_set = False
    lower_bound = 0.0 if buckets[0][0] > 0 else -math.inf
    for k, (upper_bound, cum) in enumerate(buckets):
        if k > 0:
            lower_bound = buckets[k - 1][0]

        def interp(
            v: float, lb: float = lower_bound, ub: float = upper_bound, c: float = cum, r: float = rank
        ) -> float:
            if lb == -math.inf:
                return c
            return r + (c - r) * (v - lb) / (ub - lb)

        if not lower_set and lower_bound >= lower:
            lower_rank, lower_set = rank, True
        if not upper_set and lower_bound >= upper:
            upper_rank, upper_set = rank, True
        if lower_set and upper_set:
            break
        if not lower_set and lower_bound < lower < upper_bound:
            lower_rank, lower_set = interp(lower), True
        if not upper_set and lower_bound < upper < upper_bound:
            upper_rank, upper_set = interp(upper), True
        if lower_set and upper_set:
            break
        rank = cum
    if not lower_set or lower_rank > count:
        lower_rank = count
    if not upper_set or upper_rank > count:
        upper_rank = count
    return (upper_rank - lower_rank) / count


def _openmetrics_float(v: float) -> str:
    """Prometheus's labels.FormatOpenMetricsFloat: 1 -> "1.0", 0.25 -> "0.25", +Inf."""
    if v != v:
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    text = repr(v)
    return text if ("." in text or "e" in text) else text + ".0"


def _quantiles(args: list[Value], t: int, q: Any) -> Vector:
    """histogram_quantiles(v, "label", q1, q2, ...): one histogram_quantile per q, labelled."""

    vec, label = args[0], args[1]
    assert isinstance(vec, Vector) and isinstance(label, String)
    out = Vector.empty(t)
    for arg in args[2:]:
        assert isinstance(arg, Scalar)
        qv = float(arg.values[0])
        if not 0 <= qv <= 1:
            warn(q, f"PromQL warning: quantile value should be between 0 and 1, got {_go_g(qv)}")
        classic = fn.histogram_quantile(arg.values, floats_only(vec))
        native = _simple(vec, None, t, lambda h, j, a=arg: hm.quantile(float(a.values[j]), h))
        part = _concat(classic, native)
        tag = _openmetrics_float(qv)
        part.labels = [tuple(sorted({**dict(lb), label.value: tag}.items())) for lb in part.labels]
        out = _concat(out, part)
    return out


def _go_g(v: float) -> str:
    """Go's %g of a float (the numbers in Prometheus's annotation texts)."""
    if v != v:
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    text = repr(v)
    return text[:-2] if text.endswith(".0") else text


def _simple(vec: Vector, fn: Any, t: int, fn2: Any = None) -> Vector:
    if vec.hist is None:
        return Vector.empty(t)
    rows = [i for i in range(len(vec)) if _is_hist(vec.hist[i]).any()]
    values = np.full((len(rows), t), np.nan)
    present = np.zeros((len(rows), t), dtype=bool)
    for n, i in enumerate(rows):
        for j in range(t):
            h = vec.hist[i, j]
            if h is not None and vec.present[i, j]:
                values[n, j] = fn(h) if fn is not None else fn2(h, j)
                present[n, j] = True
    return Vector([drop_name(vec.labels[i]) for i in rows], values, present)


def _concat(x: Vector, y: Vector) -> Vector:
    if not len(x):
        return y
    if not len(y):
        return x
    hist = None
    if x.hist is not None or y.hist is not None:
        hx = x.hist if x.hist is not None else np.full(x.values.shape, None, dtype=object)
        hy = y.hist if y.hist is not None else np.full(y.values.shape, None, dtype=object)
        hist = np.vstack([hx, hy])
    return Vector(x.labels + y.labels, np.vstack([x.values, y.values]), np.vstack([x.present, y.present]), hist=hist)


def _with_hist(vec: Vector) -> np.ndarray:
    if vec.hist is None:
        vec.hist = np.full(vec.values.shape, None, dtype=object)
    return vec.hist


def _windows(rv: RangeVec) -> list[tuple[int, int, list[int], list[Histogram]]]:
    """(row, step, timestamps, histograms) of every window holding a histogram sample."""
    out = []
    hv = rv.hvals
    assert hv is not None
    is_h = _is_hist(hv) if len(hv) else np.zeros(0, dtype=bool)
    csum = np.zeros(len(is_h) + 1, np.int64)
    np.cumsum(is_h, out=csum[1:])
    s, t = rv.lo.shape
    nh = csum[rv.hi] - csum[rv.lo]
    for i, j in zip(*np.nonzero(nh), strict=True):
        lo, hi = int(rv.lo[i, j]), int(rv.hi[i, j])
        out.append((int(i), int(j), rv.ts[lo:hi].tolist(), list(hv[lo:hi])))
    return out


def _rate(rv: RangeVec, is_counter: bool, is_rate: bool, q: Any) -> Vector:

    out = rf.extrapolated_rate(floats_only(rv), is_counter, is_rate)
    hist = _with_hist(out)
    for i, j, ts, hs in _windows(rv):
        out.present[i, j] = False
        out.values[i, j] = np.nan
        if any(h is None for h in hs):
            _mixed(q, rv.labels[i])
            continue
        if len(hs) < 2:
            continue
        res = _histogram_rate(hs, is_counter, q, rv.labels[i])
        if res is None:
            continue
        range_start = int(rv.end_ms[j]) - rv.range_ms
        range_end = int(rv.end_ms[j])
        first_t, last_t = ts[0], ts[-1]
        duration_to_start = (first_t - range_start) / 1000
        duration_to_end = (range_end - last_t) / 1000
        sampled = (last_t - first_t) / 1000
        avg = sampled / (len(ts) - 1)
        threshold = avg * 1.1
        if duration_to_start >= threshold:
            duration_to_start = avg / 2
        if is_counter and res.count > 0 and hs[0].count >= 0:
            to_zero = sampled * (hs[0].count / res.count)
            if to_zero < duration_to_start:
                duration_to_start = to_zero
        if duration_to_end >= threshold:
            duration_to_end = avg / 2
        factor = (sampled + duration_to_start + duration_to_end) / sampled if sampled else 1.0
        if is_rate:
            factor /= rv.range_ms / 1000
        hist[i, j] = res.scaled(factor).with_hint(hm.RESET_GAUGE)
        out.present[i, j] = True
    return out


def _histogram_rate(hs: list[Histogram], is_counter: bool, q: Any, labels: Labels) -> Histogram | None:
    prev = hs[0]
    last = hs[-1]
    if is_counter and (prev.reset_hint == hm.RESET_GAUGE or last.reset_hint == hm.RESET_GAUGE):
        warn(q, f'PromQL warning: this native histogram metric is not a counter: "{_name(labels)}"')
    if not is_counter and (prev.reset_hint != hm.RESET_GAUGE or last.reset_hint != hm.RESET_GAUGE):
        warn(q, f'PromQL warning: this native histogram metric is not a gauge: "{_name(labels)}"')
    if is_counter and hm.detect_reset(hs[1], prev):
        prev = Histogram(schema=hs[1].schema, custom_values=hs[1].custom_values)
    if last.uses_custom_buckets != prev.uses_custom_buckets or any(
        h.uses_custom_buckets != prev.uses_custom_buckets for h in hs[1:-1]
    ):
        warn(
            q,
            "PromQL warning: vector contains a mix of histograms with exponential and custom buckets schemas "
            f'for metric name "{_name(labels)}"',
        )
        return None
    try:
        result, _ = hm.combine(last, prev, -1.0)
        if is_counter:
            p = prev
            for curr in hs[1:]:
                if hm.detect_reset(curr, p):
                    result, _ = hm.combine(result, p)
                p = curr
    except hm.HistogramError as exc:
        warn(q, f'PromQL warning: {exc} for metric name "{_name(labels)}"')
        return None
    return result.compact()


def _over_time(name: str, rv: RangeVec, q: Any) -> Vector:

    out = rf.over_time(name, floats_only(rv))
    hist = _with_hist(out) if name in ("sum_over_time", "avg_over_time", "last_over_time", "first_over_time") else None
    for i, j, _ts, hs in _windows(rv):
        if name == "count_over_time":
            out.values[i, j] = float(len(hs))
            out.present[i, j] = True
            continue
        if name == "present_over_time":
            out.values[i, j] = 1.0
            out.present[i, j] = True
            continue
        assert hist is not None
        if name == "last_over_time":
            if hs[-1] is not None:
                out.present[i, j] = True
                out.values[i, j] = np.nan
                hist[i, j] = hs[-1]
            continue
        if name == "first_over_time":
            if hs[0] is not None:
                out.present[i, j] = True
                out.values[i, j] = np.nan
                hist[i, j] = hs[0]
            continue
        out.present[i, j] = False
        if any(h is None for h in hs):
            _mixed(q, rv.labels[i])
            continue
        total = _sum(hs, q, rv.labels[i])
        if total is None:
            continue
        if name == "avg_over_time":
            total = total.divided(float(len(hs)))
        hist[i, j] = total.compact()
        out.values[i, j] = np.nan
        out.present[i, j] = True
    return out


def _sum(hs: Sequence[Histogram], q: Any, labels: Labels) -> Histogram | None:
    total = hs[0]
    try:
        for h in hs[1:]:
            total, reconciled = hm.combine(total, h)
            if reconciled:
                warn(q, "PromQL info: mismatched custom buckets were reconciled during aggregation")
    except hm.HistogramError as exc:
        warn(q, f'PromQL warning: {exc} for metric name "{_name(labels)}"')
        return None
    if len(hs) > 2:  # counts and sums with compensation (3.1 + 1e100 - 1e100 + 1.3 is 4.4)
        total = Histogram(
            total.schema,
            total.zero_threshold,
            total.zero_count,
            _neumaier([h.count for h in hs]),
            _neumaier([h.sum for h in hs]),
            total.positive_spans,
            total.positive,
            total.negative_spans,
            total.negative,
            total.custom_values,
        )
    return total.with_hint(hm.RESET_GAUGE)


def _neumaier(values: Sequence[float]) -> float:
    """Kahan-Babuska (Neumaier) compensated sum, as Prometheus sums histogram counts and sums."""
    total = comp = 0.0
    for v in values:
        t = total + v
        if abs(total) >= abs(v):
            comp += (total - t) + v
        else:
            comp += (v - t) + total
        total = t
    return total + comp if math.isfinite(total) else total


# ---- aggregation -------------------------------------------------------------------------------


def aggregate(node: a.Aggregate, vec: Vector, q: Any) -> Vector | None:
    """sum, avg, count and group over a vector holding histograms; None for the other operators
    (which ignore histogram samples)."""
    if vec.hist is None:
        return None
    if node.op not in ("sum", "avg", "count", "group"):
        if (_is_hist(vec.hist) & vec.present).any():
            warn(q, f"PromQL info: ignored histogram in {node.op} aggregation")
        return None
    t = vec.values.shape[1]
    is_h = _is_hist(vec.hist) & vec.present
    index: dict[Labels, list[int]] = {}
    for i, lb in enumerate(vec.labels):
        index.setdefault(group_key(lb, node.grouping, node.without), []).append(i)
    keys = list(index)
    values = np.full((len(keys), t), np.nan)
    present = np.zeros((len(keys), t), dtype=bool)
    hist = np.full((len(keys), t), None, dtype=object)
    for g, key in enumerate(keys):
        rows = index[key]
        for j in range(t):
            live = [i for i in rows if vec.present[i, j]]
            if not live:
                continue
            if node.op == "count":
                values[g, j] = float(len(live))
                present[g, j] = True
                continue
            if node.op == "group":
                values[g, j] = 1.0
                present[g, j] = True
                continue
            hs = [vec.hist[i, j] for i in live if is_h[i, j]]
            if not hs:
                vals = [vec.values[i, j] for i in live]
                s = float(np.sum(vals))
                values[g, j] = s / len(vals) if node.op == "avg" else s
                present[g, j] = True
                continue
            if len(hs) != len(live):
                _mixed(q, vec.labels[live[0]])
                continue
            total = _sum(hs, q, vec.labels[live[0]])
            if total is None:
                continue
            if node.op == "avg":
                total = total.divided(float(len(hs)))
            hist[g, j] = total.compact()
            present[g, j] = True
    return Vector(keys, values, present, hist=hist)


# ---- JSON --------------------------------------------------------------------------------------


def histogram_json(h: Histogram) -> bytes:
    """Prometheus's JSON of a native histogram: count, sum and the populated buckets as
    [boundary rule, lower, upper, count]."""
    parts = [f'{{"count":"{format_float(h.count)}","sum":"{format_float(h.sum)}"']
    buckets = [
        f'[{b.boundary_rule()},"{format_float(b.lower)}","{format_float(b.upper)}","{format_float(b.count)}"]'
        for b in h.buckets()
        if b.count != 0
    ]
    if buckets:
        parts.append(',"buckets":[' + ",".join(buckets) + "]")
    parts.append("}")
    return "".join(parts).encode()


def point_json(ts_ms: int, h: Histogram) -> bytes:
    return f"[{format_ts(ts_ms)},".encode() + histogram_json(h) + b"]"


def split_row(vec: Vector, i: int, steps: I64) -> tuple[list[int], list[float], list[int], list[Histogram]]:
    """Row i of a vector as (float steps, float values, histogram steps, histograms)."""
    p = vec.present[i]
    if vec.hist is None:
        return steps[p].tolist(), vec.values[i][p].tolist(), [], []
    h = _is_hist(vec.hist[i]) & p
    f = p & ~h
    return steps[f].tolist(), vec.values[i][f].tolist(), steps[h].tolist(), list(vec.hist[i][h])


# ---- exemplars ---------------------------------------------------------------------------------


def selectors(node: a.Node) -> list[a.VectorSel]:
    """Every vector selector of an expression, in order."""
    out: list[a.VectorSel] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, a.VectorSel):
            out.append(n)
        elif isinstance(n, a.MatrixSel):
            out.append(n.sel)
        elif isinstance(n, a.Subquery | a.Negate):
            stack.append(n.expr)
        elif isinstance(n, a.Call):
            stack.extend(reversed(n.args))
        elif isinstance(n, a.Aggregate):
            stack.append(n.expr)
            if n.param is not None:
                stack.append(n.param)
        elif isinstance(n, a.Binary):
            stack.extend((n.rhs, n.lhs))
    return out


async def exemplars_json(store: HistogramStore, tenant: str, node: a.Node, start_ms: int, end_ms: int) -> bytes:
    """The `data` of /api/v1/query_exemplars: per series (sorted by labels) its exemplars."""
    found: dict[Labels, dict[tuple[int, tuple[tuple[str, str], ...]], float]] = {}
    for sel in selectors(node):
        for se in await store.exemplars(tenant, start_ms, end_ms, sel.matchers):
            got = found.setdefault(se.labels, {})
            for e in se.exemplars:
                got[(e.ts_ms, e.labels)] = e.value
    parts = []
    for labels in sorted(found):
        items = sorted(found[labels].items())
        ex = b",".join(
            b'{"labels":'
            + orjson.dumps(dict(lb))
            + f',"value":"{format_float(v)}","timestamp":{format_ts(t)}}}'.encode()
            for (t, lb), v in items
        )
        parts.append(b'{"seriesLabels":' + orjson.dumps(dict(labels)) + b',"exemplars":[' + ex + b"]}")
    return b"[" + b",".join(parts) + b"]"
