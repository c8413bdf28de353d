"""Every validation rule: the right status, a message naming the item and field, nothing stored."""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rtpm.api.app import create_app
from rtpm.settings import LimitsSettings, Settings
from tests._auth import grant


@pytest.fixture
def client(settings_factory: Callable[..., Settings]) -> Iterator[TestClient]:
    limits = LimitsSettings(
        max_labels_per_series=3,
        max_label_value_length=10,
        max_batch_items=5,
        max_body_bytes=4096,
        max_past_seconds=3600,
        max_future_seconds=60,
        max_points_per_series=100,
    )
    with TestClient(create_app(settings_factory(limits=limits)), raise_server_exceptions=False) as c:
        grant(c)
        yield c


GOOD = {"name": "cpu", "value": 1.0}
NOW = time.time()


@pytest.mark.parametrize(
    ("item", "field", "reason_part"),
    [
        pytest.param({"value": 1}, "name", "non-empty string", id="missing-name"),
        pytest.param({"name": "1cpu", "value": 1}, "name", "not a valid metric name", id="bad-name"),
        pytest.param({"name": "cpu-usage", "value": 1}, "name", "not a valid metric name", id="dash-in-name"),
        pytest.param({"name": "cpu"}, "value", "must be a number", id="missing-value"),
        pytest.param({"name": "cpu", "value": "12"}, "value", "must be a number", id="string-value"),
        pytest.param({"name": "cpu", "value": True}, "value", "must be a number", id="bool-value"),
        pytest.param({"name": "cpu", "value": 1, "timestamp": "yesterday"}, "timestamp", "RFC3339", id="bad-timestamp"),
        pytest.param(
            {"name": "cpu", "value": 1, "timestamp": NOW - 7200}, "timestamp", "too far in the past", id="too-old"
        ),
        pytest.param(
            {"name": "cpu", "value": 1, "timestamp": NOW + 3600}, "timestamp", "too far in the future", id="too-new"
        ),
        pytest.param(
            {"name": "cpu", "value": 1, "labels": {"a": "1", "b": "2", "c": "3", "d": "4"}},
            "labels",
            "more than 3",
            id="too-many-labels",
        ),
        pytest.param(
            {"name": "cpu", "value": 1, "labels": {"host": "x" * 11}},
            "labels.host",
            "longer than 10",
            id="long-label-value",
        ),
        pytest.param(
            {"name": "cpu", "value": 1, "labels": {"1host": "x"}},
            "labels.1host",
            "not a valid label name",
            id="bad-label-name",
        ),
        pytest.param(
            {"name": "cpu", "value": 1, "labels": {"__name__": "x"}},
            "labels.__name__",
            "no __ prefix",
            id="reserved-label",
        ),
        pytest.param(
            {"name": "cpu", "value": 1, "labels": {"host": 5}}, "labels.host", "must be a string", id="non-string-label"
        ),
        pytest.param(
            {"name": "cpu", "value": 1, "labels": ["host"]}, "labels", "must be an object", id="labels-not-object"
        ),
        pytest.param({"name": "cpu", "value": 1, "type": "meter"}, "type", "must be one of", id="bad-type"),
        pytest.param({"name": "cpu", "value": 1, "colour": "red"}, "colour", "unknown field", id="unknown-field"),
    ],
)
def test_each_rule_rejects_the_whole_batch(
    client: TestClient, item: dict[str, Any], field: str, reason_part: str
) -> None:
    r = client.post("/api/v1/metrics/batch", json={"metrics": [GOOD | {"labels": {"k": "v"}}, item]})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "validation_failed"
    assert any(d["index"] == 1 and d["field"] == field and reason_part in d["reason"] for d in err["details"]), err
    assert "item 1" in err["message"]
    # none of the batch is stored, not even the good item
    assert client.get("/api/v1/metrics/latest/cpu").status_code == 404
    # the single-sample endpoint applies the same rule
    r = client.post("/api/v1/metrics/ingest", json=item)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == field


