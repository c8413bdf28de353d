"""`/api/v1/admin/tsdb/delete_series` (admin scope, Prometheus's API shape): the samples of the
matching series in [start, end] are gone from every read, cached answers included; the rest, and
other tenants, are untouched. The storage side (raw rows, chunks, rollups) is in
tests/conformance/test_maintenance.py, on both backends."""

from __future__ import annotations

import time
from typing import Any

from rtpm.model.labels import make_labels
from rtpm.model.samples import WriteBatch
from tests._app import App
from tests._auth import bearer, create_key

NOW_S = int(time.time()) // 60 * 60
T0_S = NOW_S - 3600  # an hour of data, once a minute, ending 10 minutes ago: answers get cached


def _data(tenant: str) -> WriteBatch:
    b = WriteBatch(tenant)
    for i in range(51):
        ts = (T0_S + 60 * i) * 1000
        for job in ("a", "b"):
            b.add(make_labels("del_requests_total", {"job": job}), ts, float(i))
        b.add(make_labels("del_temp", {}), ts, 20.0)
    return b


def _range(app: App, query: str, headers: dict[str, str] | None = None) -> dict[str, list[float]]:
    r = app.client.get(
        "/api/v1/query_range",
        params={"query": query, "start": T0_S, "end": T0_S + 3000, "step": 60},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    return {s["metric"].get("job", ""): [float(t) for t, _ in s["values"]] for s in r.json()["data"]["result"]}


def _delete(app: App, headers: dict[str, str] | None = None, method: str = "POST", **params: Any) -> Any:
    return app.client.request(method, "/api/v1/admin/tsdb/delete_series", params=params, headers=headers)


def test_delete_series_removes_the_range_of_matching_series_only(app: App) -> None:
    app.write(_data(app.tenant))
    app.write(_data("other"))
    before = _range(app, "del_requests_total")  # cached: the range ended more than 5 minutes ago
    assert len(before["a"]) == len(before["b"]) == 51
    r = _delete(app, **{"match[]": 'del_requests_total{job=~"a"}', "start": T0_S + 600, "end": T0_S + 1200})
    assert r.status_code == 204, r.text
    after = _range(app, "del_requests_total")
    assert after["b"] == before["b"]
    # [T0+600, T0+1200] gone (11 samples): steps up to T0+780 still see T0+540 within the 5 m
    # lookback, T0+840 .. T0+1200 see nothing
    assert set(before["a"]) - set(after["a"]) == {float(T0_S + t) for t in range(840, 1201, 60)}
    r = app.client.get(
        "/api/v1/query",
        params={"query": 'count_over_time(del_requests_total{job="a"}[1h])', "time": T0_S + 3000},
    )
    assert r.json()["data"]["result"][0]["value"][1] == "40"  # 51 - 11
    assert _range(app, "del_temp") == {"": before["a"]}  # another name: untouched
    other = create_key(app.client, "metrics:read", tenant="other")
    assert len(_range(app, "del_requests_total", bearer(other))["a"]) == 51  # another tenant: untouched

    # without start and end: the whole of time, over several selectors; PUT as Prometheus allows
    assert _delete(app, method="PUT", **{"match[]": ["del_temp", 'del_requests_total{job="b"}']}).status_code == 204
    assert set(_range(app, '{__name__=~"del_.*"}')) == {"a"}
    assert app.client.post("/api/v1/admin/tsdb/clean_tombstones").status_code == 204


def test_delete_series_needs_the_admin_scope(app: App) -> None:
    app.write(_data(app.tenant))
    for scopes in (("metrics:read", "metrics:write"), ("alerts:write",)):
        key = create_key(app.client, *scopes)
        r = _delete(app, bearer(key), **{"match[]": "del_temp"})
        assert r.status_code == 403 and "admin" in r.text
    assert _delete(app, {"Authorization": ""}, **{"match[]": "del_temp"}).status_code == 401
    assert len(_range(app, "del_temp")[""]) == 51


def test_delete_series_bad_requests_are_400(app: App) -> None:
    cases = [
        ({}, "no match[] parameter provided"),
        ({"match[]": "sum(del_temp)"}, "not a series selector"),
        ({"match[]": "del_temp{"}, ""),
        ({"match[]": "del_temp", "start": "soon"}, 'invalid parameter "start"'),
        ({"match[]": "del_temp", "start": 100, "end": 50}, "end timestamp must not be before start"),
    ]
    for params, message in cases:
        r = _delete(app, **params)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["status"] == "error" and r.json()["errorType"] == "bad_data"
        assert message in r.json()["error"], r.text
