"""The seed's JSON query as PromQL, for the PromQL engine to evaluate: one meaning per aggregation.

The seed's query (`metric_name`, `labels`, `step`, `aggregation`, `group_by`) is answered by
`POST /api/v1/metrics/query`, `GET /api/v1/metrics/query` and `GET /api/v1/metrics/query/range`
(with `metric_name` instead of `query`); all of them translate it here and run the engine. This
module is pure: it turns the query into PromQL text and evaluation times, and the engine's result
back into the seed's series.

Buckets. The range `[start, end]` is cut into buckets `[start + k*step, start + (k+1)*step)` for
k = 0, 1, ... while `start + k*step <= end`; each bucket is reported at its start, and the last one
stops at `end` (no sample after `end` is read). Bucket k is the PromQL window `[step]` evaluated at
`start + (k+1)*step - 1ms`, i.e. `(t - step, t]`, which holds the same milliseconds.

Aggregations. "The samples" are those of one series in one bucket (staleness markers are not
samples). Without `group_by` every series is answered on its own; with it, the series sharing the
values of those labels form one group (an empty `group_by`: all series are one group):

=========  ===================================  ====================================================
aggregation per series                          per group
=========  ===================================  ====================================================
avg        `avg_over_time(s[step])`: the mean   the mean of the group's samples, pooled:
           of the samples                       `sum by (g) (sum_over_time) / sum by (g) (count_over_time)`
sum        `sum_over_time`                      `sum by (g) (sum_over_time)`
min        `min_over_time`                      `min by (g) (min_over_time)`
max        `max_over_time`                      `max by (g) (max_over_time)`
count      `count_over_time`: how many samples  `sum by (g) (count_over_time)`
p50..p99   `quantile_over_time(q, s[step])`     `quantile by (g) (q, quantile_over_time(q, s[step]))`:
           (linear interpolation, as numpy's)   the q-quantile across the series of their q-quantiles
rate       `rate(s[step])`: Prometheus' per-    `sum by (g) (rate(s[step]))`
           second rate over the bucket
           (counter resets handled, the
           increase extrapolated to the
           bucket's edges), two samples needed
=========  ===================================  ====================================================

A NaN sample that is not a staleness marker is a value, as in PromQL (a bucket holding one
answers NaN for avg and sum); the bucketizer before issue 17 skipped it. Rollups leave NaN out, so
where the engine reads a bucket from rollups (`query/promql/rollup_hint.py`) it is skipped there.

A bucketed query without an aggregation is `avg`. `GET /api/v1/metrics/query/instant` answers
the same aggregations over the window `(time - 5m, time]`, reported at `time`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from rtpm.errors import BadDataError, LimitExceeded, QueryError
from rtpm.model.labels import METRIC_NAME, is_valid_label_name, is_valid_metric_name
from rtpm.model.samples import Series
from rtpm.query.promql.values import Value, Vector


class Aggregation(StrEnum):
    AVG = "avg"
    SUM = "sum"
    MIN = "min"
    MAX = "max"
    COUNT = "count"
    P50 = "p50"
    P90 = "p90"
    P95 = "p95"
    P99 = "p99"
    RATE = "rate"


AGGREGATION_DOC = (
    "Per step bucket [start + k*step, start + (k+1)*step), reported at its start; default avg. Per series: "
    "avg, sum, min, max, count of the bucket's samples (PromQL avg/sum/min/max/count_over_time); p50, p90, "
    "p95, p99: quantile_over_time; rate: PromQL rate() over the bucket. With group_by: avg is the mean of "
    "the group's samples pooled, sum/count add up, min/max over the group, pXX the quantile across the "
    "series' quantiles, rate the sum of the series' rates."
)
GROUP_BY_DOC = (
    "Label names: series sharing their values form one group, answered as one series with those labels "
    "(an empty list: all series are one group). Without it every series is answered on its own."
)

QUANTILES = {Aggregation.P50: 0.5, Aggregation.P90: 0.9, Aggregation.P95: 0.95, Aggregation.P99: 0.99}

# per series: the range function; per group: how the series' values are combined
_OVER_TIME = {
    Aggregation.SUM: ("sum_over_time", "sum"),
    Aggregation.MIN: ("min_over_time", "min"),
    Aggregation.MAX: ("max_over_time", "max"),
    Aggregation.COUNT: ("count_over_time", "sum"),
}


@dataclass(frozen=True, slots=True)
class BucketedSeries:
    labels: dict[str, str]
    ts_ms: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What to ask the engine: `promql` as a range query from `start_ms` to `end_ms` by `step_ms`,
    reading no sample after `samples_until_ms`; each answer's time minus `shift_ms` is the
    timestamp the seed reports."""

    promql: str
    start_ms: int
    end_ms: int
    step_ms: int
    samples_until_ms: int
    shift_ms: int


def parse_aggregation(raw: str | None) -> Aggregation:
    if raw is None:
        return Aggregation.AVG
    try:
        return Aggregation(raw)
    except ValueError:
        raise BadDataError(f"aggregation: {raw!r} is not one of {[a.value for a in Aggregation]}") from None


