"""ConnectionHub: live subscriptions, matched once per series, delivered through bounded queues.

Matching. Subscriptions are indexed by tenant, then by metric name (plus one "any name" set per
tenant). The first time a series shows up, its targets (the connections whose subscriptions match
it, label matchers checked once) are computed and cached; the cache entries of a metric name are
dropped when a subscription on that name changes. A commit costs one cache lookup per series and
one append per (series, tick): all the samples of a series that arrive within one tick share one
`_Update`, offered once to each target connection and encoded to JSON once for all of them.

Delivery. A ticker runs every `batch_interval_seconds`; each connection with something pending
hands its messages, in one call, to its `FrameWriter`, which never blocks. The API layer gives
each connection a writer straight onto its socket (the shared frames are written as the same
bytes to every connection, one write per connection per tick; no task per connection); a plain
async `send(text)` is wrapped in `TaskWriter` (one task per connection awaiting each send). When a
client falls behind (its writer is backed up: earlier messages not yet taken by the network), a
series' newer update replaces the waiting one (coalescing), at most `queue_max_series` series wait
and newer ones are dropped, and the client gets a `lagged` message with the counts once it catches
up. A client that stays behind for `lag_close_seconds` is closed with 1013. Nothing here awaits a
client.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from rtpm.errors import BadDataError, LimitExceeded, NotFoundError, OverloadedError
from rtpm.model.labels import METRIC_NAME, Labels, metric_name_of
from rtpm.model.samples import WriteBatch
from rtpm.model.time import to_rfc3339
from rtpm.realtime.protocol import Frame, Kind, SubscriptionSpec, encode_frame, json_value
from rtpm.settings import RealtimeSettings

log = structlog.get_logger("rtpm.realtime.hub")

SendFn = Callable[[str], Awaitable[None]]
CloseFn = Callable[[int, str], Awaitable[None]]


class FrameWriter(Protocol):
    """Where one connection's messages go. `write` never blocks and keeps the order; `backed_up`
    says the client has not taken what was written before (the hub then holds back, coalesces,
    drops and eventually closes)."""

    def write(self, frames: Sequence[Frame]) -> None: ...

    def backed_up(self) -> bool: ...


class TaskWriter:
    """A FrameWriter over an async `send(text)`: one task awaits each send in order; backed up
    while a send is in progress or frames wait. On a failed send it calls `on_error`. Its queue,
    event and task are made on the first write (most connections never write through one)."""

    __slots__ = ("_send", "_on_error", "_queue", "_wake", "_task", "sending", "name")

    def __init__(self, send: SendFn, on_error: Callable[[BaseException], None], name: str = "rtpm-live-send") -> None:
        self._send = send
        self._on_error = on_error
        self._queue: deque[Frame] | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.sending = False
        self.name = name

    def write(self, frames: Sequence[Frame]) -> None:
        if self._queue is None or self._wake is None:
            self._queue, self._wake = deque(), asyncio.Event()
        self._queue.extend(frames)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(self._queue, self._wake), name=self.name)
        self._wake.set()

    def backed_up(self) -> bool:
        return self.sending or bool(self._queue)

    async def _run(self, queue: deque[Frame], wake: asyncio.Event) -> None:
        send = self._send
        try:
            while True:
                await wake.wait()
                wake.clear()
                self.sending = True
                while queue:
                    await send(queue.popleft().text)
                self.sending = False
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the socket went away under us (a process edge for this connection)
            self._on_error(exc)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if self._queue is not None:
            self._queue.clear()
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass


CLOSE_TRY_AGAIN_LATER = 1013
METRICS_READ = "metrics:read"
ALERTS_READ = "alerts:read"
_SCOPE_OF: dict[Kind, str] = {"metrics": METRICS_READ, "alerts": ALERTS_READ}


@dataclass(frozen=True, slots=True)
class HubOptions:
    batch_interval_seconds: float = 0.05
    queue_max_series: int = 1000
    queue_max_alerts: int = 100
    queue_max_control: int = 64
    lag_close_seconds: float = 10.0
    max_connections: int = 20_000
    max_connections_per_credential: int = 1000
    max_subscriptions_per_connection: int = 32
    match_cache_max_series: int = 200_000

    @classmethod
    def from_settings(cls, opts: RealtimeSettings) -> HubOptions:
        return cls(
            batch_interval_seconds=opts.batch_interval_seconds,
            queue_max_series=opts.queue_max_series,
            queue_max_alerts=opts.queue_max_alerts,
            lag_close_seconds=opts.lag_close_seconds,
            max_connections=opts.max_connections,
            max_connections_per_credential=opts.max_connections_per_credential,
            max_subscriptions_per_connection=opts.max_subscriptions_per_connection,
            match_cache_max_series=opts.match_cache_max_series,
        )


@dataclass
class HubStats:
    connections: int = 0
    subscriptions: int = 0
    messages_sent: int = 0
    samples_dropped: int = 0
    samples_coalesced: int = 0
    alerts_dropped: int = 0
    closed_lagging: int = 0
    refused: int = 0
    cached_series: int = 0


class _Update:
    """New samples of one series within one tick; shared by every connection that wants them."""

    __slots__ = ("labels", "samples", "committed_ms", "_frame")

    def __init__(self, labels: Labels, samples: list[tuple[int, float]], committed_ms: int) -> None:
        self.labels = labels
        self.samples = samples
        self.committed_ms = committed_ms
        self._frame: Frame | None = None

    def frame(self, now_ms: int) -> Frame:
        if self._frame is None:
            series = dict(self.labels)
            samples = [{"timestamp": to_rfc3339(ts), "value": json_value(v)} for ts, v in self.samples]
            newest_ts, newest_value = max(self.samples, key=lambda p: p[0])
            labels = {k: v for k, v in series.items() if k != METRIC_NAME}
            self._frame = encode_frame(
                {
                    "type": "metric",
                    "series": series,
                    "samples": samples,
                    "committed_at": to_rfc3339(self.committed_ms),
                    # the original RTPM API's message body: one metric, as its clients read it
                    "payload": {
                        "name": series.get(METRIC_NAME, ""),
                        "value": json_value(newest_value),
                        "timestamp": to_rfc3339(newest_ts),
                        "labels": labels,
                    },
                },
                now_ms,
            )
        return self._frame


@dataclass(eq=False, slots=True)
class _Subscription:
    id: str
    conn: LiveConnection
    spec: SubscriptionSpec
    min_interval: float  # seconds between messages per series; 0: every tick

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels.get(m.name, "")) for m in self.spec.matchers)


@dataclass(eq=False, slots=True)
class _Targets:
    """The connections one series goes to, with the shortest interval any of their subscriptions allows."""

    conns: tuple[tuple[LiveConnection, float], ...]


_NO_TARGETS = _Targets(())


@dataclass(eq=False)
class _TenantIndex:
    by_name: dict[str, set[_Subscription]] = field(default_factory=dict)
    any_name: set[_Subscription] = field(default_factory=set)
    alerts: set[_Subscription] = field(default_factory=set)
    cache: dict[str, dict[Labels, _Targets]] = field(default_factory=dict)
    cached: int = 0
    metric_subs: int = 0

    def targets(self, labels: Labels, max_cached: int) -> _Targets:
        name = metric_name_of(labels)
        by_labels = self.cache.get(name)
        if by_labels is None:
            by_labels = self.cache[name] = {}
        hit = by_labels.get(labels)
        if hit is not None:
            return hit
        hit = self._compute(name, labels)
        if self.cached >= max_cached:
            self.cache.clear()
            self.cached = 0
            by_labels = self.cache[name] = {}
        by_labels[labels] = hit
        self.cached += 1
        return hit

    def _compute(self, name: str, labels: Labels) -> _Targets:
        named = self.by_name.get(name)
        if not named and not self.any_name:
            return _NO_TARGETS
        as_dict = dict(labels)
        best: dict[LiveConnection, float] = {}
        for sub in itertools.chain(named or (), self.any_name):
            if sub.spec.matchers and not sub.matches(as_dict):
                continue
            prev = best.get(sub.conn)
            best[sub.conn] = sub.min_interval if prev is None else min(prev, sub.min_interval)
        return _Targets(tuple(best.items())) if best else _NO_TARGETS

    def invalidate(self, names: Iterable[str] | None) -> None:
        if names is None:
            self.cache.clear()
            self.cached = 0
            return
        for n in names:
            dropped = self.cache.pop(n, None)
            if dropped:
                self.cached -= len(dropped)


class LiveConnection:
    """One client as the hub sees it: its subscriptions, its bounded queues and its writer."""

    def __init__(
        self, hub: ConnectionHub, conn_id: str, *, tenant: str, credential: str, send: SendFn, close: CloseFn
    ) -> None:
        self.hub = hub
        self.id = conn_id
        self.tenant = tenant
        self.credential = credential
        self._close = close
        self.subs: dict[str, _Subscription] = {}
        self.pending: dict[Labels, _Update] = {}
        self.rate_interval: dict[Labels, float] = {}
        self.last_sent: dict[Labels, float] = {}
        self.alerts: list[Frame] = []  # lists, not deques: a deque costs ~600 bytes even when empty
        self.control: list[Frame] = []
        self.dropped = 0
        self.coalesced = 0
        self.alerts_dropped = 0
        self.behind_since: float | None = None
        self.closed = False
        self._next_sub = 0
        self._task_writer: TaskWriter | None = TaskWriter(send, self._send_failed, name=f"rtpm-live-send-{conn_id}")
        self.writer: FrameWriter = self._task_writer

    def __repr__(self) -> str:
        return f"LiveConnection({self.id!r}, tenant={self.tenant!r})"

    def use_writer(self, writer: FrameWriter) -> None:
        """Write through `writer` from now on (before anything was written: the API layer's direct
        socket writer, once the handshake has been accepted)."""
        self.writer = writer
        self._task_writer = None

    @property
    def sending(self) -> bool:
        """The client has not taken everything written to it yet."""
        return self.writer.backed_up()

    def _send_failed(self, exc: BaseException) -> None:
        log.debug("live_send_failed", conn_id=self.id, error=repr(exc))
        self.hub.disconnect(self)

    # --- fed by the hub ---

    def offer(self, labels: Labels, update: _Update, interval: float) -> None:
        hub = self.hub
        waiting = self.pending.get(labels)
        if waiting is not None:
            # Still waiting since an earlier tick: behind, or held back by max_rate. Keep the newest.
            if not interval:
                self.coalesced += len(waiting.samples)
                hub.stats.samples_coalesced += len(waiting.samples)
            self.pending[labels] = update
            return
        waiting_series = len(self.pending)
        bound = hub.opts.queue_max_series
        # The bound is on backlog: a client still taking earlier messages keeps at most `bound` series;
        # one that keeps up may take a whole tick's worth (up to ten times that) in one go.
        if waiting_series >= bound and (waiting_series >= bound * 10 or self.writer.backed_up()):
            self.dropped += len(update.samples)
            hub.stats.samples_dropped += len(update.samples)
            return
        self.pending[labels] = update
        if interval:
            self.rate_interval[labels] = interval
        hub._dirty.add(self)

    def offer_alert(self, frame: Frame) -> None:
        if len(self.alerts) >= self.hub.opts.queue_max_alerts:
            del self.alerts[0]
            self.alerts_dropped += 1
            self.hub.stats.alerts_dropped += 1
        self.alerts.append(frame)
        self.hub._dirty.add(self)

    def reply(self, frame: Frame | str) -> None:
        """A direct answer (greeting, subscribed, error, pong): sent at once, ahead of updates."""
        if self.closed:
            return
        if isinstance(frame, str):
            frame = Frame(frame.encode())
        if not self.control and not self.writer.backed_up():
            self.writer.write((frame,))
            self.hub.stats.messages_sent += 1
            return
        if len(self.control) >= self.hub.opts.queue_max_control:
            self.hub.close_connection(self, CLOSE_TRY_AGAIN_LATER, "client does not read its replies")
            return
        self.control.append(frame)
        self.hub._dirty.add(self)

    # --- run by the ticker ---

    def flush(self, now: float, now_ms: int) -> None:
        hub = self.hub
        if self.writer.backed_up():
            if self.behind_since is None:
                self.behind_since = now
            elif now - self.behind_since >= hub.opts.lag_close_seconds:
                hub.close_connection(self, CLOSE_TRY_AGAIN_LATER, "client too slow: stayed behind its updates")
                return
            hub._dirty.add(self)
            return
        self.behind_since = None
        out: list[Frame] = []
        if self.control:
            out.extend(self.control)
            self.control.clear()
        if self.dropped or self.coalesced or self.alerts_dropped:
            lagged: dict[str, Any] = {"type": "lagged", "dropped": self.dropped, "coalesced": self.coalesced}
            if self.alerts_dropped:
                lagged["alerts_dropped"] = self.alerts_dropped
            out.append(encode_frame(lagged, now_ms))
            self.dropped = self.coalesced = self.alerts_dropped = 0
        held: dict[Labels, _Update] | None = None
        if self.rate_interval:
            last_sent = self.last_sent
            for labels, update in self.pending.items():
                interval = self.rate_interval.get(labels)
                if interval:
                    if now - last_sent.get(labels, -1e18) < interval:
                        if held is None:
                            held = {}
                        held[labels] = update
                        continue
                    last_sent[labels] = now
                out.append(update.frame(now_ms))
            if len(last_sent) > hub.opts.queue_max_series * 10:
                last_sent.clear()
        else:
            for update in self.pending.values():
                out.append(update.frame(now_ms))
        if self.alerts:
            out.extend(self.alerts)
            self.alerts.clear()
        if held:
            self.pending = held
            hub._dirty.add(self)
        else:
            self.pending = {}
            self.rate_interval.clear()
        if out:
            writer = self.writer
            writer.write(out)
            hub.stats.messages_sent += len(out)
            if writer.backed_up():
                hub._dirty.add(self)  # look again next tick: not taken by then means behind

    async def stop_sender(self) -> None:
        if self._task_writer is not None:
            await self._task_writer.stop()

    def subscription_ids(self, kind: Kind | None = None) -> list[str]:
        return [sid for sid, s in self.subs.items() if kind is None or s.spec.kind == kind]


class ConnectionHub:
    """Implements LiveSink: the pubsub delivers committed samples and alert events here."""

    def __init__(self, opts: HubOptions | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.opts = opts or HubOptions()
        self.stats = HubStats()
        self._clock = clock
        self._tenants: dict[str, _TenantIndex] = {}
        self._conns: dict[str, LiveConnection] = {}
        self._per_credential: dict[str, int] = {}
        self._dirty: set[LiveConnection] = set()
        self._tick_updates: dict[tuple[str, Labels], _Update] = {}
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
        self._dirty.discard(conn)
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

        async def run() -> None:
            await conn.stop_sender()
            await conn._close(code, reason)

        task = asyncio.get_running_loop().create_task(run(), name=f"rtpm-live-close-{conn.id}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    # --- subscriptions ---

    def subscribe(self, conn: LiveConnection, spec: SubscriptionSpec, scopes: Iterable[str]) -> str:
        if conn.closed:
            raise BadDataError("connection is closed")
        needed = _SCOPE_OF[spec.kind]
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
            conn._next_sub += 1
            sub_id = f"s{conn._next_sub}"
            while sub_id in conn.subs:
                conn._next_sub += 1
                sub_id = f"s{conn._next_sub}"
        sub = _Subscription(sub_id, conn, spec, 1.0 / spec.max_rate if spec.max_rate else 0.0)
        conn.subs[sub_id] = sub
        idx = self._tenants.get(conn.tenant)
        if idx is None:
            idx = self._tenants[conn.tenant] = _TenantIndex()
        if spec.kind == "alerts":
            idx.alerts.add(sub)
        else:
            idx.metric_subs += 1
            if spec.metric_names is None:
                idx.any_name.add(sub)
            else:
                for name in spec.metric_names:
                    idx.by_name.setdefault(name, set()).add(sub)
            idx.invalidate(spec.metric_names)
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
        idx = self._tenants.get(conn.tenant)
        if idx is None:
            return
        if sub.spec.kind == "alerts":
            idx.alerts.discard(sub)
        else:
            idx.metric_subs -= 1
            if sub.spec.metric_names is None:
                idx.any_name.discard(sub)
            else:
                for name in sub.spec.metric_names:
                    subs = idx.by_name.get(name)
                    if subs is not None:
                        subs.discard(sub)
                        if not subs:
                            del idx.by_name[name]
            idx.invalidate(sub.spec.metric_names)
        if not idx.metric_subs and not idx.alerts:
            del self._tenants[conn.tenant]

    # --- LiveSink ---

    def on_samples(self, batch: WriteBatch, committed_ms: int) -> None:
        idx = self._tenants.get(batch.tenant)
        if idx is None or not idx.metric_subs or not batch.refs:
            return
        max_cached = self.opts.match_cache_max_series
        targets: list[_Targets | None] = []
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
            update = tick_updates[key] = _Update(labels, samples, committed_ms)
            t = targets[ref]
            assert t is not None
            for conn, interval in t.conns:
                conn.offer(labels, update, interval)

    def on_alert(self, tenant: str, event: Mapping[str, Any]) -> None:
        idx = self._tenants.get(tenant)
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
        dirty, self._dirty = self._dirty, set()
        for conn in dirty:
            if not conn.closed:
                conn.flush(now, now_ms)
        self.stats.cached_series = sum(i.cached for i in self._tenants.values())
        return len(dirty)
