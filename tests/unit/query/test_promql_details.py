"""Details where RTPM follows Prometheus 3 / Go: RE2 regular expressions in Python, type and unit
labels dropped with the name, topk/bottomk order and NaN parameters."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from rtpm.errors import QueryError
from rtpm.model.labels import Matcher, MatchType, make_labels
from rtpm.model.regex import RegexError, compile_regex, re2_to_python
from rtpm.model.samples import WriteBatch
from rtpm.query.promql.engine import Engine
from rtpm.query.promql.jsonfmt import render
from rtpm.query.promql.values import Vector, drop_name
from tests.unit.query.conftest import sqlite_engine

T = "t"


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        (".*((?i)DUC).*", ["production", "PRODUCTION"], ["prod"]),
        ("((?i)PRO).*", ["Production"], ["xpro"]),
        ("a(?i)b|c", ["aB", "C", "c"], ["AB"]),  # flags hold to the end of the group, across |
        ("(a(?i)b|c)d", ["aBd", "Cd"], ["CD"]),
        ("(?i)abc", ["ABC"], ["ab"]),
        ("[[:alpha:]]+[[:digit:]]", ["abc1"], ["abc", "1"]),
        ("x\\z", ["x"], ["x\n"]),
    ],
)
def test_re2_patterns(pattern: str, yes: list[str], no: list[str]) -> None:
    for rx in (compile_regex(pattern), re.compile(re2_to_python(pattern), re.DOTALL)):  # RE2, and the fallback
        assert all(rx.fullmatch(s) for s in yes)
        assert not any(rx.fullmatch(s) for s in no)
    m = Matcher("l", MatchType.REGEX, pattern)
    assert m.matches(yes[0]) and not m.matches(no[0])


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        ("\\p{L}+", ["héllo", "Ωμέγα"], ["a1"]),
        ("\\Qa.b\\E.*", ["a.b", "a.bc"], ["axb"]),
        (".*", ["a\nb"], []),  # . matches a newline, as in Prometheus's (?s) matchers
    ],
)
def test_re2_only_syntax(pattern: str, yes: list[str], no: list[str]) -> None:
    m = Matcher("l", MatchType.REGEX, pattern)
    assert all(m.matches(s) for s in yes) and not any(m.matches(s) for s in no)


def test_a_bad_pattern_is_a_regex_error() -> None:
    with pytest.raises(RegexError, match="missing"):
        compile_regex("(")
    with pytest.raises(ValueError, match="invalid regular expression"):
        Matcher("l", MatchType.REGEX, "(")


def test_drop_name_drops_type_and_unit() -> None:
    lb = make_labels("m", {"__type__": "counter", "__unit__": "bytes", "a": "1"})
    assert drop_name(lb) == (("a", "1"),)
    assert drop_name(make_labels("m", {"a": "1"})) == (("a", "1"),)
    assert drop_name((("A", "x"), ("__name__", "m"), ("__type__", "gauge"))) == (("A", "x"),)


@pytest.fixture
def engine(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> Iterator[Engine]:
    b = WriteBatch(T)
    for i, v in enumerate([5, 1, 9, 3]):
        b.add(make_labels("m", {"i": str(i)}), 0, float(v))
    b.add(make_labels("n", {"i": "0"}), 0, 7.0)  # the same labels as m{i="0"} once the name is dropped
    b.add(make_labels("typed", {"i": "0", "__type__": "gauge", "__unit__": "bytes"}), 0, 10.0)
    with sqlite_engine(tmp_path / "q.db", loop, b) as engine:
        yield engine


def order(loop: asyncio.AbstractEventLoop, engine: Engine, q: str) -> list[str]:
    data, _ = render(loop.run_until_complete(engine.instant(T, q, 0)), as_range=False, limit=None)
    return [r["metric"]["i"] for r in orjson.loads(data)["result"]]


def test_topk_and_bottomk_answer_in_rank_order(loop: asyncio.AbstractEventLoop, engine: Engine) -> None:
    assert order(loop, engine, "topk(3, m)") == ["2", "0", "3"]
    assert order(loop, engine, 'topk(1, {__name__=~"m|n"})') == ["2"]
    assert order(loop, engine, "bottomk(2, m)") == ["1", "3"]


def test_a_nan_parameter_is_an_error(loop: asyncio.AbstractEventLoop, engine: Engine) -> None:
    with pytest.raises(QueryError, match="Parameter value is NaN"):
        loop.run_until_complete(engine.instant(T, "topk(NaN, m)", 0))
    with pytest.raises(QueryError, match="Ratio value is NaN"):
        loop.run_until_complete(engine.instant(T, "limit_ratio(NaN, m)", 0))


def test_negation_that_makes_two_series_one_is_an_error(loop: asyncio.AbstractEventLoop, engine: Engine) -> None:
    with pytest.raises(QueryError, match="same labelset"):
        loop.run_until_complete(engine.instant(T, '-{__name__=~"m|n"}', 0))


def test_absent_takes_no_value_from_a_label_matched_twice(loop: asyncio.AbstractEventLoop, engine: Engine) -> None:
    r = loop.run_until_complete(engine.instant(T, 'absent(nope{job="a", job=~"b", foo="bar"})', 0)).value
    assert isinstance(r, Vector) and r.labels == [(("foo", "bar"),)]


def test_type_and_unit_labels_are_not_matched_on(loop: asyncio.AbstractEventLoop, engine: Engine) -> None:
    assert order(loop, engine, "typed + on() group_left vector(1)") == ["0"]
    got = loop.run_until_complete(engine.instant(T, 'typed / ignoring(x) m{i="0"}', 0)).value
    assert isinstance(got, Vector) and got.labels == [(("i", "0"),)]
