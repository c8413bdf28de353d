"""Fixtures of the PromQL unit tests: an event loop, and an engine over a fresh SQLite store."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from rtpm.model.samples import WriteBatch
from rtpm.query.promql.engine import Engine
from rtpm.storage.sqlite import SqliteStorage


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


@contextmanager
def sqlite_engine(path: Path, loop: asyncio.AbstractEventLoop, batch: WriteBatch) -> Iterator[Engine]:
    """An Engine over a new SQLite store at `path` holding `batch`; the store is closed after."""
    s = SqliteStorage(path)
    loop.run_until_complete(s.open())
    loop.run_until_complete(s.write([batch]))
    try:
        yield Engine(s)
    finally:
        loop.run_until_complete(s.close())
