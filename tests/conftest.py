"""Shared fixtures. Integration fixtures read RTPM_TEST_POSTGRES_DSN and RTPM_TEST_REDIS_URL
(defaults: the local servers); when one is unreachable the tests that need it skip locally and
fail under CI=true.

The layout: `unit/` mirrors `src/rtpm/` (in process, SQLite at most), `conformance/` runs the
storage contract on both backends, `integration/` runs our code in process against real
PostgreSQL, Redis or Celery, `e2e/` drives `rtpm serve` subprocesses and real peers (Prometheus,
vmagent, Alertmanager, the OpenTelemetry SDK, Chromium). Everything under `integration/` and
`e2e/` is marked `integration`, so the quick loop `-m "not integration and not slow"` leaves it out."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from rtpm.settings import Settings
from rtpm.storage.base import Storage
from tests._server import RtpmServer

# Fixture sets shared across the layout (unit/, integration/, e2e/): an in-process app with a granted
# client, a pusher with read-back helpers, an app with auth on and API keys of chosen scopes.
pytest_plugins = ["tests._app", "tests._keys", "tests._pusher"]

PG_DSN = os.environ.get("RTPM_TEST_POSTGRES_DSN", "postgresql://root@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("RTPM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _per_worker_redis(url: str) -> str:
    """Under pytest-xdist each worker gets its own Redis database (15, 14, ... from the given
    one down), so that rate-limit counters and Celery queues of tests running side by side
    never meet."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return url
    base, _, db = url.rpartition("/")
    return f"{base}/{(int(db or 0) - int(worker[2:])) % 16}"


REDIS_URL = _per_worker_redis(REDIS_URL)
_SERVER_DIRS = ("integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests under integration/ and e2e/ need servers: mark them `integration` by where they live."""
    root = Path(__file__).parent
    for item in items:
        parts = Path(str(item.path)).relative_to(root).parts
        if parts and parts[0] in _SERVER_DIRS:
            item.add_marker(pytest.mark.integration)


IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(what: str, why: object) -> None:
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true but unreachable: {why}")
    pytest.skip(f"{what} unreachable: {why}")


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    async def probe() -> None:
        conn = await asyncpg.connect(PG_DSN, timeout=5)
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        _unavailable("PostgreSQL", exc)
    return PG_DSN


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        client.ping()
        client.close()
    except Exception as exc:
        _unavailable("Redis", exc)
    return REDIS_URL


def fresh_schema(pg_dsn: str) -> Iterator[str]:
    """A fresh schema name, its schema dropped when the generator is closed (a fixture's body)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name

    async def drop() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture
def pg_schema(pg_dsn: str) -> Iterator[str]:
    """A fresh, empty schema for one test; dropped afterwards."""
    yield from fresh_schema(pg_dsn)


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    """Settings built from keyword overrides only (the environment is not read for RTPM_*)."""

    def make(**overrides: Any) -> Settings:
        overrides.setdefault("data_dir", tmp_path / "data")
        overrides.setdefault("environment", "test")
        return Settings(_env_file=None, **overrides)  # type: ignore[call-arg]

    return make


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend_settings(
    backend: str, request: pytest.FixtureRequest, settings_factory: Callable[..., Settings]
) -> Settings:
    """Settings for the parametrized backend: SQLite in tmp_path, or PostgreSQL in a fresh schema."""
    if backend == "sqlite":
        return settings_factory()
    dsn = request.getfixturevalue("pg_dsn")
    schema = request.getfixturevalue("pg_schema")
    return settings_factory(database_url=dsn, database_schema=schema)


@pytest.fixture
async def storage(backend_settings: Settings) -> AsyncIterator[Storage]:
    from rtpm.app.storage import make_storage

    s = make_storage(backend_settings)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., RtpmServer]]:
    """Start real `rtpm serve` subprocesses; all are stopped at teardown."""
    started: list[RtpmServer] = []

    def start(env: dict[str, str] | None = None, **kwargs: Any) -> RtpmServer:
        env = dict(env or {})
        env.setdefault("RTPM_DATA_DIR", str(tmp_path / f"data{len(started)}"))
        server = RtpmServer(env=env, log_path=tmp_path / f"server{len(started)}.log", **kwargs)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def backend_env(backend: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """Environment for a server subprocess on the parametrized backend."""
    if backend == "sqlite":
        return {}
    return {
        "RTPM_DATABASE_URL": request.getfixturevalue("pg_dsn"),
        "RTPM_DATABASE_SCHEMA": request.getfixturevalue("pg_schema"),
    }
