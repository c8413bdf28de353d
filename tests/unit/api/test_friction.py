"""Issue 16's friction items that an in-process app can show: each test fails on the old behaviour."""

from __future__ import annotations

import gzip
import math
import time
from collections.abc import Callable, Iterator

import pytest
import yaml
from fastapi.testclient import TestClient

from rtpm.api.app import create_app
from rtpm.model.time import parse_timestamp
from rtpm.settings import AuthSettings, RateLimitSettings, Settings
from tests._auth import grant

PASSWORD = "admin-password-for-tests-0123"


@pytest.fixture
def client(settings_factory: Callable[..., Settings]) -> Iterator[TestClient]:
    with TestClient(create_app(settings_factory()), raise_server_exceptions=False) as c:
        grant(c)
        yield c


# ---- one time parser (its unit tests: tests/unit/model/test_time.py) ----------------------------


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/query", {"query": "up", "time": "1e308"}),
        ("/api/v1/query", {"query": "up", "time": "-1e308"}),
        ("/api/v1/query_range", {"query": "up", "start": "1e308", "end": "1e308", "step": "15"}),
        ("/api/v1/query_range", {"query": "up", "start": "0", "end": "1e308", "step": "15"}),
        ("/api/v1/query_range", {"query": "up", "start": "0", "end": "60", "step": "1e308"}),
        ("/api/v1/series", {"match[]": "up", "start": "1e308"}),
        ("/api/v1/labels", {"end": "1e308"}),
        ("/api/v1/label/job/values", {"start": "-1e308"}),
        ("/api/v1/query_exemplars", {"query": "up", "start": "1e308"}),
    ],
)
def test_prometheus_routes_answer_400_for_impossible_times(client: TestClient, path: str, params: dict) -> None:
    r = client.get(path, params=params)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["status"] == "error" and body["errorType"] == "bad_data"
    assert "invalid parameter" in body["error"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/metrics/query/range", {"query": "up", "start_time": "1e308", "end_time": "1e308"}),
        ("/api/v1/metrics/query/instant", {"query": "up", "time": "1e308"}),
        ("/api/v1/metrics/stats/cpu", {"start_time": "1e17"}),
        ("/api/v1/alerts/history", {"start": "1e308"}),
    ],
)
def test_seed_routes_answer_400_for_impossible_times(client: TestClient, path: str, params: dict) -> None:
    r = client.get(path, params=params)
    assert r.status_code == 400, r.text


def test_seed_query_body_with_impossible_time_is_400(client: TestClient) -> None:
    r = client.post("/api/v1/metrics/query", json={"metric_name": "cpu", "start_time": 1e308, "end_time": 1e308})
    assert r.status_code == 400, r.text
    assert "start_time" in r.text


# ---- query/range takes start/end --------------------------------------------------------------


def test_seed_query_range_accepts_start_and_end(client: TestClient) -> None:
    now = time.time()
    assert client.post("/api/v1/metrics/ingest", json={"name": "cpu", "value": 7.0}).status_code == 201
    for names in (("start", "end"), ("start_time", "end_time")):
        params = {"query": "cpu", names[0]: str(now - 60), names[1]: str(now + 5), "step": "1"}
        r = client.get("/api/v1/metrics/query/range", params=params)
        assert r.status_code == 200, r.text
        values = {p["value"] for s in r.json()["series"] for p in s["data_points"]}
        assert values == {7.0}
    r = client.get("/api/v1/metrics/query/range", params={"query": "cpu"})
    assert r.status_code == 400 and "start_time" in r.text
    r = client.get("/api/v1/metrics/query/range", params={"query": "cpu", "start": "1", "start_time": "2", "end": "3"})
    assert r.status_code == 400


# ---- stats ends at now ------------------------------------------------------------------------


def test_stats_without_range_ends_at_now(client: TestClient) -> None:
    assert client.post("/api/v1/metrics/ingest", json={"name": "cpu", "value": 1.0}).status_code == 201
    before = time.time()
    body = client.get("/api/v1/metrics/stats/cpu").json()
    end = parse_timestamp(body["end_time"])
    assert end is not None
    assert end / 1000 <= time.time() + 1
    assert end / 1000 >= before - 1


# ---- batch: Content-Encoding and non-finite values ----------------------------------------------


