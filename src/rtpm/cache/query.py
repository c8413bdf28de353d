"""Query-result cache: in process by default, in Redis when `RTPM_REDIS_URL` is set (shared by
every process).

Only answers about the past are cached: a range that ends before `now - freshness` (samples can
still arrive up to then). Samples written later than that ("late") bump their tenant's
generation, which is part of every key, so no answer computed before a late write is served
after it. A generation is read before the answer is computed, and bumped after the late write
committed; so an answer is either keyed under the old generation, or computed with the sample.
TTLs grow with the age of the data. If Redis goes away, queries run uncached and the cache comes
back by itself; bumps that could not be sent are sent when it returns."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from rtpm.metrics import CacheMetrics
from rtpm.model.samples import WriteBatch
from rtpm.settings import Settings

log = structlog.get_logger("rtpm.cache")


@dataclass(frozen=True)
class CachePolicy:
    freshness_ms: int = 300_000
    min_ttl_seconds: float = 60.0
    max_ttl_seconds: float = 86_400.0

    def ttl(self, end_ms: int, now_ms: int) -> float | None:
        """Seconds to keep an answer for a range ending at `end_ms`; None: do not cache."""
        age_ms = now_ms - end_ms
        if age_ms < self.freshness_ms:
            return None
        return min(self.max_ttl_seconds, max(self.min_ttl_seconds, age_ms / 1000 / 10))


class ResultStore(Protocol):
    backend: str

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None: ...

    async def generation(self, tenant: str) -> int | None:
        """None when the store cannot be reached: do not cache."""
        ...

    async def bump(self, tenant: str) -> None: ...

    async def close(self) -> None: ...


class MemoryResultStore:
    """Bounded by entries and bytes; least recently used first out; TTL checked on read."""

    backend = "memory"

    def __init__(
        self, max_entries: int = 10_000, max_bytes: int = 256 * 1024 * 1024, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0
        self._generations: dict[str, int] = {}

    async def get(self, key: str) -> bytes | None:
        hit = self._items.get(key)
        if hit is None:
            return None
        expires, value = hit
        if expires < self._clock():
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        if len(value) > self._max_bytes // 4:
            return  # one answer may not take over the cache
        if key in self._items:
            self._drop(key)
        self._items[key] = (self._clock() + ttl_seconds, value)
        self._bytes += len(value)
        while self._items and (len(self._items) > self._max_entries or self._bytes > self._max_bytes):
            self._drop(next(iter(self._items)))

    def _drop(self, key: str) -> None:
        _, value = self._items.pop(key)
        self._bytes -= len(value)

    async def generation(self, tenant: str) -> int | None:
        return self._generations.get(tenant, 0)

    async def bump(self, tenant: str) -> None:
        self._generations[tenant] = self._generations.get(tenant, 0) + 1

    async def close(self) -> None:
        self._items.clear()


class RedisResultStore:
    """Keys `rtpm:cache:query:{sha1}` and `rtpm:cache:gen:{tenant}`. Every Redis error makes it
    step aside (misses, no writes) until `retry_seconds` have passed."""

    backend = "redis"

    def __init__(self, url: str, *, retry_seconds: float = 5.0, timeout_seconds: float = 0.5) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
        )
        self._retry = retry_seconds
        self._down_until = 0.0
        self._pending_bumps: set[str] = set()
        self.last_error: str | None = None

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: Exception) -> None:
        if self.available:
            log.warning("query_cache_unavailable", error=str(exc))
        self.last_error = str(exc)
        self._down_until = time.monotonic() + self._retry

    async def _recovered(self) -> None:
        for tenant in list(self._pending_bumps):
            await self._redis.incr(f"rtpm:cache:gen:{tenant}")
            self._pending_bumps.discard(tenant)
        self.last_error = None

    async def get(self, key: str) -> bytes | None:
        if not self.available:
            return None
        try:
            value = await self._redis.get(f"rtpm:cache:query:{key}")
        except Exception as exc:  # redis.RedisError, OSError, timeouts: step aside
            self._failed(exc)
            return None
        return value.encode() if isinstance(value, str) else value

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        if not self.available:
            return
        try:
            await self._redis.set(f"rtpm:cache:query:{key}", value, px=int(ttl_seconds * 1000))
        except Exception as exc:
            self._failed(exc)

    async def generation(self, tenant: str) -> int | None:
        if not self.available:
            return None
        try:
            if self._pending_bumps:
                await self._recovered()
            raw = await self._redis.get(f"rtpm:cache:gen:{tenant}")
        except Exception as exc:
            self._failed(exc)
            return None
        return int(raw) if raw is not None else 0

    async def bump(self, tenant: str) -> None:
        try:
            await self._redis.incr(f"rtpm:cache:gen:{tenant}")
        except Exception as exc:
            self._pending_bumps.add(tenant)
            self._failed(exc)

    async def close(self) -> None:
        await self._redis.aclose()


class QueryCache:
    def __init__(
        self,
        store: ResultStore,
        policy: CachePolicy,
        clock: Callable[[], float] = time.time,
        observer: Callable[[bool], None] | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self._clock = clock
        self._observer = observer
        self.hits = 0
        self.misses = 0

    async def get_or_compute(
        self, tenant: str, parts: Sequence[object], end_ms: int, compute: Callable[[], Awaitable[bytes]]
    ) -> tuple[bytes, bool]:
        """The cached answer, or `compute()` (stored when the range is old enough). Returns
        (answer, hit)."""
        ttl = self.policy.ttl(end_ms, int(self._clock() * 1000))
        gen = await self.store.generation(tenant) if ttl is not None else None
        if ttl is None or gen is None:
            return await compute(), False
        key = hashlib.sha1(repr((tenant, gen, *parts)).encode()).hexdigest()
        cached = await self.store.get(key)
        if self._observer is not None:
            self._observer(cached is not None)
        if cached is not None:
            self.hits += 1
            return cached, True
        self.misses += 1
        value = await compute()
        await self.store.set(key, value, ttl)
        return value, False

    async def on_commit(self, batches: Sequence[WriteBatch]) -> None:
        """Commit hook: a late sample makes its tenant's cached answers unreachable."""
        late_before = int(self._clock() * 1000) - self.policy.freshness_ms
        late_tenants = {b.tenant for b in batches if b.ts_ms and min(b.ts_ms) < late_before}
        for tenant in late_tenants:
            await self.store.bump(tenant)

    async def close(self) -> None:
        await self.store.close()


def make_query_cache(settings: Settings, metrics: CacheMetrics | None = None) -> QueryCache | None:
    q = settings.query
    if not q.cache_enabled:
        return None
    store: ResultStore
    if settings.redis_url:
        store = RedisResultStore(settings.redis_url)
    else:
        store = MemoryResultStore(q.cache_max_entries, q.cache_max_bytes)

    def observe(hit: bool) -> None:
        if metrics is not None:
            (metrics.hit if hit else metrics.miss)("query")

    return QueryCache(store, CachePolicy(freshness_ms=int(q.cache_freshness_seconds * 1000)), observer=observe)