# NaN, Infinity and -Infinity are values (issue 16; tests/unit/api/test_friction.py); a number
# literal too large for a float is still not valid JSON.
@pytest.mark.parametrize("literal", [b"1e400", b"-1e400"])
def test_non_finite_values_are_refused(client: TestClient, literal: bytes) -> None:
    body = b'{"metrics": [{"name": "cpu", "value": ' + literal + b"}]}"
    r = client.post("/api/v1/metrics/batch", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert "not valid JSON" in r.json()["error"]["message"]
    assert client.get("/api/v1/metrics/latest/cpu").status_code == 404


def test_every_bad_item_is_listed(client: TestClient) -> None:
    r = client.post("/api/v1/metrics/batch", json={"metrics": [GOOD, {"name": "1"}, GOOD, {"value": "x"}]})
    indexes = sorted({d["index"] for d in r.json()["error"]["details"]})
    assert r.status_code == 422 and indexes == [1, 3]


def test_too_many_items(client: TestClient) -> None:
    r = client.post("/api/v1/metrics/batch", json={"metrics": [GOOD] * 6})
    assert r.status_code == 400
    assert "max_batch_items" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        pytest.param(b"", 400, "empty", id="empty"),
        pytest.param(b"{not json", 400, "not valid JSON", id="not-json"),
        pytest.param(b'{"metrics": 5}', 422, "metrics", id="metrics-not-list"),
        pytest.param(b"[1, 2]", 422, "metrics", id="array-body"),
    ],
)
def test_malformed_bodies(client: TestClient, body: bytes, status: int, text: str) -> None:
    r = client.post("/api/v1/metrics/batch", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status
    assert text in r.json()["error"]["message"]


def test_body_size_limit(client: TestClient) -> None:
    big = {"metrics": [GOOD | {"help_text": "x" * 5000}]}
    r = client.post("/api/v1/metrics/batch", json=big)
    assert r.status_code == 413
    assert "max_body_bytes" in r.json()["error"]["message"]
    # without content-length (chunked), the limit still holds
    r = client.post("/api/v1/metrics/batch", content=iter([b'{"metrics": [', b" " * 5000, b"]}"]))
    assert r.status_code == 413


def test_gzip_is_not_a_json_body(client: TestClient) -> None:
    r = client.post(
        "/api/v1/metrics/batch", content=gzip.compress(b'{"metrics": []}'), headers={"content-type": "application/json"}
    )
    assert r.status_code == 400


def test_query_validation(client: TestClient) -> None:
    base = {"metric_name": "cpu", "start_time": NOW - 600, "end_time": NOW}
    cases = [
        (base | {"metric_name": "bad name"}, 422, "metric_name"),
        (base | {"start_time": "soon"}, 400, "start_time"),
        (base | {"end_time": NOW - 3600}, 400, "end_time"),
        (base | {"step": "1x"}, 400, "step"),
        (base | {"step": 1}, 400, "100"),  # 601 points over the cap of 100
        (base | {"aggregation": "median"}, 422, "aggregation"),
        ({"metric_name": "cpu"}, 422, "start_time"),
    ]
    for body, status, text in cases:
        r = client.post("/api/v1/metrics/query", json=body)
        assert r.status_code == status, (body, r.text)
        assert text in r.text


def test_unknown_route_and_method(client: TestClient) -> None:
    # An unknown route answers in the original RTPM API's flat shape ("error" is its string, "path"
    # the URL) with RTPM's code/message/details beside it; see tests/e2e/test_original_api.py.
    body = client.get("/api/v1/nothing").json()
    assert body["code"] == "not_found" and body["error"] == "Not found"
    assert body["path"].endswith("/api/v1/nothing")
    r = client.get("/api/v1/metrics/batch")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_stats_bad_times(client: TestClient) -> None:
    r = client.get("/api/v1/metrics/stats/cpu", params={"start_time": "never"})
    assert r.status_code == 400 and "start_time" in r.json()["error"]["message"]
