"""`info(v, {data-label-selector})` (Prometheus 3, experimental): enrich each series of `v` with
the data labels of the info series (`target_info` unless `__name__` matchers say otherwise) that
share its identifying labels (`instance`, `job`).

- Info series are selected by the selector's `__name__` matchers (default `target_info`; only
  negated ones: every `.+_info` metric, then filtered by them) and its other matchers.
- The data labels added are all labels of the matching info series except `__name__` and the
  identifying ones, or, when the selector names labels, only those; a label the series already has
  is kept as it is. Several info metrics add the union of their data labels; several series of one
  info metric at a step (data labels that changed) resolve to the one with the latest sample.
- A step with no matching info series drops the series when a data matcher cannot match the empty
  string, and keeps it unenriched otherwise.
- Series of `v` that are info series themselves pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rtpm.errors import QueryError
from rtpm.model.labels import METRIC_NAME, Labels, Matcher, MatchType
from rtpm.query.promql.values import Vector

IDENTIFYING = ("instance", "job")
DEFAULT_INFO_METRIC = "target_info"


def info_selection(matchers: Sequence[Matcher]) -> tuple[list[Matcher], list[Matcher], list[Matcher]]:
    """(matchers that select info series, the __name__ matchers that identify info metrics, the
    data label matchers)."""
    names = [m for m in matchers if m.name == METRIC_NAME]
    data = [m for m in matchers if m.name != METRIC_NAME]
    positive = [m for m in names if m.type in (MatchType.EQUAL, MatchType.REGEX)]
    if not names:
        names = [Matcher(METRIC_NAME, MatchType.EQUAL, DEFAULT_INFO_METRIC)]
    elif not positive:
        names = [Matcher(METRIC_NAME, MatchType.REGEX, ".+_info"), *names]
    return [*names, *data], names, data


def enrich(base: Vector, infos: Vector, names: Sequence[Matcher], data: Sequence[Matcher]) -> Vector:
    steps = base.values.shape[1]
    named = {m.name for m in data}
    require = any(not m.matches_empty() for m in data)
    # info series by identifying key, by info metric name
    by_key: dict[tuple[str, ...], dict[str, list[int]]] = {}
    info_labels = [dict(lb) for lb in infos.labels]
    for j, d in enumerate(info_labels):
        key = tuple(d.get(k, "") for k in IDENTIFYING)
        by_key.setdefault(key, {}).setdefault(d.get(METRIC_NAME, ""), []).append(j)
    sts = infos.sample_ts
    out: dict[Labels, tuple[np.ndarray, np.ndarray]] = {}

    def emit(labels: Labels, values: np.ndarray, present: np.ndarray) -> None:
        if not present.any():
            return
        got = out.get(labels)
        if got is None:
            out[labels] = (np.where(present, values, np.nan), present.copy())
        else:
            got[0][present] = values[present]
            got[1][present] = True

    for i, lb in enumerate(base.labels):
        d = dict(lb)
        values, present = base.values[i], base.present[i]
        if METRIC_NAME in d and all(m.matches(d[METRIC_NAME]) for m in names):
            emit(lb, values, present)  # an info series itself
            continue
        groups = by_key.get(tuple(d.get(k, "") for k in IDENTIFYING), {})
        # per info metric: which of its series holds each step (the latest sample wins), -1 none
        choice = np.full((len(groups), steps), -1, dtype=np.int64)
        for g, rows in enumerate(groups.values()):
            best = np.full(steps, -1, dtype=np.int64)
            best_ts = np.full(steps, np.iinfo(np.int64).min, dtype=np.int64)
            for j in rows:
                p = infos.present[j]
                t = sts[j] if sts is not None else np.zeros(steps, dtype=np.int64)
                better = p & (t >= best_ts)
                best[better], best_ts[better] = j, t[better]
            choice[g] = best
        if len(groups):
            combos, inverse = np.unique(choice, axis=1, return_inverse=True)
            inverse = np.asarray(inverse).reshape(-1)
        else:
            combos, inverse = np.full((0, 1), -1, dtype=np.int64), np.zeros(steps, dtype=np.int64)
        for c in range(combos.shape[1]):
            at = present & (inverse == c)
            chosen = [int(j) for j in combos[:, c] if j >= 0]
            if not chosen:
                if not require:
                    emit(lb, values, at)
                continue
            added = dict(d)
            for j in chosen:
                for k, v in info_labels[j].items():
                    if k == METRIC_NAME or k in IDENTIFYING or k in d:
                        continue
                    if named and k not in named:
                        continue
                    if added.setdefault(k, v) != v:
                        raise QueryError(
                            f"info(): conflicting label {k}: {added[k]!r} and {v!r} come from different info metrics"
                        )
            emit(tuple(sorted(added.items())), values, at)
    labels = list(out)
    if not labels:
        return Vector.empty(steps)
    return Vector(labels, np.vstack([out[k][0] for k in labels]), np.vstack([out[k][1] for k in labels]))
