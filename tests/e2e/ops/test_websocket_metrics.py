"""rtpm_websocket_* move with live clients: connections held, messages sent."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import httpx
import pytest
import websockets

from tests._ops import OPEN_ENV
from tests._server import RtpmServer

pytestmark = pytest.mark.integration


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_websocket_metrics_follow_live_clients(server_factory: Callable[..., RtpmServer]) -> None:
    server = server_factory(env=OPEN_ENV)
    url = server.url.replace("http://", "ws://") + "/ws/metrics"
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http, websockets.connect(url) as ws:
        assert json.loads(await ws.recv())["type"] == "connection"
        await ws.send(json.dumps({"type": "subscribe", "data": {"subscription": "metrics"}}))
        r = await http.post("/api/v1/metrics/ingest", json={"name": "ws_metric_probe", "value": 1.0})
        assert r.status_code == 201
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            text = (await http.get("/metrics")).text
            if (
                metric(text, "rtpm_websocket_connections") == 1
                and metric(text, "rtpm_websocket_messages_sent_total") >= 1
            ):
                break
            await asyncio.sleep(0.3)
        else:
            raise AssertionError(
                "rtpm_websocket_* did not move:\n"
                + "\n".join(line for line in text.splitlines() if "websocket" in line)
            )
