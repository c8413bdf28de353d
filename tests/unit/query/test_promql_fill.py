"""Prometheus 3's fill modifiers on binary operators (newer than the differential test's Prometheus;
expected values from Prometheus's promqltest fill-modifier.test)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtpm.errors import QueryParseError
from rtpm.model.labels import make_labels
from rtpm.model.samples import WriteBatch
from rtpm.query.promql.engine import Engine
from rtpm.query.promql.values import Vector
from tests.unit.query.conftest import sqlite_engine

T = "t"


@pytest.fixture
def engine(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> Iterator[Engine]:
    b = WriteBatch(T)
    for name, label, v in [("l", "a", 10), ("l", "b", 20), ("l", "c", 30), ("r", "a", 100), ("r", "b", 200)]:
        b.add(make_labels(name, {"label": label}), 0, float(v))
    b.add(make_labels("r", {"label": "d"}), 0, 400.0)
    for t in (300_000, 600_000):
        b.add(make_labels("l", {"label": "c"}), t, 30.0)
    b.add(make_labels("r", {"label": "c"}), 600_000, 300.0)  # r{c} appears only at 10 m
    for method, status, v in [("GET", "200", 100), ("GET", "500", 10)]:
        b.add(make_labels("req", {"method": method, "status": status}), 0, float(v))
    for status, v in [("200", 1000), ("404", 500), ("500", 50)]:
        b.add(make_labels("lim", {"status": status}), 0, float(v))
    with sqlite_engine(tmp_path / "q.db", loop, b) as engine:
        yield engine


def at0(loop: asyncio.AbstractEventLoop, engine: Engine, q: str) -> dict[str, float]:
    v = loop.run_until_complete(engine.instant(T, q, 0)).value
    assert isinstance(v, Vector)
    return {
        ",".join(f"{k}={x}" for k, x in lb): float(v.values[i, 0]) for i, lb in enumerate(v.labels) if v.present[i, 0]
    }


def test_fill_each_side(loop: asyncio.AbstractEventLoop, engine: Engine) -> None:
    assert at0(loop, engine, "l + fill(0) r") == {"label=a": 110, "label=b": 220, "label=c": 30, "label=d": 400}
    assert at0(loop, engine, "l + fill_left(0) r") == {"label=a": 110, "label=b": 220, "label=d": 400}
    assert at0(loop, engine, "l + fill_right(0) r") == {"label=a": 110, "label=b": 220, "label=c": 30}
    assert at0(loop, engine, "l + fill_left(5) fill_right(7) r") == {
        "label=a": 110,
        "label=b": 220,
        "label=c": 37,
        "label=d": 405,
    }
    # a filtering comparison keeps the left value; a filled left side is labelled by its match group
    assert at0(loop, engine, "l != fill(30) r") == {"__name__=l,label=a": 10, "__name__=l,label=b": 20, "label=d": 30}
    assert at0(loop, engine, "l == bool fill(30) r") == {"label=a": 0, "label=b": 0, "label=c": 1, "label=d": 0}


def test_fill_with_group_left(loop: asyncio.AbstractEventLoop, engine: Engine) -> None:
    got = at0(loop, engine, "req + on(status) group_left fill_left(0) lim")
    assert got == {"method=GET,status=200": 1100, "method=GET,status=500": 60, "status=404": 500}
    got = at0(loop, engine, "req / on(status) group_left fill_right(1) lim")
    assert got == {"method=GET,status=200": 0.1, "method=GET,status=500": 0.2}


def test_a_series_filled_at_some_steps_and_matched_at_others_is_one_series(
    loop: asyncio.AbstractEventLoop, engine: Engine
) -> None:
    r = loop.run_until_complete(engine.range(T, 'l{label="c"} + fill_right(0) r', 0, 600_000, 300_000))
    v = r.value
    assert isinstance(v, Vector) and v.labels == [(("label", "c"),)]
    assert v.present[0].tolist() == [True, True, True]
    assert v.values[0].tolist() == [30.0, 30.0, 330.0]  # filled, filled, matched


def test_fill_is_refused_with_set_operators(loop: asyncio.AbstractEventLoop, engine: Engine) -> None:
    with pytest.raises(QueryParseError, match="fill"):
        loop.run_until_complete(engine.instant(T, "l and fill(1) r", 0))
