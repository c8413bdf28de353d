"""PromQL over native histograms, checked against cases (and expected values) of Prometheus's
promql/promqltest/testdata/native_histograms.test, over a real SQLite storage."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator, Sequence

import pytest

from rtpm.model.histograms import Histogram, combine, detect_reset
from rtpm.model.labels import make_labels
from rtpm.model.samples import WriteBatch
from rtpm.query.promql.engine import Engine, Result
from rtpm.query.promql.values import Vector
from rtpm.storage.sqlite import SqliteStorage

T = "t"
M = 60_000


def H(  # noqa: N802 - reads like promqltest's {{...}} notation
    *,
    schema: int = 0,
    count: float = 0,
    sum: float = 0,  # noqa: A002
    buckets: Sequence[float] = (),
    offset: int = 0,
    n_buckets: Sequence[float] = (),
    n_offset: int = 0,
    z_bucket: float = 0,
    z_bucket_w: float = 0,
    custom_values: Sequence[float] = (),
) -> Histogram:
    return Histogram(
        schema=schema,
        zero_threshold=z_bucket_w,
        zero_count=z_bucket,
        count=count,
        sum=sum,
        positive_spans=((offset, len(buckets)),) if buckets else (),
        positive=tuple(float(b) for b in buckets),
        negative_spans=((n_offset, len(n_buckets)),) if n_buckets else (),
        negative=tuple(float(b) for b in n_buckets),
        custom_values=tuple(custom_values),
    )


def plus(a: Histogram, b: Histogram, k: int) -> Histogram:
    out = a
    for _ in range(k):
        out, _ = combine(out, b)
    return out


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory, loop: asyncio.AbstractEventLoop) -> Iterator[SqliteStorage]:
    s = SqliteStorage(tmp_path_factory.mktemp("hist") / "h.db")
    loop.run_until_complete(s.open())
    b = WriteBatch(T)
    single = H(schema=0, sum=5, count=4, buckets=[1, 2, 1])
    b.add_histogram(make_labels("single_histogram", {}), 0, single)
    base = H(schema=0, sum=4, count=4, buckets=[1, 2, 1])
    inc = H(sum=2, count=1, buckets=[1], offset=1)
    for k in range(11):
        b.add_histogram(make_labels("incr_histogram", {}), k * 5 * M, plus(base, inc, k))
    rbase = H(
        schema=1, count=12, sum=18.4, z_bucket=2, z_bucket_w=0.001, buckets=[1, 2, 0, 1, 1], n_buckets=[1, 2, 0, 1, 1]
    )
    rinc = H(
        schema=1, count=9, sum=18.4, z_bucket=1, z_bucket_w=0.001, buckets=[1, 1, 0, 1, 1], n_buckets=[1, 1, 0, 1, 1]
    )
    for k in range(101):
        b.add_histogram(make_labels("histogram_rate", {}), k * 15_000, plus(rbase, rinc, k))
    for k, h in enumerate(
        [
            H(schema=0, count=4, sum=5, buckets=[1, 2, 1]),
            H(schema=0, count=5, sum=6, buckets=[1, 1, 3]),
            H(schema=0, count=6, sum=7, buckets=[1, 2, 3]),
        ]
    ):
        b.add_histogram(make_labels("reset_in_bucket", {}), k * 5 * M, h)
    b.add_histogram(make_labels("sv1", {}), 0, H(schema=2, count=4, sum=10, buckets=[1, 0, 0, 0, 1, 0, 0, 1, 1]))
    b.add_histogram(make_labels("sv2", {}), 0, H(schema=8, count=10, sum=10, buckets=[1, 2, 3, 4]))
    b.add_histogram(
        make_labels("nhcb", {}), 0, H(schema=-53, count=10, sum=20, buckets=[2, 4, 4], custom_values=[1, 5])
    )
    # a float sample then a histogram in one series: windows over both are dropped with a warning
    b.add(make_labels("mixed", {}), 0, 1.0)
    b.add_histogram(make_labels("mixed", {}), M, single)
    b.add(make_labels("plain", {"i": "1"}), 0, 3.0)
    for le, c in (("1", 2.0), ("2", 6.0), ("+Inf", 10.0)):
        b.add(make_labels("cls_bucket", {"le": le}), 0, c)
    loop.run_until_complete(s.write([b]))
    yield s
    loop.run_until_complete(s.close())


def run(loop: asyncio.AbstractEventLoop, storage: SqliteStorage, q: str, t_ms: int) -> Result:
    return loop.run_until_complete(Engine(storage).instant(T, q, t_ms))


def floats(r: Result) -> dict[tuple[tuple[str, str], ...], float]:
    v = r.value
    assert isinstance(v, Vector)
    return {lb: float(v.values[i, 0]) for i, lb in enumerate(v.labels) if v.present[i, 0]}


def hist(r: Result) -> Histogram:
    v = r.value
    assert isinstance(v, Vector) and v.hist is not None
    found = [v.hist[i, 0] for i in range(len(v)) if v.present[i, 0] and v.hist[i, 0] is not None]
    assert len(found) == 1, found
    return found[0]


def buckets(h: Histogram) -> list[tuple[float, float, float]]:
    return [(b.lower, b.upper, b.count) for b in h.buckets() if b.count]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("histogram_count(single_histogram)", 4),
        ("histogram_sum(single_histogram)", 5),
        ("histogram_avg(single_histogram)", 1.25),
        ("histogram_fraction(1, 2, single_histogram)", 0.5),
        ("histogram_fraction(0, 8, single_histogram)", 1),
        ("histogram_quantile(0.5, single_histogram)", 1.414213562373095),
    ],
)
def test_single_histogram(loop: asyncio.AbstractEventLoop, storage: SqliteStorage, query: str, expected: float) -> None:
    assert floats(run(loop, storage, query, M)) == {(): pytest.approx(expected, rel=1e-12)}


def test_stddev_and_stdvar(loop: asyncio.AbstractEventLoop, storage: SqliteStorage) -> None:
    assert floats(run(loop, storage, "histogram_stddev(sv1)", M))[()] == pytest.approx(1.0787993180043811, rel=1e-12)
    assert floats(run(loop, storage, "histogram_stdvar(sv1)", M))[()] == pytest.approx(1.163807968526718, rel=1e-12)
    assert floats(run(loop, storage, "histogram_stddev(sv2)", M))[()] == pytest.approx(0.0048960313898237465, rel=1e-9)
    assert floats(run(loop, storage, "histogram_stdvar(sv2)", M))[()] == pytest.approx(2.3971123370139447e-05, rel=1e-9)


def test_rate_and_quantile_of_rate(loop: asyncio.AbstractEventLoop, storage: SqliteStorage) -> None:
    r = run(loop, storage, "rate(incr_histogram[10m])", 50 * M)
    h = hist(r)
    assert r.warnings == []
    assert h.count == pytest.approx(0.0033333333333333335)
    assert h.sum == pytest.approx(0.006666666666666667)
    assert buckets(h) == [(1.0, 2.0, pytest.approx(0.0033333333333333335))]
    q = run(loop, storage, "histogram_quantile(0.5, rate(incr_histogram[10m]))", 50 * M)
    assert floats(q) == {(): pytest.approx(1.414213562373095)}
    assert floats(run(loop, storage, "histogram_count(incr_histogram)", 50 * M)) == {(): 14}


def test_rate_with_zero_and_negative_buckets(loop: asyncio.AbstractEventLoop, storage: SqliteStorage) -> None:
    h = hist(run(loop, storage, "rate(histogram_rate[45s])", 5 * M))
    assert h.count == pytest.approx(0.6)
    assert h.sum == pytest.approx(1.2266666666666652)
    assert h.zero_count == pytest.approx(0.06666666666666667)
    x = 0.06666666666666667
    assert [c for _, _, c in buckets(h)] == pytest.approx([x, x, x, x, x, x, x, x, x])
    assert h.schema == 1


def test_increase_over_a_reset_in_one_bucket(loop: asyncio.AbstractEventLoop, storage: SqliteStorage) -> None:
    r = run(loop, storage, "increase(reset_in_bucket[15m])", 10 * M)
    h = hist(r)
    assert (h.count, h.sum) == (pytest.approx(9), pytest.approx(10.5))
    assert [c for _, _, c in buckets(h)] == pytest.approx([1.5, 3, 4.5])
    assert floats(run(loop, storage, "histogram_count(increase(reset_in_bucket[15m]))", 10 * M)) == {(): 9}
    assert detect_reset(H(count=5, buckets=[1, 1, 3]), H(count=4, buckets=[1, 2, 1]))


def test_custom_buckets(loop: asyncio.AbstractEventLoop, storage: SqliteStorage) -> None:
    # buckets (-Inf,1]:2 (1,5]:4 (5,+Inf]:4; rank 5 lies in (1,5], linear interpolation
    assert floats(run(loop, storage, "histogram_quantile(0.5, nhcb)", M)) == {(): pytest.approx(1 + 4 * 3 / 4)}
    assert floats(run(loop, storage, "histogram_quantile(0.99, nhcb)", M)) == {
        (): 5
    }  # the +Inf bucket: its lower bound
    assert floats(run(loop, storage, "histogram_fraction(0, 3, nhcb)", M)) == {(): pytest.approx((2 + 4 * 0.5) / 10)}


def test_aggregations_and_over_time(loop: asyncio.AbstractEventLoop, storage: SqliteStorage) -> None:
    s = hist(run(loop, storage, "sum(incr_histogram)", 50 * M))
    assert (s.count, s.sum) == (14, 24)
    avg = hist(run(loop, storage, "avg_over_time(incr_histogram[11m])", 50 * M))  # 40m, 45m and 50m
    assert (avg.count, avg.sum) == (13, 22)
    assert floats(run(loop, storage, "count_over_time(incr_histogram[11m])", 50 * M)) == {(): 3}
    last = hist(run(loop, storage, "last_over_time(incr_histogram[11m])", 50 * M))
    assert last.count == 14
    assert floats(run(loop, storage, "count(incr_histogram or plain)", 0)) == {(): 2}
    # functions that ignore histograms
    assert floats(run(loop, storage, "abs(incr_histogram)", 50 * M)) == {}
    assert floats(run(loop, storage, "max_over_time(incr_histogram[11m])", 50 * M)) == {}


def test_a_window_mixing_floats_and_histograms_is_dropped_with_a_warning(
    loop: asyncio.AbstractEventLoop, storage: SqliteStorage
) -> None:
    r = run(loop, storage, "rate(mixed[5m])", 2 * M)
    assert floats(r) == {} and (r.value.hist is None or not any(r.value.hist.ravel()))  # type: ignore[union-attr]
    assert r.warnings == ['PromQL warning: encountered a mix of histograms and floats for metric name "mixed"']
    r = run(loop, storage, "sum_over_time(mixed[5m])", 2 * M)
    assert r.warnings and floats(r) == {}
    assert not math.isnan(floats(run(loop, storage, "count_over_time(mixed[5m])", 2 * M))[()])


def test_histogram_times_and_divided_by_a_scalar(loop: asyncio.AbstractEventLoop, storage: SqliteStorage) -> None:
    h = hist(run(loop, storage, "incr_histogram * 2", 50 * M))
    assert (h.count, h.sum) == (28, 48)
    h = hist(run(loop, storage, "incr_histogram / 2", 50 * M))
    assert (h.count, h.sum) == (7, 12)
    r = run(loop, storage, "incr_histogram + 1", 50 * M)
    assert floats(r) == {} and r.warnings
    assert floats(run(loop, storage, "histogram_count(60 * rate(incr_histogram[10m]))", 50 * M)) == {
        (): pytest.approx(0.2)
    }


def test_classic_fraction_and_quantiles(loop: asyncio.AbstractEventLoop, storage: SqliteStorage) -> None:
    # (0, 1]: 2, (1, 2]: 4, (2, +Inf]: 4 of 10; [0, 1.5] holds 2 + 4 * 0.5
    assert floats(run(loop, storage, "histogram_fraction(0, 1.5, cls_bucket)", M)) == {(): pytest.approx(0.4)}
    got = floats(run(loop, storage, 'histogram_quantiles(single_histogram, "q", 0.5, 1)', M))
    assert got == {(("q", "0.5"),): pytest.approx(1.414213562373095), (("q", "1.0"),): 4.0}


def test_label_functions_keep_histograms(loop: asyncio.AbstractEventLoop, storage: SqliteStorage) -> None:
    r = run(loop, storage, 'label_replace(incr_histogram, "x", "y", "", "")', 50 * M)
    assert hist(r).count == 14
    assert r.value.labels == [(("__name__", "incr_histogram"), ("x", "y"))]  # type: ignore[union-attr]
    assert floats(run(loop, storage, "timestamp(incr_histogram)", 50 * M + 1000)) == {(): 3000}
