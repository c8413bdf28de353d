"""`rtpm serve` keeps idle HTTP connections longer than senders keep theirs (Prometheus: 90 s), so
a sender reusing an idle connection never meets one the server has closed (an EOF error)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest

from rtpm.settings import Settings
from tests._server import RtpmServer

pytestmark = pytest.mark.integration

PROMETHEUS_IDLE_SECONDS = 90


def test_the_default_keep_alive_is_above_what_prometheus_uses() -> None:
    assert Settings(_env_file=None).keep_alive_seconds > PROMETHEUS_IDLE_SECONDS  # type: ignore[call-arg]


def _get(sock: socket.socket, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: rtpm\r\nConnection: keep-alive\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += sock.recv(4096)
    return head


def test_an_idle_connection_outlives_uvicorns_default(server_factory: Callable[..., RtpmServer]) -> None:
    # uvicorn closes idle connections after 5 s by default; with RTPM_KEEP_ALIVE_SECONDS=9 the
    # connection must still answer after 7 s idle, and be closed by the server after 12 s.
    server = server_factory({"RTPM_KEEP_ALIVE_SECONDS": "9"})
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        assert _get(sock, "/health/live").startswith(b"HTTP/1.1 200")
        time.sleep(7)
        assert _get(sock, "/health/live").startswith(b"HTTP/1.1 200")
        time.sleep(12)
        sock.settimeout(5)
        assert sock.recv(1) == b""  # closed by the server once idle past the setting
