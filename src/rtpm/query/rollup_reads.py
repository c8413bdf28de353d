"""`/api/v1/metrics/aggregated`: per-bucket aggregates of closed buckets at 1m, 5m, 1h or 1d, read
from the rollups as they are (first, last, increase included; `complete_until` says how far they
reach). PromQL and the seed's JSON query read rollups through the engine's read hint instead
(`query/promql/rollup_hint.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import numpy as np

from rtpm.errors import BadDataError
from rtpm.model.labels import METRIC_NAME, Matcher
from rtpm.model.rollups import RESOLUTION_NAMES, RESOLUTIONS_MS, RollupRows, coarsen
from rtpm.model.time import format_duration, parse_duration
from rtpm.query.seed_promql import BucketedSeries
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
    """`1m`, `5m`, `1h`, `1d`, any duration that is a whole multiple of one of them (`15m`, `2h`,
    `7d`: built from the largest resolution that divides it), or the same in seconds."""
    if raw in RESOLUTION_BY_NAME:
        return RESOLUTION_BY_NAME[raw]
    try:
        width = parse_duration(raw)
    except ValueError:
        width = 0
    if width <= 0 or source_resolution(width) is None:
        raise BadDataError(
            f"interval: {raw!r} is not a rollup resolution (1m, 5m, 1h, 1d) or a whole multiple of one, like 15m"
        )
    return width


def source_resolution(width_ms: int) -> int | None:
    """The largest rollup resolution that divides `width_ms` (None when none does)."""
    for res in reversed(RESOLUTIONS_MS):
        if width_ms % res == 0:
            return res
    return None


def interval_name(width_ms: int) -> str:
    return RESOLUTION_NAMES.get(width_ms) or format_duration(width_ms / 1000)


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
    """Per matching series, one point per closed bucket wholly in [start_ms, end_ms]; and the time up to
    which rollups are complete (later buckets are not rolled up yet)."""
    found = await store.find_series(tenant, list(matchers))
    source = source_resolution(width_ms) or width_ms
    # buckets wholly inside [start_ms, end_ms]
    loaded = await store.load_rollups(source, [sid for sid, _ in found], start_ms, end_ms + 2 - source)
    complete_until = await store.get_watermark("rolled_up_until")
    out = []
    for sid, labels in found:
        rows = loaded.get(sid)
        if rows is None or not len(rows):
            continue
        if source != width_ms:  # a multiple of a resolution: merged from it, whole buckets only
            rows = coarsen(rows, width_ms)
            last = min(end_ms + 1, complete_until) if complete_until is not None else end_ms + 1
            rows = rows.take((rows.bucket >= start_ms) & (rows.bucket + width_ms <= last))
            if not len(rows):
                continue
        out.append(
            BucketedSeries(
                {k: v for k, v in labels if k != METRIC_NAME},
                rows.bucket,
                _values(rows, aggregation, width_ms).astype(np.float64),
            )
        )
    return out, complete_until
