"""Aggregation operators over instant vectors, per group and per step, vectorised over steps.

Rows are grouped by their `by`/`without` label key; each reduction runs on the (rows, steps)
block of a group at once.
"""

from __future__ import annotations

import numpy as np

from rtpm.errors import QueryError
from rtpm.model.labels import METRIC_NAME, Labels, fingerprint
from rtpm.query.promql.numerics import quantile_rows, stable_mean, stable_sum, variance
from rtpm.query.promql.values import F64, Vector, format_float_fixed


def group_key(labels: Labels, grouping: list[str], without: bool) -> Labels:
    if without:
        drop = set(grouping)
        drop.add(METRIC_NAME)
        return tuple(p for p in labels if p[0] not in drop)
    keep = set(grouping)
    return tuple(p for p in labels if p[0] in keep)


def _groups(vec: Vector, grouping: list[str], without: bool) -> tuple[list[Labels], list[np.ndarray]]:
    index: dict[Labels, list[int]] = {}
    for i, lb in enumerate(vec.labels):
        index.setdefault(group_key(lb, grouping, without), []).append(i)
    keys = list(index)
    return keys, [np.asarray(index[k], dtype=np.int64) for k in keys]


def _reduce(op: str, v: F64, p: np.ndarray) -> tuple[F64, np.ndarray]:
    """Reduce a group's (rows, T) block to (T,) values and presence."""
    cnt = p.sum(axis=0)
    has = cnt > 0
    if op == "sum":
        out = stable_sum(v, p, 0)
    elif op == "avg":
        out = stable_mean(v, p, 0)
    elif op == "count":
        out = cnt.astype(np.float64)
    elif op == "group":
        out = np.ones(v.shape[1])
    elif op in ("min", "max"):
        real = p & ~np.isnan(v)
        if op == "min":
            out = np.where(real, v, np.inf).min(axis=0)
        else:
            out = np.where(real, v, -np.inf).max(axis=0)
        out = np.where(real.any(axis=0), out, np.nan)
    elif op in ("stddev", "stdvar"):
        out = variance(v, p, 0)
        if op == "stddev":
            out = np.sqrt(out)
    else:  # pragma: no cover - guarded by the caller
        raise QueryError(f"unknown aggregation {op}")
    return out, has


SIMPLE = frozenset({"sum", "avg", "count", "group", "min", "max", "stddev", "stdvar"})


def aggregate(op: str, vec: Vector, grouping: list[str], without: bool, param: F64 | str | None, steps: int) -> Vector:
    if op in ("topk", "bottomk", "limitk", "limit_ratio"):
        assert not isinstance(param, str) and param is not None
        return _select(op, vec, grouping, without, param)
    if op == "count_values":
        assert isinstance(param, str)
        return _count_values(vec, grouping, without, param, steps)
    keys, groups = _groups(vec, grouping, without)
    n = len(keys)
    values = np.full((n, steps), np.nan)
    present = np.zeros((n, steps), dtype=bool)
    for g, rows in enumerate(groups):
        v, p = vec.values[rows], vec.present[rows]
        if op == "quantile":
            assert isinstance(param, np.ndarray)
            cnt = p.sum(axis=0)
            has = cnt > 0
            if has.any():
                cols = np.flatnonzero(has)
                out = quantile_rows(v[:, cols].T, p[:, cols].T, cnt[cols], param[cols])
                values[g, cols] = out
            present[g] = has
        elif op in SIMPLE:
            values[g], present[g] = _reduce(op, v, p)
        else:
            raise QueryError(f"aggregation {op!r} is not supported")
    return Vector(keys, values, present)


def _select(op: str, vec: Vector, grouping: list[str], without: bool, param: F64) -> Vector:
    """topk/bottomk/limitk/limit_ratio: keep input rows (and their labels) where selected."""
    present = np.zeros_like(vec.present)
    if np.isnan(param).any():
        raise QueryError("Ratio value is NaN" if op == "limit_ratio" else "Parameter value is NaN")
    if op == "limit_ratio":
        ratio = np.clip(param, -1.0, 1.0)
        offs = np.array([(fingerprint(lb) & 0xFFFFFFFFFFFF) / float(1 << 48) for lb in vec.labels])
        if len(offs):
            keep = np.where(ratio[None, :] >= 0, offs[:, None] < ratio[None, :], offs[:, None] >= 1.0 + ratio[None, :])
            present = vec.present & keep
        return Vector(list(vec.labels), vec.values, present)
    k = np.clip(param, -1, 2**62).astype(np.int64)
    _, groups = _groups(vec, grouping, without)
    shown: list[int] = []  # an instant answer lists each group's rows in rank order, as Prometheus does
    for rows in groups:
        v, p = vec.values[rows], vec.present[rows]
        if op == "limitk":
            rank = np.cumsum(p, axis=0) - 1
        else:
            key = -v if op == "topk" else v.copy()
            key = np.where(np.isnan(key), np.inf, key)
            # absent rows last, NaN after real values
            order = np.lexsort((key, ~p), axis=0)
            rank = np.empty_like(order)
            np.put_along_axis(rank, order, np.arange(len(rows))[:, None].repeat(v.shape[1], axis=1), axis=0)
        present[rows] = p & (rank < k[None, :])
        if v.shape[1] == 1:
            shown.extend(np.asarray(rows)[np.argsort(rank[:, 0], kind="stable")].tolist())
    out = Vector(list(vec.labels), vec.values, present)
    if vec.values.shape[1] == 1 and op != "limitk":
        out.order = shown
    return out


def _count_values(vec: Vector, grouping: list[str], without: bool, label: str, steps: int) -> Vector:
    out_index: dict[Labels, int] = {}
    counts: list[np.ndarray] = []
    cache: dict[float, str] = {}
    for i, lb in enumerate(vec.labels):
        base = dict(group_key(lb, grouping, without))
        row_v, row_p = vec.values[i], vec.present[i]
        for j in np.flatnonzero(row_p):
            f = float(row_v[j])
            s = cache.get(f) if f == f else "NaN"
            if s is None:
                s = cache[f] = format_float_fixed(f)
            d = dict(base)
            d[label] = s
            key = tuple(sorted(d.items()))
            g = out_index.get(key)
            if g is None:
                g = out_index[key] = len(counts)
                counts.append(np.zeros(steps))
            counts[g][j] += 1
    labels = list(out_index)
    if not labels:
        return Vector.empty(steps)
    values = np.vstack(counts)
    return Vector(labels, values, values > 0)
