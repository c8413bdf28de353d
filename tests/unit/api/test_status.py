"""Prometheus's probes and status pages, in Prometheus's shapes."""

from __future__ import annotations

import pytest

from rtpm.errors import StorageUnavailable
from tests._app import App


def _data(app: App, path: str) -> object:
    r = app.client.get(path)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success"
    return body["data"]


def test_healthy_and_ready_probes(app: App) -> None:
    anonymous = {"Authorization": ""}
    r = app.client.get("/-/healthy", headers=anonymous)
    assert (r.status_code, r.text) == (200, "Prometheus Server is Healthy.\n")
    r = app.client.get("/-/ready", headers=anonymous)
    assert (r.status_code, r.text) == (200, "Prometheus Server is Ready.\n")
    assert app.client.head("/-/ready").status_code == 200


def test_ready_is_503_while_storage_does_not_answer(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    async def down() -> None:
        raise StorageUnavailable("database is down")

    monkeypatch.setattr(app.services.storage, "ping", down)
    assert app.client.get("/-/ready").status_code == 503
    assert app.client.get("/-/healthy").status_code == 200


def test_status_pages(app: App) -> None:
    assert _data(app, "/api/v1/status/config") == {"yaml": ""}
    flags = _data(app, "/api/v1/status/flags")
    assert isinstance(flags, dict) and all(isinstance(v, str) for v in flags.values())
    assert flags["query.lookback-delta"] == "5m"
    assert flags["storage.tsdb.retention.time"] == "15d"
    info = _data(app, "/api/v1/status/runtimeinfo")
    assert isinstance(info, dict)
    assert info["storageRetention"] == "15d"
    assert info["reloadConfigSuccess"] is True
    assert isinstance(info["startTime"], str) and info["startTime"].endswith("Z")
    assert isinstance(info["GOMAXPROCS"], int)
    assert _data(app, "/api/v1/targets") == {"activeTargets": [], "droppedTargets": [], "droppedTargetCounts": {}}


def test_status_pages_need_a_credential(app: App) -> None:
    r = app.client.get("/api/v1/status/flags", headers={"Authorization": ""})
    assert r.status_code == 401
    assert r.json()["status"] == "error"
