"""The `Executor` on PostgreSQL: each call on a connection of PostgresStorage's pool (the primary,
by its `_conn()`, which terminates a connection broken or cancelled mid-statement and maps driver
errors to StorageUnavailable / StorageError); a transaction on one connection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from rtpm.errors import AlreadyExists, RtpmError
from rtpm.storage.sql import POSTGRES, Row

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # A connection as PostgresStorage hands one out: a pool's proxy (asyncpg's stubs type it apart
    # from Connection) or a Connection itself.
    Conn: TypeAlias = asyncpg.Connection | PoolConnectionProxy[asyncpg.Record]
    ConnectionFn = Callable[[], AbstractAsyncContextManager[Conn]]


@contextmanager
def _unique() -> Iterator[None]:
    try:
        yield
    except asyncpg.exceptions.UniqueViolationError as exc:
        raise AlreadyExists(str(exc)) from exc


def _count(status: str) -> int:
    """Rows touched, from asyncpg's status string ("UPDATE 3", "INSERT 0 1")."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except ValueError:
        return 0


class _Bound:
    """The executor of one connection (a transaction's)."""

    dialect = POSTGRES

    def __init__(self, conn: Conn, timeout: float | None) -> None:
        self._c = conn
        self._timeout = timeout

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        with _unique():
            return list(await self._c.fetch(sql, *args, timeout=self._timeout))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        with _unique():
            row: Row | None = await self._c.fetchrow(sql, *args, timeout=self._timeout)
            return row

    async def fetchval(self, sql: str, *args: Any) -> Any:
        with _unique():
            return await self._c.fetchval(sql, *args, timeout=self._timeout)

    async def execute(self, sql: str, *args: Any) -> int:
        with _unique():
            return _count(await self._c.execute(sql, *args, timeout=self._timeout))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with _unique():
            await self._c.executemany(sql, rows, timeout=self._timeout)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Bound]:
        async with self._c.transaction():
            yield self

    def timed(self, seconds: float) -> _Bound:
        return _Bound(self._c, seconds)


class PostgresExecutor:
    dialect = POSTGRES

    def __init__(self, connection: ConnectionFn, timeout: float | None = None) -> None:
        self._connection = connection
        self._timeout = timeout

    @asynccontextmanager
    async def _bound(self) -> AsyncIterator[_Bound]:
        # An RTPM error (AlreadyExists, or a store's own) leaves the connection usable: it is
        # raised once the connection is back in the pool, which ends (terminates) it on any other.
        own: RtpmError | None = None
        async with self._connection() as conn:
            try:
                yield _Bound(conn, self._timeout)
            except RtpmError as exc:
                own = exc
        if own is not None:
            raise own

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self._bound() as b:
            return await b.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        async with self._bound() as b:
            return await b.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self._bound() as b:
            return await b.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._bound() as b:
            return await b.execute(sql, *args)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self._bound() as b:
            await b.executemany(sql, rows)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Bound]:
        async with self._bound() as b, b.transaction():
            yield b

    def timed(self, seconds: float) -> PostgresExecutor:
        return PostgresExecutor(self._connection, seconds)


if TYPE_CHECKING:
    from rtpm.storage.sql import Executor

    _e: type[Executor] = PostgresExecutor
    _b: type[Executor] = _Bound
