"""Prometheus 3 duration expressions, step()/range()/start()/end(), min_of/max_of, ts_of_*_over_time
and the Prometheus 3 rate extrapolation order (newer than the differential test's Prometheus 2.42;
the expected values are those of Prometheus's promqltest scripts)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtpm.errors import QueryParseError
from rtpm.model.labels import make_labels
from rtpm.model.samples import WriteBatch
from rtpm.query.promql.durations import fold
from rtpm.query.promql.engine import Engine, Result
from rtpm.query.promql.values import Scalar, Vector
from tests.unit.query.conftest import sqlite_engine

T = "t"


@pytest.mark.parametrize(
    ("query", "folded"),
    [
        ("x[(9m30s+30s)*3]", "x[1800000ms]"),
        ("x[-5m+35m]", "x[1800000ms]"),
        ("x[1800]", "x[1800000ms]"),
        ("x[1h30m % 1h]", "x[1800000ms]"),
        ("x[5m]", "x[5m]"),
        ("x[29s+1s:((((8 - 2) / 3) * 7s) % 4) + 8000ms]", "x[30000ms:10000ms]"),
        ("x[step()+1]", "x[6000ms]"),
        ("x[max_of(min_of(step()+1,1h),1ms)]", "x[6000ms]"),
        ("x[range()]", "x[10000ms]"),
        ("x offset (100 + 2)", "x offset 102000ms"),
        ("x offset 100 + 2", "x offset 100000ms + 2"),  # without parentheses offset takes one atom
        ("x offset -step()*2", "x offset -5000ms*2"),
        ("x offset -2 ^ 2", "x offset -2000ms ^ 2"),
        ("x offset (-2 ^ 2)", "x offset -4000ms"),  # ^ binds tighter than the sign
        ("x offset 5m", "x offset 5m"),
        ('x{offset="[1+1]"}[5m:]', 'x{offset="[1+1]"}[5m:]'),  # strings are left alone
        ("x offset step()*0", "x offset 5000ms*0"),
        ("x offset (step()*0)", "x "),  # offset 0 is no offset
    ],
)
def test_fold(query: str, folded: str) -> None:
    assert fold(query, step_ms=5_000, range_ms=10_000) == folded


def test_fold_refuses_what_is_not_a_duration() -> None:
    with pytest.raises(QueryParseError, match="duration expression"):
        fold("x[5m+foo()]")
    with pytest.raises(QueryParseError, match="positive"):
        fold("x[5m-10m]")


@pytest.fixture
def engine(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> Iterator[Engine]:
    b = WriteBatch(T)
    for k, v in enumerate([1, 2, 3, 0, 5, 6, 2, 1, 4]):  # promqltest: load 10s53ms
        b.add(make_labels("metric"), k * 10_053, float(v))
    for k in range(11):  # load 4m: 60+240x10
        b.add(make_labels("zc", {"start": "1m"}), k * 240_000, 60.0 + 240 * k)
    with sqlite_engine(tmp_path / "q.db", loop, b) as engine:
        yield engine


def instant(loop: asyncio.AbstractEventLoop, engine: Engine, q: str, t_ms: int) -> Result:
    return loop.run_until_complete(engine.instant(T, q, t_ms))


def one(r: Result) -> float:
    v = r.value
    if isinstance(v, Scalar):
        return float(v.values[0])
    assert isinstance(v, Vector) and v.present[:, 0].sum() == 1
    return float(v.values[v.present[:, 0], 0][0])


@pytest.mark.parametrize(
    ("query", "want"),
    [
        ("ts_of_min_over_time(metric[90s])", 30.159),
        ("ts_of_max_over_time(metric[90s])", 50.265),
        ("ts_of_first_over_time(metric[90s])", 10.053),
        ("ts_of_last_over_time(metric[90s])", 80.424),
        ("min_of(3, 5)", 3.0),
        ("max_of(3, 5)", 5.0),
        ("count_over_time(metric[step()+20s])", 2.0),  # instant query: step() is 0
        ("rate(zc[20m])", 0.55),  # zero cut-off after the half-interval rule (Prometheus 3)
    ],
)
def test_instant(loop: asyncio.AbstractEventLoop, engine: Engine, query: str, want: float) -> None:
    t = 600_000 if query.startswith("rate") else 90_000
    assert one(instant(loop, engine, query, t)) == pytest.approx(want)


def test_query_parameters_as_functions(loop: asyncio.AbstractEventLoop, engine: Engine) -> None:
    r = loop.run_until_complete(engine.range(T, "step() + range() * 1000 + start() * 1e6", 10_000, 30_000, 5_000))
    assert isinstance(r.value, Scalar)
    assert r.value.values.tolist() == [5 + 20_000 + 10e6] * 5
    r = loop.run_until_complete(engine.range(T, "end()", 10_000, 30_000, 5_000))
    assert isinstance(r.value, Scalar) and r.value.values.tolist() == [30.0] * 5
    assert one(instant(loop, engine, "range() + step()", 50_000)) == 0.0
