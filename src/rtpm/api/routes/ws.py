"""WS /ws/metrics: live metric updates and alert notifications (HTTP/WebSocket concerns only).

The credential (an `Authorization: Bearer ...` header, or `?token=` since browsers cannot set
headers) is checked before the connection is accepted: a bad one is accepted only to be closed
at once with 1008 and no data; a connection over a cap is closed with 1013. Everything else is the
hub's (`rtpm.realtime.hub`) and the protocol's (`rtpm.realtime.protocol`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, WebSocket
from starlette.websockets import WebSocketState

from rtpm.api.auth import ACCESS_ATTR, AccessRule, authenticate, client_ip
from rtpm.api.ws_server import ABORT_EXTENSION, WRITER_EXTENSION
from rtpm.app.services import Services
from rtpm.errors import AuthError, BadDataError, NotFoundError, OverloadedError, RateLimited, RtpmError
from rtpm.realtime.hub import CloseFn, ConnectionHub, LiveConnection
from rtpm.realtime.protocol import (
    ProtocolLimits,
    Subscribe,
    SubscriptionSpec,
    Unsubscribe,
    encode,
    error_message,
    parse_client_message,
)
from rtpm.security.scopes import ALERTS_READ, METRICS_READ

router = APIRouter(tags=["live"])
log = structlog.get_logger("rtpm.api.ws")

CLOSE_POLICY_VIOLATION = 1008
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class LiveCaller:
    tenant: str
    credential: str  # what the per-credential connection cap counts against
    scopes: frozenset[str]


async def live_caller(websocket: WebSocket) -> LiveCaller | RtpmError:
    """Verify the handshake's credential (header or `?token=`) BEFORE the upgrade is accepted.

    The one call into the security layer. A refusal is returned, not raised: raised before
    `accept()` it would become an HTTP 403, and the protocol promises close code 1008 instead.
    """
    try:
        principal = await authenticate(websocket, budget="query")
    except (AuthError, RateLimited) as exc:
        return exc
    if principal.kind in ("anonymous_dev", "anonymous"):  # no credential: count connections per client address
        return LiveCaller(principal.tenant, f"ip:{client_ip(websocket)}", frozenset(principal.scopes))
    return LiveCaller(principal.tenant, principal.rate_key, frozenset(principal.scopes))


# Declares the route's access rule for the fail-closed guard: an authenticated caller (the scopes,
# metrics:read and alerts:read, are checked per subscription).
setattr(live_caller, ACCESS_ATTR, AccessRule(public=False, scope=None, budget="query"))


def _hub(websocket: WebSocket) -> tuple[Services, ConnectionHub]:
    services: Services = websocket.app.state.services
    hub: ConnectionHub = services.hub
    return services, hub


def _closer(websocket: WebSocket) -> CloseFn:
    async def close(code: int, reason: str) -> None:
        try:
            if websocket.application_state != WebSocketState.DISCONNECTED:
                await asyncio.wait_for(websocket.close(code, reason), CLOSE_TIMEOUT_SECONDS)
                return
        except (TimeoutError, RuntimeError, OSError):
            pass
        abort = websocket.scope.get("extensions", {}).get(ABORT_EXTENSION)
        if callable(abort):
            abort()  # the client does not read: its socket is full, so no close frame can get through

    return close


async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
    await websocket.accept()
    await websocket.close(code, reason[:120])


@router.websocket("/ws/metrics")
async def live_metrics(websocket: WebSocket, caller: Annotated[LiveCaller | RtpmError, Depends(live_caller)]) -> None:
    services, hub = _hub(websocket)
    if isinstance(caller, RtpmError):
        log.info("live_auth_refused", reason=str(caller))
        await _refuse(websocket, CLOSE_POLICY_VIOLATION, str(caller) or "invalid credential")
        return
    if not caller.scopes & {METRICS_READ, ALERTS_READ}:
        await _refuse(websocket, CLOSE_POLICY_VIOLATION, "the credential has neither metrics:read nor alerts:read")
        return

    async def send(frame: str) -> None:
        await websocket.send({"type": "websocket.send", "text": frame})

    try:
        conn = hub.connect(tenant=caller.tenant, credential=caller.credential, send=send, close=_closer(websocket))
    except OverloadedError as exc:
        await _refuse(websocket, CLOSE_TRY_AGAIN_LATER, str(exc))
        return
    try:
        await websocket.accept()
        writer = websocket.scope.get("extensions", {}).get(WRITER_EXTENSION)
        if writer is not None and writer.usable:
            conn.use_writer(writer)  # frames straight onto the socket, no task per connection
        opts = services.settings.realtime
        limits = ProtocolLimits(
            max_matchers=opts.max_matchers_per_subscription,
            max_metric_names=opts.max_metric_names_per_subscription,
            max_message_bytes=opts.max_message_bytes,
        )
        conn.reply(
            encode(
                {
                    "type": "connection",
                    "status": "connected",
                    "connection_id": conn.id,
                    "tenant": caller.tenant,
                    "batch_interval_ms": round(opts.batch_interval_seconds * 1000),
                    "limits": {
                        "subscriptions": opts.max_subscriptions_per_connection,
                        "matchers_per_subscription": opts.max_matchers_per_subscription,
                        "metrics_per_subscription": opts.max_metric_names_per_subscription,
                        "queue_series": opts.queue_max_series,
                    },
                },
                _now_ms(services),
            )
        )
        if opts.subscribe_on_connect and METRICS_READ in caller.scopes:
            # the original RTPM API's clients never subscribe: they are sent every metric
            spec = SubscriptionSpec(kind="metrics")
            sub_id = hub.subscribe(conn, spec, caller.scopes)
            conn.reply(encode({"type": "subscribed", "id": sub_id, "data": spec.describe()}, _now_ms(services)))
        await _receive_loop(websocket, services, hub, conn, caller, limits)
    finally:
        hub.disconnect(conn)
        await conn.stop_sender()


def _now_ms(services: Services) -> int:
    return int(services.clock() * 1000)


async def _receive_loop(
    websocket: WebSocket,
    services: Services,
    hub: ConnectionHub,
    conn: LiveConnection,
    caller: LiveCaller,
    limits: ProtocolLimits,
) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            conn.reply(error_message("bad_message", "send JSON text frames, not binary", _now_ms(services)))
            continue
        try:
            parsed = parse_client_message(text, limits)
            if isinstance(parsed, Subscribe):
                sub_id = hub.subscribe(conn, parsed.spec, caller.scopes)
                reply = {"type": "subscribed", "id": sub_id, "data": parsed.spec.describe()}
            elif isinstance(parsed, Unsubscribe):
                ids = hub.unsubscribe(conn, sub_id=parsed.id, kind=parsed.kind)
                reply = {"type": "unsubscribed", "ids": ids}
            else:
                reply = {"type": "pong"}
                if parsed.data is not None:
                    reply["data"] = parsed.data
            conn.reply(encode(reply, _now_ms(services)))
        except (BadDataError, NotFoundError) as exc:
            conn.reply(error_message(exc.code, str(exc), _now_ms(services)))
