"""Client messages: the seed's forms, narrower ones, and every way to get them wrong."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rtpm.errors import BadDataError, LimitExceeded
from rtpm.model.labels import MatchType
from rtpm.realtime.protocol import ProtocolLimits, Subscribe, Unsubscribe, parse_client_message

LIMITS = ProtocolLimits(max_matchers=3, max_metric_names=2, max_message_bytes=1000)


def parse(msg: Any) -> Any:
    return parse_client_message(json.dumps(msg), LIMITS)


def test_the_seed_client_forms() -> None:
    m = parse({"type": "subscribe", "data": {"subscription": "metrics"}})
    assert isinstance(m, Subscribe) and m.spec.kind == "metrics" and m.spec.metric_names is None
    a = parse({"type": "subscribe", "data": {"subscription": "alerts"}})
    assert a.spec.kind == "alerts"


def test_names_labels_matchers_and_max_rate() -> None:
    m = parse(
        {
            "type": "subscribe",
            "data": {
                "subscription": "metrics",
                "id": "cpu-web",
                "metrics": ["cpu"],
                "labels": {"env": "prod"},
                "matchers": [{"name": "host", "type": "=~", "value": "web-.*"}, 'dc!~"eu.*"'],
                "max_rate": 2,
            },
        }
    )
    spec = m.spec
    assert spec.id == "cpu-web" and spec.metric_names == {"cpu"} and spec.max_rate == 2.0
    assert [(x.name, x.type, x.value) for x in spec.matchers] == [
        ("env", MatchType.EQUAL, "prod"),
        ("host", MatchType.REGEX, "web-.*"),
        ("dc", MatchType.NOT_REGEX, "eu.*"),
    ]
    named = parse({"type": "subscribe", "data": {"subscription": "metrics", "matchers": ['__name__="mem"']}})
    assert named.spec.metric_names == {"mem"} and named.spec.matchers == ()


def test_unsubscribe_and_ping() -> None:
    assert parse({"type": "unsubscribe", "data": {"id": "s1"}}) == Unsubscribe("s1", None)
    assert parse({"type": "unsubscribe", "data": {"subscription": "alerts"}}) == Unsubscribe(None, "alerts")
    assert parse({"type": "unsubscribe"}) == Unsubscribe()
    assert parse({"type": "ping"}).data is None


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        pytest.param("not json", "not valid JSON", id="not-json"),
        pytest.param([1, 2], "JSON object", id="not-object"),
        pytest.param({"type": "hello"}, "unknown message type", id="unknown-type"),
        pytest.param({"type": "subscribe"}, "data: required", id="no-data"),
        pytest.param({"type": "subscribe", "data": {"subscription": "logs"}}, "'metrics' or 'alerts'", id="bad-kind"),
        pytest.param(
            {"type": "subscribe", "data": {"subscription": "metrics", "matcher": []}}, "unknown field", id="typo"
        ),
        pytest.param(
            {"type": "subscribe", "data": {"subscription": "metrics", "metrics": ["1x"]}},
            "invalid metric name",
            id="bad-name",
        ),
        pytest.param(
            {"type": "subscribe", "data": {"subscription": "metrics", "matchers": ['a=~"("']}},
            "regular expression",
            id="bad-regex",
        ),
        pytest.param(
            {"type": "subscribe", "data": {"subscription": "metrics", "matchers": ["a<>b"]}},
            "quoted value",
            id="bad-matcher",
        ),
        pytest.param(
            {
                "type": "subscribe",
                "data": {"subscription": "metrics", "matchers": [{"name": "a", "type": "~", "value": "b"}]},
            },
            "match type",
            id="bad-op",
        ),
        pytest.param({"type": "subscribe", "data": {"subscription": "metrics", "max_rate": 0}}, "> 0", id="bad-rate"),
        pytest.param({"type": "subscribe", "data": {"subscription": "metrics", "id": "a b"}}, "data.id", id="bad-id"),
        pytest.param({"type": "unsubscribe", "data": {"everything": True}}, "unknown field", id="bad-unsubscribe"),
    ],
)
def test_bad_messages_say_what_is_wrong(raw: Any, error: str) -> None:
    text = raw if isinstance(raw, str) else json.dumps(raw)
    with pytest.raises(BadDataError, match=error):
        parse_client_message(text, LIMITS)


def test_limits() -> None:
    with pytest.raises(LimitExceeded, match="matchers"):
        parse(
            {
                "type": "subscribe",
                "data": {"subscription": "metrics", "labels": {"a": "1", "b": "2", "c": "3", "d": "4"}},
            }
        )
    with pytest.raises(LimitExceeded, match="metric names"):
        parse({"type": "subscribe", "data": {"subscription": "metrics", "metrics": ["a", "b", "c"]}})
    with pytest.raises(LimitExceeded, match="larger than"):
        parse_client_message("x" * 1001, LIMITS)
