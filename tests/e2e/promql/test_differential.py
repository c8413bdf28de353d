"""Differential test: the same generated data in RTPM (through SqliteStorage) and in a real
Prometheus (/usr/bin/prometheus, loaded through its remote-write receiver), then hundreds of
instant and range queries compared value by value (relative tolerance 1e-6, NaN == NaN, same label
sets). RTPM is queried through its HTTP API, so the JSON formats are compared too.

The Debian Prometheus is 2.42: the data's timestamps carry sub-second jitter so that no sample lies
on a window boundary (2.x closed vs 3.x left-open windows give the same answer), and functions newer
than 2.42 (limitk, mad_over_time, sort_by_label, ...) are covered by unit tests instead.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cramjam
import httpx
import pytest
from fastapi.testclient import TestClient

from rtpm.api.app import create_app
from rtpm.model.samples import WriteBatch
from rtpm.settings import Settings
from rtpm.storage.sqlite import SqliteStorage
from tests._auth import grant
from tests._prometheus import Prometheus
from tests.e2e.promql.difftest_data import Dataset, encode_write_request, generate

pytestmark = pytest.mark.integration

T0_S = (int(time.time()) - 3 * 3600) // 3600 * 3600  # data: [T0, T0 + 2h]
G, C, H, INFO, I = "test_gauge", "test_counter_total", "test_hist_bucket", "test_info", "test_intermittent"  # noqa: E741
SP = "test_special"

# Expressions evaluated both as range queries and as instant queries.
EXPRS: list[str] = [
    # selectors, matchers, offset, @
    C,
    f'{C}{{job="j0"}}',
    f'{C}{{job!="j0",mode="idle"}}',
    f'{C}{{instance=~"i1.*"}}',
    f'{C}{{instance!~"i1.*",mode="user"}}',
    '{__name__=~"test_gauge|test_intermittent"}',
    f"{G} offset 10m",
    f"{G} offset -5m",
    f"{G} @ {T0_S + 1800}",
    f"{G} @ start()",
    f"{G} @ end()",
    I,
    f"{I} offset 3m",
    # rate family
    f"rate({C}[5m])",
    f"rate({C}[1m])",
    f"increase({C}[10m])",
    f"delta({G}[5m])",
    f"irate({C}[5m])",
    f"idelta({G}[2m])",
    f"rate({C}[5m] offset 2m)",
    f"rate({C}[5m] @ end())",
    f"rate({I}[5m])",
    f"increase({I}[10m])",
    f"deriv({G}[10m])",
    f"predict_linear({G}[10m], 600)",
    f"resets({C}[30m])",
    f"changes({G}[10m])",
    f"changes({I}[20m])",
    # *_over_time
    f"avg_over_time({G}[7m])",
    f"min_over_time({G}[7m])",
    f"max_over_time({G}[7m])",
    f"sum_over_time({G}[7m])",
    f"count_over_time({G}[7m])",
    f"stddev_over_time({G}[7m])",
    f"stdvar_over_time({G}[7m])",
    f"last_over_time({G}[7m])",
    f"present_over_time({I}[7m])",
    f"quantile_over_time(0.3, {G}[10m])",
    f"quantile_over_time(0.9, rate({C}[5m])[20m:1m])",
    f"absent_over_time({I}[2m])",
    'absent_over_time(nonexistent{job="x"}[5m])',
    'absent(nonexistent{job="x",a=~"b"})',
    f"absent({G})",
    f'absent({I}{{instance="i3"}})',
    f"holt_winters({G}[10m], 0.3, 0.6)",
    # subqueries
    f"max_over_time(rate({C}[5m])[30m:1m])",
    f"avg_over_time({G}[10m:])",
    f"min_over_time(sum by (job) ({G})[15m:2m] offset 5m)",
    f"rate({C}[10m:30s])",
    f"max_over_time({G}[10m:1m] @ {T0_S + 3607})",
    f"sum_over_time(count({I})[20m:90s])",
    # aggregations
    f"sum by (job) ({G})",
    f"avg by (job) ({G})",
    f"min by (job) ({G})",
    f"max by (job) ({G})",
    f"count by (job) ({G})",
    f"group by (job) ({G})",
    f"stddev by (job) ({G})",
    f"stdvar by (region) ({G})",
    f"sum without (instance) (rate({C}[5m]))",
    f"sum({C})",
    f"count by (mode) ({C})",
    f"topk(3, {G})",
    f"bottomk by (job) (2, {G})",
    f"topk by (mode) (2, rate({C}[5m]))",
    f"quantile(0.75, {G})",
    f"quantile by (job) (0.1, {G})",
    f'count_values("v", floor({G} / 10))',
    f'count_values by (job) ("bucket", ceil({G} / 20))',
    'sum by (__name__) ({__name__=~"test_gauge|test_info"})',
    f"max without () ({G})",
    f"avg without (job, region) ({G})",
    f"topk(2, {G}) by (region)",
    f"sum({I})",
    # binary operators
    f"{G} + 1",
    f"2 * {G}",
    f"{G} / {G}",
    f"{G} - {G} offset 5m",
    f"{G} % 7",
    f"{G} ^ 2",
    f"-{G}",
    f"({G} atan2 {G} offset 5m) + 0",  # Prometheus 2.42 keeps __name__ on atan2 (fixed later)
    f"{G} > 50",
    f"{G} > bool 50",
    f"50 < {G}",
    f"50 < bool {G}",
    f"{G} == {G}",
    f"{G} != bool {G} offset 1m",
    f"{G} <= 30 or {G} >= 70",
    f"{G} * on (job, instance) group_left (owner) {INFO}",
    f"{INFO} * on (job, instance) group_right (owner) {G}",
    f"rate({C}[5m]) / on (job, instance) group_left sum by (job, instance) (rate({C}[5m]))",
    f'{G} and on (instance, job) {INFO}{{owner="a"}}',
    f'{G} unless on (instance, job) {INFO}{{owner="a"}}',
    f"{G} or {I}",
    f"{I} or {G}",
    f"sum by (job) ({G}) / ignoring (job) group_left sum({G})",
    f"{G} > on (job, instance) group_left {G} offset 5m",
    f"{G} == bool ignoring (region) {G}",
    f"{C} and {G}",
    f"{G} > {G} offset 2m",
    f"time() - timestamp({G})",
    f"scalar(sum({G})) * {G}",
    f"{G} + on () group_left vector(1)",
    "time()",
    "1 + 2 * 3",
    f"scalar(count({G}))",
    "pi()",
    "vector(time())",
    "2 ^ 3 ^ 2",
    "5 % 3 == bool 2",
    # functions
    f"abs({G} - 50)",
    f"ceil({G} / 3)",
    f"floor({G} / 3)",
    f"exp({G} / 100)",
    f"sqrt({G})",
    f"ln({G})",
    f"log2({G})",
    f"log10({G})",
    f"round({G})",
    f"round({G}, 5)",
    f"round({G}, 0.3)",
    f"sgn({G} - 50)",
    f"clamp({G}, 20, 60)",
    f"clamp({G}, 60, 20)",
    f"clamp_max({G}, 40)",
    f"clamp_min({G}, 40)",
    f"sin({G})",
    f"cos({G})",
    f"tan({G})",
    f"asin({G} / 200)",
    f"acos({G} / 200)",
    f"atan({G})",
    f"sinh({G} / 100)",
    f"cosh({G} / 100)",
    f"tanh({G} / 100)",
    f"asinh({G})",
    f"acosh({G} + 1)",
    f"atanh({G} / 200)",
    f"deg({G})",
    f"rad({G})",
    "year()",
    "month()",
    "day_of_month()",
    "day_of_week()",
    "day_of_year()",
    "days_in_month()",
    "hour()",
    "minute()",
    f"hour(timestamp({G}))",
    f"minute(timestamp({G}))",
    f"day_of_week({G} * 86400 * 30)",
    f"days_in_month({G} * 86400 * 30)",
    f'label_replace({G}, "foo", "$1-x", "instance", "i(.*)")',
    f'label_replace({G}, "foo", "${{1}}y", "region", "r(\\\\d)")',
    f'label_replace({G}, "instance", "no", "instance", "nomatch")',
    f'label_join({G}, "foo", ",", "job", "instance")',
    f'label_join({G}, "job", "-", "job", "region")',
    f"histogram_quantile(0.9, rate({H}[5m]))",
    f"histogram_quantile(0.5, sum by (le) (rate({H}[5m])))",
    f"histogram_quantile(0.99, sum by (job, le) (rate({H}[10m])))",
    f"histogram_quantile(0.25, {H})",
    f"timestamp({G})",
    f"timestamp({I})",
    f"scalar({G})",
    f'scalar({G}{{instance="i7",job="j0"}})',
    f"vector(scalar(sum({G})))",
    # numerics: NaN sorts first in quantiles, Inf neighbours with weight 0 give NaN
    f'quantile by (kind) (0.9, {SP}{{kind=~"nan|inf|ninf"}})',
    f'quantile by (kind) (1/3, {SP}{{kind=~"nan|inf|ninf"}})',
    f'quantile by (kind) (0, {SP}{{kind=~"nan|inf|ninf"}})',
    f'quantile_over_time(0.9, {SP}{{kind=~"nan|inf|ninf"}}[10m])',
    f'quantile_over_time(0, {SP}{{kind=~"nan|inf|ninf"}}[5m])',
    f'quantile_over_time(1, {SP}{{kind=~"nan|inf|ninf"}}[5m])',
    f'quantile_over_time(0.5, {SP}{{kind=~"nan|inf|ninf"}}[3m])',
]

# Expressions compared only as instant queries (range vectors, ordering).
INSTANT_ONLY: list[str] = [
    f'{G}{{instance="i5"}}[3m]',
    f'{C}{{instance="i2",mode="user"}}[2m] offset 10m',
    f'{I}{{instance="i1"}}[20m]',
    f'rate({C}{{instance="i2"}}[5m])[10m:1m]',
    f"sort({G})",
    f"sort_desc({G})",
    f"sort(rate({C}[5m]))",
    '"a string"',
]

# Expressions both must reject.
MUST_FAIL: list[str] = [
    f"{G} + on (job) {G}",
    f'label_replace({G}, "instance", "", "instance", ".*")',
    f"{G} * on (job) group_left {INFO}",
    f"holt_winters({G}[10m], 1.5, 0.5)",
]

# Evaluation times are 7 s off the minute so that no subquery point lies on a window boundary either.
INSTANT_TIMES = [T0_S + 3007, T0_S + 7207, T0_S + 7507]
RANGE = (T0_S + 1807, T0_S + 7507, 60)
RANGE_ODD = (T0_S + 2011, T0_S + 4000, 37)


def _load_prometheus(url: str, ds: Dataset) -> None:
    """Remote-write in time slices (all series per slice) so the head accepts every sample."""
    slice_ms = 10 * 60 * 1000
    start = ds.t0_ms
    end = ds.t0_ms + 2 * 3600 * 1000 + 1000
    with httpx.Client(timeout=30) as client:
        for lo in range(start, end + slice_ms, slice_ms):
            hi = lo + slice_ms
            batch = []
            for labels, (ts, vals) in ds.series.items():
                pick = [(t, v) for t, v in zip(ts, vals, strict=True) if lo <= t < hi]
                if pick:
                    batch.append((labels, [t for t, _ in pick], [v for _, v in pick]))
            if not batch:
                continue
            body = bytes(cramjam.snappy.compress_raw(encode_write_request(batch)))
            resp = client.post(
                f"{url}/api/v1/write",
                content=body,
                headers={
                    "Content-Encoding": "snappy",
                    "Content-Type": "application/x-protobuf",
                    "X-Prometheus-Remote-Write-Version": "0.1.0",
                },
            )
            assert resp.status_code in (200, 204), resp.text


async def _load_rtpm(path: Path, tenant: str, ds: Dataset) -> None:
    storage = SqliteStorage(path)
    await storage.open()
    try:
        batch = WriteBatch(tenant)
        for labels, (ts, vals) in ds.series.items():
            for t, v in zip(ts, vals, strict=True):
                batch.add(labels, t, v)
        await storage.write([batch])
    finally:
        await storage.close()


@pytest.fixture(scope="module")
def systems(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, TestClient]]:
    tmp = tmp_path_factory.mktemp("difftest")
    prometheus = Prometheus(
        tmp,
        "global:\n  evaluation_interval: 1m\n  scrape_interval: 15s\n",
        flags=["--web.enable-remote-write-receiver", "--query.lookback-delta=5m", "--storage.tsdb.retention.time=30d"],
    )
    ds = generate(T0_S * 1000)
    settings = Settings(_env_file=None, data_dir=tmp / "rtpm", environment="test")  # type: ignore[call-arg]
    settings.data_dir.mkdir(parents=True)
    asyncio.run(_load_rtpm(settings.sqlite_path, settings.default_tenant, ds))
    with prometheus:
        _load_prometheus(prometheus.url, ds)
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            grant(client)
            yield prometheus.url, client


def _value(s: str) -> float:
    return float(s.replace("+Inf", "inf").replace("-Inf", "-inf"))


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)


def _key(metric: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(metric.items()))


def _compare(ours: dict[str, Any], theirs: dict[str, Any], ordered: bool = False) -> list[str]:
    diffs: list[str] = []
    if ours["resultType"] != theirs["resultType"]:
        return [f"resultType {ours['resultType']} != {theirs['resultType']}"]
    rt = ours["resultType"]
    if rt in ("scalar", "string"):
        o, t = ours["result"], theirs["result"]
        if (
            o[0] != t[0]
            or (rt == "string" and o[1] != t[1])
            or (rt == "scalar" and not _same(_value(o[1]), _value(t[1])))
        ):
            diffs.append(f"{o} != {t}")
        return diffs
    if rt == "vector":
        if ordered:  # ties may come in any order: compare the sequence of values
            vo = [_value(r["value"][1]) for r in ours["result"]]
            vt = [_value(r["value"][1]) for r in theirs["result"]]
            if len(vo) != len(vt) or not all(_same(x, y) for x, y in zip(vo, vt, strict=True)):
                diffs.append(f"order differs: {vo[:5]} vs {vt[:5]}")
        o = {_key(r["metric"]): r["value"] for r in ours["result"]}
        t = {_key(r["metric"]): r["value"] for r in theirs["result"]}
        for k in sorted(set(o) | set(t)):
            if k not in o or k not in t:
                diffs.append(f"{k}: only in {'RTPM' if k in o else 'Prometheus'}")
            elif o[k][0] != t[k][0] or not _same(_value(o[k][1]), _value(t[k][1])):
                diffs.append(f"{k}: {o[k]} != {t[k]}")
        return diffs
    o = {_key(r["metric"]): r["values"] for r in ours["result"]}
    t = {_key(r["metric"]): r["values"] for r in theirs["result"]}
    for k in sorted(set(o) | set(t)):
        if k not in o or k not in t:
            diffs.append(f"{k}: only in {'RTPM' if k in o else 'Prometheus'}")
            continue
        po, pt = dict((p[0], p[1]) for p in o[k]), dict((p[0], p[1]) for p in t[k])
        if set(po) != set(pt):
            diffs.append(
                f"{k}: timestamps differ: only RTPM {sorted(set(po) - set(pt))[:3]}, only Prometheus "
                f"{sorted(set(pt) - set(po))[:3]}"
            )
            continue
        bad = [ts for ts in po if not _same(_value(po[ts]), _value(pt[ts]))]
        if bad:
            diffs.append(f"{k}: values differ at {len(bad)} points, e.g. {bad[0]}: {po[bad[0]]} vs {pt[bad[0]]}")
    return diffs


def _both(systems: tuple[str, TestClient], path: str, params: dict[str, Any]) -> tuple[Any, Any]:
    url, client = systems
    theirs = httpx.get(f"{url}{path}", params=params, timeout=30)
    ours = client.post(path, data=params)
    return ours, theirs


def _check(systems: tuple[str, TestClient], path: str, params: dict[str, Any], ordered: bool = False) -> None:
    ours, theirs = _both(systems, path, params)
    assert theirs.status_code == 200, f"Prometheus failed: {theirs.text}"
    assert ours.status_code == 200, f"RTPM failed: {ours.text}"
    diffs = _compare(ours.json()["data"], theirs.json()["data"], ordered)
    assert not diffs, "\n".join(diffs[:10])


@pytest.mark.parametrize("expr", EXPRS)
def test_range(systems: tuple[str, TestClient], expr: str) -> None:
    start, end, step = RANGE
    _check(systems, "/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step})


@pytest.mark.parametrize("expr", [e for e in EXPRS[::3] if not re.search(r"\[\d+m:", e)])
def test_range_odd_step(systems: tuple[str, TestClient], expr: str) -> None:
    start, end, step = RANGE_ODD
    _check(systems, "/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step})


@pytest.mark.parametrize("at", INSTANT_TIMES, ids=["mid", "just-after-end", "past-lookback"])
@pytest.mark.parametrize("expr", EXPRS + INSTANT_ONLY)
def test_instant(systems: tuple[str, TestClient], expr: str, at: int) -> None:
    _check(systems, "/api/v1/query", {"query": expr, "time": at}, ordered=expr.startswith("sort"))


@pytest.mark.parametrize("expr", MUST_FAIL)
def test_both_fail(systems: tuple[str, TestClient], expr: str) -> None:
    ours, theirs = _both(systems, "/api/v1/query", {"query": expr, "time": INSTANT_TIMES[0]})
    assert theirs.status_code >= 400, theirs.text
    assert ours.status_code == theirs.status_code, (ours.text, theirs.text)
    assert ours.json()["errorType"] == theirs.json()["errorType"]
