"""Answers from rollups: per-bucket aggregates of closed buckets at 1m, 5m, 1h or 1d."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import numpy as np

from rtpm.errors import BadDataError
from rtpm.model.labels import METRIC_NAME, Matcher
from rtpm.model.rollups import RESOLUTION_NAMES, RollupRows
from rtpm.query.seed import BucketedSeries
from rtpm.storage.maintenance import MaintenanceStore

RESOLUTION_BY_NAME = {name: width for width, name in RESOLUTION_NAMES.items()}


class RollupAggregation(StrEnum):
    AVG = "avg"
    SUM = "sum"
    MIN = "min"
    MAX = "max"
    COUNT = "count"
    FIRST = "first"
    LAST = "last"
    INCREASE = "increase"
    RATE = "rate"


def parse_resolution(raw: str) -> int:
    """`1m`, `5m`, `1h`, `1d`, or the same in seconds."""
    if raw in RESOLUTION_BY_NAME:
        return RESOLUTION_BY_NAME[raw]
    try:
        width = int(float(raw) * 1000)
    except ValueError:
        width = -1
    if width not in RESOLUTION_NAMES:
        raise BadDataError(f"interval: {raw!r} is not a rollup resolution; use one of 1m, 5m, 1h, 1d")
    return width


def _values(rows: RollupRows, agg: RollupAggregation, width_ms: int) -> np.ndarray:
    if agg is RollupAggregation.AVG:
        return rows.sum / rows.count
    if agg is RollupAggregation.SUM:
        return rows.sum
    if agg is RollupAggregation.MIN:
        return rows.min
    if agg is RollupAggregation.MAX:
        return rows.max
    if agg is RollupAggregation.COUNT:
        return rows.count.astype(np.float64)
    if agg is RollupAggregation.FIRST:
        return rows.first_value
    if agg is RollupAggregation.LAST:
        return rows.last_value
    if agg is RollupAggregation.INCREASE:
        return rows.increase
    return rows.increase / (width_ms / 1000.0)


async def aggregated(
    store: MaintenanceStore,
    *,
    tenant: str,
    matchers: Sequence[Matcher],
    start_ms: int,
    end_ms: int,
    width_ms: int,
    aggregation: RollupAggregation,
) -> tuple[list[BucketedSeries], int | None]:
    """Per matching series, one point per closed bucket in [start_ms, end_ms]; and the time up to
    which rollups are complete (later buckets are not rolled up yet)."""
    found = await store.find_series(tenant, list(matchers))
    loaded = await store.load_rollups(width_ms, [sid for sid, _ in found], start_ms - start_ms % width_ms, end_ms + 1)
    out = []
    for sid, labels in found:
        rows = loaded.get(sid)
        if rows is None or not len(rows):
            continue
        out.append(
            BucketedSeries(
                {k: v for k, v in labels if k != METRIC_NAME},
                rows.bucket,
                _values(rows, aggregation, width_ms).astype(np.float64),
            )
        )
    return out, await store.get_watermark("rolled_up_until")
