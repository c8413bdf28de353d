"""Acceptance 2: a tenant never sees another tenant's series, names, label values, metadata, rules,
alerts, cached query results or live updates, through any read path."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rtpm.api.app import create_app
from rtpm.settings import Settings
from tests._auth import bearer, create_key

A, B = "acme", "bravo"


@pytest.fixture
def two_tenants(settings_factory: Callable[..., Settings]) -> Iterator[tuple[TestClient, dict[str, str]]]:
    settings = settings_factory(alerting={"poll_seconds": 0.2, "lease_seconds": 3})
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        keys = {A: create_key(client, tenant=A), B: create_key(client, tenant=B)}
        yield client, keys


def _ingest(client: TestClient, key: str, name: str, labels: dict[str, str], ts: float | None = None) -> None:
    item: dict[str, Any] = {"name": name, "value": 91.0, "labels": labels, "type": "gauge", "help_text": f"{name} help"}
    if ts is not None:
        item["timestamp"] = ts
    r = client.post("/api/v1/metrics/ingest", json=item, headers=bearer(key))
    assert r.status_code == 201, r.text


def _ok(r: Any) -> Any:
    assert r.status_code == 200, r.text
    return r.json()


def test_reads_of_one_tenant_never_show_another(two_tenants: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = two_tenants
    old = time.time() - 900  # old enough for the query-result cache to keep answers about it
    for ts in (old, None):
        _ingest(client, keys[A], "secret_a", {"a_only": "acme-value"}, ts)
        _ingest(client, keys[B], "visible_b", {"b_only": "bravo-value"}, ts)
    for tenant, mine, theirs, my_label, their_label in (
        (A, "secret_a", "visible_b", "a_only", "b_only"),
        (B, "visible_b", "secret_a", "b_only", "a_only"),
    ):
        h = bearer(keys[tenant])
        get = lambda path, h=h, **params: client.get(path, params=params, headers=h)  # noqa: E731
        now = time.time()

        names = {m["name"] for m in _ok(get("/api/v1/metrics/names"))["metrics"]}
        assert names == {mine}
        assert get(f"/api/v1/metrics/latest/{theirs}").status_code == 404
        assert get(f"/api/v1/metrics/stats/{theirs}").status_code == 404
        assert _ok(get(f"/api/v1/metrics/latest/{mine}"))["metric_name"] == mine
        r = client.post(
            "/api/v1/metrics/query",
            json={"metric_name": theirs, "start_time": now - 3600, "end_time": now},
            headers=h,
        )
        assert _ok(r) == []

        # PromQL API: instant, range (twice: the second answer may come from the result cache).
        everything = '{__name__=~".+"}'
        result = _ok(get("/api/v1/query", query=everything, time=now))["data"]["result"]
        assert {s["metric"]["__name__"] for s in result} == {mine}
        for _ in range(2):
            for t in (A, B):  # the other tenant runs the same query first: its cached answer must not leak
                client.get(
                    "/api/v1/query_range",
                    params={"query": everything, "start": old - 60, "end": old + 60, "step": 15},
                    headers=bearer(keys[t]),
                )
            rng = get("/api/v1/query_range", query=everything, start=old - 60, end=old + 60, step=15)
            assert {s["metric"]["__name__"] for s in _ok(rng)["data"]["result"]} == {mine}
        assert _ok(get("/api/v1/query", query=theirs, time=now))["data"]["result"] == []

        # series, labels, label values, metadata
        series = _ok(get("/api/v1/series", **{"match[]": everything, "start": old - 60, "end": now}))["data"]
        assert {s["__name__"] for s in series} == {mine}
        labels = _ok(get("/api/v1/labels", start=old - 60, end=now))["data"]
        assert my_label in labels and their_label not in labels
        assert _ok(get("/api/v1/label/__name__/values", start=old - 60, end=now))["data"] == [mine]
        assert _ok(get(f"/api/v1/label/{their_label}/values", start=old - 60, end=now))["data"] == []
        assert set(_ok(get("/api/v1/metadata"))["data"]) == {mine}

        # the seed's PromQL front doors
        inst = _ok(get("/api/v1/metrics/query/instant", query=everything, time=now))
        assert theirs not in str(inst) and mine in str(inst)


def test_rules_and_alerts_stay_in_their_tenant(two_tenants: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = two_tenants
    _ingest(client, keys[A], "secret_a", {"host": "a1"})
    rule = {
        "name": "AcmeHot",
        "metric_name": "secret_a",
        "condition": "> 50",
        "threshold": 50.0,
        "for_duration": "0s",
        "evaluation_interval": "1s",
        "severity": "critical",
    }
    r = client.post("/api/v1/alerts/rules", json=rule, headers=bearer(keys[A]))
    assert r.status_code == 201, r.text
    rule_id = r.json()["id"]
    deadline = time.monotonic() + 30
    while not client.get("/api/v1/alerts/active", headers=bearer(keys[A])).json():
        assert time.monotonic() < deadline, "acme's alert never fired"
        time.sleep(0.1)
    a_active = client.get("/api/v1/alerts/active", headers=bearer(keys[A])).json()
    assert len(a_active) == 1

    hb = bearer(keys[B])
    assert client.get("/api/v1/alerts/rules", headers=hb).status_code == 200
    assert "AcmeHot" not in client.get("/api/v1/alerts/rules", headers=hb).text
    assert client.get(f"/api/v1/alerts/rules/{rule_id}", headers=hb).status_code == 404
    assert client.put(f"/api/v1/alerts/rules/{rule_id}", json=rule, headers=hb).status_code in (404, 422)
    assert client.delete(f"/api/v1/alerts/rules/{rule_id}", headers=hb).status_code == 404
    assert "AcmeHot" not in client.get("/api/v1/alerts/rules/export", headers=hb).text
    assert client.get("/api/v1/alerts/active", headers=hb).json() in ([], {"alerts": []})
    assert "AcmeHot" not in client.get("/api/v1/alerts/history", headers=hb).text
    assert "AcmeHot" not in client.get("/api/v1/rules", headers=hb).text
    assert _ok(client.get("/api/v1/alerts", headers=hb))["data"]["alerts"] == []
    alert_id = a_active[0]["id"]
    assert client.post(f"/api/v1/alerts/resolve/{alert_id}", headers=hb).status_code == 404
    # ... while acme still sees its own.
    assert "AcmeHot" in client.get("/api/v1/alerts/rules", headers=bearer(keys[A])).text


def test_keys_and_users_stay_in_their_tenant(two_tenants: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = two_tenants
    a_keys = _ok(client.get("/api/v1/auth/keys", headers=bearer(keys[A])))["keys"]
    b_keys = _ok(client.get("/api/v1/auth/keys", headers=bearer(keys[B])))["keys"]
    assert {k["id"] for k in a_keys}.isdisjoint({k["id"] for k in b_keys})
    assert client.delete(f"/api/v1/auth/keys/{a_keys[0]['id']}", headers=bearer(keys[B])).status_code == 404
    assert _ok(client.get("/api/v1/auth/users", headers=bearer(keys[B])))["users"] == []
    assert client.patch("/api/v1/auth/users/admin", json={"role": "viewer"}, headers=bearer(keys[B])).status_code == 404


def test_live_updates_stay_in_their_tenant(two_tenants: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = two_tenants
    with client.websocket_connect("/ws/metrics", headers=bearer(keys[B])) as ws:
        assert ws.receive_json()["type"] == "connection"
        everything = {"name": "__name__", "type": "=~", "value": ".+"}
        ws.send_json({"type": "subscribe", "data": {"subscription": "metrics", "matchers": [everything]}})
        while (msg := ws.receive_json())["type"] != "subscribed":
            pass
        ws.send_json({"type": "subscribe", "data": {"subscription": "alerts"}})
        while (msg := ws.receive_json())["type"] != "subscribed":
            pass
        _ingest(client, keys[A], "secret_a", {"a_only": "x"})
        _ingest(client, keys[B], "visible_b", {"b_only": "y"})
        seen: list[dict[str, Any]] = []
        while "visible_b" not in str(msg := ws.receive_json()):
            seen.append(msg)
        seen.append(msg)
        assert "secret_a" not in str(seen) and "acme" not in str(seen)
