"""Canaries: the library internals (and version-bound features) RTPM relies on, one test each.

Each test names the code that relies on the internal and the version floor in pyproject.toml that
first has it. When an upgrade removes or renames one, the failure here says what broke and where,
instead of a WebSocket or auth test failing in some less obvious way."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from fastapi import WebSocket
from starlette.requests import HTTPConnection  # public; module level so FastAPI resolves the annotations below


async def _asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:  # never called
    raise AssertionError("not served")


async def _never(*args: Any) -> Any:
    raise AssertionError("not called")


async def test_uvicorn_sansio_websocket_protocol_state() -> None:
    """rtpm.api.ws_server.AbortableWebSocketProtocol subclasses uvicorn's websockets-sansio
    protocol, and DirectFrameWriter reads its connection state (`handshake_complete`,
    `close_sent`, `disconnected`, `conn`, `transport`) to write frames itself (uvicorn>=0.52.1:
    `disconnected` came then)."""
    from uvicorn.config import Config
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from uvicorn.server import ServerState

    from rtpm.api.ws_server import AbortableWebSocketProtocol

    assert issubclass(AbortableWebSocketProtocol, WebSocketsSansIOProtocol)
    config = Config(app=_asgi_app, ws=AbortableWebSocketProtocol, lifespan="off")
    config.load()
    proto = AbortableWebSocketProtocol(config=config, server_state=ServerState(), app_state={})
    for attr in ("handshake_complete", "close_sent", "disconnected", "conn", "transport"):
        assert hasattr(proto, attr), f"uvicorn's WebSocketsSansIOProtocol has no {attr!r} (ws_server.DirectFrameWriter)"
    assert proto.handshake_complete is False and proto.close_sent is False and proto.disconnected is False
    # the websockets ServerProtocol it drives: negotiated extensions and the state machine
    assert hasattr(proto.conn, "extensions") and hasattr(proto.conn, "state")
    params = list(inspect.signature(WebSocketsSansIOProtocol.handle_connect).parameters)
    assert params == ["self", "event"], f"handle_connect signature changed: {params}"


def test_websockets_protocol_state() -> None:
    """rtpm.api.ws_server compares the connection's state with websockets.protocol.State.OPEN."""
    from websockets.protocol import State

    assert State.OPEN.name == "OPEN"


def test_uvicorn_config_takes_the_websocket_options() -> None:
    """rtpm.api.ws_server.uvicorn_ws_options passes these keyword arguments to uvicorn.run()."""
    from uvicorn.config import Config

    from rtpm.api.ws_server import uvicorn_ws_options
    from rtpm.settings import RealtimeSettings

    accepted = inspect.signature(Config.__init__).parameters
    for name in uvicorn_ws_options(RealtimeSettings()):
        assert name in accepted, f"uvicorn.Config no longer takes {name!r} (ws_server.uvicorn_ws_options)"


def test_uvicorn_server_shutdown_hook() -> None:
    """rtpm.api.ws_server.GoingAwayServer overrides uvicorn.Server.shutdown(sockets) and reads
    the app from `self.config.app`."""
    import uvicorn
    from uvicorn.config import Config

    params = list(inspect.signature(uvicorn.Server.shutdown).parameters)
    assert params[:2] == ["self", "sockets"], f"uvicorn.Server.shutdown signature changed: {params}"
    assert inspect.iscoroutinefunction(uvicorn.Server.shutdown)
    server = uvicorn.Server(Config(app=_asgi_app))
    assert server.config.app is _asgi_app


def test_fastapi_dependant_tree() -> None:
    """rtpm.api.auth reads each route's `dependant` tree (`call`, `dependencies`, from
    fastapi.dependencies.models.Dependant) to find the access rule the route declared."""
    from fastapi import APIRouter, Depends
    from fastapi.dependencies.models import Dependant
    from fastapi.routing import APIRoute, APIWebSocketRoute

    def dep() -> None: ...

    router = APIRouter()

    @router.get("/x", dependencies=[Depends(dep)])
    def x() -> None: ...

    @router.websocket("/ws")
    async def ws() -> None: ...

    http, websocket = router.routes
    assert isinstance(http, APIRoute) and isinstance(websocket, APIWebSocketRoute)
    for route in (http, websocket):
        assert isinstance(route.dependant, Dependant), "fastapi routes no longer carry a Dependant (api.auth)"
    assert [d.call for d in http.dependant.dependencies] == [dep]


def test_fastapi_sets_the_matched_route_in_the_scope() -> None:
    """rtpm.api.auth.guard (and the request metrics middleware) find the matched route in
    `scope["route"]`, for HTTP routes and WebSocket routes, included routers too."""
    from fastapi import APIRouter, Depends, FastAPI
    from fastapi.testclient import TestClient

    from rtpm.api.auth import iter_routes

    seen: list[Any] = []

    async def record(conn: HTTPConnection) -> None:
        seen.append(conn.scope.get("route"))

    app = FastAPI(dependencies=[Depends(record)])
    router = APIRouter(prefix="/r")

    @router.get("/x")
    def x() -> dict[str, int]:
        return {"ok": 1}

    @router.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close()

    app.include_router(router)
    with TestClient(app) as client:
        assert client.get("/r/x").status_code == 200
        with client.websocket_connect("/r/ws"):
            pass
    assert len(seen) == 2 and all(r is not None for r in seen), f"scope['route'] not set: {seen}"
    # every included route is found (with its path) by the walk the authorisation audit uses
    assert {(a.path, tuple(sorted(a.methods))) for a in iter_routes(app.routes)} >= {
        ("/r/x", ("GET",)),
        ("/r/ws", ("WS",)),
    }


def test_starlette_websocket_application_state() -> None:
    """rtpm.api.routes.ws reads `websocket.application_state` against WebSocketState."""
    from starlette.websockets import WebSocket, WebSocketState

    assert WebSocketState.DISCONNECTED.name == "DISCONNECTED"
    ws = WebSocket({"type": "websocket", "path": "/", "headers": []}, receive=_never, send=_never)
    assert ws.application_state is WebSocketState.CONNECTING


def test_promql_parser_features() -> None:
    """rtpm.query.promql.ast registers functions the parser lacks (`register_extra_functions`,
    `Function`: promql-parser>=0.11), walks the tree (`walk`) and reads binary fill modifiers
    (`fill_values`: >=0.10)."""
    import promql_parser as pp

    for name in ("register_extra_functions", "Function", "walk", "parse"):
        assert hasattr(pp, name), f"promql_parser.{name} is gone (query.promql.ast)"
    expr = pp.parse("a + on(job) b")
    assert isinstance(expr, pp.BinaryExpr) and expr.modifier is not None
    assert hasattr(expr.modifier, "fill_values"), "promql_parser's BinModifier has no fill_values"


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("redis.asyncio.retry", "Retry"),  # rtpm.realtime.pubsub: no retries on the pub/sub connection
        ("redis.backoff", "NoBackoff"),
    ],
)
def test_redis_retry_parts(module: str, name: str) -> None:
    import importlib

    assert hasattr(importlib.import_module(module), name), f"{module}.{name} is gone (realtime.pubsub)"
