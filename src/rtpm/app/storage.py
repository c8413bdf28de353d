"""The storage backend picked from settings: the only place that constructs PostgresStorage or
SqliteStorage. Everything else sees the `Storage` Protocol (storage/base.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from rtpm.settings import Settings
from rtpm.storage.base import Storage


def make_storage(settings: Settings) -> Storage:
    """PostgreSQL when `database_url` is set, else SQLite at `sqlite_path`. Not opened."""
    if settings.database_url:
        from rtpm.storage.postgres import PostgresStorage

        return PostgresStorage(
            settings.database_url,
            schema=settings.database_schema,
            pool_size=settings.database_pool_size,
            partition_days_ahead=settings.partition_days_ahead,
            late_grace_ms=int(settings.maintenance.late_grace_seconds * 1000),
            chunk_window_ms=settings.maintenance.chunk_window_seconds * 1000,
            engine=settings.storage_engine,
            head_max_series=settings.storage_head_max_series,
            wal_poll_seconds=settings.storage_wal_poll_seconds,
            read_dsns=settings.database_read_urls,
            application_name=settings.database_application_name,
        )
    from rtpm.storage.sqlite import SqliteStorage

    return SqliteStorage(
        settings.sqlite_path,
        synchronous=settings.sqlite_synchronous,
        late_grace_ms=int(settings.maintenance.late_grace_seconds * 1000),
        chunk_window_ms=settings.maintenance.chunk_window_seconds * 1000,
        engine=settings.storage_engine,
        head_max_series=settings.storage_head_max_series,
        wal_poll_seconds=settings.storage_wal_poll_seconds,
    )


@asynccontextmanager
async def storage_session(settings: Settings, *, start: bool = False) -> AsyncIterator[Storage]:
    """The configured storage, closed on exit. With `start` it is opened as the server opens it
    (migrated, sample engine started): `build_services` and the job runs. Without, for one-shot
    commands (`rtpm migrate`, `rtpm users`, `rtpm jobs check`): its stores and `migrate()`
    connect on first use, and the sample engine is never started."""
    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    storage = make_storage(settings)
    try:
        if start:
            await storage.open()
        yield storage
    finally:
        await storage.close()
