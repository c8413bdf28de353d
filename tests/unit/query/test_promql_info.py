"""info(): data labels of target_info (or other info metrics) joined on instance and job
(Prometheus 3, experimental; expected values from Prometheus's promqltest info.test)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtpm.errors import QueryError
from rtpm.model.labels import make_labels
from rtpm.model.samples import STALE_NAN, WriteBatch
from rtpm.query.promql.engine import Engine
from rtpm.query.promql.values import Vector
from tests.unit.query.conftest import sqlite_engine

T = "t"
M = 300_000  # the samples' interval


@pytest.fixture
def engine(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> Iterator[Engine]:
    b = WriteBatch(T)
    for k in range(3):
        b.add(make_labels("metric", {"instance": "a", "job": "1", "label": "value"}), k * M, float(k))
        b.add(make_labels("other", {"instance": "b", "job": "1"}), k * M, float(k))
        b.add(make_labels("build_info", {"instance": "a", "job": "1", "build": "b1"}), k * M, 1.0)
        b.add(make_labels("cfg_info", {"instance": "a", "job": "1", "region": "us"}), k * M, 1.0)
    info = make_labels("target_info", {"instance": "a", "job": "1", "data": "old", "region": "eu"})
    for k, v in enumerate([1.0, 1.0, STALE_NAN]):
        b.add(info, k * M, v)
    b.add(make_labels("target_info", {"instance": "a", "job": "1", "data": "new", "region": "eu"}), 2 * M, 1.0)
    with sqlite_engine(tmp_path / "q.db", loop, b) as engine:
        yield engine


def series(loop: asyncio.AbstractEventLoop, engine: Engine, q: str) -> dict[str, list[float | None]]:
    v = loop.run_until_complete(engine.range(T, q, 0, 2 * M, M)).value
    assert isinstance(v, Vector)
    return {
        ",".join(f"{k}={x}" for k, x in lb if k != "__name__"): [
            float(v.values[i, j]) if v.present[i, j] else None for j in range(3)
        ]
        for i, lb in enumerate(v.labels)
    }


def test_all_data_labels_follow_the_info_series_current_at_each_step(
    loop: asyncio.AbstractEventLoop, engine: Engine
) -> None:
    assert series(loop, engine, 'info(metric{label="value"})') == {
        "data=old,instance=a,job=1,label=value,region=eu": [0.0, 1.0, None],
        "data=new,instance=a,job=1,label=value,region=eu": [None, None, 2.0],
    }


def test_a_selector_picks_labels_and_metrics(loop: asyncio.AbstractEventLoop, engine: Engine) -> None:
    assert series(loop, engine, 'info(metric, {region=~".+"})') == {
        "instance=a,job=1,label=value,region=eu": [0.0, 1.0, 2.0]
    }
    assert series(loop, engine, 'info(metric, {__name__="build_info"})') == {
        "build=b1,instance=a,job=1,label=value": [0.0, 1.0, 2.0]
    }


def test_no_info_series_keeps_or_drops_by_the_matchers(loop: asyncio.AbstractEventLoop, engine: Engine) -> None:
    assert series(loop, engine, "info(other)") == {"instance=b,job=1": [0.0, 1.0, 2.0]}
    assert series(loop, engine, 'info(other, {data=~".+"})') == {}


def test_info_series_pass_through_and_conflicts_are_errors(loop: asyncio.AbstractEventLoop, engine: Engine) -> None:
    assert series(loop, engine, 'info(build_info, {__name__="build_info"})') == {
        "build=b1,instance=a,job=1": [1.0, 1.0, 1.0]
    }
    with pytest.raises(QueryError, match="conflicting label"):
        loop.run_until_complete(engine.instant(T, 'info(metric, {__name__=~"(target|cfg)_info"})', 0))
