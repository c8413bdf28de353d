"""PromQL numerics as Prometheus computes them: quantiles with NaN sorted first, compensated
sums, the overflow-safe mean, variances of equal values, topk/bottomk order, RE2 regexes.
Expected values are worked out from Prometheus' algorithms (promql/quantile.go, functions.go,
engine.go); the differential test checks the cases Prometheus 2.42 shares."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rtpm.model.labels import make_labels
from rtpm.model.samples import WriteBatch
from rtpm.query.promql.engine import Engine, EngineOptions
from rtpm.query.promql.numerics import quantile_rows
from rtpm.query.promql.values import Vector
from rtpm.storage.sqlite import SqliteStorage

T = "t"
NAN, INF = math.nan, math.inf
AT = 60_000  # every series has samples at 15, 30, 45, 60 s

# name -> the four samples of each of its series (label i = index)
DATA: dict[str, list[list[float]]] = {
    "qn": [[1.0] * 4, [NAN] * 4, [4.0] * 4],
    "qinf": [[1.0] * 4, [INF] * 4],
    "ot_nan": [[1.0, NAN, 4.0, 2.0]],
    "ot_inf": [[1.0, INF, INF, INF]],
}


@pytest.fixture
def engine(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> Iterator[Engine]:
    s = SqliteStorage(tmp_path / "n.db")
    loop.run_until_complete(s.open())
    b = WriteBatch(T)
    for name, rows in DATA.items():
        for i, vals in enumerate(rows):
            for k, v in enumerate(vals):
                b.add(make_labels(name, {"i": str(i)}), (k + 1) * 15_000, v)
    loop.run_until_complete(s.write([b]))
    yield Engine(s, EngineOptions())
    loop.run_until_complete(s.close())


def instant(loop: asyncio.AbstractEventLoop, engine: Engine, q: str) -> list[tuple[dict[str, str], float]]:
    v = loop.run_until_complete(engine.instant(T, q, AT)).value
    assert isinstance(v, Vector)
    return [(dict(lb), float(v.values[i, 0])) for i, lb in enumerate(v.labels) if v.present[i, 0]]


def one(loop: asyncio.AbstractEventLoop, engine: Engine, q: str) -> float:
    got = instant(loop, engine, q)
    assert len(got) == 1, got
    return got[0][1]


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12)


# ---- quantiles -------------------------------------------------------------------------------


def _q(values: list[float], q: float) -> float:
    v = np.array([values])
    return float(quantile_rows(v, np.ones_like(v, dtype=bool), np.array([len(values)]), np.array([q]))[0])


@pytest.mark.parametrize(
    ("values", "q", "want"),
    [
        ([1, NAN, 4], 0.9, 3.4),  # sorted NaN, 1, 4: rank 1.8 -> 1 * 0.2 + 4 * 0.8
        ([1, NAN, 4], 0.5, 1.0),
        ([1, NAN, 4], 0.0, NAN),
        ([NAN, NAN, 3], 0.75, NAN),  # rank 1.5 lies between the two NaN... and 3: NaN
        ([NAN, 2, 3], 1.0, 3.0),
        ([1, INF], 0.0, NAN),  # weight 0 but the upper neighbour is +Inf: Inf * 0 = NaN
        ([1, INF], 1.0, NAN),  # rank 1: lower = upper = +Inf, and still Inf * 0 = NaN
        ([INF, INF, 5], 0.5, NAN),  # sorted 5, Inf, Inf: rank 1, Inf * 1 + Inf * 0
        ([-INF, 1], 0.5, -INF),
        ([1, 2, 3, 4], 0.25, 1.75),
        ([7], 0.3, 7.0),
        ([1, 2], -0.1, -INF),
        ([1, 2], 1.1, INF),
        ([1, 2], NAN, NAN),
    ],
)
def test_quantile_algorithm(values: list[float], q: float, want: float) -> None:
    assert same(_q(values, q), want)


def test_quantile_rows_ignores_padding() -> None:
    v = np.array([[3.0, NAN, 1.0, 99.0], [5.0, 6.0, -1.0, -1.0]])
    mask = np.array([[True, True, True, False], [True, True, False, False]])
    out = quantile_rows(v, mask, np.array([3, 2]), np.array([0.9, 0.5]))
    assert out[0] == pytest.approx(1 * 0.2 + 3 * 0.8)
    assert out[1] == pytest.approx(5.5)


def test_quantile_aggregation_nan_first(loop: asyncio.AbstractEventLoop, engine: Engine) -> None:
    assert one(loop, engine, "quantile(0.9, qn)") == pytest.approx(3.4)
    assert one(loop, engine, "quantile(0.5, qn)") == 1.0
    assert math.isnan(one(loop, engine, "quantile(0, qinf)"))


def test_quantile_over_time_nan_and_inf(loop: asyncio.AbstractEventLoop, engine: Engine) -> None:
    # 1, NaN, 4, 2 sorted: NaN, 1, 2, 4; rank 0.9 * 3 = 2.7 -> 2 * 0.3 + 4 * 0.7
    assert one(loop, engine, "quantile_over_time(0.9, ot_nan[1m])") == pytest.approx(3.4)
    # 1, Inf, Inf, Inf: rank 0.5 * 3 = 1.5 -> Inf; rank 1 (q=1/3) -> Inf * 1 + Inf * 0 = NaN
    assert one(loop, engine, "quantile_over_time(0.5, ot_inf[1m])") == INF
    assert math.isnan(one(loop, engine, "quantile_over_time(1/3, ot_inf[1m])"))
    # rank 0: 1 * 1 + Inf * 0 = NaN (weight 0 does not skip the upper neighbour)
    assert math.isnan(one(loop, engine, "quantile_over_time(0, ot_inf[1m])"))


def test_mad_over_time_nan(loop: asyncio.AbstractEventLoop, engine: Engine) -> None:
    # median of NaN, 1, 2, 4 = (1 + 2) / 2 = 1.5; |v - 1.5| = 0.5, NaN, 2.5, 0.5 -> NaN, .5, .5, 2.5
    assert one(loop, engine, "mad_over_time(ot_nan[1m])") == 0.5
    assert math.isnan(one(loop, engine, "mad_over_time(ot_inf[1m])"))


def test_sums_that_cancel_are_exact_and_overflow_is_infinite() -> None:
    from rtpm.query.promql.numerics import stable_sum

    v = np.array([[1e100, 1.0], [10.0, 2.0], [-1e100, 3.0]])
    assert stable_sum(v, np.ones_like(v, dtype=bool), 0).tolist() == [10.0, 6.0]
    big = np.array([[9.988465674311579e307], [9.988465674311579e307]])
    assert stable_sum(big, np.ones_like(big, dtype=bool), 0).tolist() == [math.inf]


def test_the_mean_of_big_values_does_not_overflow() -> None:
    from rtpm.query.promql.numerics import stable_mean

    big = 9.988465674311579e307
    v = np.array([[big, big, -big], [big, -big, 1.0]])  # rows: two windows of three samples
    m = stable_mean(v, np.ones_like(v, dtype=bool), 1)
    assert m[0] == pytest.approx(big / 3) and m[1] == pytest.approx(1 / 3)
    assert math.isnan(stable_mean(v, np.zeros_like(v, dtype=bool), 1)[0])


def test_the_variance_of_equal_values_is_zero_and_of_infinities_nan() -> None:
    from rtpm.query.promql.numerics import variance

    v = np.array([[0.1, 0.1, 0.1], [math.inf, math.inf, math.inf], [1.0, 2.0, 3.0]])
    got = variance(v, np.ones_like(v, dtype=bool), 1)
    assert got[0] == 0.0 and math.isnan(got[1]) and got[2] == pytest.approx(2 / 3)
