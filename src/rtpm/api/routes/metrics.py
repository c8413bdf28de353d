"""The seed's metrics API: ingest, batch, latest, names, stats, query."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from pydantic import ValidationError as PydanticValidationError

from rtpm.api.auth import require
from rtpm.api.deps import ServicesDep, TenantDep, read_json
from rtpm.api.params import duration_param, parse_labels_param, time_param
from rtpm.api.responses import OrjsonResponse
from rtpm.app.services import Services
from rtpm.errors import BadDataError, NotFoundError, Problem, ValidationFailed
from rtpm.ingest.json import decode_items
from rtpm.model.labels import METRIC_NAME, Matcher, label_dict
from rtpm.model.time import to_rfc3339
from rtpm.query import seed_promql
from rtpm.query.seed_promql import Aggregation, check_points, raw_points

router = APIRouter(prefix="/api/v1/metrics", tags=["metrics"])


class MetricIn(BaseModel):
    """One sample as the seed's clients send it."""

    name: str = Field(description="Metric name, [a-zA-Z_:][a-zA-Z0-9_:]*", examples=["cpu_usage"])
    value: float
    timestamp: str | float | None = Field(None, description="RFC3339 or unix seconds; now when missing")
    labels: dict[str, str] | None = None
    type: Literal["counter", "gauge", "histogram", "summary"] | None = None
    unit: str | None = None
    help_text: str | None = None


class BatchIn(BaseModel):
    metrics: list[MetricIn]


class QueryIn(BaseModel):
    metric_name: str
    labels: dict[str, str] | None = None
    start_time: str | float
    end_time: str | float
    step: str | float | None = Field(None, description="Bucket width: seconds or a duration like 1m")
    aggregation: Aggregation | None = Field(None, description=seed_promql.AGGREGATION_DOC)
    group_by: list[str] | None = Field(None, description=seed_promql.GROUP_BY_DOC)


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


def _matchers(name: str, labels: dict[str, str]) -> list[Matcher]:
    return [Matcher.equal(METRIC_NAME, name)] + [Matcher.equal(k, v) for k, v in sorted(labels.items())]


@router.post(
    "/ingest", dependencies=[Depends(require("metrics:write"))], status_code=201, openapi_extra=_body_doc(MetricIn)
)
async def ingest(request: Request, services: ServicesDep, tenant: TenantDep) -> OrjsonResponse:
    """Store one sample; answers once it is committed."""
    item = await read_json(request)
    now_ms = int(services.clock() * 1000)
    with services.metrics.ingest.track("json") as counted:
        batch = decode_items([item], tenant=tenant, validator=services.validator, now_ms=now_ms)
        counted.samples = len(batch)
        await services.buffer.submit(batch)
    ts = batch.ts_ms[0]
    return OrjsonResponse(
        {
            "status": "success",
            "message": "metric ingested",
            "metric": {
                "name": item["name"],
                "value": batch.values[0],
                "timestamp": to_rfc3339(ts),
                "labels": label_dict(batch.series[0], with_name=False),
            },
        },
        status_code=201,
    )


@router.post(
    "/batch", dependencies=[Depends(require("metrics:write"))], status_code=201, openapi_extra=_body_doc(BatchIn)
)
async def batch(request: Request, services: ServicesDep, tenant: TenantDep) -> OrjsonResponse:
    """Store many samples in one request: all of them, or none if any item is invalid (422 lists every
    bad item's index, field and reason). On the head engine, new series past its limit of active
    series are refused alone (400 naming RTPM_STORAGE_HEAD_MAX_SERIES; the other samples are stored)."""
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("metrics"), list):
        raise ValidationFailed([Problem("metrics", "required: a JSON object with a 'metrics' array")])
    now_ms = int(services.clock() * 1000)
    with services.metrics.ingest.track("json") as counted:
        wb = decode_items(body["metrics"], tenant=tenant, validator=services.validator, now_ms=now_ms)
        counted.samples = len(wb)
        await services.buffer.submit(wb)
    return OrjsonResponse(
        {"status": "success", "message": f"{len(wb)} metrics ingested", "metrics_count": len(wb)},
        status_code=201,
    )


def _label_filters(request: Request, skip: set[str]) -> dict[str, str]:
    out = {}
    for k, v in request.query_params.items():
        if k in skip:
            continue
        out[k] = v
    return out


