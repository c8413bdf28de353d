"""Functions over instant vectors and scalars: math, clamping, rounding, dates, label functions,
sorting, histogram_quantile. Registered by name in `VECTOR_MATH` or handled by `call_vector`."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from rtpm.errors import QueryError
from rtpm.model.labels import METRIC_NAME, Labels, is_valid_label_name
from rtpm.model.regex import Match, RegexError, compile_regex
from rtpm.query.promql.values import F64, Vector, drop_name

VECTOR_MATH: dict[str, Callable[[F64], F64]] = {
    "abs": np.abs,
    "ceil": np.ceil,
    "floor": np.floor,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "ln": np.log,
    "log2": np.log2,
    "log10": np.log10,
    "sgn": np.sign,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "asin": np.arcsin,
    "acos": np.arccos,
    "atan": np.arctan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "tanh": np.tanh,
    "asinh": np.arcsinh,
    "acosh": np.arccosh,
    "atanh": np.arctanh,
    "deg": np.degrees,
    "rad": np.radians,
}


def math_fn(name: str, vec: Vector) -> Vector:
    return Vector([drop_name(lb) for lb in vec.labels], VECTOR_MATH[name](vec.values), vec.present)


def clamp(vec: Vector, lo: F64, hi: F64) -> Vector:
    values = np.maximum(np.minimum(vec.values, hi[None, :]), lo[None, :])
    present = vec.present & ~(hi < lo)[None, :]
    return Vector([drop_name(lb) for lb in vec.labels], values, present)


def round_fn(vec: Vector, to_nearest: F64) -> Vector:
    inv = 1.0 / to_nearest[None, :]
    values = np.floor(vec.values * inv + 0.5) / inv
    return Vector([drop_name(lb) for lb in vec.labels], values, vec.present)


# ---- dates -----------------------------------------------------------------------------------


def _civil(seconds: F64) -> dict[str, F64]:
    """UTC calendar fields of unix seconds (floats), as float arrays; NaN/Inf give NaN."""
    finite = np.isfinite(seconds)
    secs = np.where(finite, np.floor(seconds), 0).astype(np.int64)
    dt = secs.astype("datetime64[s]")
    days = dt.astype("datetime64[D]")
    months = dt.astype("datetime64[M]")
    years = dt.astype("datetime64[Y]")
    year = years.astype(np.int64) + 1970
    month = months.astype(np.int64) % 12 + 1
    next_month = (months + 1).astype("datetime64[D]")
    month_start = months.astype("datetime64[D]")
    sod = (dt - days).astype(np.int64)
    out = {
        "year": year,
        "month": month,
        "day_of_month": (days - month_start).astype(np.int64) + 1,
        "day_of_year": (days - years.astype("datetime64[D]")).astype(np.int64) + 1,
        "day_of_week": (days.astype(np.int64) + 4) % 7,
        "days_in_month": (next_month - month_start).astype(np.int64),
        "hour": sod // 3600,
        "minute": sod % 3600 // 60,
    }
    return {k: np.where(finite, v.astype(np.float64), np.nan) for k, v in out.items()}


DATE_FUNCS = frozenset(
    {"year", "month", "day_of_month", "day_of_year", "day_of_week", "days_in_month", "hour", "minute"}
)


def date_fn(name: str, vec: Vector) -> Vector:
    return Vector([drop_name(lb) for lb in vec.labels], _civil(vec.values)[name], vec.present)


# ---- labels ----------------------------------------------------------------------------------

_TEMPLATE = re.compile(r"\$(?:\$|\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


def _expand(template: str, m: Match, groups: int) -> str:
    def sub(t: re.Match[str]) -> str:
        name = t.group(1) or t.group(2)
        if name is None:
            return "$"
        if name.isdigit():
            i = int(name)
            return (m.group(i) or "") if i <= groups else ""
        try:
            return m.group(name) or ""
        except IndexError:
            return ""

    return _TEMPLATE.sub(sub, template)


def _set(labels: Labels, name: str, value: str) -> Labels:
    d = dict(labels)
    if value:
        d[name] = value
    else:
        d.pop(name, None)
    return tuple(sorted(d.items()))


def label_replace(vec: Vector, dst: str, repl: str, src: str, regex: str) -> Vector:
    try:
        rx = compile_regex(regex)
    except RegexError as exc:
        raise QueryError(f"invalid regular expression in label_replace(): {regex}: {exc}") from None
    if not is_valid_label_name(dst) and dst != METRIC_NAME:
        raise QueryError(f"invalid destination label name in label_replace(): {dst}")
    out = []
    for lb in vec.labels:
        m = rx.fullmatch(dict(lb).get(src, ""))
        out.append(_set(lb, dst, _expand(repl, m, rx.groups)) if m else lb)
    return Vector(out, vec.values, vec.present)


def label_join(vec: Vector, dst: str, sep: str, srcs: list[str]) -> Vector:
    if not is_valid_label_name(dst) and dst != METRIC_NAME:
        raise QueryError(f"invalid destination label name in label_join(): {dst}")
    out = []
    for lb in vec.labels:
        d = dict(lb)
        out.append(_set(lb, dst, sep.join(d.get(s, "") for s in srcs)))
    return Vector(out, vec.values, vec.present)


# ---- sorting (affects instant results only) --------------------------------------------------


def sort_fn(vec: Vector, descending: bool) -> Vector:
    col = vec.values[:, -1] if vec.values.shape[1] else np.zeros(len(vec))
    nan = np.isnan(col)
    key = np.where(nan, 0.0, -col if descending else col)
    order = np.lexsort((key, nan)).tolist()
    return Vector(vec.labels, vec.values, vec.present, order=order)


def _natural(s: str) -> list[tuple[int, int | str]]:
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", s) if p]


def sort_by_label(vec: Vector, names: list[str], descending: bool) -> Vector:
    def key(i: int) -> tuple[list[list[tuple[int, int | str]]], Labels]:
        d = dict(vec.labels[i])
        return [_natural(d.get(n, "")) for n in names], vec.labels[i]

    order = sorted(range(len(vec)), key=key, reverse=descending)
    return Vector(vec.labels, vec.values, vec.present, order=order)


# ---- histogram_quantile over classic buckets -------------------------------------------------


def _bucket_quantile(q: float, bounds: F64, counts: F64) -> float:
    if np.isnan(q):
        return float("nan")
    if q < 0:
        return float("-inf")
    if q > 1:
        return float("inf")
    if len(bounds) == 0 or not np.isposinf(bounds[-1]):
        return float("nan")
    # coalesce equal bounds, then force monotonic counts
    ub, inv = np.unique(bounds, return_inverse=True)
    cs = np.zeros(len(ub))
    np.add.at(cs, inv, counts)
    cs = np.maximum.accumulate(np.where(np.isnan(cs), -np.inf, cs))
    if len(ub) < 2:
        return float("nan")
    total = cs[-1]
    if total == 0 or np.isnan(total):
        return float("nan")
    rank = q * total
    b = int(np.searchsorted(cs[:-1], rank, side="left"))
    if b == len(ub) - 1:
        return float(ub[-2])
    if b == 0 and ub[0] <= 0:
        return float(ub[0])
    start, end, count = 0.0, float(ub[b]), float(cs[b])
    if b > 0:
        start = float(ub[b - 1])
        count -= cs[b - 1]
        rank -= cs[b - 1]
    return start + (end - start) * (rank / count)


def classic_buckets(vec: Vector) -> dict[Labels, list[tuple[float, int]]]:
    """The rows of classic histogram buckets by histogram (labels without `le` and the name):
    (upper bound, row) per bucket; rows without a numeric `le` are left out."""
    groups: dict[Labels, list[tuple[float, int]]] = {}
    for i, lb in enumerate(vec.labels):
        d = dict(lb)
        le = d.pop("le", None)
        if le is None:
            continue
        try:
            bound = float(le)
        except ValueError:
            continue
        d.pop(METRIC_NAME, None)
        groups.setdefault(tuple(sorted(d.items())), []).append((bound, i))
    return groups


def histogram_quantile(q: F64, vec: Vector) -> Vector:
    groups = classic_buckets(vec)
    steps = vec.values.shape[1]
    labels: list[Labels] = []
    values = np.full((len(groups), steps), np.nan)
    present = np.zeros((len(groups), steps), dtype=bool)
    for g, (key, members) in enumerate(groups.items()):
        labels.append(key)
        members.sort()
        bounds = np.array([b for b, _ in members])
        rows = np.array([i for _, i in members])
        p = vec.present[rows]
        present[g] = p.any(axis=0)
        for j in np.flatnonzero(present[g]):
            sel = p[:, j]
            values[g, j] = _bucket_quantile(float(q[j]), bounds[sel], vec.values[rows[sel], j])
    return Vector(labels, values, present)
