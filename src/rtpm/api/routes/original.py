"""Routes of the original RTPM API that the seed had not kept: `POST /api/v1/metrics` (any of the
shapes its clients send, see `rtpm.ingest.original`) and `GET /api/v1/metrics/current` (the latest
value of the tenant's metrics; the original answered random numbers there)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from rtpm.api.auth import require
from rtpm.api.deps import ServicesDep, TenantDep, read_json
from rtpm.api.responses import OrjsonResponse
from rtpm.errors import BadDataError, Problem, ValidationFailed
from rtpm.ingest.json import decode_items
from rtpm.ingest.original import original_items
from rtpm.model.labels import METRIC_NAME, Matcher, MatchType, get_label, label_dict
from rtpm.model.time import to_rfc3339
from rtpm.realtime.protocol import json_value

router = APIRouter(prefix="/api/v1/metrics", tags=["metrics"])


@router.post("", dependencies=[Depends(require("metrics:write"))])
async def ingest_any(request: Request, services: ServicesDep, tenant: TenantDep) -> OrjsonResponse:
    """The original RTPM API's ingest: one metric (`name`/`metric_name`, `value`, ...), a list of
    them, `{"metrics": [...]}`, or an agent's metrics object (numeric fields become samples of
    `agent_<field>`, string fields their labels). Stored all or nothing once committed; answers 200
    `{"status": "success", "message": "Metric ingested", "timestamp", "processed_count"}`."""
    try:
        body = await read_json(request)
    except BadDataError as exc:  # the original answered 422 to a body that is not JSON
        raise ValidationFailed([Problem("body", exc.message)]) from None
    parsed = original_items(body)
    now_ms = int(services.clock() * 1000)
    count = 0
    if parsed.items:
        with services.metrics.ingest.track("json") as counted:
            batch = decode_items(parsed.items, tenant=tenant, validator=services.validator, now_ms=now_ms)
            counted.samples = count = len(batch)
            await services.buffer.submit(batch)
    answer: dict[str, Any] = {
        "status": "success",
        "message": "Metric ingested",
        "timestamp": to_rfc3339(now_ms),
        "processed_count": count,
        "shape": parsed.shape,
    }
    if parsed.ignored_fields:
        answer["ignored_fields"] = parsed.ignored_fields
    return OrjsonResponse(answer)


@router.get("/current", dependencies=[Depends(require("metrics:read"))])
async def current(
    services: ServicesDep,
    tenant: TenantDep,
    names: str | None = Query(
        None, description="Comma-separated metric names; default RTPM_CURRENT_METRICS, else every metric"
    ),
    limit: int = Query(1000, ge=1, le=10_000, description="Series answered at most"),
) -> dict[str, Any]:
    """The latest sample of each series of the tenant's metrics, as the original's
    `{"metrics": [{"name", "value", "unit", "timestamp"}]}` (plus each series' `labels`). Which
    metrics: `names`, else the `current_metrics` setting, else all of them (by name). More than
    `limit` series: the first `limit` by name, and `truncated: true`."""
    infos = {i.name: i for i in await services.storage.metric_names(tenant)}
    if names is not None:
        wanted = [n.strip() for n in names.split(",") if n.strip()]
        if not wanted:
            raise BadDataError("names: give at least one metric name")
    else:
        wanted = list(services.settings.current_metrics) or sorted(infos)
    chosen: list[str] = []
    total = 0
    for name in wanted:
        if name in infos and name not in chosen:
            chosen.append(name)
            total += infos[name].series_count
    found = []
    if chosen:
        lo, hi = services.validator.window_ms()
        matcher = Matcher(METRIC_NAME, MatchType.REGEX, "|".join(chosen))
        found = await services.storage.querier(tenant, lo, hi).latest([matcher])
    order = {n: i for i, n in enumerate(chosen)}
    found.sort(key=lambda s: (order.get(get_label(s.labels, METRIC_NAME), 0), s.labels))
    out = []
    for s in found[:limit]:
        name = get_label(s.labels, METRIC_NAME)
        out.append(
            {
                "name": name,
                "value": json_value(s.value),
                "unit": infos[name].unit if name in infos else "",
                "timestamp": to_rfc3339(s.ts_ms),
                "labels": label_dict(s.labels, with_name=False),
            }
        )
    return {"metrics": out, "count": len(out), "truncated": len(found) > limit, "series_total": max(total, len(found))}
