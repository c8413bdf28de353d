"""Structured logs: every line JSON, one request's lines share its request id (taken from
X-Request-ID or made, and echoed back), and credentials never reach the log."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest

from tests._ops import OPEN_ENV
from tests._server import RtpmServer

pytestmark = pytest.mark.integration


def _log_events(server: RtpmServer) -> list[dict[str, object]]:
    """Every log line as JSON; the plain-text start-up banner (stdout) is the only other output."""
    events = []
    for line in server.log_path.read_text().splitlines():
        if not line.strip() or line.startswith(("RTPM ", "  ")):
            continue
        events.append(json.loads(line))  # fails the test on any line that is not JSON
    return events


def _wait_for(server: RtpmServer, request_id: str, event: str) -> list[dict[str, object]]:
    deadline = time.monotonic() + 10
    while True:
        mine = [e for e in _log_events(server) if e.get("request_id") == request_id]
        if any(e["event"] == event for e in mine) or time.monotonic() > deadline:
            return mine
        time.sleep(0.05)


def test_request_lines_share_the_request_id(server_factory: Callable[..., RtpmServer]) -> None:
    env = OPEN_ENV | {"RTPM_LOG_LEVEL": "debug", "RTPM_LOG_FORMAT": "json"}
    server = server_factory(env=env)
    secret = "s3cr3t-token-value"
    r = httpx.post(
        server.url + "/api/v1/metrics/ingest",
        json={"name": "logged_metric", "value": 1.5, "labels": {"password": secret}},
        headers={"X-Request-ID": "req-ops-42", "Authorization": f"Bearer {secret}"},
    )
    assert r.status_code in (201, 401, 403), r.text
    assert r.headers["x-request-id"] == "req-ops-42"

    mine = _wait_for(server, "req-ops-42", "request_finished")
    events = [e["event"] for e in mine]
    assert "request_started" in events and "request_finished" in events, mine
    finished = next(e for e in mine if e["event"] == "request_finished")
    assert finished["route"] == "/api/v1/metrics/ingest"
    assert finished["status"] == r.status_code
    for e in mine:
        assert {"timestamp", "level", "event"} <= e.keys()

    # Without a header (or with an unusable one) the server makes an id and echoes it.
    r2 = httpx.get(server.url + "/health", headers={"X-Request-ID": "bad id\twith spaces"})
    made = r2.headers["x-request-id"]
    assert made and made != "bad id\twith spaces"
    assert any(e["event"] == "request_finished" for e in _wait_for(server, made, "request_finished"))

    # uvicorn's own lines come through the same JSON pipeline; no line carries the secret or the body.
    text = server.log_path.read_text()
    assert any(e.get("logger", "").startswith("uvicorn") for e in _log_events(server))  # type: ignore[union-attr]
    assert secret not in text
    assert "logged_metric" not in text