def duration(ms: int) -> str:
    """A PromQL duration: whole seconds as `60s`, else milliseconds."""
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _quote(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def selector(metric_name: str, labels: dict[str, str]) -> str:
    if not is_valid_metric_name(metric_name):
        raise BadDataError(f"metric_name: {metric_name!r} is not a valid metric name")
    for k in labels:
        if not is_valid_label_name(k) or k == METRIC_NAME:
            raise BadDataError(f"labels: {k!r} is not a valid label name")
    matchers = ",".join(f"{k}={_quote(v)}" for k, v in sorted(labels.items()))
    return f"{metric_name}{{{matchers}}}" if matchers else metric_name


def to_promql(
    metric_name: str,
    labels: dict[str, str],
    aggregation: Aggregation,
    group_by: Sequence[str] | None,
    window_ms: int,
) -> str:
    """The PromQL of one bucket `(t - window, t]` (see the table in the module doc)."""
    for k in group_by or ():
        if not is_valid_label_name(k):
            raise BadDataError(f"group_by: {k!r} is not a valid label name")
    rng = f"{selector(metric_name, labels)}[{duration(window_ms)}]"
    by = None if group_by is None else f"by ({', '.join(group_by)})"
    if aggregation is Aggregation.AVG:
        if by is None:
            return f"avg_over_time({rng})"
        return f"sum {by} (sum_over_time({rng})) / sum {by} (count_over_time({rng}))"
    if aggregation is Aggregation.RATE:
        return f"rate({rng})" if by is None else f"sum {by} (rate({rng}))"
    if aggregation in QUANTILES:
        q = QUANTILES[aggregation]
        inner = f"quantile_over_time({q}, {rng})"
        return inner if by is None else f"quantile {by} ({q}, {inner})"
    fn, across = _OVER_TIME[aggregation]
    return f"{fn}({rng})" if by is None else f"{across} {by} ({fn}({rng}))"


def bucket_count(start_ms: int, end_ms: int, step_ms: int) -> int:
    return (end_ms - start_ms) // step_ms + 1


def check_points(start_ms: int, end_ms: int, step_ms: int, max_points: int) -> None:
    n = bucket_count(start_ms, end_ms, step_ms)
    if n > max_points:
        raise LimitExceeded(
            f"the range and step give {n} points per series, more than the limit of {max_points}; "
            "use a larger step or a shorter range"
        )


def buckets(
    metric_name: str,
    labels: dict[str, str],
    aggregation: Aggregation,
    group_by: Sequence[str] | None,
    *,
    start_ms: int,
    end_ms: int,
    step_ms: int,
) -> Evaluation:
    """The seed's bucketed query over `[start_ms, end_ms]` by `step_ms`."""
    last = start_ms + (bucket_count(start_ms, end_ms, step_ms) - 1) * step_ms
    shift = step_ms - 1
    return Evaluation(
        to_promql(metric_name, labels, aggregation, group_by, step_ms),
        start_ms + shift,
        last + shift,
        step_ms,
        end_ms,
        shift,
    )


def window_ending(
    metric_name: str,
    labels: dict[str, str],
    aggregation: Aggregation,
    group_by: Sequence[str] | None,
    *,
    time_ms: int,
    window_ms: int,
) -> Evaluation:
    """The aggregation over `(time_ms - window_ms, time_ms]`, reported at `time_ms`."""
    text = to_promql(metric_name, labels, aggregation, group_by, window_ms)
    return Evaluation(text, time_ms, time_ms, window_ms, time_ms, 0)


def series_of(value: Value, steps: npt.NDArray[np.int64], ev: Evaluation) -> list[BucketedSeries]:
    """The engine's answer as the seed's series (no `__name__`, the engine's row order)."""
    if not isinstance(value, Vector):  # every translation above is an instant vector
        raise QueryError(f"the seed's query {ev.promql} gave a {type(value).__name__}, not a vector")
    out = []
    for i, lb in enumerate(value.labels):
        present = value.present[i]
        if present.any():
            out.append(
                BucketedSeries(
                    {k: v for k, v in lb if k != METRIC_NAME},
                    (steps[present] - ev.shift_ms).astype(np.int64),
                    value.values[i][present].astype(np.float64),
                )
            )
    return out


def sort_series(series: list[BucketedSeries], group_by: Sequence[str] | None) -> list[BucketedSeries]:
    """Series in label order; groups in the order of their `group_by` values."""
    if group_by is None:
        return sorted(series, key=lambda s: sorted(s.labels.items()))
    return sorted(series, key=lambda s: [s.labels.get(k, "") for k in group_by])


def raw_points(series: Sequence[Series]) -> list[BucketedSeries]:
    """Samples as they are (the seed's query without step, aggregation or group_by): stale markers
    dropped."""
    out = []
    for s in series:
        keep = ~np.isnan(s.values)
        labels = {k: v for k, v in s.labels if k != METRIC_NAME}
        out.append(BucketedSeries(labels, s.ts_ms[keep], s.values[keep]))
    return out
