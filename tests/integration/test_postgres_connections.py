"""A pooled PostgreSQL connection whose operation was cancelled or broke is discarded, not handed
to the next user mid-operation (asyncpg's "cannot switch to state 12; another operation is in
progress" around restarts and timeouts, issue 16)."""

from __future__ import annotations

import asyncio

import pytest

from rtpm.errors import StorageError, StorageUnavailable
from rtpm.model.labels import Matcher, MatchType, make_labels
from rtpm.model.samples import WriteBatch
from rtpm.storage.postgres import PostgresStorage

pytestmark = pytest.mark.integration


async def test_a_connection_cancelled_mid_query_is_not_reused(pg_dsn: str, pg_schema: str) -> None:
    storage = PostgresStorage(pg_dsn, schema=pg_schema, pool_size=1)
    await storage.open()
    try:
        pids = []
        with pytest.raises(StorageUnavailable):
            async with storage._conn() as conn:  # noqa: SLF001 - the pool is what is tested
                pids.append(conn.get_server_pid())
                await asyncio.wait_for(conn.fetchval("SELECT pg_sleep(5)"), 0.2)
        async with storage._conn() as conn:  # noqa: SLF001
            assert conn.get_server_pid() != pids[0]  # the only pooled connection was replaced
        # and the storage works on at once
        b = WriteBatch("t")
        b.add(make_labels("m", {}), 1_000, 1.0)
        assert await storage.write([b]) == 1
        found = await storage.querier("t", 0, 2_000).select([Matcher("__name__", MatchType.EQUAL, "m")])
        assert [s.values.tolist() for s in found] == [[1.0]]
    finally:
        await storage.close()


async def test_a_statement_the_server_refuses_keeps_its_connection(pg_dsn: str, pg_schema: str) -> None:
    storage = PostgresStorage(pg_dsn, schema=pg_schema, pool_size=1)
    await storage.open()
    try:
        pids = []
        with pytest.raises(StorageError):
            async with storage._conn() as conn:  # noqa: SLF001
                pids.append(conn.get_server_pid())
                await conn.fetchval("SELECT 1/0")
        async with storage._conn() as conn:  # noqa: SLF001
            assert conn.get_server_pid() == pids[0]
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await storage.close()
