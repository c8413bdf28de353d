"""The seed's query as PromQL (query/seed_promql.py): the text per aggregation and grouping, the
evaluation times of the buckets, and bad input as a 400 that names the field."""

from __future__ import annotations

import pytest

from rtpm.errors import BadDataError, LimitExceeded
from rtpm.query.seed_promql import Aggregation, buckets, check_points, parse_aggregation, to_promql, window_ending

SEL = 'cpu{host="a\\"b"}[300s]'


@pytest.mark.parametrize(
    ("agg", "group_by", "text"),
    [
        (Aggregation.AVG, None, f"avg_over_time({SEL})"),
        (Aggregation.AVG, ["dc"], f"sum by (dc) (sum_over_time({SEL})) / sum by (dc) (count_over_time({SEL}))"),
        (Aggregation.SUM, None, f"sum_over_time({SEL})"),
        (Aggregation.SUM, ["dc", "az"], f"sum by (dc, az) (sum_over_time({SEL}))"),
        (Aggregation.MIN, [], f"min by () (min_over_time({SEL}))"),
        (Aggregation.MAX, ["dc"], f"max by (dc) (max_over_time({SEL}))"),
        (Aggregation.COUNT, ["dc"], f"sum by (dc) (count_over_time({SEL}))"),
        (Aggregation.P95, None, f"quantile_over_time(0.95, {SEL})"),
        (Aggregation.P50, ["dc"], f"quantile by (dc) (0.5, quantile_over_time(0.5, {SEL}))"),
        (Aggregation.RATE, None, f"rate({SEL})"),
        (Aggregation.RATE, ["dc"], f"sum by (dc) (rate({SEL}))"),
    ],
)
def test_each_aggregation_has_one_promql(agg: Aggregation, group_by: list[str] | None, text: str) -> None:
    assert to_promql("cpu", {"host": 'a"b'}, agg, group_by, 300_000) == text


def test_buckets_are_windows_ending_a_millisecond_before_the_next_bucket() -> None:
    ev = buckets("cpu", {}, Aggregation.MAX, None, start_ms=10_000, end_ms=70_000, step_ms=30_000)
    # buckets [10s, 40s), [40s, 70s), [70s, 100s) cut at end: windows (t - 30s, t] at t = 39.999s ...
    assert (ev.start_ms, ev.end_ms, ev.step_ms, ev.shift_ms) == (39_999, 99_999, 30_000, 29_999)
    assert ev.samples_until_ms == 70_000 and ev.promql == "max_over_time(cpu[30s])"
    assert buckets("cpu", {}, Aggregation.SUM, None, start_ms=0, end_ms=1500, step_ms=1500).promql.endswith("[1500ms])")
    inst = window_ending("cpu", {}, Aggregation.AVG, None, time_ms=5_000_000, window_ms=300_000)
    assert (inst.start_ms, inst.end_ms, inst.shift_ms) == (5_000_000, 5_000_000, 0)


def test_bad_input_names_the_field() -> None:
    with pytest.raises(BadDataError, match="metric_name"):
        to_promql("1cpu", {}, Aggregation.AVG, None, 60_000)
    with pytest.raises(BadDataError, match="labels"):
        to_promql("cpu", {"bad-label": "x"}, Aggregation.AVG, None, 60_000)
    with pytest.raises(BadDataError, match="group_by"):
        to_promql("cpu", {}, Aggregation.AVG, ["a b"], 60_000)
    with pytest.raises(BadDataError, match="aggregation"):
        parse_aggregation("median")
    assert parse_aggregation(None) is Aggregation.AVG
    with pytest.raises(LimitExceeded, match="points per series"):
        check_points(0, 100_000, 10, 1000)
