"""The SQL seam under the stores (auth, alerts, dashboards, histograms): one `Executor` Protocol,
one implementation per backend (`postgres_sql.py`, `sqlite_sql.py`) over that backend's own
connections.

SQL is written once, in PostgreSQL's placeholder style (`$1`, `$2`, a number used again means the
same argument); `Dialect.sql()` turns it into SQLite's numbered `?1` once and caches it. What
genuinely differs between the backends (a clock in SQL, a list of ids as one argument) is a
`Dialect` attribute, and the few statements that differ more are small per-dialect dicts in the
store that needs them, keyed by `Dialect.name`.

Errors: a statement breaking a unique key raises `AlreadyExists`; a backend that cannot be
reached raises `StorageUnavailable`; any other driver error `StorageError`. Nothing above an
executor sees a driver's exception.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import orjson

from rtpm.model.labels import Labels, Matcher


class Row(Protocol):
    """A result row, indexable by column position: a tuple from sqlite3, an asyncpg Record."""

    def __getitem__(self, index: int, /) -> Any: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Any]: ...


FindSeries = Callable[[str, Sequence[Matcher]], Awaitable[list[tuple[int, Labels]]]]
"""What a backend gives a store beside its executor: (id, labels) of a tenant's series matching
every matcher (the backend's own lookup, with its labels cache)."""


class Executor(Protocol):
    dialect: Dialect

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def fetchval(self, sql: str, *args: Any) -> Any:
        """The first column of the first row, or None without rows."""
        ...

    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; returns the rows it inserted, updated or deleted."""
        ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    def transaction(self) -> AbstractAsyncContextManager[Executor]:
        """An executor bound to one transaction: committed when the block ends, rolled back when
        it raises. Nested, a savepoint."""
        ...

    def timed(self, seconds: float) -> Executor:
        """This executor with each statement given up after `seconds` (StorageUnavailable), where
        the driver can time a statement out (PostgreSQL); as it is elsewhere."""
        ...


_PLACEHOLDER = re.compile(r"\$(\d+)")


@lru_cache(maxsize=1024)
def _numbered(sql: str) -> str:
    return _PLACEHOLDER.sub(r"?\1", sql)


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str  # "postgres" | "sqlite": the key of a store's per-dialect statements
    numbered: bool  # placeholders become ?1, ?2 (SQLite)
    now_ms: str  # the database's clock in epoch milliseconds, as an SQL expression
    id_list: str  # SQL testing `{col}` against a list of ids passed as the one argument `{param}`

    def sql(self, text: str) -> str:
        """`text` (written with $1, $2 ...) in this dialect's placeholder style."""
        return _numbered(text) if self.numbered else text

    def in_ids(self, column: str, param: str) -> str:
        """SQL true when `column` is one of the ids passed as the one argument `param` (made by `ids()`)."""
        return self.id_list.format(col=column, param=param)

    def ids(self, values: Iterable[int]) -> Any:
        """A list of ids as one statement argument, for `in_ids()`."""
        items = list(values)
        return orjson.dumps(items).decode() if self.numbered else items


POSTGRES = Dialect(
    name="postgres",
    numbered=False,
    now_ms="(extract(epoch FROM clock_timestamp()) * 1000)::bigint",
    id_list="{col} = ANY({param}::bigint[])",
)
SQLITE = Dialect(
    name="sqlite",
    numbered=True,
    now_ms="CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
    id_list="{col} IN (SELECT value FROM json_each({param}))",
)


def is_read(sql: str) -> bool:
    """A plain query (no write in it): SQLite serves these on its reader threads."""
    return sql.lstrip()[:6].upper() == "SELECT"
