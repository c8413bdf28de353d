"""rtpm.client retries (httpx.MockTransport, no network) and the `rtpm push|query|alerts`
commands against a real server with login required, as the README walks a new user through."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from rtpm.cli_client import parse_when
from rtpm.client import RtpmClient, RtpmClientError
from tests._server import RtpmServer

ADMIN_PASSWORD = "ops-admin-password-0123456789"


def _mock(responses: list[httpx.Response], seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return responses.pop(0)

    return httpx.MockTransport(handler)


def test_client_retries_503_and_429_honouring_retry_after() -> None:
    seen: list[httpx.Request] = []
    slept: list[float] = []
    responses = [
        httpx.Response(503, headers={"Retry-After": "2"}, json={"error": {"code": "overloaded", "message": "full"}}),
        httpx.Response(429, headers={"Retry-After": "1"}, json={"error": {"code": "rate_limited", "message": "slow"}}),
        httpx.Response(201, json={"status": "success"}),
    ]
    with RtpmClient(
        "http://rtpm.test", token="k1", transport=_mock(responses, seen), sleep=slept.append, clock=lambda: 1000.0
    ) as c:
        assert c.push("cpu", 1.0, labels={"host": "a"}) == {"status": "success"}
    assert slept == [2.0, 1.0]
    assert len(seen) == 3
    assert all(r.headers["authorization"] == "Bearer k1" for r in seen)
    # The same timestamp on every attempt: a retried push cannot store a second sample.
    assert {json.loads(r.content)["timestamp"] for r in seen} == {1000.0}


def test_client_gives_up_and_reports_the_error() -> None:
    seen: list[httpx.Request] = []
    responses = [httpx.Response(503, json={"error": {"code": "overloaded", "message": "full"}})] * 3
    with RtpmClient("http://rtpm.test", transport=_mock(list(responses), seen), retries=2, sleep=lambda _: None) as c:
        with pytest.raises(RtpmClientError) as info:
            c.push("cpu", 1.0)
    assert (info.value.status, info.value.code) == (503, "overloaded")
    assert len(seen) == 3

    bad = [httpx.Response(400, json={"status": "error", "errorType": "bad_data", "error": "parse error"})]
    with RtpmClient("http://rtpm.test", transport=_mock(bad, []), sleep=lambda _: None) as c:
        with pytest.raises(RtpmClientError) as info:
            c.query("sum(")
    assert (info.value.status, info.value.code, info.value.message) == (400, "bad_data", "parse error")


def test_relative_times() -> None:
    assert parse_when("now", now=1000.0) == 1000.0
    assert parse_when("-5m", now=1000.0) == 700.0
    assert parse_when("now-1h", now=7200.0) == 3600.0
    assert parse_when("1700000000") == 1700000000.0
    assert parse_when("2026-11-27T10:00:00Z") == "2026-11-27T10:00:00Z"


def _rtpm(server: RtpmServer, token: str, *args: str, stdin: str | None = None) -> object:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTPM_")}
    env.update(RTPM_URL=server.url, RTPM_TOKEN=token)
    proc = subprocess.run(
        [sys.executable, "-m", "rtpm", *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, f"rtpm {' '.join(args)}: {proc.stderr}"
    return json.loads(proc.stdout)


@pytest.mark.integration
def test_cli_walkthrough(server_factory: Callable[..., RtpmServer], tmp_path: Path) -> None:
    server = server_factory(env={"RTPM_ADMIN_PASSWORD": ADMIN_PASSWORD})
    with RtpmClient(server.url) as c:
        token = c.login("admin", ADMIN_PASSWORD)

    # Without a credential the server refuses, and the CLI says so.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTPM_")} | {"RTPM_URL": server.url}
    refused = subprocess.run(
        [sys.executable, "-m", "rtpm", "push", "cli_cpu", "1"], env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 1 and "401" in refused.stderr

    out = _rtpm(server, token, "push", "cli_cpu", "91.5", "-l", "host=web-1", "--type", "gauge", "--unit", "percent")
    assert out["status"] == "success"  # type: ignore[index]
    now = time.time()
    batch = [{"name": "cli_cpu", "value": v, "labels": {"host": "web-2"}, "timestamp": now - 30 + v} for v in (1, 2)]
    (tmp_path / "batch.json").write_text(json.dumps({"metrics": batch}))
    assert _rtpm(server, token, "push", "--file", str(tmp_path / "batch.json"))["metrics_count"] == 2  # type: ignore[index]

    instant = _rtpm(server, token, "query", "max by (host) (cli_cpu)")
    hosts = {r["metric"]["host"]: r["value"][1] for r in instant["result"]}  # type: ignore[index]
    assert hosts == {"web-1": "91.5", "web-2": "2"}
    ranged = _rtpm(server, token, "query", "cli_cpu", "--start", "now-5m", "--end", "now", "--step", "15s")
    assert ranged["resultType"] == "matrix" and len(ranged["result"]) == 2  # type: ignore[index]
    seed = _rtpm(server, token, "query", "--metric", "cli_cpu", "--start=-5m", "-l", "host=web-2")
    assert [p["value"] for s in seed["series"] for p in s["data_points"]] == [1, 2]  # type: ignore[index]

    rule = _rtpm(
        server, token, "alerts", "create", "--name", "cpu_high", "--metric", "cli_cpu", "--condition", ">",
        "--threshold", "90", "--severity", "critical",
    )  # fmt: skip
    assert rule["name"] == "cpu_high"  # type: ignore[index]
    assert [r["name"] for r in _rtpm(server, token, "alerts", "rules")] == ["cpu_high"]  # type: ignore[union-attr]
    assert isinstance(_rtpm(server, token, "alerts", "active"), list)
    assert "alerts" in _rtpm(server, token, "alerts", "history")  # type: ignore[operator]
