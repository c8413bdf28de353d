"""The query-result cache: only the past is cached, late writes invalidate, Redis outages degrade
to uncached answers and heal by themselves. In memory and in a real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from rtpm.cache.query import CachePolicy, MemoryResultStore, QueryCache, RedisResultStore, ResultStore
from rtpm.model.labels import make_labels
from rtpm.model.samples import WriteBatch
from tests._proxy import TcpProxy

NOW = 1_800_000_000.0


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> bytes:
        self.calls += 1
        return f"answer-{self.calls}".encode()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[ResultStore]:
    if request.param == "memory":
        yield MemoryResultStore()
        return
    url = request.getfixturevalue("redis_url")
    s = RedisResultStore(url)
    yield s
    await s.close()


def cache_of(store: ResultStore) -> QueryCache:
    return QueryCache(store, CachePolicy(freshness_ms=300_000), clock=lambda: NOW)


def late_batch(tenant: str, ts_ms: int) -> WriteBatch:
    b = WriteBatch(tenant)
    b.add(make_labels("m", {}), ts_ms, 1.0)
    return b


async def test_recent_ranges_are_never_cached(store: ResultStore) -> None:
    cache, compute = cache_of(store), Counter()
    tenant = uuid.uuid4().hex
    end = int(NOW * 1000) - 60_000  # one minute ago: samples may still arrive
    for _ in range(3):
        await cache.get_or_compute(tenant, ("range", "up", 1), end, compute)
    assert compute.calls == 3


async def test_old_ranges_are_served_from_the_cache(store: ResultStore) -> None:
    cache, compute = cache_of(store), Counter()
    tenant = uuid.uuid4().hex
    end = int(NOW * 1000) - 3_600_000
    first, hit1 = await cache.get_or_compute(tenant, ("range", "up", 1), end, compute)
    second, hit2 = await cache.get_or_compute(tenant, ("range", "up", 1), end, compute)
    assert (first, hit1, second, hit2, compute.calls) == (b"answer-1", False, b"answer-1", True, 1)
    # another tenant, or another question, is another key
    await cache.get_or_compute(uuid.uuid4().hex, ("range", "up", 1), end, compute)
    await cache.get_or_compute(tenant, ("range", "up", 2), end, compute)
    assert compute.calls == 3


async def test_a_late_write_invalidates_its_tenant_only(store: ResultStore) -> None:
    cache, compute = cache_of(store), Counter()
    a, b = uuid.uuid4().hex, uuid.uuid4().hex
    end = int(NOW * 1000) - 3_600_000
    await cache.get_or_compute(a, ("q",), end, compute)
    await cache.get_or_compute(b, ("q",), end, compute)
    await cache.on_commit([late_batch(a, int(NOW * 1000) - 1_000)])  # on time: no effect
    await cache.get_or_compute(a, ("q",), end, compute)
    assert compute.calls == 2
    await cache.on_commit([late_batch(a, end - 10)])  # late, inside the cached range
    answer, hit = await cache.get_or_compute(a, ("q",), end, compute)
    assert (answer, hit) == (b"answer-3", False)
    _, hit_b = await cache.get_or_compute(b, ("q",), end, compute)
    assert hit_b


async def test_memory_store_is_bounded() -> None:
    store = MemoryResultStore(max_entries=3, max_bytes=10_000)
    for i in range(10):
        await store.set(f"k{i}", b"x" * 100, 60)
    assert [await store.get(f"k{i}") is not None for i in range(10)] == [False] * 7 + [True] * 3
    await store.set("huge", b"x" * 5000, 60)  # over a quarter of the bytes: not kept
    assert await store.get("huge") is None


async def test_expired_entries_are_not_served() -> None:
    clock = [0.0]
    store = MemoryResultStore(clock=lambda: clock[0])
    await store.set("k", b"v", 10)
    assert await store.get("k") == b"v"
    clock[0] = 11
    assert await store.get("k") is None


@pytest.mark.integration
async def test_redis_outage_degrades_to_uncached_and_heals(redis_url: str) -> None:
    target = urlsplit(redis_url)
    with TcpProxy(target.hostname or "127.0.0.1", target.port or 6379) as proxy:
        store = RedisResultStore(f"redis://127.0.0.1:{proxy.port}{target.path}", retry_seconds=0.2)
        cache, compute = cache_of(store), Counter()
        tenant = uuid.uuid4().hex
        end = int(NOW * 1000) - 3_600_000
        await cache.get_or_compute(tenant, ("q",), end, compute)
        proxy.cut()
        # Redis is gone: answers still come, computed each time; a late write cannot be announced yet
        for _ in range(2):
            answer, hit = await cache.get_or_compute(tenant, ("q",), end, compute)
            assert not hit
        await cache.on_commit([late_batch(tenant, end - 10)])
        assert store.last_error is not None
        proxy.restore()
        await asyncio.sleep(0.3)  # past the retry interval
        # back: the bump held back during the outage is sent first, so the old answer is not served
        answer, hit = await cache.get_or_compute(tenant, ("q",), end, compute)
        assert not hit and answer == f"answer-{compute.calls}".encode()
        _, hit = await cache.get_or_compute(tenant, ("q",), end, compute)
        assert hit
        await store.close()
