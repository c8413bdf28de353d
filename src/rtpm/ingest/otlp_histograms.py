"""OTLP exponential histograms -> native histograms, as Prometheus's OTLP receiver maps them
(storage/remote/otlptranslator/prometheusremotewrite/histograms.go in prometheus/prometheus):

- the scale is the schema; scales above 8 are reduced to 8 (2**(scale-8) neighbouring buckets
  merged), scales below -4 are refused;
- OTLP bucket `offset + k` (covering (base**i, base**(i+1)]) is Prometheus bucket `i + 1`;
- the zero bucket's threshold is Prometheus's default 1e-128 and holds `zero_count`;
- NO_RECORDED_VALUE -> the stale marker; exemplars -> exemplars of the series (`trace_id` and
  `span_id` hex labels beside the filtered attributes).

Only cumulative temporality is accepted, as for explicit-bucket histograms.
"""

from __future__ import annotations

from typing import Any

from rtpm.model.histograms import MAX_SCHEMA, MIN_SCHEMA, Exemplar, Histogram
from rtpm.model.stale import STALE_NAN

ZERO_THRESHOLD = 1e-128


def _layout(counts: list[int], offset: int, scale_down: int) -> tuple[tuple[tuple[int, int], ...], tuple[float, ...]]:
    merged: dict[int, float] = {}
    for k, c in enumerate(counts):
        idx = ((offset + k) >> scale_down) + 1
        merged[idx] = merged.get(idx, 0.0) + float(c)
    if not merged:
        return (), ()
    spans: list[list[int]] = []
    out: list[float] = []
    prev_end = 0
    for idx in sorted(merged):
        if spans and idx == prev_end:
            spans[-1][1] += 1
        elif spans and idx - prev_end <= 2:  # small gaps are filled with empty buckets
            for _ in range(idx - prev_end):
                out.append(0.0)
            spans[-1][1] += idx - prev_end + 1
        else:
            spans.append([idx if not spans else idx - prev_end, 1])
        out.append(merged[idx])
        prev_end = idx + 1
    return tuple((a, b) for a, b in spans), tuple(out)


def to_histogram(dp: Any) -> Histogram | str:
    """The native histogram of an ExponentialHistogramDataPoint, or why it cannot be one."""
    scale = dp.scale
    if scale < MIN_SCHEMA:
        return f"exponential histogram scale {scale} is below the lowest supported ({MIN_SCHEMA})"
    scale_down = max(0, scale - MAX_SCHEMA)
    scale = min(scale, MAX_SCHEMA)
    ps, pc = _layout(list(dp.positive.bucket_counts), dp.positive.offset, scale_down)
    ns, nc = _layout(list(dp.negative.bucket_counts), dp.negative.offset, scale_down)
    stale = bool(dp.flags & 1)
    return Histogram(
        schema=scale,
        zero_threshold=ZERO_THRESHOLD,
        zero_count=float(dp.zero_count),
        count=float(dp.count),
        sum=STALE_NAN if stale else (dp.sum if dp.HasField("sum") else 0.0),
        positive_spans=ps,
        positive=pc,
        negative_spans=ns,
        negative=nc,
        is_int=True,
    )


def exemplars(dp: Any, attributes: Any) -> list[Exemplar]:
    out = []
    for e in dp.exemplars:
        labels = dict(attributes(e.filtered_attributes))
        if e.trace_id:
            labels["trace_id"] = bytes(e.trace_id).hex()
        if e.span_id:
            labels["span_id"] = bytes(e.span_id).hex()
        value = float(e.as_int) if e.WhichOneof("value") == "as_int" else e.as_double
        out.append(Exemplar(tuple(sorted(labels.items())), value, e.time_unix_nano // 1_000_000))
    return out