@router.get("/latest/{name}", dependencies=[Depends(require("metrics:read"))])
async def latest(name: str, request: Request, services: ServicesDep, tenant: TenantDep) -> dict[str, Any]:
    """The latest sample of each series of `name` (filter with label=value query parameters)."""
    filters = _label_filters(request, set())
    lo, hi = services.validator.window_ms()
    found = await services.storage.querier(tenant, lo, hi).latest(_matchers(name, filters))
    if not found:
        raise NotFoundError(f"no samples for metric {name!r}" + (f" with labels {filters}" if filters else ""))
    newest = max(found, key=lambda s: s.ts_ms)
    return {
        "metric_name": name,
        "value": newest.value,
        "timestamp": to_rfc3339(newest.ts_ms),
        "labels": label_dict(newest.labels, with_name=False),
        "series": [
            {
                "labels": label_dict(s.labels, with_name=False),
                "value": s.value,
                "timestamp": to_rfc3339(s.ts_ms),
            }
            for s in found
        ],
    }


@router.get("/names", dependencies=[Depends(require("metrics:read"))])
async def names(services: ServicesDep, tenant: TenantDep) -> dict[str, Any]:
    """Every metric name with its type, unit, help and series count."""
    infos = await services.storage.metric_names(tenant)
    return {
        "metrics": [
            {
                "name": i.name,
                "type": i.type.value,
                "unit": i.unit,
                "help": i.help,
                "series_count": i.series_count,
            }
            for i in infos
        ],
        "count": len(infos),
    }


@router.get("/stats/{name}", dependencies=[Depends(require("metrics:read"))])
async def stats(
    name: str,
    request: Request,
    services: ServicesDep,
    tenant: TenantDep,
    start_time: str | None = None,
    end_time: str | None = None,
) -> dict[str, Any]:
    """count, min, max, avg, sum, first and last timestamp of `name`, overall and per series."""
    # without a range: everything storage may hold, up to now (not the future ingest allows)
    lo, _ = services.validator.window_ms()
    now_ms = int(services.clock() * 1000)
    start_ms = time_param(start_time, "start_time", rfc3339=True) if start_time is not None else lo
    end_ms = time_param(end_time, "end_time", rfc3339=True) if end_time is not None else max(now_ms, start_ms)
    if end_ms < start_ms:
        raise BadDataError("end_time: must not be before start_time")
    filters = _label_filters(request, {"start_time", "end_time"})
    per_series = await services.storage.querier(tenant, start_ms, end_ms).stats(_matchers(name, filters))
    if not per_series:
        raise NotFoundError(f"no samples for metric {name!r} between {to_rfc3339(start_ms)} and {to_rfc3339(end_ms)}")

    def shape(count: int, total: float, lo_v: float, hi_v: float, first: int, last: int) -> dict[str, Any]:
        return {
            "count": count,
            "sum": total,
            "min": lo_v,
            "max": hi_v,
            "avg": total / count,
            "first_timestamp": to_rfc3339(first),
            "last_timestamp": to_rfc3339(last),
        }

    count = sum(s.count for s in per_series)
    overall = shape(
        count,
        sum(s.sum for s in per_series),
        min(s.min for s in per_series),
        max(s.max for s in per_series),
        min(s.first_ts_ms for s in per_series),
        max(s.last_ts_ms for s in per_series),
    )
    overall["series_count"] = len(per_series)
    return {
        "metric_name": name,
        "start_time": to_rfc3339(start_ms),
        "end_time": to_rfc3339(end_ms),
        **overall,
        "series": [
            {
                "labels": label_dict(s.labels, with_name=False),
                **shape(s.count, s.sum, s.min, s.max, s.first_ts_ms, s.last_ts_ms),
            }
            for s in per_series
        ],
    }


_QUERY_FORMAT = Query(
    "array",
    description="array (default, what the original RTPM API's client reads): a JSON array of series; "
    "object: {metric_name, start_time, end_time, step, aggregation, series}",
)


