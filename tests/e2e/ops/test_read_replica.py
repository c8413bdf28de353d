"""Read scaling on a real streaming replica: the test makes a second PostgreSQL cluster with
`pg_basebackup -R` from the test server (127.0.0.1:5432) and runs it as a hot standby on another
port. Queries are served by the replica when it has caught up; writes go to the primary; while the
replica lags (its replay paused with pg_wal_replay_pause()) answers stay correct: the primary
serves them.

The primary must accept replication connections from 127.0.0.1: a pg_hba.conf line
`host replication all 127.0.0.1/32 trust` (scripts/services.sh adds it), wal_level=replica and
max_wal_senders > 0 (PostgreSQL's defaults)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from rtpm.app.storage import make_storage
from rtpm.model.labels import Matcher, make_labels
from rtpm.model.samples import WriteBatch
from rtpm.settings import Settings
from rtpm.storage.postgres import PostgresStorage
from tests._server import free_port
from tests.conftest import PG_DSN, _unavailable

pytestmark = pytest.mark.integration

PG_BIN = Path("/usr/lib/postgresql/15/bin")
# A hot standby needs these at least as high as on its primary.
_STANDBY_MINIMUMS = (
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
)


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


async def _primary_settings() -> dict[str, str]:
    conn = await asyncpg.connect(PG_DSN)
    try:
        rows = await conn.fetch("SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])", _STANDBY_MINIMUMS)
        return {r[0]: r[1] for r in rows}
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def replica(pg_dsn: str) -> Iterator[str]:
    for tool in (PG_BIN / "postgres", PG_BIN / "pg_basebackup"):
        if not tool.exists():
            _unavailable(str(tool), "not installed (apt-get install postgresql-15)")
    tmp = Path(tempfile.mkdtemp(prefix="rtpm-replica-"))
    data = tmp / "data"
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres", "postgres")
    backup = subprocess.run(
        _as_postgres(
            [
                str(PG_BIN / "pg_basebackup"),
                "--dbname=host=127.0.0.1 port=5432 user=root",
                f"--pgdata={data}",
                "--write-recovery-conf",  # -R: standby.signal and primary_conninfo
                "--wal-method=stream",
                "--checkpoint=fast",
                "--no-sync",  # a throwaway copy: fsync would cost seconds
                "--no-manifest",
            ]
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if backup.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        _unavailable(
            "a replica made with pg_basebackup",
            f"{backup.stderr.strip()} -- the primary needs `host replication all 127.0.0.1/32 trust` in "
            "pg_hba.conf (scripts/services.sh adds it), wal_level=replica and max_wal_senders > 0",
        )
    for name, text in (
        ("postgresql.conf", ""),  # Debian keeps the primary's in /etc; everything is on the command line
        ("pg_hba.conf", "local all all trust\nhost all all 127.0.0.1/32 trust\n"),
        ("pg_ident.conf", ""),
    ):
        (data / name).write_text(text)
        if os.geteuid() == 0:
            shutil.chown(data / name, "postgres", "postgres")
    port = free_port()
    minimums = asyncio.run(_primary_settings())
    args = [
        str(PG_BIN / "postgres"),
        "-D",
        str(data),
        "-p",
        str(port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        f"unix_socket_directories={tmp}",
        "-c",
        "hot_standby=on",
        "-c",
        "fsync=off",
        "-c",
        "shared_buffers=32MB",
    ]
    for name, value in minimums.items():
        args += ["-c", f"{name}={value}"]
    log = open(tmp / "replica.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(_as_postgres(args), stdout=log, stderr=subprocess.STDOUT)
    dsn = f"postgresql://root@127.0.0.1:{port}/test"

    async def in_recovery() -> bool:
        try:
            conn = await asyncpg.connect(dsn, timeout=2)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        try:
            return bool(await conn.fetchval("SELECT pg_is_in_recovery()"))
        finally:
            await conn.close()

    try:
        deadline = time.monotonic() + 60
        while not asyncio.run(in_recovery()):
            assert proc.poll() is None, (tmp / "replica.log").read_text()
            assert time.monotonic() < deadline, "the replica did not start:\n" + (tmp / "replica.log").read_text()
            time.sleep(0.2)
        yield dsn
    finally:
        pid_file = data / "postmaster.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)  # fast shutdown
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
async def storage(pg_dsn: str, pg_schema: str, replica: str) -> AsyncIterator[PostgresStorage]:
    # The rows engine: its samples are rows the test can count on the lagging replica (the head
    # engine reads recent samples from its own memory, caught up from the primary's WAL).
    s = PostgresStorage(
        pg_dsn,
        schema=pg_schema,
        read_dsns=[replica],
        application_name=f"rtpm-{uuid.uuid4().hex[:8]}",
        engine="rows",
    )
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def _lag(primary: str, replica: str) -> int:
    """Bytes of WAL the replica has not replayed yet."""
    p = await asyncpg.connect(primary)
    r = await asyncpg.connect(replica)
    try:
        flushed = await p.fetchval("SELECT pg_current_wal_flush_lsn()::text")
        return int(await r.fetchval("SELECT pg_wal_lsn_diff($1::text::pg_lsn, pg_last_wal_replay_lsn())", flushed))
    finally:
        await p.close()
        await r.close()


UP = Matcher.equal("__name__", "up")


async def _values(storage: PostgresStorage, start: int) -> dict[str, list[float]]:
    series = await storage.querier("default", start, start + 60_000).select([UP])
    return {dict(s.labels)["job"]: [float(v) for v in s.values] for s in series}


async def _served_by_replica(storage: PostgresStorage, start: int, want: dict[str, list[float]]) -> None:
    """Query until one read is served by the replica (the primary may be busy with other tests'
    writes, so the replica can be a moment behind at any check); every answer must be `want`."""
    deadline = time.monotonic() + 30
    before = storage.reads["replica"]
    while storage.reads["replica"] == before:
        assert await _values(storage, start) == want
        assert time.monotonic() < deadline, f"no query was served by the replica: {storage.reads}"
        await asyncio.sleep(0.05)


async def test_queries_use_the_replica_and_stay_correct_while_it_lags(
    storage: PostgresStorage, pg_dsn: str, pg_schema: str, replica: str
) -> None:
    start = int(time.time() * 1000) - 60_000
    first = WriteBatch("default")
    first.add(make_labels("up", {"job": "a"}), start, 1.0)
    await storage.write([first])  # written to the primary (the replica is read-only)
    await _served_by_replica(storage, start, {"a": [1.0]})
    names = await storage.metric_names("default")
    assert [m.name for m in names] == ["up"]

    r = await asyncpg.connect(replica)
    try:
        app = storage._app_name  # the replica pool's connections are named <app>-read
        assert await r.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", f"{app}-read")
        await r.execute("SELECT pg_wal_replay_pause()")
        try:
            later = WriteBatch("default")
            later.add(make_labels("up", {"job": "a"}), start + 10_000, 2.0)
            later.add(make_labels("up", {"job": "b"}), start + 10_000, 5.0)  # a new series as well
            await storage.write([later])
            # The replica lags: it does not have the new rows ...
            assert await _lag(pg_dsn, replica) > 0
            on_replica = await r.fetchval(f'SELECT count(*) FROM "{pg_schema}".samples')
            assert on_replica == 1
            # ... and the answers are still complete: the primary serves them.
            primary_reads = storage.reads["primary"]
            assert await _values(storage, start) == {"a": [1.0, 2.0], "b": [5.0]}
            assert storage.reads["primary"] > primary_reads
        finally:
            await r.execute("SELECT pg_wal_replay_resume()")
    finally:
        await r.close()
    # Caught up again: the replica serves the query, with the new rows.
    await _served_by_replica(storage, start, {"a": [1.0, 2.0], "b": [5.0]})


async def test_settings_give_storage_its_replicas(pg_dsn: str, replica: str, tmp_path: Path) -> None:
    settings = Settings(_env_file=None, database_url=pg_dsn, database_read_url=f"{replica}, {replica}")  # type: ignore[call-arg]
    storage = make_storage(settings)
    assert isinstance(storage, PostgresStorage)
    assert [r.dsn for r in storage._replicas] == [replica, replica]
