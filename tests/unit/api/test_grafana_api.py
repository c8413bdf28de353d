"""The requests Grafana's Prometheus data source sends (COMPAT.md section 2), with its exact
parameters and encodings, answer 200 with valid Prometheus bodies; bad queries answer with
Prometheus' error types and statuses."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rtpm.api.app import create_app
from rtpm.model.labels import make_labels
from rtpm.model.samples import MetricMetadata, MetricType, WriteBatch
from rtpm.settings import LimitsSettings, QuerySettings, Settings
from tests._auth import grant

NOW_S = int(time.time()) // 60 * 60
FORM = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "Grafana/11.3.0"}
GRAFANA_HEADERS = {"User-Agent": "Grafana/11.3.0", "X-Grafana-Org-Id": "1", "X-Datasource-Uid": "abc"}


def _batch(tenant: str) -> WriteBatch:
    b = WriteBatch(tenant)
    start_ms = (NOW_S - 3600) * 1000
    for i in range(3):
        for k in range(241):
            ts = start_ms + k * 15_000
            b.add(make_labels("http_requests_total", {"job": "api", "instance": f"i{i}"}), ts, float(k * (i + 1)))
            b.add(make_labels("cpu_usage", {"job": "api", "instance": f"i{i}"}), ts, 50.0 + i)
    b.metadata.append(MetricMetadata("http_requests_total", MetricType.COUNTER, "", "Requests served."))
    return b


@pytest.fixture
def client(settings_factory: Callable[..., Settings]) -> Iterator[TestClient]:
    settings = settings_factory(
        limits=LimitsSettings(max_points_per_series=11_000, max_query_samples=1_000),
        query=QuerySettings(timeout_seconds=30),
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        grant(c)
        services = c.app.state.services  # type: ignore[attr-defined]
        c.portal.call(services.storage.write, [_batch(services.settings.default_tenant)])  # type: ignore[union-attr]
        yield c


def _ok(resp: Any) -> Any:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["status"] == "success"
    return body["data"]


def _err(resp: Any, status: int, error_type: str, *parts: str) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["status"] == "error"
    assert body["errorType"] == error_type
    for p in parts:
        assert p in body["error"], body["error"]
    return str(body["error"])


# ---- Save & test ----------------------------------------------------------------------------


def test_health_check_post_form(client: TestClient) -> None:
    data = _ok(client.post("/api/v1/query", content="query=1%2B1&time=4", headers=FORM))
    assert data == {"resultType": "scalar", "result": [4, "2"]}


def test_health_check_get(client: TestClient) -> None:
    data = _ok(client.get("/api/v1/query", params={"query": "1+1", "time": "4"}, headers=GRAFANA_HEADERS))
    assert data == {"resultType": "scalar", "result": [4, "2"]}


def test_buildinfo_has_no_features(client: TestClient) -> None:
    data = _ok(client.get("/api/v1/status/buildinfo"))
    assert "features" not in data
    assert set(data) == {"version", "revision", "branch", "buildUser", "buildDate", "goVersion"}
    assert all(isinstance(v, str) for v in data.values())


# ---- data source init -----------------------------------------------------------------------


def test_rules_and_alerts_empty(client: TestClient) -> None:
    assert _ok(client.get("/api/v1/rules")) == {"groups": []}
    assert _ok(client.get("/api/v1/alerts")) == {"alerts": []}


def test_exemplars_probe(client: TestClient) -> None:
    ms = NOW_S * 1000
    assert _ok(client.get("/api/v1/query_exemplars", params={"query": "test", "start": ms - 3600_000, "end": ms})) == []
    body = f"query=http_requests_total&start={NOW_S - 3600}&end={NOW_S}"
    assert _ok(client.post("/api/v1/query_exemplars", content=body, headers=FORM)) == []


# ---- dashboard and Explore queries ----------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_query_range_as_grafana(client: TestClient, method: str) -> None:
    start, end = NOW_S - 1800, NOW_S - 600
    params = {
        "query": "sum by (job) (rate(http_requests_total[1m]))",
        "start": str(start),
        "end": str(end),
        "step": "15",
    }
    if method == "POST":
        from urllib.parse import urlencode

        resp = client.post("/api/v1/query_range", content=urlencode(params), headers=FORM)
    else:
        resp = client.get("/api/v1/query_range", params=params, headers=GRAFANA_HEADERS)
    data = _ok(resp)
    assert data["resultType"] == "matrix"
    [series] = data["result"]
    assert series["metric"] == {"job": "api"}
    points = series["values"]
    assert len(points) == (end - start) // 15 + 1
    assert points[0][0] == start and points[-1][0] == end
    # counters grow by (i+1) per 15 s for i in 0..2: 6 per 15 s in total
    assert all(math.isclose(float(v), 6 / 15) for _, v in points)
    assert all(isinstance(v, str) for _, v in points)


def test_query_range_with_timeout_and_fractional_times(client: TestClient) -> None:
    body = f"query=cpu_usage&start={NOW_S - 600}.5&end={NOW_S - 300}.25&step=60&timeout=60s"
    data = _ok(client.post("/api/v1/query_range", content=body, headers=FORM))
    assert len(data["result"]) == 3
    assert data["result"][0]["values"][0] == [NOW_S - 600 + 0.5, "50"]


def test_instant_query_post(client: TestClient) -> None:
    body = f"query=cpu_usage%7Binstance%3D%22i1%22%7D&time={NOW_S - 600}"
    data = _ok(client.post("/api/v1/query", content=body, headers=FORM))
    assert data == {
        "resultType": "vector",
        "result": [{"metric": {"__name__": "cpu_usage", "instance": "i1", "job": "api"}, "value": [NOW_S - 600, "51"]}],
    }


def test_annotation_query_step_60s(client: TestClient) -> None:
    params = {"query": "cpu_usage > 50", "start": NOW_S - 1200, "end": NOW_S - 600, "step": "60s"}
    data = _ok(client.get("/api/v1/query_range", params=params))
    assert sorted(r["metric"]["instance"] for r in data["result"]) == ["i1", "i2"]


# ---- autocomplete and template variables ----------------------------------------------------


def test_metric_name_autocomplete(client: TestClient) -> None:
    params = {"start": NOW_S - 3600, "end": NOW_S, "limit": "40000"}
    assert _ok(client.get("/api/v1/label/__name__/values", params=params)) == ["cpu_usage", "http_requests_total"]


def test_label_names_post_with_match(client: TestClient) -> None:
    body = f"start={NOW_S - 3600}&end={NOW_S}&limit=40000&match%5B%5D=cpu_usage"
    assert _ok(client.post("/api/v1/labels", content=body, headers=FORM)) == ["__name__", "instance", "job"]
    assert _ok(client.get("/api/v1/labels", params={"start": NOW_S - 3600, "end": NOW_S})) == [
        "__name__",
        "instance",
        "job",
    ]


def test_label_values_with_match(client: TestClient) -> None:
    params = {"start": NOW_S - 3600, "end": NOW_S, "limit": "40000", "match[]": 'cpu_usage{instance!="i0"}'}
    assert _ok(client.get("/api/v1/label/instance/values", params=params)) == ["i1", "i2"]


def test_label_values_limit_warns(client: TestClient) -> None:
    resp = client.get("/api/v1/label/instance/values", params={"limit": "2"})
    assert resp.json()["data"] == ["i0", "i1"]
    assert resp.json()["warnings"] == ["results truncated due to limit"]


def test_series_fallback(client: TestClient) -> None:
    body = f"match%5B%5D=%7B__name__%21%3D%22%22%7D&start={NOW_S - 3600}&end={NOW_S}&limit=40000"
    data = _ok(client.post("/api/v1/series", content=body, headers=FORM))
    assert len(data) == 6
    assert {"__name__": "cpu_usage", "instance": "i0", "job": "api"} in data


def test_series_requires_match(client: TestClient) -> None:
    _err(client.get("/api/v1/series"), 400, "bad_data", "no match[] parameter provided")


def test_metadata(client: TestClient) -> None:
    data = _ok(client.get("/api/v1/metadata"))
    assert data["http_requests_total"] == [{"type": "counter", "help": "Requests served.", "unit": ""}]


def test_query_result_variable(client: TestClient) -> None:
    data = _ok(client.get("/api/v1/query", params={"query": "count(cpu_usage)", "time": NOW_S - 60}))
    assert data["result"] == [{"metric": {}, "value": [NOW_S - 60, "3"]}]


def test_format_query(client: TestClient) -> None:
    assert _ok(client.get("/api/v1/format_query", params={"query": "sum(rate(x[5m]))  by (a)"})) == (
        "sum by (a) (rate(x[5m]))"
    )


# ---- errors ---------------------------------------------------------------------------------


def test_syntax_error(client: TestClient) -> None:
    _err(client.get("/api/v1/query", params={"query": "sum(rate(x[5m])"}), 400, "bad_data", "parse error")


def test_unknown_function_says_where(client: TestClient) -> None:
    msg = _err(client.get("/api/v1/query", params={"query": "sum(nosuchfn(x))"}), 400, "bad_data", "nosuchfn")
    assert "1:5:" in msg


def test_wrong_argument_type(client: TestClient) -> None:
    _err(client.get("/api/v1/query", params={"query": "rate(x)"}), 400, "bad_data", "expected type matrix")


def test_range_query_of_range_vector(client: TestClient) -> None:
    params = {"query": "x[5m]", "start": 0, "end": 60, "step": 15}
    _err(client.get("/api/v1/query_range", params=params), 400, "bad_data", 'invalid expression type "range vector"')


def test_too_many_points(client: TestClient) -> None:
    params = {"query": "1", "start": 0, "end": 11001, "step": 1}
    _err(
        client.get("/api/v1/query_range", params=params),
        400,
        "bad_data",
        "exceeded maximum resolution of 11,000 points per timeseries",
    )


def test_bad_step_and_times(client: TestClient) -> None:
    _err(client.get("/api/v1/query_range", params={"query": "1", "start": 0, "end": 60, "step": 0}), 400, "bad_data")
    _err(
        client.get("/api/v1/query_range", params={"query": "1", "start": 60, "end": 0, "step": 1}),
        400,
        "bad_data",
        "end timestamp must not be before start time",
    )
    _err(
        client.get("/api/v1/query", params={"query": "1", "time": "yesterday"}),
        400,
        "bad_data",
        'invalid parameter "time"',
    )


def test_too_many_samples(client: TestClient) -> None:
    # 6 series x 241 samples > max_query_samples=1000
    params = {"query": "sum(count_over_time({job='api'}[2h]))", "time": NOW_S}
    _err(client.get("/api/v1/query", params=params), 422, "execution", "too many samples")


def test_timeout(client: TestClient) -> None:
    params = {"query": "max_over_time(sum(rate(http_requests_total[5m]))[1d:1s])", "time": NOW_S, "timeout": "0.001"}
    _err(client.get("/api/v1/query", params=params), 503, "timeout", "timed out")


def test_many_to_many_is_execution_error(client: TestClient) -> None:
    params = {"query": "cpu_usage + on(job) http_requests_total", "time": NOW_S - 60}
    _err(client.get("/api/v1/query", params=params), 422, "execution", "duplicate series")


# ---- the seed's query routes on the same engine ---------------------------------------------


def test_seed_range_with_promql(client: TestClient) -> None:
    params = {
        "query": 'cpu_usage{instance="i2"}',
        "start_time": str(NOW_S - 600),
        "end_time": str(NOW_S - 540),
        "step": "30s",
    }
    resp = client.get("/api/v1/metrics/query/range", params=params)
    assert resp.status_code == 200, resp.text
    [s] = resp.json()["series"]
    assert s["labels"] == {"instance": "i2", "job": "api"}
    assert [p["value"] for p in s["data_points"]] == [52.0, 52.0, 52.0]
    assert s["data_points"][0]["timestamp"].endswith("Z")


def test_seed_range_with_metric_name_and_aggregation(client: TestClient) -> None:
    params = {
        "metric_name": "http_requests_total",
        "labels": '{"job": "api"}',
        "aggregation": "rate",
        "group_by": "job",
        "start_time": str(NOW_S - 1200),
        "end_time": str(NOW_S - 600),
        "step": "60",
    }
    body = client.get("/api/v1/metrics/query/range", params=params).json()
    assert body["query"] == 'sum by (job) (rate(http_requests_total{job="api"}[60s]))'
    [s] = body["series"]
    assert all(math.isclose(p["value"], 6 / 15) for p in s["data_points"])


def test_seed_instant(client: TestClient) -> None:
    """The seed's aggregation over the 5 minutes up to `time`: per series, or over a group (an
    empty group_by: all series), as the bucketed query answers it (query/seed_promql.py)."""
    params = {"metric_name": "cpu_usage", "aggregation": "max", "time": str(NOW_S - 60), "group_by": ""}
    body = client.get("/api/v1/metrics/query/instant", params=params).json()
    assert body["query"] == "max by () (max_over_time(cpu_usage[300s]))"
    assert body["series"] == [
        {"labels": {}, "metric_name": None, "data_points": [{"timestamp": body["time"], "value": 52.0}]}
    ]
    del params["group_by"]
    body = client.get("/api/v1/metrics/query/instant", params=params).json()
    assert [(s["labels"]["instance"], s["data_points"][0]["value"]) for s in body["series"]] == [
        ("i0", 50.0),
        ("i1", 51.0),
        ("i2", 52.0),
    ]


def test_seed_bad_query(client: TestClient) -> None:
    resp = client.get("/api/v1/metrics/query/instant", params={"query": "sum("})
    assert resp.status_code == 400
    assert "parse error" in resp.json()["error"]["message"]
