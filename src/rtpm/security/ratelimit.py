"""Rate limits with the `limits` package: a moving window per (budget, identity).

Counters live in Redis when a URL is configured, so every process shares one budget; otherwise (and
while Redis is unreachable) in this process's memory. A Redis outage never fails a request: the
limiter falls back to per-process counting, says so in `status()`, and tries Redis again shortly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError as LimitsStorageError
from redis.asyncio import ConnectionPool

from rtpm.settings import RateLimitSettings

log = structlog.get_logger("rtpm.security")

Budget = Literal["ingest", "query", "admin", "anonymous", "login_per_user", "login_per_ip"]
BUDGETS: tuple[Budget, ...] = ("ingest", "query", "admin", "anonymous", "login_per_user", "login_per_ip")
REDIS_RETRY_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_epoch_seconds: float
    retry_after_seconds: float


class RateLimiter:
    def __init__(
        self, settings: RateLimitSettings, *, redis_url: str | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.enabled = settings.enabled
        self._items: dict[str, RateLimitItem] = {b: parse(getattr(settings, b)) for b in BUDGETS}
        self._clock = clock
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._redis: MovingWindowRateLimiter | None = None
        # The Redis connections are ours (limits' storage gives no way to close its client).
        self._redis_pool: ConnectionPool | None = None
        if redis_url:
            plain = redis_url.removeprefix("async+")
            self._redis_pool = ConnectionPool.from_url(plain, socket_timeout=1.0, socket_connect_timeout=1.0)
            client_options: dict[str, Any] = {"connection_pool": self._redis_pool}
            storage = RedisStorage(
                f"async+{plain}",
                implementation="redispy",
                wrap_exceptions=True,
                key_prefix="rtpm:ratelimit",
                **client_options,
            )
            self._redis = MovingWindowRateLimiter(storage)
        self._redis_error: str | None = None
        self._redis_retry_at = 0.0

    def item(self, budget: Budget) -> RateLimitItem:
        return self._items[budget]

    def _limiter(self) -> MovingWindowRateLimiter:
        if self._redis is not None and (self._redis_error is None or time.monotonic() >= self._redis_retry_at):
            return self._redis
        return self._memory

    def _redis_failed(self, exc: BaseException) -> None:
        if self._redis_error is None:
            log.warning("rate_limit_redis_down", error=str(exc), fallback="memory")
        self._redis_error = str(exc) or type(exc).__name__
        self._redis_retry_at = time.monotonic() + REDIS_RETRY_SECONDS

    def _redis_ok(self, limiter: MovingWindowRateLimiter) -> None:
        if limiter is self._redis and self._redis_error is not None:
            log.info("rate_limit_redis_back")
            self._redis_error = None

    async def _run(self, fn: Callable[[MovingWindowRateLimiter], Any]) -> Any:
        limiter = self._limiter()
        if limiter is self._redis:
            try:
                result = await fn(limiter)
            except (LimitsStorageError, OSError, TimeoutError) as exc:
                self._redis_failed(exc)
                return await fn(self._memory)
            self._redis_ok(limiter)
            return result
        return await fn(limiter)

    async def hit(self, budget: Budget, identity: str, *, cost: int = 1) -> RateDecision:
        """Count one request of `identity` against `budget`; allowed=False once the budget is spent."""
        item = self._items[budget]

        async def run(limiter: MovingWindowRateLimiter) -> RateDecision:
            allowed = await limiter.hit(item, budget, identity, cost=cost)
            stats = await limiter.get_window_stats(item, budget, identity)
            return self._decision(item, allowed, stats.remaining, stats.reset_time)

        result: RateDecision = await self._run(run)
        return result

    async def peek(self, budget: Budget, identity: str) -> RateDecision:
        """Whether one more request would be allowed, without counting it."""
        item = self._items[budget]

        async def run(limiter: MovingWindowRateLimiter) -> RateDecision:
            allowed = await limiter.test(item, budget, identity)
            stats = await limiter.get_window_stats(item, budget, identity)
            return self._decision(item, allowed, stats.remaining, stats.reset_time)

        result: RateDecision = await self._run(run)
        return result

    async def clear(self, budget: Budget, identity: str) -> None:
        item = self._items[budget]

        async def run(limiter: MovingWindowRateLimiter) -> None:
            await limiter.clear(item, budget, identity)

        await self._run(run)

    def _decision(self, item: RateLimitItem, allowed: bool, remaining: int, reset_time: float) -> RateDecision:
        now = self._clock()
        retry = 0.0 if allowed else max(1.0, math.ceil(reset_time - now))
        return RateDecision(allowed, item.amount, max(0, remaining), reset_time, retry)

    def status(self) -> dict[str, Any]:
        """For /health/detailed: where counters are kept, and whether Redis is failing."""
        if self._redis is None:
            return {"status": "up", "backend": "memory", "shared": False}
        if self._redis_error is not None:
            return {
                "status": "degraded",
                "backend": "memory",
                "shared": False,
                "error": f"redis unreachable, counting per process: {self._redis_error}",
            }
        return {"status": "up", "backend": "redis", "shared": True}

    async def close(self) -> None:
        if self._redis_pool is not None:
            await self._redis_pool.disconnect()
