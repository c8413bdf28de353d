"""How `rtpm serve` runs WebSockets under uvicorn: keepalive, compression, the abort hook, fd limit."""

from __future__ import annotations

import asyncio
import resource
from typing import Any

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from rtpm.settings import RealtimeSettings

# rtpm.api.routes.ws looks this up in the ASGI scope's extensions.
ABORT_EXTENSION = "rtpm.abort"


class AbortableWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's protocol, plus `scope["extensions"]["rtpm.abort"]`: drop the TCP connection now.

    A client that stops reading fills its socket; a close frame can then never be written, and a
    graceful close waits for the buffer to drain forever. The hub closes such clients by aborting.
    """

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None and self.transport is not None:
            scope.setdefault("extensions", {})[ABORT_EXTENSION] = self.transport.abort


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
