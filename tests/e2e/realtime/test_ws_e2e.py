"""WS /ws/metrics end to end: a real `rtpm serve`, the `websockets` client, writes over HTTP."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests._realtime import recv_json, recv_until, series_values, subscribe
from tests._server import RtpmServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["rows", "head"])
def server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[RtpmServer]:
    """One server per storage engine for the module (each test uses its own metric names): live
    delivery is the same whichever engine commits the samples."""
    tmp: Path = tmp_path_factory.mktemp("ws-e2e")
    env = {"RTPM_DATA_DIR": str(tmp / "data"), "RTPM_STORAGE_ENGINE": request.param}
    srv = RtpmServer(env=env, log_path=tmp / "server.log")
    srv.start()
    yield srv
    srv.stop()


def ws_url(server: RtpmServer, token: str | None = None) -> str:
    url = server.url.replace("http://", "ws://") + "/ws/metrics"
    return f"{url}?token={token}" if token else url


async def ingest(server: RtpmServer, items: list[dict[str, object]]) -> None:
    async with httpx.AsyncClient(timeout=30) as c:
        r = await c.post(server.url + "/api/v1/metrics/batch", json={"metrics": items}, headers=server.headers)
    assert r.status_code == 201, r.text


async def test_subscriber_receives_exactly_the_matching_samples_until_it_unsubscribes(server: RtpmServer) -> None:
    cpu, done = f"cpu_{uuid.uuid4().hex[:8]}", f"done_{uuid.uuid4().hex[:8]}"
    async with websockets.connect(ws_url(server), additional_headers=server.headers) as ws:
        hello = await recv_json(ws)
        assert hello["type"] == "connection" and hello["tenant"] == "default" and "timestamp" in hello
        sub = await subscribe(
            ws,
            {
                "subscription": "metrics",
                "metrics": [cpu],
                "matchers": [{"name": "host", "type": "=~", "value": "web-.*"}, 'env!="dev"'],
            },
        )
        await subscribe(ws, {"subscription": "metrics", "metrics": [done]})
        await ingest(
            server,
            [
                {"name": cpu, "value": 1.0, "labels": {"host": "web-1", "env": "prod"}},
                {"name": cpu, "value": 2.0, "labels": {"host": "web-2"}},
                {"name": cpu, "value": 3.0, "labels": {"host": "web-3", "env": "dev"}},
                {"name": cpu, "value": 4.0, "labels": {"host": "db-1"}},
                {"name": f"{cpu}_other", "value": 5.0, "labels": {"host": "web-1"}},
            ],
        )
        await ingest(server, [{"name": done, "value": 1.0}])  # committed after the batch above: a sentinel
        _, before = await recv_until(ws, lambda m: m["type"] == "metric" and m["series"]["__name__"] == done)
        assert all("timestamp" in m for m in before)
        assert series_values(before) == {
            ((("__name__", cpu), ("env", "prod"), ("host", "web-1")), 1.0),
            ((("__name__", cpu), ("host", "web-2")), 2.0),
        }

        await ws.send(json.dumps({"type": "unsubscribe", "data": {"id": sub["id"]}}))
        reply, _ = await recv_until(ws, lambda m: m["type"] == "unsubscribed")
        assert reply["ids"] == [sub["id"]]
        await ingest(server, [{"name": cpu, "value": 9.0, "labels": {"host": "web-1"}}])
        await ingest(server, [{"name": done, "value": 2.0}])
        _, before = await recv_until(ws, lambda m: m["type"] == "metric" and m["samples"][0]["value"] == 2.0)
        assert [m for m in before if m["type"] == "metric"] == []


async def test_bad_messages_get_errors_and_the_connection_stays(server: RtpmServer) -> None:
    async with websockets.connect(ws_url(server, server.api_key)) as ws:  # ?token= works like the header
        assert (await recv_json(ws))["type"] == "connection"
        for bad in (
            "{nope",
            json.dumps({"type": "dance"}),
            json.dumps({"type": "subscribe", "data": {"subscription": "x"}}),
        ):
            await ws.send(bad)
            err = await recv_json(ws)
            assert err["type"] == "error" and err["message"] and "timestamp" in err
        await ws.send(b"\x00binary")
        assert (await recv_json(ws))["type"] == "error"
        await ws.send(json.dumps({"type": "unsubscribe", "data": {"id": "nope"}}))
        assert (await recv_json(ws))["code"] == "not_found"
        await ws.send(
            json.dumps(
                {"type": "subscribe", "data": {"subscription": "metrics", "labels": {f"l{i}": "x" for i in range(30)}}}
            )
        )
        err = await recv_json(ws)
        assert err["type"] == "error" and "at most" in err["message"]
        await ws.send(json.dumps({"type": "ping", "data": {"n": 1}}))
        pong = await recv_json(ws)
        assert pong["type"] == "pong" and pong["data"] == {"n": 1}


@pytest.mark.parametrize("token", [None, "not-a-key", "rtpm_bogus_key"], ids=["missing", "garbage", "unknown-key"])
async def test_bad_credentials_are_closed_with_1008_and_no_data(server: RtpmServer, token: str | None) -> None:
    async with websockets.connect(ws_url(server, token)) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await recv_json(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_a_credential_without_alerts_read_cannot_subscribe_to_alerts(server: RtpmServer) -> None:
    admin = {"Authorization": f"Bearer {server.api_key}"}
    async with httpx.AsyncClient(timeout=30) as c:
        r = await c.post(
            server.url + "/api/v1/auth/keys", json={"name": "dash", "scopes": ["metrics:read"]}, headers=admin
        )
    assert r.status_code == 201, r.text
    async with websockets.connect(ws_url(server, r.json()["key"])) as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"type": "subscribe", "data": {"subscription": "alerts"}}))
        err = await recv_json(ws)
        assert err["type"] == "error" and "alerts:read" in err["message"]
        await subscribe(ws, {"subscription": "metrics"})


async def test_with_compression_on_updates_still_arrive_compressed(tmp_path: Path) -> None:
    """permessage-deflate negotiated: the hub writes through the ASGI send path instead of raw frames."""
    srv = RtpmServer(
        env={"RTPM_DATA_DIR": str(tmp_path / "data"), "RTPM_REALTIME__COMPRESSION": "true"},
        log_path=tmp_path / "server.log",
    )
    srv.start()
    try:
        cpu = f"cpu_{uuid.uuid4().hex[:8]}"
        async with websockets.connect(ws_url(srv), additional_headers=srv.headers, compression="deflate") as ws:
            assert ws.response is not None and "permessage-deflate" in ws.response.headers.get(
                "Sec-WebSocket-Extensions", ""
            )
            assert (await recv_json(ws))["type"] == "connection"
            await subscribe(ws, {"subscription": "metrics", "metrics": [cpu]})
            await ingest(srv, [{"name": cpu, "value": float(i), "labels": {"i": str(i)}} for i in range(3)])
            got: list[dict[str, object]] = []
            while len(got) < 3:
                msg, _ = await recv_until(ws, lambda m: m["type"] == "metric")
                got.append(msg)
            assert series_values(got) == {((("__name__", cpu), ("i", str(i))), float(i)) for i in range(3)}
    finally:
        srv.stop()