async def _seed_query(services: Services, tenant: str, q: QueryIn) -> dict[str, Any]:
    """The seed's query as an object; its `series` are `{metric_name, labels, data_points}`.
    Bucketed queries are translated to PromQL and evaluated by the engine (`query/seed_promql.py`
    gives each aggregation's meaning)."""
    problems: list[Problem] = []
    services.validator.metric_name(q.metric_name, problems, None, "metric_name")
    if problems:
        raise ValidationFailed(problems)
    start_ms = time_param(q.start_time, "start_time", rfc3339=True)
    end_ms = time_param(q.end_time, "end_time", rfc3339=True)
    if end_ms < start_ms:
        raise BadDataError("end_time: must not be before start_time")
    limits = services.settings.limits
    step_ms = duration_param(q.step, "step", positive=True) if q.step is not None else None
    if step_ms is not None:
        check_points(start_ms, end_ms, step_ms, limits.max_points_per_series)
    if step_ms is None and q.aggregation is None and q.group_by is None:
        found = await services.storage.querier(tenant, start_ms, end_ms).select(
            _matchers(q.metric_name, q.labels or {}), max_samples=limits.max_query_samples
        )
        if len(found) > limits.max_query_series:
            raise BadDataError(
                f"query matches {len(found)} series, more than max_query_series={limits.max_query_series}"
            )
        result = raw_points(found)
        for r in result:
            if len(r.ts_ms) > limits.max_points_per_series:
                raise BadDataError(
                    f"a series has {len(r.ts_ms)} points, more than the limit of {limits.max_points_per_series}; "
                    "give a step to bucket them"
                )
    else:
        if step_ms is None:
            step_ms = max(1000, -(-(end_ms - start_ms + 1) // 1000))
        ev = seed_promql.buckets(
            q.metric_name,
            q.labels or {},
            q.aggregation or Aggregation.AVG,
            q.group_by,
            start_ms=start_ms,
            end_ms=end_ms,
            step_ms=step_ms,
        )
        with services.metrics.query.time("range"):
            answer = await services.engine.range(
                tenant, ev.promql, ev.start_ms, ev.end_ms, ev.step_ms, samples_until_ms=ev.samples_until_ms
            )
        result = seed_promql.sort_series(seed_promql.series_of(answer.value, answer.steps, ev), q.group_by)
    return {
        "metric_name": q.metric_name,
        "start_time": to_rfc3339(start_ms),
        "end_time": to_rfc3339(end_ms),
        "step": step_ms / 1000 if step_ms else None,
        "aggregation": (q.aggregation or Aggregation.AVG).value if step_ms else None,
        "series": [
            {
                "metric_name": q.metric_name,
                "labels": r.labels,
                "data_points": [
                    {"timestamp": to_rfc3339(t), "value": v}
                    for t, v in zip(r.ts_ms.tolist(), r.values.tolist(), strict=True)
                ],
            }
            for r in result
        ],
    }


def _query_in(body: Any) -> QueryIn:
    if not isinstance(body, dict):
        raise ValidationFailed([Problem("body", "must be a JSON object")])
    try:
        return QueryIn.model_validate(body)
    except PydanticValidationError as exc:  # report each field
        errs = exc.errors()
        raise ValidationFailed([Problem(".".join(str(p) for p in err["loc"]), err["msg"]) for err in errs]) from None


@router.post("/query", dependencies=[Depends(require("metrics:read"))], openapi_extra=_body_doc(QueryIn))
async def query(
    request: Request,
    services: ServicesDep,
    tenant: TenantDep,
    format: Literal["array", "object"] = _QUERY_FORMAT,  # noqa: A002 - the parameter's public name
) -> Any:
    """Samples of one metric in a time range, bucketed by `step` and aggregated (each aggregation's
    meaning: the `aggregation` field; evaluated by the PromQL engine). Answers a JSON
    array of series `{metric_name, labels, data_points: [{timestamp, value}]}` (the original RTPM
    API's client reads that); `?format=object` wraps them with the query's range, step and
    aggregation."""
    answer = await _seed_query(services, tenant, _query_in(await read_json(request)))
    return answer if format == "object" else answer["series"]


@router.get("/query", dependencies=[Depends(require("metrics:read"))])
async def query_get(
    services: ServicesDep,
    tenant: TenantDep,
    metric_name: str,
    start_time: str,
    end_time: str,
    labels: str | None = Query(None, description="k=v,k2=v2 or a JSON object"),
    step: str | None = None,
    aggregation: Aggregation | None = Query(None, description=seed_promql.AGGREGATION_DOC),
    group_by: str | None = Query(None, description="Comma-separated label names. " + seed_promql.GROUP_BY_DOC),
) -> dict[str, Any]:
    """The same query from URL parameters (the original's locustfile sends `metric_name`,
    `start_time`, `end_time`, `labels=k=v`). Answers the object form with the series under
    `metrics`, as the locustfile reads them."""
    body: dict[str, Any] = {"metric_name": metric_name, "start_time": start_time, "end_time": end_time}
    body["labels"] = parse_labels_param(labels) or None
    body["step"], body["aggregation"] = step, aggregation
    if group_by is not None:
        body["group_by"] = [g.strip() for g in group_by.split(",") if g.strip()]
    answer = await _seed_query(services, tenant, _query_in(body))
    answer["metrics"] = answer.pop("series")
    return answer
