"""Live fan-out between the write path (and alerting) and the WebSocket hub.

Publishers never block: `publish_samples` is the WriteBuffer's on_commit hook and `publish_alert`
is what alerting calls; both put the item on a bounded queue (dropping, and counting, when it is
full) that one background task drains. Subscribers (the hub) implement `LiveSink`.

- MemoryPubSub: one process; the drain task hands items straight to the sinks.
- RedisPubSub: the drain task PUBLISHes to `rtpm:live:samples` / `rtpm:live:alerts` and every
  process, this one included, delivers what its SUBSCRIBE connection receives. While that
  connection is down, a process delivers its own commits locally (so its clients still see its
  own writes), still tries to publish them for the others, and reconnects in the background with
  backoff. Every message carries (origin, sequence); a message delivered locally is skipped when
  it comes back from Redis, so nothing is delivered twice.
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import numpy as np
import orjson
import structlog

from rtpm.model.samples import WriteBatch

SAMPLES_CHANNEL = "rtpm:live:samples"
ALERTS_CHANNEL = "rtpm:live:alerts"

log = structlog.get_logger("rtpm.realtime.pubsub")


class LiveSink(Protocol):
    """Where delivered items go (the ConnectionHub). Both calls are synchronous and quick."""

    def on_samples(self, batch: WriteBatch, committed_ms: int) -> None: ...

    def on_alert(self, tenant: str, event: Mapping[str, Any]) -> None: ...


# What alerting calls on each alert transition: publish_alert(tenant, event). Never blocks.
PublishAlert: TypeAlias = Callable[[str, Mapping[str, Any]], None]


class Publisher(Protocol):
    def publish_samples(self, batches: Sequence[WriteBatch]) -> None: ...

    def publish_alert(self, tenant: str, event: Mapping[str, Any]) -> None: ...


class Subscriber(Protocol):
    def subscribe(self, sink: LiveSink) -> None: ...


class PubSub(Publisher, Subscriber, Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def stats(self) -> PubSubStats: ...


@dataclass
class PubSubStats:
    backend: str
    queued: int = 0
    published: int = 0
    dropped_batches: int = 0
    dropped_samples: int = 0
    delivered_local: int = 0
    delivered_remote: int = 0
    skipped_duplicates: int = 0
    decode_errors: int = 0
    connected: bool = True
    reconnects: int = 0


@dataclass(slots=True)
class _SamplesItem:
    batches: Sequence[WriteBatch]
    committed_ms: int
    samples: int


@dataclass(slots=True)
class _AlertItem:
    tenant: str
    event: Mapping[str, Any]


_Item = _SamplesItem | _AlertItem


class _QueuedPublisher:
    """The bounded queue between the publishers and one drain task."""

    backend = "memory"

    def __init__(self, *, max_queued_samples: int = 1_000_000, max_queued_items: int = 10_000) -> None:
        self._sinks: list[LiveSink] = []
        self._queue: deque[_Item] = deque()
        self._queued_samples = 0
        self._max_samples = max_queued_samples
        self._max_items = max_queued_items
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._stats = PubSubStats(self.backend)

    def subscribe(self, sink: LiveSink) -> None:
        self._sinks.append(sink)

    def publish_samples(self, batches: Sequence[WriteBatch]) -> None:
        """The WriteBuffer on_commit hook: O(1), never blocks, drops (counted) when the queue is full."""
        n = sum(len(b) for b in batches)
        if n == 0:
            return
        if self._queued_samples + n > self._max_samples or len(self._queue) >= self._max_items:
            self._stats.dropped_batches += 1
            self._stats.dropped_samples += n
            return
        self._queue.append(_SamplesItem(batches, int(time.time() * 1000), n))
        self._queued_samples += n
        self._wakeup.set()

    def publish_alert(self, tenant: str, event: Mapping[str, Any]) -> None:
        if len(self._queue) >= self._max_items:
            self._stats.dropped_batches += 1
            return
        self._queue.append(_AlertItem(tenant, event))
        self._wakeup.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name=f"rtpm-live-publish-{self.backend}")

    async def close(self) -> None:
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def stats(self) -> PubSubStats:
        self._stats.queued = len(self._queue)
        return self._stats

    async def _drain(self) -> None:
        while not self._closing:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            item = self._queue.popleft()
            if isinstance(item, _SamplesItem):
                self._queued_samples -= item.samples
            try:
                await self._handle(item)
            except Exception:  # the drain task is a process edge: log and keep going
                log.exception("live_publish_failed")

    async def _handle(self, item: _Item) -> None:
        self._deliver_local(item)

    def _deliver_local(self, item: _Item) -> None:
        self._stats.delivered_local += 1
        for sink in self._sinks:
            if isinstance(item, _SamplesItem):
                for batch in item.batches:
                    sink.on_samples(batch, item.committed_ms)
            else:
                sink.on_alert(item.tenant, item.event)


class MemoryPubSub(_QueuedPublisher):
    """In-process fan-out (embedded mode, and the test double of RedisPubSub)."""

    backend = "memory"


# --- Redis ---


def encode_samples(batches: Sequence[WriteBatch], committed_ms: int, origin: str, seq: int) -> bytes:
    """Columnar and exact (float64 bits kept, so NaN and stale markers survive)."""
    out = []
    for b in batches:
        if not len(b):
            continue
        out.append(
            {
                "t": b.tenant,
                "s": b.series,
                "r": base64.b64encode(np.asarray(b.refs, dtype=np.int32).tobytes()).decode(),
                "ts": base64.b64encode(np.asarray(b.ts_ms, dtype=np.int64).tobytes()).decode(),
                "v": base64.b64encode(np.asarray(b.values, dtype=np.float64).tobytes()).decode(),
            }
        )
    return orjson.dumps({"o": origin, "q": seq, "c": committed_ms, "b": out})


def decode_samples(payload: bytes) -> tuple[str, int, int, list[WriteBatch]]:
    msg = orjson.loads(payload)
    batches = []
    for b in msg["b"]:
        batch = WriteBatch(
            tenant=str(b["t"]),
            series=[tuple((str(k), str(v)) for k, v in s) for s in b["s"]],
            refs=np.frombuffer(base64.b64decode(b["r"]), dtype=np.int32).tolist(),
            ts_ms=np.frombuffer(base64.b64decode(b["ts"]), dtype=np.int64).tolist(),
            values=np.frombuffer(base64.b64decode(b["v"]), dtype=np.float64).tolist(),
        )
        if not (len(batch.refs) == len(batch.ts_ms) == len(batch.values)):
            raise ValueError("column lengths differ")
        if batch.refs and (min(batch.refs) < 0 or max(batch.refs) >= len(batch.series)):
            raise ValueError("series reference out of range")
        batches.append(batch)
    return str(msg["o"]), int(msg["q"]), int(msg["c"]), batches


def encode_alert(tenant: str, event: Mapping[str, Any], origin: str, seq: int) -> bytes:
    return orjson.dumps({"o": origin, "q": seq, "t": tenant, "e": dict(event)}, default=str)


def decode_alert(payload: bytes) -> tuple[str, int, str, dict[str, Any]]:
    msg = orjson.loads(payload)
    event = msg["e"]
    if not isinstance(event, dict):
        raise ValueError("alert event must be an object")
    return str(msg["o"]), int(msg["q"]), str(msg["t"]), event


class RedisPubSub(_QueuedPublisher):
    """Fan-out across processes through Redis pub/sub; local delivery while Redis is away."""

    backend = "redis"

    def __init__(
        self,
        url: str,
        *,
        max_queued_samples: int = 1_000_000,
        max_queued_items: int = 10_000,
        reconnect_max_seconds: float = 5.0,
        socket_timeout_seconds: float = 2.0,
    ) -> None:
        super().__init__(max_queued_samples=max_queued_samples, max_queued_items=max_queued_items)
        self._url = url
        self._origin = uuid.uuid4().hex
        self._seq = 0
        self._reconnect_max = reconnect_max_seconds
        self._socket_timeout = socket_timeout_seconds
        self._connected = False  # our SUBSCRIBE connection is live
        self._next_publish_attempt = 0.0
        self._publish_backoff = 0.1
        # Sequence numbers of our own messages delivered locally (skip them if Redis echoes them).
        self._local_seqs: set[int] = set()
        self._local_order: deque[int] = deque()
        self._client: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._stats.connected = False

    def _make_client(self) -> Any:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        return aioredis.Redis.from_url(
            self._url,
            socket_connect_timeout=self._socket_timeout,
            socket_timeout=self._socket_timeout,
            health_check_interval=5,
            retry=Retry(NoBackoff(), 0),
        )

    async def start(self) -> None:
        self._client = self._make_client()
        self._listener = asyncio.create_task(self._listen(), name="rtpm-live-redis-subscribe")
        await super().start()

    async def close(self) -> None:
        await super().close()
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except asyncio.CancelledError:
                pass
            self._listener = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def connected(self) -> bool:
        return self._connected

    async def _handle(self, item: _Item) -> None:
        self._seq += 1
        seq = self._seq
        if isinstance(item, _SamplesItem):
            channel = SAMPLES_CHANNEL
            payload = encode_samples(item.batches, item.committed_ms, self._origin, seq)
        else:
            channel = ALERTS_CHANNEL
            payload = encode_alert(item.tenant, item.event, self._origin, seq)
        if self._connected:
            if await self._publish(channel, payload):
                return  # Redis brings it back to us and to every other process
        # Our subscription is down: our own clients get it from here, the others through Redis if it answers.
        self._remember_local(seq)
        self._deliver_local(item)
        if time.monotonic() >= self._next_publish_attempt:
            await self._publish(channel, payload)

    async def _publish(self, channel: str, payload: bytes) -> bool:
        from redis.exceptions import RedisError

        try:
            await self._client.publish(channel, payload)
        except (RedisError, OSError) as exc:
            self._next_publish_attempt = time.monotonic() + self._publish_backoff
            self._publish_backoff = min(self._publish_backoff * 2, self._reconnect_max)
            log.debug("live_publish_failed", error=str(exc))
            return False
        self._publish_backoff = 0.1
        self._stats.published += 1
        return True

    def _remember_local(self, seq: int) -> None:
        self._local_seqs.add(seq)
        self._local_order.append(seq)
        while len(self._local_order) > 100_000:
            self._local_seqs.discard(self._local_order.popleft())

    async def _listen(self) -> None:
        from redis.exceptions import RedisError

        backoff = 0.1
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(SAMPLES_CHANNEL, ALERTS_CHANNEL)
                if self._stats.reconnects or not self._connected:
                    log.info("live_redis_subscribed", reconnects=self._stats.reconnects)
                self._connected = self._stats.connected = True
                backoff = 0.1
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is not None and msg.get("type") == "message":
                        self._on_message(msg["channel"], msg["data"])
            except (RedisError, OSError) as exc:
                if self._connected:
                    log.warning("live_redis_lost", error=str(exc))
                self._connected = self._stats.connected = False
            finally:
                self._connected = self._stats.connected = False
                try:
                    await pubsub.aclose()
                except (RedisError, OSError):
                    pass
            self._stats.reconnects += 1
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, self._reconnect_max)

    def _on_message(self, channel: bytes | str, data: bytes) -> None:
        name = channel.decode() if isinstance(channel, bytes) else channel
        try:
            if name == SAMPLES_CHANNEL:
                origin, seq, committed_ms, batches = decode_samples(data)
                if self._is_echo(origin, seq):
                    return
                self._stats.delivered_remote += 1
                for sink in self._sinks:
                    for batch in batches:
                        sink.on_samples(batch, committed_ms)
            elif name == ALERTS_CHANNEL:
                origin, seq, tenant, event = decode_alert(data)
                if self._is_echo(origin, seq):
                    return
                self._stats.delivered_remote += 1
                for sink in self._sinks:
                    sink.on_alert(tenant, event)
        except (ValueError, KeyError, TypeError) as exc:
            self._stats.decode_errors += 1
            log.warning("live_message_undecodable", channel=name, error=str(exc))

    def _is_echo(self, origin: str, seq: int) -> bool:
        if origin == self._origin and seq in self._local_seqs:
            self._local_seqs.discard(seq)
            self._stats.skipped_duplicates += 1
            return True
        return False


if TYPE_CHECKING:
    _m: type[PubSub] = MemoryPubSub
    _r: type[PubSub] = RedisPubSub
