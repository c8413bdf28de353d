"""The seed's query endpoints on the PromQL engine: `GET /api/v1/metrics/query/range` and
`GET /api/v1/metrics/query/instant`.

Either `query` (PromQL) or `metric_name` (+ `labels`, `aggregation`, `group_by`), the seed's
query, translated to PromQL by `query/seed_promql.py` as for `POST /api/v1/metrics/query`. Answers in the seed's shape:
`{"series": [{"labels": {...}, "data_points": [{"timestamp": RFC3339, "value": v}]}]}`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Query

from rtpm.api.auth import require
from rtpm.api.deps import ServicesDep, TenantDep
from rtpm.api.params import duration_param, parse_labels_param, time_param
from rtpm.api.routes.prometheus import check_range
from rtpm.errors import BadDataError
from rtpm.model.labels import METRIC_NAME
from rtpm.model.time import to_rfc3339
from rtpm.query import seed_promql
from rtpm.query.promql.engine import Result
from rtpm.query.promql.values import RangeVec, Scalar, String, Vector
from rtpm.query.seed_promql import Aggregation

router = APIRouter(prefix="/api/v1/metrics", tags=["metrics"])


def _value(v: float) -> float | str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return v


def _series(result: Result, shift_ms: int = 0) -> list[dict[str, Any]]:
    """`shift_ms`: subtracted from the evaluation times (the seed's buckets are reported at their start)."""
    v = result.value
    steps = result.steps - shift_ms
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


def _seed_form(
    metric_name: str | None,
    labels: str | None,
    aggregation: str | None,
    group_by: str | None,
) -> tuple[str, dict[str, str], Aggregation, list[str] | None]:
    if not metric_name:
        raise BadDataError("query: give either query (PromQL) or metric_name")
    groups = None if group_by is None else [g.strip() for g in group_by.split(",") if g.strip()]
    return metric_name, parse_labels_param(labels), seed_promql.parse_aggregation(aggregation), groups


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
    aggregation: str | None = Query(None, description=seed_promql.AGGREGATION_DOC),
    group_by: str | None = Query(None, description="Comma-separated label names. " + seed_promql.GROUP_BY_DOC),
    step: str | None = None,
) -> dict[str, Any]:
    """Range query through the PromQL engine; `step` defaults to 1/250 of the range (at least 1s).
    The range is `start_time`/`end_time`, or `start`/`end` as Prometheus names them. With
    `metric_name` (+ `labels`, `aggregation`, `group_by`) instead of `query`: the seed's bucketed
    query, as `POST /api/v1/metrics/query` answers it (see `aggregation`); `query` in the answer
    is its PromQL, one bucket of which ends at each step + step - 1ms."""
    start_ms = _range_end(start_time, "start_time", start, "start")
    end_ms = _range_end(end_time, "end_time", end, "end")
    step_ms = duration_param(step, "step") if step else max(1000, (end_ms - start_ms) // 250)
    check_range(start_ms, end_ms, step_ms, services.settings.limits.max_points_per_series)
    engine = services.engine
    if query:
        text, shift = query, 0
        with services.metrics.query.time("range"):
            result = await engine.range(tenant, text, start_ms, end_ms, step_ms)
    else:
        name, matchers, agg, groups = _seed_form(metric_name, labels, aggregation, group_by)
        ev = seed_promql.buckets(name, matchers, agg, groups, start_ms=start_ms, end_ms=end_ms, step_ms=step_ms)
        text, shift = ev.promql, ev.shift_ms
        with services.metrics.query.time("range"):
            result = await engine.range(
                tenant, text, ev.start_ms, ev.end_ms, ev.step_ms, samples_until_ms=ev.samples_until_ms
            )
    return {
        "query": text,
        "start_time": to_rfc3339(start_ms),
        "end_time": to_rfc3339(end_ms),
        "step": step_ms / 1000,
        "series": _series(result, shift),
    }


@router.get("/query/instant", dependencies=[Depends(require("metrics:read"))])
async def query_instant(
    services: ServicesDep,
    tenant: TenantDep,
    query: str | None = None,
    metric_name: str | None = None,
    labels: str | None = None,
    aggregation: str | None = Query(None, description=seed_promql.AGGREGATION_DOC),
    group_by: str | None = Query(None, description="Comma-separated label names. " + seed_promql.GROUP_BY_DOC),
    time: str | None = None,
) -> dict[str, Any]:
    """Instant query through the PromQL engine at `time` (default now). With `metric_name` instead
    of `query`: the seed's aggregation over the 5 minutes up to `time` (see `aggregation`)."""
    t = time_param(time, "time", rfc3339=True) if time else round(services.clock() * 1000)
    if query:
        text = query
    else:
        name, matchers, agg, groups = _seed_form(metric_name, labels, aggregation, group_by)
        text = seed_promql.window_ending(name, matchers, agg, groups, time_ms=t, window_ms=300_000).promql
    with services.metrics.query.time("instant"):
        result = await services.engine.instant(tenant, text, t)
    return {"query": text, "time": to_rfc3339(t), "series": _series(result)}
