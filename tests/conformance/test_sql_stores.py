"""The SQL seam under the stores (`storage/sql.py`) and the dashboard store over it: the same
behaviour on both backends (the `storage` fixture is parametrized)."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from rtpm.errors import AlreadyExists
from rtpm.storage.base import Storage
from rtpm.storage.dashboards import Dashboard
from rtpm.storage.sql import Executor


@pytest.fixture
def engine() -> str:
    """Nothing here depends on the storage engine: the rows engine."""
    return "rows"


def executor(storage: Storage) -> Executor:
    return cast(Executor, storage._sql)  # type: ignore[attr-defined]  # the seam itself, under test


def board(id_: str, title: str, at: int, **spec: object) -> Dashboard:
    return Dashboard("t1", id_, title, dict(spec), at, at)


async def test_dashboards_are_created_replaced_listed_and_deleted(storage: Storage) -> None:
    store = storage.dashboards
    assert await store.list_dashboards("t1") == []
    first = await store.put_dashboard(board("d1", "Latency", 1000, panels=[{"q": "up"}]))
    assert first == board("d1", "Latency", 1000, panels=[{"q": "up"}])
    await store.put_dashboard(board("d2", "CPU", 1500))
    replaced = await store.put_dashboard(Dashboard("t1", "d1", "Zlatency", {"panels": []}, 2000, 2000))
    assert replaced == Dashboard("t1", "d1", "Zlatency", {"panels": []}, 1000, 2000)  # keeps created_ms
    assert [d.id for d in await store.list_dashboards("t1")] == ["d2", "d1"]  # by title
    assert await store.list_dashboards("t2") == []
    assert await store.get_dashboard("t1", "d1") == replaced
    assert await store.get_dashboard("t2", "d1") is None
    assert await store.delete_dashboard("t1", "d1")
    assert not await store.delete_dashboard("t1", "d1")
    assert [d.id for d in await store.list_dashboards("t1")] == ["d2"]


_INSERT = "INSERT INTO dashboards (tenant, id, title, spec, created_ms, updated_ms) VALUES ($1, $2, $3, '{}', $4, $4)"


async def ids(sql: Executor) -> list[str]:
    return [r[0] for r in await sql.fetch("SELECT id FROM dashboards WHERE tenant = $1 ORDER BY id", "t1")]


async def test_a_placeholder_used_twice_is_one_argument(storage: Storage) -> None:
    sql = executor(storage)
    assert await sql.execute(_INSERT, "t1", "a", "A", 7) == 1
    row = await sql.fetchrow("SELECT created_ms, updated_ms FROM dashboards WHERE id = $1", "a")
    assert row is not None and (row[0], row[1]) == (7, 7)
    assert await sql.fetchval("SELECT count(*) FROM dashboards WHERE tenant = $1 AND tenant = $1", "t1") == 1
    assert await sql.fetchval("SELECT id FROM dashboards WHERE id = $1", "none") is None
    assert await sql.fetchrow("SELECT id FROM dashboards WHERE id = $1", "none") is None


async def test_a_broken_unique_key_is_already_exists_and_the_executor_goes_on(storage: Storage) -> None:
    sql = executor(storage)
    await sql.execute(_INSERT, "t1", "a", "A", 1)
    for _ in range(3):  # more than once: no connection is lost or left in a failed state
        with pytest.raises(AlreadyExists):
            await sql.execute(_INSERT, "t1", "a", "again", 2)
    await sql.executemany(_INSERT, [("t1", "b", "B", 3), ("t1", "c", "C", 3)])
    assert await ids(sql) == ["a", "b", "c"]


async def test_a_transaction_commits_at_its_end_and_rolls_back_on_an_error(storage: Storage) -> None:
    sql = executor(storage)
    async with sql.transaction() as tx:
        await tx.execute(_INSERT, "t1", "a", "A", 1)
        assert await tx.fetchval("SELECT count(*) FROM dashboards WHERE tenant = $1", "t1") == 1
    with pytest.raises(RuntimeError):
        async with sql.transaction() as tx:
            await tx.execute(_INSERT, "t1", "b", "B", 1)
            raise RuntimeError("boom")
    with pytest.raises(AlreadyExists):
        async with sql.transaction() as tx:
            await tx.execute(_INSERT, "t1", "c", "C", 1)
            await tx.execute(_INSERT, "t1", "a", "A", 1)
    assert await ids(sql) == ["a"]


async def test_a_nested_transaction_is_a_savepoint(storage: Storage) -> None:
    sql = executor(storage)
    async with sql.transaction() as tx:
        await tx.execute(_INSERT, "t1", "a", "A", 1)
        with pytest.raises(RuntimeError):
            async with tx.transaction() as inner:
                await inner.execute(_INSERT, "t1", "b", "B", 1)
                raise RuntimeError("boom")
        async with tx.transaction() as inner:
            await inner.execute(_INSERT, "t1", "c", "C", 1)
    assert await ids(sql) == ["a", "c"]


async def test_writes_beside_a_transaction_are_kept_when_it_rolls_back(storage: Storage) -> None:
    """A write made outside a transaction while it is open (on SQLite it waits for the writer
    thread the transaction holds) neither fails nor joins it."""
    sql = executor(storage)
    with pytest.raises(RuntimeError):
        async with sql.transaction() as tx:
            await tx.execute(_INSERT, "t1", "in", "In", 1)
            beside = asyncio.ensure_future(sql.execute(_INSERT, "t1", "beside", "Beside", 1))
            await asyncio.sleep(0.05)
            raise RuntimeError("boom")
    assert await beside == 1
    assert await ids(sql) == ["beside"]


async def test_a_cancelled_transaction_rolls_back_and_frees_the_executor(storage: Storage) -> None:
    sql = executor(storage)
    started = asyncio.Event()

    async def stuck() -> None:
        async with sql.transaction() as tx:
            await tx.execute(_INSERT, "t1", "in", "In", 1)
            started.set()
            await asyncio.Event().wait()

    task = asyncio.ensure_future(stuck())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await sql.execute(_INSERT, "t1", "after", "After", 1)
    assert await ids(sql) == ["after"]


async def test_a_sample_write_during_a_transaction_waits_and_both_commit(storage: Storage) -> None:
    """The sample path's group commit and a store's transaction never interleave (on SQLite the
    write waits for the writer thread the transaction holds); both are kept."""
    from rtpm.model.labels import Matcher, MatchType, make_labels
    from rtpm.model.samples import WriteBatch

    sql = executor(storage)
    b = WriteBatch("t1")
    b.add(make_labels("up", {"job": "a"}), 1_000, 1.0)
    async with sql.transaction() as tx:
        await tx.execute(_INSERT, "t1", "in", "In", 1)
        write = asyncio.ensure_future(storage.write([b]))
        await asyncio.sleep(0.05)
        await tx.execute(_INSERT, "t1", "in2", "In2", 1)
    assert await write == 1
    assert await ids(sql) == ["in", "in2"]
    found = await storage.querier("t1", 0, 2_000).select([Matcher("__name__", MatchType.EQUAL, "up")])
    assert [(s.labels, s.ts_ms.tolist(), s.values.tolist()) for s in found] == [(b.series[0], [1_000], [1.0])]


async def test_tsdb_status_counts_a_tenant_or_all(storage: Storage) -> None:
    """MaintenanceStore.status, written once over the executor, with the backend's table sizes."""
    from rtpm.model.labels import make_labels
    from rtpm.model.samples import WriteBatch

    batches = []
    for tenant, names in (("t1", ["up", "up", "cpu"]), ("t2", ["mem"])):
        b = WriteBatch(tenant)
        for i, name in enumerate(names):
            b.add(make_labels(name, {"i": str(i)}), 1_000, 1.0)
            b.add(make_labels(name, {"i": str(i)}), 2_000, 2.0)
        batches.append(b)
    assert await storage.write(batches) == 8
    one = await storage.maintenance.status("t1", top=1)
    assert (one.series_count, one.raw_samples, one.chunk_samples, one.chunks) == (3, 6, 0, 0)
    assert one.top_metrics == [("up", 2)]
    every = await storage.maintenance.status(None)
    assert (every.series_count, every.raw_samples, every.top_metrics) == (4, 8, [("up", 2), ("cpu", 1), ("mem", 1)])
    assert every.bytes_by_table["series"] > 0 and every.wal_records == 0
