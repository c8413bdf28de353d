"""Rollup reads and storage status: `/api/v1/metrics/aggregated`, `/api/v1/status/tsdb`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from rtpm.api.auth import require
from rtpm.api.deps import ServicesDep, TenantDep
from rtpm.api.params import parse_labels_param, time_param
from rtpm.errors import BadDataError
from rtpm.model.labels import METRIC_NAME, Matcher
from rtpm.model.rollups import RESOLUTION_NAMES
from rtpm.model.time import to_rfc3339
from rtpm.query.rollup_reads import RollupAggregation, aggregated, interval_name, parse_resolution
from rtpm.storage.maintenance import MaintenanceStore

router = APIRouter(tags=["metrics"])


def _store(services: Any) -> MaintenanceStore:
    store: MaintenanceStore = services.storage.maintenance
    return store


@router.get("/api/v1/metrics/aggregated", dependencies=[Depends(require("metrics:read"))])
async def metrics_aggregated(
    services: ServicesDep,
    tenant: TenantDep,
    metric_name: str,
    start_time: str,
    end_time: str,
    labels: str | None = None,
    aggregation: RollupAggregation = RollupAggregation.AVG,
    interval: str = Query("5m", description="Rollup resolution (1m, 5m, 1h, 1d) or a whole multiple of one (15m)"),
) -> dict[str, Any]:
    """Per-bucket aggregates from the rollups (closed buckets only; `complete_until` says how far
    the rollups reach)."""
    start_ms = time_param(start_time, "start_time", rfc3339=True)
    end_ms = time_param(end_time, "end_time", rfc3339=True)
    if end_ms < start_ms:
        raise BadDataError("end_time: must not be before start_time")
    width = parse_resolution(interval)
    limit = services.settings.limits.max_points_per_series
    if (end_ms - start_ms) // width + 1 > limit:
        raise BadDataError(f"the range holds more than {limit} buckets of {interval}; use a larger interval")
    matchers = [Matcher.equal(METRIC_NAME, metric_name)] + [
        Matcher.equal(k, v) for k, v in sorted(parse_labels_param(labels).items())
    ]
    series, complete_until = await aggregated(
        _store(services),
        tenant=tenant,
        matchers=matchers,
        start_ms=start_ms,
        end_ms=end_ms,
        width_ms=width,
        aggregation=aggregation,
    )
    return {
        "metric_name": metric_name,
        "interval": interval_name(width),
        "aggregation": aggregation.value,
        "start_time": to_rfc3339(start_ms),
        "end_time": to_rfc3339(end_ms),
        "complete_until": to_rfc3339(complete_until) if complete_until is not None else None,
        "series": [
            {
                "labels": s.labels,
                "data_points": [
                    {"timestamp": to_rfc3339(t), "value": v}
                    for t, v in zip(s.ts_ms.tolist(), s.values.tolist(), strict=True)
                ],
            }
            for s in series
        ],
    }


@router.get("/api/v1/status/tsdb", dependencies=[Depends(require("metrics:read"))])
async def status_tsdb(
    services: ServicesDep, tenant: TenantDep, limit: int = Query(10, ge=1, le=1000)
) -> dict[str, Any]:
    """Series, samples and bytes on disk per table and resolution; the metrics with most series."""
    store = _store(services)
    st = await store.status(tenant, limit)
    raw_bytes = st.bytes_by_table.get("samples", 0)
    chunk_bytes = st.bytes_by_table.get("chunks", 0)
    return {
        "status": "success",
        "data": {
            "headStats": {"numSeries": st.series_count, "numSamples": st.raw_samples + st.chunk_samples},
            "seriesCountByMetricName": [{"name": n, "value": c} for n, c in st.top_metrics],
            "labelValueCountByLabelName": [],
            "memoryInBytesByLabelName": [],
            "seriesCountByLabelValuePair": [],
            "rtpm": {
                "series": st.series_count,
                "raw": {"samples": st.raw_samples, "bytes": raw_bytes},
                "compressed": {"samples": st.chunk_samples, "chunks": st.chunks, "bytes": chunk_bytes},
                "rollups": {
                    RESOLUTION_NAMES.get(int(k), k): {"rows": v}
                    for k, v in sorted(st.rollup_rows.items(), key=lambda kv: int(kv[0]))
                },
                "rollup_bytes": st.bytes_by_table.get("rollups", 0),
                "bytes_by_table": st.bytes_by_table,
                "watermarks": {
                    name: await store.get_watermark(name) for name in ("rolled_up_until", "compacted_until")
                },
            },
        },
    }
