"""ConnectionHub: admission and lifecycle of the live connections, and the delivery tick.

The pubsub hands committed samples and alert events to the hub (it implements LiveSink). Each
series is matched once against the subscription index (`realtime.index`); all the samples of a
series that arrive within one tick share one `Update`, offered once to each target connection
(`realtime.connection`, which queues, coalesces and drops) and encoded to JSON once for all of
them. A ticker runs every `batch_interval_seconds`; each connection with something pending hands
its messages, in one call, to its `FrameWriter` (`realtime.writers`), which never blocks. Nothing
here awaits a client.

    hub.py         admission (connection caps), subscribe/unsubscribe (scope checks), on_samples,
                   on_alert, the ticker, close
    connection.py  LiveConnection: one client's subscriptions, bounded queues, lag handling
    index.py       SubscriptionIndex: tenant -> metric name -> subscriptions, the per-series cache
    writers.py     FrameWriter (the contract), TaskWriter (over an async send)
    options.py     HubOptions, HubStats
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog

from rtpm.errors import BadDataError, LimitExceeded, NotFoundError, OverloadedError
from rtpm.model.labels import Labels
from rtpm.model.samples import WriteBatch
from rtpm.realtime.connection import CLOSE_TRY_AGAIN_LATER, LiveConnection, Subscription, Update
from rtpm.realtime.index import SubscriptionIndex, Targets
from rtpm.realtime.options import HubOptions, HubStats
from rtpm.realtime.protocol import Frame, Kind, SubscriptionSpec, encode_frame
from rtpm.realtime.writers import CloseFn, FrameWriter, SendFn, TaskWriter
from rtpm.security.scopes import ALERTS_READ, METRICS_READ

__all__ = [
    "CLOSE_TRY_AGAIN_LATER",
    "CloseFn",
    "ConnectionHub",
    "FrameWriter",
    "HubOptions",
    "HubStats",
    "LiveConnection",
    "SendFn",
    "TaskWriter",
]

log = structlog.get_logger("rtpm.realtime.hub")

# The scope a subscription of each kind needs.
SCOPE_OF_KIND: dict[Kind, str] = {"metrics": METRICS_READ, "alerts": ALERTS_READ}


class ConnectionHub:
    """Implements LiveSink: the pubsub delivers committed samples and alert events here."""

    def __init__(self, opts: HubOptions | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.opts = opts or HubOptions()
        self.stats = HubStats()
        self._clock = clock
        self._index = SubscriptionIndex()
        self._conns: dict[str, LiveConnection] = {}
        self._per_credential: dict[str, int] = {}
        self.dirty: set[LiveConnection] = set()  # to flush on the next tick (connections add themselves)
        self._tick_updates: dict[tuple[str, Labels], Update] = {}
        self._ids = itertools.count(1)
        self._ticker: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    # --- lifecycle ---

    async def start(self, *, ticker: bool = True) -> None:
        if ticker and self._ticker is None:
            self._ticker = asyncio.create_task(self._run_ticker(), name="rtpm-live-ticker")

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            try:
                await self._ticker
            except asyncio.CancelledError:
                pass
            self._ticker = None
        for conn in list(self._conns.values()):
            self.disconnect(conn)
            await conn.stop_sender()
        for task in list(self._closing):
            task.cancel()

    async def close_all(self, code: int, reason: str) -> None:
        """Close every connection from the server side with `code` and wait for the close frames."""
        for conn in list(self._conns.values()):
            self.close_connection(conn, code, reason)
        if self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)

    async def _run_ticker(self) -> None:
        interval = self.opts.batch_interval_seconds
        while True:
            await asyncio.sleep(interval)
            try:
                self.tick()
            except Exception:  # the ticker must survive anything one tick does
                log.exception("live_tick_failed")

    # --- connections ---

    def connect(self, *, tenant: str, credential: str, send: SendFn, close: CloseFn) -> LiveConnection:
        """Admit a connection (OverloadedError past a cap). It writes through `send` (awaited in order
        by a task of its own) unless the caller gives it a direct writer with `use_writer`."""
        opts = self.opts
        if len(self._conns) >= opts.max_connections:
            self.stats.refused += 1
            raise OverloadedError(f"server connection limit reached ({opts.max_connections}); try again later")
        held = self._per_credential.get(credential, 0)
        if held >= opts.max_connections_per_credential:
            self.stats.refused += 1
            raise OverloadedError(
                f"connection limit for this credential reached ({opts.max_connections_per_credential}); "
                "close another connection first"
            )
        conn = LiveConnection(self, f"c{next(self._ids)}", tenant=tenant, credential=credential, send=send, close=close)
        self._conns[conn.id] = conn
        self._per_credential[credential] = held + 1
        self.stats.connections = len(self._conns)
        return conn

    def disconnect(self, conn: LiveConnection) -> None:
        """Forget a connection (idempotent). Its sender is cancelled by stop_sender()/close_connection()."""
        if conn.closed:
            return
        conn.closed = True
        for sub_id in list(conn.subs):
            self._remove(conn, sub_id)
        self._conns.pop(conn.id, None)
        left = self._per_credential.get(conn.credential, 1) - 1
        if left > 0:
            self._per_credential[conn.credential] = left
        else:
            self._per_credential.pop(conn.credential, None)
        self.dirty.discard(conn)
        conn.pending = {}
        conn.alerts.clear()
        conn.control.clear()
        self.stats.connections = len(self._conns)

    def close_connection(self, conn: LiveConnection, code: int, reason: str) -> None:
        """Close from the server side, without waiting for the client."""
        if conn.closed:
            return
        if code == CLOSE_TRY_AGAIN_LATER:
            self.stats.closed_lagging += 1
        log.info("live_connection_closed", conn_id=conn.id, code=code, reason=reason)
        self.disconnect(conn)

        task = asyncio.get_running_loop().create_task(conn.send_close(code, reason), name=f"rtpm-live-close-{conn.id}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    # --- subscriptions ---

    def subscribe(self, conn: LiveConnection, spec: SubscriptionSpec, scopes: Iterable[str]) -> str:
        if conn.closed:
            raise BadDataError("connection is closed")
        needed = SCOPE_OF_KIND[spec.kind]
        if needed not in set(scopes):
            raise BadDataError(f"subscription: the credential lacks the scope {needed!r}")
        if len(conn.subs) >= self.opts.max_subscriptions_per_connection:
            raise LimitExceeded(
                f"at most {self.opts.max_subscriptions_per_connection} subscriptions per connection; unsubscribe first"
            )
        if spec.id is not None:
            if spec.id in conn.subs:
                raise BadDataError(f"data.id: a subscription {spec.id!r} exists already")
            sub_id = spec.id
        else:
            sub_id = conn.new_subscription_id()
        sub = Subscription(sub_id, conn, spec, 1.0 / spec.max_rate if spec.max_rate else 0.0)
        conn.subs[sub_id] = sub
        self._index.add(sub)
        self.stats.subscriptions += 1
        return sub_id

    def unsubscribe(self, conn: LiveConnection, *, sub_id: str | None = None, kind: Kind | None = None) -> list[str]:
        if sub_id is not None:
            if sub_id not in conn.subs:
                raise NotFoundError(f"no subscription {sub_id!r} on this connection")
            ids = [sub_id]
        else:
            ids = conn.subscription_ids(kind)
        for i in ids:
            self._remove(conn, i)
        if not any(s.spec.kind == "metrics" for s in conn.subs.values()):
            conn.pending = {}
            conn.rate_interval.clear()
            conn.last_sent.clear()
        return ids

    def _remove(self, conn: LiveConnection, sub_id: str) -> None:
        sub = conn.subs.pop(sub_id)
        self.stats.subscriptions -= 1
        self._index.remove(sub)

    # --- LiveSink ---

    def on_samples(self, batch: WriteBatch, committed_ms: int) -> None:
        idx = self._index.get(batch.tenant)
        if idx is None or not idx.metric_subs or not batch.refs:
            return
        max_cached = self.opts.match_cache_max_series
        targets: list[Targets | None] = []
        wanted = False
        for labels in batch.series:
            t = idx.targets(labels, max_cached)
            if t.conns:
                targets.append(t)
                wanted = True
            else:
                targets.append(None)
        if not wanted:
            return
        per_series: dict[int, list[tuple[int, float]]] = {}
        for ref, ts, value in zip(batch.refs, batch.ts_ms, batch.values, strict=True):
            if targets[ref] is not None:
                got = per_series.get(ref)
                if got is None:
                    per_series[ref] = [(ts, value)]
                else:
                    got.append((ts, value))
        tenant = batch.tenant
        tick_updates = self._tick_updates
        for ref, samples in per_series.items():
            labels = batch.series[ref]
            key = (tenant, labels)
            update = tick_updates.get(key)
            if update is not None:
                update.samples.extend(samples)  # already offered to its connections this tick
                continue
            update = tick_updates[key] = Update(labels, samples, committed_ms)
            series_targets = targets[ref]
            assert series_targets is not None
            for conn, interval in series_targets.conns:
                conn.offer(labels, update, interval)

    def on_alert(self, tenant: str, event: Mapping[str, Any]) -> None:
        idx = self._index.get(tenant)
        if idx is None or not idx.alerts:
            return
        raw_labels = event.get("labels")
        labels = {str(k): str(v) for k, v in raw_labels.items()} if isinstance(raw_labels, Mapping) else {}
        frame: Frame | None = None
        seen: set[LiveConnection] = set()
        for sub in idx.alerts:
            if sub.conn in seen or (sub.spec.matchers and not sub.matches(labels)):
                continue
            seen.add(sub.conn)
            if frame is None:
                frame = encode_frame({"type": "alert", "alert": dict(event)}, int(self._clock() * 1000))
            sub.conn.offer_alert(frame)

    # --- the tick ---

    def tick(self, now: float | None = None) -> int:
        """Flush every connection with something waiting; returns how many were visited."""
        now = time.monotonic() if now is None else now
        now_ms = int(self._clock() * 1000)
        self._tick_updates = {}
        dirty, self.dirty = self.dirty, set()
        for conn in dirty:
            if not conn.closed:
                conn.flush(now, now_ms)
        self.stats.cached_series = self._index.cached_series()
        return len(dirty)
