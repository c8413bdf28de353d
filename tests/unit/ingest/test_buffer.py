"""WriteBuffer: group commit over a real SQLite storage; bounded; every waiter hears its outcome."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from rtpm.errors import OverloadedError, StorageUnavailable
from rtpm.ingest.buffer import WriteBuffer
from rtpm.model.labels import Matcher, make_labels
from rtpm.model.samples import WriteBatch
from rtpm.settings import WriteBufferSettings
from rtpm.storage.sqlite import SqliteStorage

T0 = 1_795_000_000_000


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    s = SqliteStorage(tmp_path / "b.db")
    await s.open()
    yield s
    await s.close()


def batch(n: int, offset: int = 0, series: str = "a") -> WriteBatch:
    b = WriteBatch("t")
    for i in range(n):
        b.add(make_labels("m", {"s": series}), T0 + offset + i, float(offset + i))
    return b


async def stored(storage: SqliteStorage) -> int:
    return sum(len(s.ts_ms) for s in await storage.querier("t", 0, 2**62).select([Matcher.equal("__name__", "m")]))


async def test_concurrent_requests_share_commits(sqlite: SqliteStorage) -> None:
    buf = WriteBuffer(sqlite, WriteBufferSettings(flush_interval_seconds=0.01))
    commits: list[int] = []
    buf.on_commit(lambda bs: commits.append(len(bs)))
    await buf.start()
    results = await asyncio.gather(*(buf.submit(batch(10, offset=i * 10)) for i in range(50)))
    await buf.close()
    assert results == [10] * 50
    assert await stored(sqlite) == 500
    assert sum(commits) == 50 and len(commits) < 50, "requests were not grouped into shared commits"


async def test_full_buffer_refuses_with_retry_after_and_stores_only_accepted(sqlite: SqliteStorage) -> None:
    buf = WriteBuffer(
        sqlite, WriteBufferSettings(max_pending_samples=100, retry_after_seconds=2, flush_interval_seconds=0.05)
    )
    await buf.start()
    outcomes = await asyncio.gather(*(buf.submit(batch(40, offset=i * 40)) for i in range(10)), return_exceptions=True)
    await buf.close()
    accepted = [o for o in outcomes if o == 40]
    refused = [o for o in outcomes if isinstance(o, OverloadedError)]
    assert refused, "the buffer never refused work"
    assert len(accepted) + len(refused) == 10
    assert all(o.retry_after_seconds == 2 and "write buffer full" in str(o) for o in refused)
    assert await stored(sqlite) == 40 * len(accepted)


async def test_storage_failure_reaches_every_waiter_and_buffer_recovers(sqlite: SqliteStorage) -> None:
    class Flaky:
        """The real storage, with an outage switched on and off by the test (the outer edge)."""

        def __init__(self) -> None:
            self.down = True

        async def write(self, batches: Sequence[WriteBatch]) -> int:
            if self.down:
                raise StorageUnavailable("database is down")
            return await sqlite.write(batches)

    flaky = Flaky()
    buf = WriteBuffer(flaky, WriteBufferSettings())  # type: ignore[arg-type]
    await buf.start()
    outcomes = await asyncio.gather(*(buf.submit(batch(5, offset=i * 5)) for i in range(4)), return_exceptions=True)
    assert all(isinstance(o, StorageUnavailable) for o in outcomes)
    assert buf.pending_samples == 0
    flaky.down = False
    assert await buf.submit(batch(5, offset=100)) == 5
    await buf.close()
    assert await stored(sqlite) == 5


async def test_close_flushes_pending_and_then_refuses(sqlite: SqliteStorage) -> None:
    buf = WriteBuffer(sqlite, WriteBufferSettings(flush_interval_seconds=0.05))
    await buf.start()
    tasks = [asyncio.create_task(buf.submit(batch(10, offset=i * 10))) for i in range(5)]
    await asyncio.sleep(0)
    await buf.close()
    assert [await t for t in tasks] == [10] * 5
    assert await stored(sqlite) == 50
    with pytest.raises(OverloadedError):
        await buf.submit(batch(1))


async def test_a_failing_hook_does_not_fail_the_write(sqlite: SqliteStorage) -> None:
    buf = WriteBuffer(sqlite, WriteBufferSettings())
    seen: list[int] = []
    hooks: list[Callable[[Sequence[WriteBatch]], None]] = [lambda bs: 1 / 0, lambda bs: seen.append(len(bs))]
    for h in hooks:
        buf.on_commit(h)
    await buf.start()
    assert await buf.submit(batch(3)) == 3
    await buf.close()
    assert seen == [1]
