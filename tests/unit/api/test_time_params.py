"""Every time and duration parameter goes through rtpm.model.time: an impossible one is a 400 that
names the parameter, on the Prometheus routes and on the seed's, never a 500."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from rtpm.api.app import create_app
from rtpm.settings import Settings
from tests._auth import grant

NOW = str(int(time.time()))
EARLIER = str(int(time.time()) - 600)
BAD_TIMES = ["1e308", "-1e308", "nan", "inf", "-inf", "soon", "10000-01-01T00:00:00Z"]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("time-params")
    settings = Settings(_env_file=None, data_dir=data, environment="test")  # type: ignore[call-arg]
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        grant(c)
        yield c


# (path, the good parameters, the parameter under test)
TIME_PARAMS = [
    ("/api/v1/query", {"query": "up", "time": NOW}, "time"),
    ("/api/v1/query_range", {"query": "up", "start": EARLIER, "end": NOW, "step": "15"}, "start"),
    ("/api/v1/query_range", {"query": "up", "start": EARLIER, "end": NOW, "step": "15"}, "end"),
    ("/api/v1/series", {"match[]": "up", "start": EARLIER, "end": NOW}, "start"),
    ("/api/v1/series", {"match[]": "up", "start": EARLIER, "end": NOW}, "end"),
    ("/api/v1/labels", {"start": EARLIER, "end": NOW}, "end"),
    ("/api/v1/label/job/values", {"start": EARLIER, "end": NOW}, "start"),
    ("/api/v1/query_exemplars", {"query": "up", "start": EARLIER, "end": NOW}, "end"),
    ("/federate", {"match[]": "up", "time": NOW}, "time"),
    ("/api/v1/metrics/query/range", {"query": "up", "start_time": EARLIER, "end_time": NOW}, "start_time"),
    ("/api/v1/metrics/query/range", {"query": "up", "start": EARLIER, "end": NOW}, "end"),
    ("/api/v1/metrics/query/instant", {"query": "up", "time": NOW}, "time"),
    ("/api/v1/metrics/stats/cpu", {"start_time": EARLIER, "end_time": NOW}, "start_time"),
    ("/api/v1/metrics/stats/cpu", {"start_time": EARLIER, "end_time": NOW}, "end_time"),
    ("/api/v1/metrics/query", {"metric_name": "cpu", "start_time": EARLIER, "end_time": NOW}, "end_time"),
    ("/api/v1/metrics/aggregated", {"metric_name": "cpu", "start_time": EARLIER, "end_time": NOW}, "start_time"),
    ("/api/v1/alerts/history", {"start": EARLIER, "end": NOW}, "start"),
]

DURATION_PARAMS = [
    ("/api/v1/query_range", {"query": "up", "start": EARLIER, "end": NOW, "step": "15"}, "step"),
    ("/api/v1/query", {"query": "up", "time": NOW, "lookback_delta": "5m"}, "lookback_delta"),
    ("/api/v1/query", {"query": "up", "time": NOW, "timeout": "5s"}, "timeout"),
    ("/api/v1/metrics/query/range", {"query": "up", "start": EARLIER, "end": NOW, "step": "15s"}, "step"),
    ("/api/v1/metrics/query", {"metric_name": "cpu", "start_time": EARLIER, "end_time": NOW, "step": "1m"}, "step"),
]


def _error_text(body: dict) -> str:
    err = body.get("error")
    return err if isinstance(err, str) else str(err)


@pytest.mark.parametrize(("path", "good", "name"), TIME_PARAMS, ids=[f"{p}:{n}" for p, _, n in TIME_PARAMS])
def test_good_times_are_taken(client: TestClient, path: str, good: dict[str, str], name: str) -> None:
    r = client.get(path, params=good)
    assert r.status_code in (200, 404), r.text  # 404: no samples for the seed's stats


@pytest.mark.parametrize("bad", BAD_TIMES)
@pytest.mark.parametrize(("path", "good", "name"), TIME_PARAMS, ids=[f"{p}:{n}" for p, _, n in TIME_PARAMS])
def test_bad_times_are_400_naming_the_parameter(
    client: TestClient, path: str, good: dict[str, str], name: str, bad: str
) -> None:
    r = client.get(path, params={**good, name: bad})
    assert r.status_code == 400, r.text
    assert name in _error_text(r.json()), r.text
    if path.startswith("/api/v1/") and not path.startswith(("/api/v1/metrics", "/api/v1/alerts")):
        assert r.json()["errorType"] == "bad_data"
        assert r.json()["error"].startswith(f'invalid parameter "{name}"')


# Prometheus takes a zero or negative lookback_delta/timeout as the default: those are not bad.
BAD_DURATIONS = [
    (path, good, name, bad)
    for path, good, name in DURATION_PARAMS
    for bad in ("0", "-15", "nan", "inf", "1e308", "5 minutes", "1.5h")
    if not (name in ("lookback_delta", "timeout") and bad in ("0", "-15"))
]


@pytest.mark.parametrize(
    ("path", "good", "name", "bad"), BAD_DURATIONS, ids=[f"{p}:{n}:{b}" for p, _, n, b in BAD_DURATIONS]
)
def test_bad_durations_are_400_naming_the_parameter(
    client: TestClient, path: str, good: dict[str, str], name: str, bad: str
) -> None:
    r = client.get(path, params={**good, name: bad})
    assert r.status_code == 400, r.text
    assert name in _error_text(r.json()), r.text


@pytest.mark.parametrize(
    ("field", "value"),
    [("start_time", 1e308), ("end_time", float("-1e308")), ("start_time", "nan"), ("end_time", "inf"), ("step", 0)],
)
def test_seed_query_body_names_the_bad_field(client: TestClient, field: str, value: object) -> None:
    body: dict[str, object] = {"metric_name": "cpu", "start_time": EARLIER, "end_time": NOW, field: value}
    r = client.post("/api/v1/metrics/query", json=body)
    assert r.status_code == 400, r.text
    assert field in r.text


@pytest.mark.parametrize("bad", [1e308, -1e308, "1e308", "nan", "inf"])
def test_ingest_refuses_impossible_timestamps_with_a_4xx(client: TestClient, bad: object) -> None:
    """Both the seed's JSON fast path (a series already seen in the batch) and its slow path."""
    items = [{"name": "cpu", "value": 1.0, "timestamp": NOW}, {"name": "cpu", "value": 2.0, "timestamp": bad}]
    r = client.post("/api/v1/metrics/batch", json={"metrics": items})
    assert 400 <= r.status_code < 500, r.text
    assert "timestamp" in r.text
    r = client.post("/api/v1/metrics/ingest", json={"name": "cpu", "value": 1.0, "timestamp": bad})
    assert 400 <= r.status_code < 500, r.text
    assert "timestamp" in r.text