def test_batch_inflates_gzip_and_refuses_unknown_encodings(client: TestClient) -> None:
    body = b'{"metrics": [{"name": "gz", "value": 1}, {"name": "gz", "value": 2, "labels": {"a": "b"}}]}'
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    r = client.post("/api/v1/metrics/batch", content=gzip.compress(body), headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["metrics_count"] == 2
    r = client.post("/api/v1/metrics/batch", content=body, headers={**headers, "content-encoding": "br"})
    assert r.status_code == 415, r.text
    assert "br" in r.json()["error"]["message"]
    r = client.post("/api/v1/metrics/batch", content=b"not gzip", headers=headers)
    assert r.status_code == 400, r.text


def test_batch_gzip_is_bounded(settings_factory: Callable[..., Settings]) -> None:
    from rtpm.settings import LimitsSettings

    with TestClient(
        create_app(settings_factory(limits=LimitsSettings(max_body_bytes=4096))), raise_server_exceptions=False
    ) as c:
        grant(c)
        bomb = gzip.compress(b'{"metrics": [' + b" " * 100_000 + b"]}")
        r = c.post(
            "/api/v1/metrics/batch",
            content=bomb,
            headers={"content-type": "application/json", "content-encoding": "gzip"},
        )
        assert r.status_code == 413, r.text


def test_batch_carries_nan_and_infinities(client: TestClient) -> None:
    now = time.time()
    as_strings = {
        "metrics": [
            {"name": "odd", "value": "NaN", "labels": {"k": "nan"}, "timestamp": now},
            {"name": "odd", "value": "+Inf", "labels": {"k": "pinf"}, "timestamp": now},
            {"name": "odd", "value": "-Inf", "labels": {"k": "ninf"}, "timestamp": now},
            {"name": "odd", "value": 1.5, "labels": {"k": "one"}, "timestamp": now},
        ]
    }
    r = client.post("/api/v1/metrics/batch", json=as_strings)
    assert r.status_code == 201, r.text
    bare = (
        '{"metrics": [{"name": "bare", "value": NaN, "labels": {"k": "nan"}},'
        ' {"name": "bare", "value": Infinity, "labels": {"k": "pinf"}},'
        ' {"name": "bare", "value": -Infinity, "labels": {"k": "ninf"}}]}'
    )
    r = client.post("/api/v1/metrics/batch", content=bare, headers={"content-type": "application/json"})
    assert r.status_code == 201, r.text
    for name in ("odd", "bare"):
        r = client.get("/api/v1/query", params={"query": name})
        got = {s["metric"]["k"]: s["value"][1] for s in r.json()["data"]["result"]}
        assert {k: got[k] for k in ("nan", "pinf", "ninf")} == {"nan": "NaN", "pinf": "+Inf", "ninf": "-Inf"}
    # other strings are still not numbers
    r = client.post("/api/v1/metrics/batch", json={"metrics": [{"name": "odd", "value": "12"}]})
    assert r.status_code == 422
    assert not math.isnan(1.0)


# ---- rule export keeps each rule's interval ---------------------------------------------------


def _rules(client: TestClient) -> list[dict]:
    body = client.get("/api/v1/alerts/rules").json()
    return body["rules"] if isinstance(body, dict) else body


def test_rule_export_keeps_each_rules_interval_through_import(client: TestClient) -> None:
    rules = [
        {"name": "Fast", "expr": "up == 0", "evaluation_interval": "5s"},
        {"name": "Slow", "expr": "up == 0", "evaluation_interval": "2m"},
        {"name": "Default", "expr": "up == 0"},
        {"name": "AlsoFast", "expr": "up > 1", "evaluation_interval": 5},
    ]
    for rule in rules:
        assert client.post("/api/v1/alerts/rules", json=rule).status_code == 201
    before = {r["name"]: r["evaluation_interval"] for r in _rules(client)}
    text = client.get("/api/v1/alerts/rules/export").text
    doc = yaml.safe_load(text)
    names = [g["name"] for g in doc["groups"]]
    assert len(names) == len(set(names)) == 3
    for r in _rules(client):
        assert client.delete(f"/api/v1/alerts/rules/{r['id']}").status_code in (200, 204)
    r = client.post("/api/v1/alerts/rules/import", content=text, headers={"content-type": "application/yaml"})
    assert r.status_code in (200, 201), r.text
    after = {r["name"]: r["evaluation_interval"] for r in _rules(client)}
    assert after == before
    assert after["Fast"] == 5 and after["Slow"] == 120


# ---- rate limits and login throttling ---------------------------------------------------------


def test_default_query_budget_fits_a_grafana_wall() -> None:
    amount, _, per = RateLimitSettings().query.partition("/")
    assert per == "minute"
    assert int(amount) >= 30 * (60 // 5) * 10  # 30 panels, every 5 s, 10 viewers on one key


def test_failed_logins_from_one_address_do_not_lock_out_another(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(admin_password=PASSWORD, auth=AuthSettings(trust_forwarded_for=True))
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:

        def login(password: str, ip: str, user: str = "admin") -> int:
            r = c.post(
                "/api/v1/auth/login",
                json={"username": user, "password": password},
                headers={"x-forwarded-for": ip},
            )
            return r.status_code

        for _ in range(5):
            assert login("wrong-wrong-wrong", "203.0.113.9") == 401
        assert login(PASSWORD, "203.0.113.9") == 429  # the failing address is throttled
        assert login(PASSWORD, "198.51.100.7") == 200  # another address gets through
        # per address, whatever the user name: spraying many names from one address is throttled too
        for i in range(30):
            assert login("wrong-wrong-wrong", "192.0.2.1", user=f"user{i}") == 401
        assert login(PASSWORD, "192.0.2.1") == 429
        assert login(PASSWORD, "198.51.100.7") == 200
