"""The `Executor` on SQLite, over SqliteStorage's threads: a query (a statement starting with
SELECT) runs on a reader thread, anything else on the one writer thread and its connection, in
autocommit as before. A transaction holds the writer thread from `BEGIN IMMEDIATE` to its
`COMMIT` or `ROLLBACK`: its statements are handed to that thread one by one, so every other write
of the process waits its turn behind it, as it would behind one long write.

Inside a transaction use only the executor it yields: a write through any other would wait for
the writer thread the transaction holds."""

from __future__ import annotations

import asyncio
import queue
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar

from rtpm.errors import AlreadyExists, StorageError, StorageUnavailable
from rtpm.storage.sql import SQLITE, Row, is_read

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], T]

_UNIQUE = {sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY}


class Runner(Protocol):
    """Runs `fn` with a connection on one of the storage's threads (SqliteStorage._read/_write)."""

    def __call__(self, fn: Callable[[sqlite3.Connection], T], /) -> Awaitable[T]: ...


def storage_error(exc: sqlite3.Error) -> StorageError:
    """The RTPM error for a driver error (a locked or unreadable database is unavailable)."""
    if isinstance(exc, sqlite3.OperationalError):
        return StorageUnavailable(f"sqlite: {exc}")
    return StorageError(f"sqlite: {exc}")


def _statement(sql: str, run: Callable[[sqlite3.Connection, str], T]) -> Op[T]:
    """`run(conn, sql)` with `sql` in SQLite's placeholders; a broken unique key is AlreadyExists."""
    text = SQLITE.sql(sql)

    def op(conn: sqlite3.Connection) -> T:
        try:
            return run(conn, text)
        except sqlite3.IntegrityError as exc:
            if exc.sqlite_errorcode in _UNIQUE:
                raise AlreadyExists(f"sqlite: {exc}") from exc
            raise

    return op


class _Statements:
    """The five calls, each made of one `Op` handed to `_run`."""

    dialect = SQLITE

    async def _run(self, sql: str, op: Op[T]) -> T:
        raise NotImplementedError

    def timed(self, seconds: float) -> Self:
        return self

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return await self._run(sql, _statement(sql, lambda c, q: c.execute(q, args).fetchall()))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        # every row is stepped through, so an INSERT ... RETURNING has finished when this returns
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else row[0]

    async def execute(self, sql: str, *args: Any) -> int:
        return await self._run(sql, _statement(sql, lambda c, q: c.execute(q, args).rowcount))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        def run(conn: sqlite3.Connection, text: str) -> None:
            conn.executemany(text, rows)

        await self._run(sql, _statement(sql, run))


class SqliteExecutor(_Statements):
    """Statements are not timed out: one waits for the writer thread as long as it takes."""

    def __init__(self, read: Runner, write: Runner) -> None:
        self._read = read
        self._write = write

    async def _run(self, sql: str, op: Op[T]) -> T:
        return await (self._read if is_read(sql) else self._write)(op)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Transaction]:
        loop = asyncio.get_running_loop()
        tx = _Transaction(loop)
        held = asyncio.ensure_future(self._write(tx.hold))
        try:
            await asyncio.wait((tx.begun, held), return_when=asyncio.FIRST_COMPLETED)
            if not tx.begun.done():
                await held  # BEGIN failed: raises its (mapped) error
        except BaseException:
            tx.jobs.put(_ROLLBACK)
            raise
        try:
            yield tx
        except BaseException:
            tx.jobs.put(_ROLLBACK)
            with suppress(Exception):
                await asyncio.shield(held)
            raise
        tx.jobs.put(_COMMIT)
        await held


_COMMIT = "COMMIT"
_ROLLBACK = "ROLLBACK"


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():  # its caller was cancelled meanwhile
        return
    if exc is None:
        fut.set_result(result)
    else:
        fut.set_exception(exc)


class _Transaction(_Statements):
    """The executor of one transaction on the writer thread; `hold` is what that thread runs."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.begun: asyncio.Future[None] = loop.create_future()
        self.jobs: queue.SimpleQueue[tuple[Op[Any], asyncio.Future[Any]] | str] = queue.SimpleQueue()
        self._savepoints = 0

    def hold(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._loop.call_soon_threadsafe(_settle, self.begun, None, None)
            while True:
                job = self.jobs.get()
                if job == _COMMIT:
                    conn.execute("COMMIT")
                    return
                if job == _ROLLBACK:
                    break
                assert not isinstance(job, str)
                op, fut = job
                try:
                    result, exc = op(conn), None
                except Exception as e:
                    result, exc = None, e
                self._loop.call_soon_threadsafe(_settle, fut, result, exc)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("ROLLBACK")

    async def _run(self, sql: str, op: Op[T]) -> T:
        fut: asyncio.Future[T] = self._loop.create_future()
        self.jobs.put((op, fut))
        try:
            return await fut
        except sqlite3.Error as exc:
            raise storage_error(exc) from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Transaction]:
        self._savepoints += 1
        name = f"rtpm_sp{self._savepoints}"
        await self.execute(f"SAVEPOINT {name}")
        try:
            yield self
        except BaseException:
            await self.execute(f"ROLLBACK TO {name}")
            await self.execute(f"RELEASE {name}")
            raise
        await self.execute(f"RELEASE {name}")


if TYPE_CHECKING:
    from rtpm.storage.sql import Executor

    _e: type[Executor] = SqliteExecutor
    _t: type[Executor] = _Transaction
