"""A client that never reads: the others get every message, server memory stays within the
queue bound, and the slow one is closed (1013, or dropped when not even a close frame fits)."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import websockets
from websockets.client import ClientProtocol
from websockets.protocol import State
from websockets.uri import parse_uri

from tests._realtime import eventually, recv_json, recv_until, subscribe
from tests._server import RtpmServer

pytestmark = pytest.mark.integration

SERIES = 400
LABEL_BYTES = 2000  # each metric message is about 2 KB
BATCHES = 40  # 40 x 400 x 2 KB = 32 MB of messages for each subscriber


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RtpmServer]:
    env = {
        "RTPM_DATA_DIR": str(tmp_path / "data"),
        "RTPM_REALTIME__QUEUE_MAX_SERIES": "100",
        "RTPM_REALTIME__LAG_CLOSE_SECONDS": "2",
        "RTPM_JOBS": "off",
    }
    srv = RtpmServer(env=env, log_path=tmp_path / "server.log")
    srv.start()
    yield srv
    srv.stop()


def open_reader_that_never_reads(server: RtpmServer, name: str) -> tuple[socket.socket, int]:
    """Handshake and subscribe by hand over a socket with a tiny receive buffer, then never read."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.port))
    proto = ClientProtocol(parse_uri(server.url.replace("http://", "ws://") + f"/ws/metrics?token={server.api_key}"))
    proto.send_request(proto.connect())
    sock.sendall(b"".join(proto.data_to_send()))
    while proto.state is State.CONNECTING:
        proto.receive_data(sock.recv(4096))
    assert proto.state is State.OPEN, proto.handshake_exc
    sub = {"type": "subscribe", "data": {"subscription": "metrics", "metrics": [name]}}
    proto.send_text(json.dumps(sub).encode())
    sock.sendall(b"".join(proto.data_to_send()))
    return sock, sock.getsockname()[1]


def server_has_connection_from(server: RtpmServer, port: int) -> bool:
    assert server.proc is not None
    return any(
        c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
        for c in psutil.Process(server.proc.pid).net_connections(kind="tcp")
    )


def rss(server: RtpmServer) -> int:
    assert server.proc is not None
    return int(psutil.Process(server.proc.pid).memory_info().rss)


async def test_a_client_that_never_reads_delays_nobody_stays_bounded_and_is_closed(server: RtpmServer) -> None:
    name, done = f"big_{uuid.uuid4().hex[:8]}", f"done_{uuid.uuid4().hex[:8]}"
    pad = "x" * LABEL_BYTES
    slow, slow_port = open_reader_that_never_reads(server, name)
    try:
        async with httpx.AsyncClient(timeout=60, headers=server.headers) as http:
            fast = [
                await websockets.connect(
                    server.url.replace("http://", "ws://") + "/ws/metrics",
                    additional_headers=server.headers,
                    max_size=2**24,
                )
                for _ in range(2)
            ]
            for ws in fast:
                assert (await recv_json(ws))["type"] == "connection"
                await subscribe(ws, {"subscription": "metrics", "metrics": [name, done]})
            baseline = None
            for n in range(BATCHES):
                items = [{"name": name, "value": float(n), "labels": {"i": str(i), "pad": pad}} for i in range(SERIES)]
                r = await http.post(server.url + "/api/v1/metrics/batch", json={"metrics": items})
                assert r.status_code == 201, r.text
                r = await http.post(server.url + "/api/v1/metrics/ingest", json={"name": done, "value": float(n)})
                assert r.status_code == 201, r.text
                # The fast clients get every sample of the batch, then the sentinel, whatever the slow one does.
                for ws in fast:
                    sentinel, before = await recv_until(
                        ws, lambda m: m["type"] == "metric" and m["series"]["__name__"] == done, within_seconds=30
                    )
                    got = [s for m in before if m["type"] == "metric" for s in m["samples"] if s["value"] == float(n)]
                    assert len(got) == SERIES and sentinel["samples"][-1]["value"] == float(n)
                    assert not [m for m in before if m["type"] == "lagged"]
                if n == 4:
                    baseline = rss(server)  # the slow client's socket buffers are full by now
            assert baseline is not None
            # About 25 MB more went to the slow client after the baseline; the server kept at most its bound.
            growth = rss(server) - baseline
            assert growth < 16 * 2**20, f"server RSS grew by {growth / 2**20:.1f} MiB"
            # It stayed behind for longer than lag_close_seconds: the server has let go of it.
            await eventually(lambda: not server_has_connection_from(server, slow_port), within_seconds=30)
            assert "client too slow" in server.log_path.read_text(errors="replace")
            for ws in fast:
                await ws.close()
    finally:
        slow.close()
