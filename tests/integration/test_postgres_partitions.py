"""PostgreSQL keeps samples in daily partitions, made ahead of need and on demand."""

from __future__ import annotations

import time

import pytest

from rtpm.model.labels import make_labels
from rtpm.model.samples import WriteBatch
from rtpm.storage.postgres import DAY_MS, PostgresStorage, partition_name

pytestmark = pytest.mark.integration


async def test_partitions_are_made_ahead_and_on_demand(pg_dsn: str, pg_schema: str) -> None:
    storage = PostgresStorage(pg_dsn, schema=pg_schema, partition_days_ahead=3)
    await storage.open()
    try:
        today = int(time.time() * 1000) // DAY_MS
        made = await storage.partitions()
        assert [partition_name(d) for d in range(today - 1, today + 4)] == made
        b = WriteBatch("t")
        b.add(make_labels("old", {}), (today - 9) * DAY_MS + 5, 1.0)
        b.add(make_labels("old", {}), (today - 9) * DAY_MS - 5, 2.0)  # the day before
        assert await storage.write([b]) == 2
        made = await storage.partitions()
        assert partition_name(today - 9) in made and partition_name(today - 10) in made
        # a second storage object (another process) sees and reuses the same partitions
        other = PostgresStorage(pg_dsn, schema=pg_schema, partition_days_ahead=3)
        await other.open()
        await other.write([b])
        await other.close()
        assert await storage.partitions() == made
    finally:
        await storage.close()
