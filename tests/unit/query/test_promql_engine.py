"""Engine behaviour the differential test (Prometheus 2.42) cannot check: Prometheus 3 window
boundaries, functions newer than 2.42, limits, and the float/timestamp formats."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtpm.errors import QueryError, QueryParseError, QueryTimeout, TooManySamples
from rtpm.model.labels import make_labels
from rtpm.model.samples import STALE_NAN, WriteBatch
from rtpm.query.promql.engine import Engine, EngineOptions, Result
from rtpm.query.promql.values import RangeVec, Scalar, Vector, format_float, format_ts
from rtpm.storage.sqlite import SqliteStorage

T = "t"


@pytest.fixture
def storage(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> Iterator[SqliteStorage]:
    s = SqliteStorage(tmp_path / "q.db")
    loop.run_until_complete(s.open())
    b = WriteBatch(T)
    for i in range(4):
        for k in range(21):  # 0s .. 300s at 15 s
            b.add(make_labels("m", {"i": str(i), "g": "a" if i < 2 else "b"}), k * 15_000, float(k * (i + 1)))
    # a series that goes stale at 60 s
    for k, v in enumerate([1.0, 2.0, 3.0, 4.0, STALE_NAN]):
        b.add(make_labels("s"), k * 15_000, v)
    loop.run_until_complete(s.write([b]))
    yield s
    loop.run_until_complete(s.close())


def run(loop: asyncio.AbstractEventLoop, storage: SqliteStorage, q: str, t_ms: int, **opts: int) -> Result:
    engine = Engine(storage, EngineOptions(**opts))  # type: ignore[arg-type]
    return loop.run_until_complete(engine.instant(T, q, t_ms))


def vec(r: Result) -> dict[tuple[tuple[str, str], ...], float]:
    v = r.value
    assert isinstance(v, Vector)
    return {lb: float(v.values[i, 0]) for i, lb in enumerate(v.labels) if v.present[i, 0]}


def test_lookback_is_left_open(loop: asyncio.AbstractEventLoop, storage: SqliteStorage) -> None:
    # the last sample is at 300 s; at 600 s it is exactly 5m old and no longer seen
    assert len(vec(run(loop, storage, "m", 599_999))) == 4
    assert vec(run(loop, storage, "m", 600_000)) == {}


def test_range_is_left_open(loop: asyncio.AbstractEventLoop, storage: SqliteStorage) -> None:
    # (0, 60s] holds 15, 30, 45, 60: four samples, not five
    r = vec(run(loop, storage, 'count_over_time(m{i="0"}[1m])', 60_000))
    assert list(r.values()) == [4.0]


def test_stale_marker_ends_series(loop: asyncio.AbstractEventLoop, storage: SqliteStorage) -> None:
    assert vec(run(loop, storage, "s", 50_000)) == {(("__name__", "s"),): 4.0}
    assert vec(run(loop, storage, "s", 61_000)) == {}
    # range vectors skip the marker
    assert list(vec(run(loop, storage, "count_over_time(s[5m])", 61_000)).values()) == [4.0]


def test_limitk_and_limit_ratio(loop: asyncio.AbstractEventLoop, storage: SqliteStorage) -> None:
    assert len(vec(run(loop, storage, "limitk(1, m) by (g)", 300_000))) == 2
    assert len(vec(run(loop, storage, "limitk(10, m)", 300_000))) == 4
    some = vec(run(loop, storage, "limit_ratio(0.5, m)", 300_000))
    rest = vec(run(loop, storage, "limit_ratio(-0.5, m)", 300_000))
    assert set(some).isdisjoint(rest) and len(some) + len(rest) == 4
    assert len(vec(run(loop, storage, "limit_ratio(1, m)", 300_000))) == 4


def test_newer_functions(loop: asyncio.AbstractEventLoop, storage: SqliteStorage) -> None:
    r = vec(run(loop, storage, 'mad_over_time(m{i="0"}[1m])', 60_000))  # 1,2,3,4 -> median 2.5, mad 1
    assert list(r.values()) == [1.0]
    r = vec(run(loop, storage, 'first_over_time(m{i="1"}[1m])', 60_000))
    assert r == {(("__name__", "m"), ("g", "a"), ("i", "1")): 2.0}
    # a straight line is smoothed to itself
    r = vec(run(loop, storage, 'double_exponential_smoothing(m{i="0"}[1m], 0.5, 0.5)', 60_000))
    assert list(r.values()) == [4.0]
    res = run(loop, storage, 'sort_by_label_desc(m, "i")', 300_000)
    assert isinstance(res.value, Vector) and res.value.order is not None
    assert [res.value.labels[i][2][1] for i in res.value.order] == ["3", "2", "1", "0"]


def test_scalar_and_time(loop: asyncio.AbstractEventLoop, storage: SqliteStorage) -> None:
    r = run(loop, storage, "time() + 1", 5_000)
    assert isinstance(r.value, Scalar) and r.value.values.tolist() == [6.0]
    assert r.type == "scalar"


def test_range_vector_instant_result(loop: asyncio.AbstractEventLoop, storage: SqliteStorage) -> None:
    r = run(loop, storage, 'm{i="0"}[30s]', 60_000)
    assert r.type == "matrix" and isinstance(r.value, RangeVec)
    lo, hi = int(r.value.lo[0, 0]), int(r.value.hi[0, 0])
    assert r.value.ts[lo:hi].tolist() == [45_000, 60_000]


def test_rate_extrapolation(loop: asyncio.AbstractEventLoop, storage: SqliteStorage) -> None:
    # samples 0..20 step 1 every 15 s: rate is 1/15 everywhere; increase over 1m extrapolates to 4
    assert math.isclose(next(iter(vec(run(loop, storage, 'rate(m{i="0"}[1m])', 150_000)).values())), 1 / 15)
    assert math.isclose(next(iter(vec(run(loop, storage, 'increase(m{i="0"}[1m])', 150_000)).values())), 4.0)


def test_errors(loop: asyncio.AbstractEventLoop, storage: SqliteStorage) -> None:
    with pytest.raises(QueryParseError, match="parse error"):
        run(loop, storage, "sum(", 0)
    with pytest.raises(QueryError, match="same labelset"):
        run(loop, storage, 'label_replace(m, "i", "x", "i", ".*")', 40_000)
    with pytest.raises(TooManySamples):
        run(loop, storage, "count_over_time(m[5m])", 300_000, max_samples=10)
    with pytest.raises(QueryError, match="max_query_series"):
        run(loop, storage, "m", 300_000, max_series=2)
    with pytest.raises(QueryError, match="smoothing factor"):
        run(loop, storage, "holt_winters(m[5m], 0, 0.5)", 300_000)


def test_timeout(loop: asyncio.AbstractEventLoop, storage: SqliteStorage) -> None:
    engine = Engine(storage, EngineOptions(timeout_s=0.0001))
    with pytest.raises(QueryTimeout):
        loop.run_until_complete(engine.range(T, "max_over_time(sum(m)[1d:1s])", 0, 300_000, 1000))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (100.0, "100"),
        (0.1, "0.1"),
        (1e16, "10000000000000000"),
        (1e21, "1e+21"),
        (1.5e-7, "1.5e-07"),
        (1e-6, "0.000001"),
        (-2.5, "-2.5"),
        (float("nan"), "NaN"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
        (123456789.123, "123456789.123"),
    ],
)
def test_format_float(value: float, text: str) -> None:
    assert format_float(value) == text


def test_format_ts() -> None:
    assert format_ts(1435781451781) == "1435781451.781"
    assert format_ts(1435781451780) == "1435781451.780"
    assert format_ts(1435781451000) == "1435781451"
    assert format_ts(4005) == "4.005"
