"""The seed's query endpoints on the PromQL engine: `GET /api/v1/metrics/query/range` and
`GET /api/v1/metrics/query/instant`.

Either `query` (PromQL) or `metric_name` (+ `labels`, `aggregation`, `group_by`) which are
translated to PromQL. Answers in the seed's shape:
`{"series": [{"labels": {...}, "data_points": [{"timestamp": RFC3339, "value": v}]}]}`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends

from rtpm.api.auth import require
from rtpm.api.deps import ServicesDep, TenantDep
from rtpm.api.params import duration_param, parse_labels_param, time_param
from rtpm.api.routes.prometheus import check_range, make_engine
from rtpm.errors import BadDataError
from rtpm.model.labels import METRIC_NAME, is_valid_label_name, is_valid_metric_name
from rtpm.model.time import to_rfc3339
from rtpm.query.promql.engine import Result
from rtpm.query.promql.values import RangeVec, Scalar, String, Vector

router = APIRouter(prefix="/api/v1/metrics", tags=["metrics"])

_AGGREGATIONS = {"sum", "avg", "min", "max", "count"}
_QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}


def _quote(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_promql(
    metric_name: str, labels: dict[str, str], aggregation: str | None, group_by: list[str], window_ms: int
) -> str:
    """The seed's query form as PromQL."""
    if not is_valid_metric_name(metric_name):
        raise BadDataError(f"metric_name: {metric_name!r} is not a valid metric name")
    for k in [*labels, *group_by]:
        if not is_valid_label_name(k):
            raise BadDataError(f"labels: {k!r} is not a valid label name")
    matchers = ",".join(f"{k}={_quote(v)}" for k, v in sorted(labels.items()))
    sel = f"{metric_name}{{{matchers}}}" if matchers else metric_name
    by = f" by ({', '.join(group_by)})" if group_by else ""
    if aggregation is None:
        return sel
    if aggregation in _AGGREGATIONS:
        return f"{aggregation}{by} ({sel})"
    if aggregation in _QUANTILES:
        return f"quantile{by} ({_QUANTILES[aggregation]}, {sel})"
    if aggregation == "rate":
        window = f"{max(window_ms, 60_000) // 1000}s"
        inner = f"rate({sel}[{window}])"
        return f"sum{by} ({inner})" if group_by else inner
    raise BadDataError(
        f"aggregation: {aggregation!r} is not one of {sorted(_AGGREGATIONS | set(_QUANTILES) | {'rate'})}"
    )


def _value(v: float) -> float | str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return v


def _series(result: Result) -> list[dict[str, Any]]:
    v = result.value
    steps = result.steps
    if isinstance(v, String):
        raise BadDataError("query: a string expression has no series")
    if isinstance(v, Scalar):
        v = Vector([()], v.values[None, :], np.ones((1, len(steps)), dtype=bool))
    out = []
    if isinstance(v, RangeVec):
        for i, lb in enumerate(v.labels):
            lo, hi = int(v.lo[i, 0]), int(v.hi[i, 0])
            if hi > lo:
                pts = zip(v.ts[lo:hi].tolist(), v.vals[lo:hi].tolist(), strict=True)
                out.append((lb, pts))
    else:
        for i, lb in enumerate(v.labels):
            p = v.present[i]
            if p.any():
                out.append((lb, zip(steps[p].tolist(), v.values[i][p].tolist(), strict=True)))
    out.sort(key=lambda r: r[0])
    return [
        {
            "labels": {k: val for k, val in lb if k != METRIC_NAME},
            "metric_name": dict(lb).get(METRIC_NAME),
            "data_points": [{"timestamp": to_rfc3339(t), "value": _value(x)} for t, x in pts],
        }
        for lb, pts in out
    ]


def _query_text(
    query: str | None,
    metric_name: str | None,
    labels: str | None,
    aggregation: str | None,
    group_by: str | None,
    window_ms: int,
) -> str:
    if query:
        return query
    if not metric_name:
        raise BadDataError("query: give either query (PromQL) or metric_name")
    groups = [g.strip() for g in (group_by or "").split(",") if g.strip()]
    return to_promql(metric_name, parse_labels_param(labels), aggregation, groups, window_ms)


def _range_end(seed_value: str | None, seed_name: str, prom_value: str | None, prom_name: str) -> int:
    if seed_value is not None and prom_value is not None and seed_value != prom_value:
        raise BadDataError(f"{seed_name} and {prom_name}: give one of them (they name the same time)")
    if seed_value is not None:
        return time_param(seed_value, seed_name, rfc3339=True)
    if prom_value is not None:
        return time_param(prom_value, prom_name, rfc3339=True)
    raise BadDataError(f"{seed_name}: required (or {prom_name})")


@router.get("/query/range", dependencies=[Depends(require("metrics:read"))])
async def query_range(
    services: ServicesDep,
    tenant: TenantDep,
    start_time: str | None = None,
    end_time: str | None = None,
    start: str | None = None,
    end: str | None = None,
    query: str | None = None,
    metric_name: str | None = None,
    labels: str | None = None,
    aggregation: str | None = None,
    group_by: str | None = None,
    step: str | None = None,
) -> dict[str, Any]:
    """Range query through the PromQL engine; `step` defaults to 1/250 of the range (at least 1s).
    The range is `start_time`/`end_time`, or `start`/`end` as Prometheus names them."""
    start_ms = _range_end(start_time, "start_time", start, "start")
    end_ms = _range_end(end_time, "end_time", end, "end")
    start, end = start_ms, end_ms
    step_ms = duration_param(step, "step") if step else max(1000, (end - start) // 250)
    check_range(start, end, step_ms, services.settings.limits.max_points_per_series)
    text = _query_text(query, metric_name, labels, aggregation, group_by, step_ms)
    with services.metrics.query.time("range"):
        result = await make_engine(services).range(tenant, text, start, end, step_ms)
    return {
        "query": text,
        "start_time": to_rfc3339(start),
        "end_time": to_rfc3339(end),
        "step": step_ms / 1000,
        "series": _series(result),
    }


@router.get("/query/instant", dependencies=[Depends(require("metrics:read"))])
async def query_instant(
    services: ServicesDep,
    tenant: TenantDep,
    query: str | None = None,
    metric_name: str | None = None,
    labels: str | None = None,
    aggregation: str | None = None,
    group_by: str | None = None,
    time: str | None = None,
) -> dict[str, Any]:
    """Instant query through the PromQL engine at `time` (default now)."""
    t = time_param(time, "time", rfc3339=True) if time else round(services.clock() * 1000)
    text = _query_text(query, metric_name, labels, aggregation, group_by, 300_000)
    with services.metrics.query.time("instant"):
        result = await make_engine(services).instant(tenant, text, t)
    return {"query": text, "time": to_rfc3339(t), "series": _series(result)}
