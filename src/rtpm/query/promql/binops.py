"""Binary operators: arithmetic, comparisons (filtering or `bool`), set operators, and vector
matching (one-to-one, many-to-one/one-to-many with group_left/group_right, on/ignoring)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rtpm.errors import QueryError
from rtpm.model.labels import METRIC_NAME, Labels
from rtpm.query.promql.values import F64, Scalar, Vector, drop_name

ARITH: dict[str, Callable[[F64, F64], F64]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.divide,
    "%": np.fmod,
    "^": np.power,
    "atan2": np.arctan2,
}
COMPARE: dict[str, Callable[[F64, F64], np.ndarray]] = {
    "==": np.equal,
    "!=": np.not_equal,
    ">": np.greater,
    "<": np.less,
    ">=": np.greater_equal,
    "<=": np.less_equal,
}


def _apply(op: str, a: F64, b: F64, return_bool: bool) -> tuple[F64, np.ndarray | None]:
    """Values and, for filtering comparisons, the keep mask (value is `a`)."""
    if op in ARITH:
        return ARITH[op](a, b), None
    hit = COMPARE[op](a, b)
    if return_bool:
        return hit.astype(np.float64), None
    return np.broadcast_to(a, hit.shape).copy(), hit


def scalar_scalar(op: str, a: Scalar, b: Scalar, return_bool: bool) -> Scalar:
    values, _ = _apply(op, a.values, b.values, True)
    return Scalar(values)


def vector_scalar(op: str, vec: Vector, sc: Scalar, scalar_left: bool, return_bool: bool) -> Vector:
    s = sc.values[None, :]
    v = vec.values
    a, b = (s, v) if scalar_left else (v, s)
    values, keep = _apply(op, a, b, return_bool)
    present = vec.present
    if keep is not None:
        values = v.copy()  # a comparison always keeps the vector's value
        present = present & keep
    labels = vec.labels
    if op in ARITH or return_bool:
        labels = [drop_name(lb) for lb in labels]
    return Vector(list(labels), np.broadcast_to(values, v.shape).copy(), present)


# The metric's name and, when senders send them, its type and unit: never part of a match.
_IDENTITY = frozenset({METRIC_NAME, "__type__", "__unit__"})


def signature(labels: Labels, on: bool, names: list[str]) -> Labels:
    if on:
        keep = set(names)
        return tuple(p for p in labels if p[0] in keep)
    drop = set(names)
    drop.update(_IDENTITY)
    return tuple(p for p in labels if p[0] not in drop)


def _sig_index(vec: Vector, on: bool, names: list[str]) -> tuple[dict[Labels, list[int]], list[Labels]]:
    index: dict[Labels, list[int]] = {}
    sigs = []
    for i, lb in enumerate(vec.labels):
        sig = signature(lb, on, names)
        sigs.append(sig)
        index.setdefault(sig, []).append(i)
    return index, sigs


def _any_present(vec: Vector, index: dict[Labels, list[int]]) -> dict[Labels, np.ndarray]:
    return {sig: np.any(vec.present[rows], axis=0) for sig, rows in index.items()}


def set_op(op: str, lhs: Vector, rhs: Vector, on: bool, names: list[str]) -> Vector:
    r_index, _ = _sig_index(rhs, on, names)
    l_index, l_sigs = _sig_index(lhs, on, names)
    steps = lhs.values.shape[1]
    none = np.zeros(steps, dtype=bool)
    if op in ("and", "unless"):
        r_any = _any_present(rhs, r_index)
        present = lhs.present.copy()
        for i, sig in enumerate(l_sigs):
            hit = r_any.get(sig, none)
            present[i] &= hit if op == "and" else ~hit
        return Vector(list(lhs.labels), lhs.values, present)
    # or
    l_any = _any_present(lhs, l_index)
    r_present = rhs.present.copy()
    for sig, rows in r_index.items():
        l_hit = l_any.get(sig)
        if l_hit is not None:
            r_present[rows] &= ~l_hit[None, :]
    return Vector(
        list(lhs.labels) + list(rhs.labels),
        np.vstack([lhs.values, rhs.values]) if len(lhs) or len(rhs) else lhs.values,
        np.vstack([lhs.present, r_present]) if len(lhs) or len(rhs) else lhs.present,
    )


def _fmt(sig: Labels) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sig) + "}"


def vector_vector(
    op: str,
    lhs: Vector,
    rhs: Vector,
    *,
    card: str,
    on: bool,
    names: list[str],
    include: list[str],
    return_bool: bool,
    fill_left: float | None = None,
    fill_right: float | None = None,
) -> Vector:
    """Arithmetic or comparison between two vectors with Prometheus' matching rules.

    `fill_left`/`fill_right` (Prometheus 3's fill modifiers) stand in for a missing match: an
    element with no match on the other side at a step is matched with the fill value instead. A
    missing "many" side is filled once per match group, labelled with the group's matching labels;
    labels that group_left/group_right would copy from a missing "one" side are left out. As in
    Prometheus, fill_left fills the "many" side and fill_right the "one" side of a grouped match
    (for group_right: the right and the left side)."""
    swap = card == "one-to-many"
    many, one = (rhs, lhs) if swap else (lhs, rhs)
    one_index, _ = _sig_index(one, on, names)
    many_index, many_sigs = _sig_index(many, on, names)
    steps = lhs.values.shape[1]
    # The "one" side must have at most one sample per signature and step.
    for sig, rows in one_index.items():
        if len(rows) > 1 and (one.present[rows].sum(axis=0) > 1).any():
            side = "left" if swap else "right"
            raise QueryError(
                f"found duplicate series for the match group {_fmt(sig)} on the {side} hand-side of the "
                "operation; many-to-many matching not allowed: matching labels must be unique on one side"
            )
    if card == "one-to-one":
        for sig, rows in many_index.items():
            if len(rows) > 1 and sig in one_index:
                o_any = one.present[one_index[sig]].any(axis=0)
                if ((many.present[rows].sum(axis=0) > 1) & o_any).any():
                    raise QueryError(
                        f"found duplicate series for the match group {_fmt(sig)} on the left hand-side of "
                        "the operation; many-to-one matching must be explicit (group_left/group_right)"
                    )
    drop = op in ARITH or return_bool
    out_labels: list[Labels] = []
    out_vals: list[F64] = []
    out_pres: list[np.ndarray] = []
    for i, sig in enumerate(many_sigs):
        o_rows = one_index.get(sig)
        if not o_rows:
            continue
        mp = many.present[i]
        if not mp.any():
            continue
        for j in o_rows:
            pres = mp & one.present[j]
            if not pres.any():
                continue
            lv, rv = (one.values[j], many.values[i]) if swap else (many.values[i], one.values[j])
            values, keep = _apply(op, lv, rv, return_bool)
            if keep is not None:
                pres = pres & keep
            out_labels.append(_result_labels(many.labels[i], one.labels[j], card, on, names, include, drop))
            out_vals.append(values)
            out_pres.append(pres)
    fill_many, fill_one = fill_left, fill_right
    if fill_one is not None:  # "many" elements without a "one" match at a step
        for i, sig in enumerate(many_sigs):
            one_rows = one_index.get(sig)
            matched = one.present[one_rows].any(axis=0) if one_rows else np.zeros(steps, dtype=bool)
            pres = many.present[i] & ~matched
            if not pres.any():
                continue
            fv = np.full(steps, fill_one)
            lv, rv = (fv, many.values[i]) if swap else (many.values[i], fv)
            values, keep = _apply(op, lv, rv, return_bool)
            if keep is not None:
                pres = pres & keep
            out_labels.append(_result_labels(many.labels[i], (), card, on, names, include, drop))
            out_vals.append(values)
            out_pres.append(pres)
    if fill_many is not None:  # "one" elements without any "many" match: one filled "many" element
        for sig, rows in one_index.items():
            m_rows = many_index.get(sig)
            matched = many.present[m_rows].any(axis=0) if m_rows else np.zeros(steps, dtype=bool)
            for j in rows:
                pres = one.present[j] & ~matched
                if not pres.any():
                    continue
                fv = np.full(steps, fill_many)
                lv, rv = (one.values[j], fv) if swap else (fv, one.values[j])
                values, keep = _apply(op, lv, rv, return_bool)
                if keep is not None:
                    pres = pres & keep
                out_labels.append(_result_labels(sig, one.labels[j], card, on, names, include, drop))
                out_vals.append(values)
                out_pres.append(pres)
    if not out_labels:
        return Vector.empty(steps)
    return Vector(out_labels, np.vstack(out_vals), np.vstack(out_pres))


def _result_labels(
    many: Labels, one: Labels, card: str, on: bool, names: list[str], include: list[str], drop: bool
) -> Labels:
    d = dict(many)
    if drop:
        for k in _IDENTITY:
            d.pop(k, None)
    if card == "one-to-one":
        if on:
            keep = set(names)
            d = {k: v for k, v in d.items() if k in keep}
        else:
            for n in names:
                d.pop(n, None)
    elif include:
        od = dict(one)
        for n in include:
            if od.get(n):
                d[n] = od[n]
            else:
                d.pop(n, None)
    return tuple(sorted(d.items()))
