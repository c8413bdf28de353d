"""How `rtpm serve` runs WebSockets under uvicorn: keepalive, compression, the abort hook, fd limit."""

from __future__ import annotations

import asyncio
import resource
import struct
from collections.abc import Sequence
from typing import Any

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from rtpm.realtime.protocol import Frame
from rtpm.settings import RealtimeSettings

# rtpm.api.routes.ws looks these up in the ASGI scope's extensions.
ABORT_EXTENSION = "rtpm.abort"
WRITER_EXTENSION = "rtpm.frame_writer"

# Past this many bytes not yet taken by the socket, a connection counts as backed up (asyncio's
# default high-water mark for a transport).
BACKED_UP_BYTES = 64 * 1024


def text_frame(data: bytes) -> bytes:
    """A final, unmasked WebSocket text frame (RFC 6455 section 5.2) carrying `data`."""
    n = len(data)
    if n < 126:
        return bytes((0x81, n)) + data
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + data
    return struct.pack("!BBQ", 0x81, 127, n) + data


class DirectFrameWriter:
    """The hub's FrameWriter for one uvicorn WebSocket connection, bypassing the ASGI send path.

    Each shared `Frame` is framed once (cached on the frame) and every connection it goes to writes
    the same bytes; all the frames of one tick go out in one transport write, never awaited. Only
    offered when no extension (permessage-deflate) was negotiated: the frames are then exactly what
    the websockets state machine would have produced. uvicorn's own writes (pings, pongs, the close
    frame) go to the same transport, always as whole frames, so nothing interleaves.
    """

    __slots__ = ("_proto", "_transport")

    def __init__(self, proto: WebSocketsSansIOProtocol) -> None:
        self._proto = proto
        self._transport = proto.transport

    @property
    def usable(self) -> bool:
        p = self._proto
        return p.handshake_complete and not p.conn.extensions and p.conn.state is State.OPEN

    def write(self, frames: Sequence[Frame]) -> None:
        p, transport = self._proto, self._transport
        if p.close_sent or p.disconnected or transport.is_closing() or p.conn.state is not State.OPEN:
            return  # going away: the receive side reports the disconnect to the route
        parts = []
        for f in frames:
            wire = f.wire
            if wire is None:
                wire = f.wire = text_frame(f.data)
            parts.append(wire)
        transport.write(parts[0] if len(parts) == 1 else b"".join(parts))

    def backed_up(self) -> bool:
        return self._transport.get_write_buffer_size() > BACKED_UP_BYTES


class AbortableWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's protocol, plus two ASGI scope extensions: `rtpm.abort`, drop the TCP connection
    now, and `rtpm.frame_writer`, a DirectFrameWriter for the live hub.

    A client that stops reading fills its socket; a close frame can then never be written, and a
    graceful close waits for the buffer to drain forever. The hub closes such clients by aborting.
    """

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None and self.transport is not None:
            extensions = scope.setdefault("extensions", {})
            extensions[ABORT_EXTENSION] = self.transport.abort
            extensions[WRITER_EXTENSION] = DirectFrameWriter(self)


CLOSE_GOING_AWAY = 1001


class GoingAwayServer(uvicorn.Server):
    """uvicorn's server, which on shutdown first closes the live WebSocket clients with 1001
    ("going away", so they reconnect elsewhere) before uvicorn closes its remaining connections
    (it would send 1012). The write buffer is flushed afterwards by the app's lifespan."""

    async def shutdown(self, sockets: Any = None) -> None:
        services = getattr(getattr(self.config.app, "state", None), "services", None)
        hub = getattr(services, "hub", None)
        if hub is not None:
            try:
                await asyncio.wait_for(hub.close_all(CLOSE_GOING_AWAY, "server shutting down"), timeout=5)
            except TimeoutError:
                pass
        await super().shutdown(sockets)


def uvicorn_ws_options(opts: RealtimeSettings) -> dict[str, Any]:
    """Keyword arguments for uvicorn.run(): protocol pings for idle connections, no compression by default."""
    return {
        "ws": AbortableWebSocketProtocol,
        "ws_ping_interval": opts.idle_ping_seconds,
        "ws_ping_timeout": opts.idle_timeout_seconds,
        "ws_per_message_deflate": opts.compression,
        "ws_max_size": max(opts.max_message_bytes, 4096),
    }


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft open-file limit towards `wanted` (never past the hard limit); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft
