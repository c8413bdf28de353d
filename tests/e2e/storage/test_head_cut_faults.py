"""The head engine killed in the middle of a chunk cut, on both backends (issue 14, acceptance 2).

Four clients ingest without pause into one `rtpm serve` with the head engine while it is killed
twice, each time by SIGKILL at one step of the cut of a closed window into chunks (RTPM_TEST_FAULT,
storage/_faults.py): after writing the chunks, and halfway through deleting the WAL records they
cover. A last start cuts for real. Then every sample answered 201 is there exactly once, and of every request never answered
either all samples or none.

The cut is made due at a chosen moment whatever the time a start takes: a window of 60 s; a first
start with a late grace (which delays the cut of a window past its end) of about ten minutes, so
the head starts well in the past; at each restart the grace that makes the cut of the head's first
window due a few seconds later. The jobs run every second, their lease lasts 3 s (a dead leader's
lease runs out quickly)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import httpx
import pytest

from tests._server import RtpmServer
from tests.e2e.storage._clients import IngestClients

pytestmark = pytest.mark.integration

WINDOW_S = 60
DUE_AFTER_S = 5.0  # the cut becomes due this long after a kill (a restart takes 3-5 s here)
BATCH = 100
STEP_S = 0.005  # between the timestamps of one client's consecutive samples (ahead of the clock)

JOBS = {
    "RTPM_STORAGE_ENGINE": "head",
    "RTPM_MAINTENANCE__CHUNK_WINDOW_SECONDS": str(WINDOW_S),
    "RTPM_MAINTENANCE__SAFETY_SECONDS": "0",
    "RTPM_MAINTENANCE__COMPACTION_INTERVAL_SECONDS": "1",
    "RTPM_MAINTENANCE__ROLLUP_INTERVAL_SECONDS": "1",
    "RTPM_MAINTENANCE__LEASE_SECONDS": "3",
    "RTPM_LIMITS__MAX_POINTS_PER_SERIES": "1000000",
}


def _grace_for(due_at: float, cut_to: int) -> str:
    """The late grace that makes the cut to `cut_to` (a window edge) due at `due_at`, not before:
    the cut reaches the window edge at or below `now - grace`."""
    return str(due_at - cut_to)


def _run_until_fault(server: RtpmServer, point: str, due_at: float) -> None:
    """Start `server` armed at `point`, wait for it to kill itself there."""
    server.env["RTPM_TEST_FAULT"] = point
    marker = f"rtpm test fault {point}: SIGKILL"
    try:
        server.start()
    except RuntimeError:  # killed itself before it was ready (a slow start): still the point tested
        assert marker in server.log(), server.log()
        return
    assert server.proc is not None
    server.proc.wait(timeout=due_at - time.time() + 30)
    assert marker in server.log(), f"the server did not die at {point}:\n{server.log()}"


def _cut_done(server: RtpmServer) -> bool:
    """A compaction that did something has finished (the killed ones never logged one)."""
    return any("job_done" in line and "compaction" in line for line in server.log_path.read_text().splitlines())


def _compressed_samples(server: RtpmServer) -> int:
    r = httpx.get(server.url + "/api/v1/status/tsdb", headers=server.headers, timeout=30)
    assert r.status_code == 200, r.text
    return int(r.json()["data"]["rtpm"]["compressed"]["samples"])


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_sigkill_during_a_chunk_cut_loses_and_doubles_nothing(
    server_factory: Callable[..., RtpmServer], backend_env: dict[str, str]
) -> None:
    # A first start with a late grace of about 10 minutes: the head starts at the window edge
    # below now - grace, 15-45 s inside that window for a start that takes up to 30 s.
    t0 = time.time()
    head_start = math.floor(t0 / WINDOW_S) * WINDOW_S - 10 * WINDOW_S
    first_cut = head_start + WINDOW_S  # the edge every cut below reaches, until one commits
    env = backend_env | JOBS | {"RTPM_MAINTENANCE__LATE_GRACE_SECONDS": str(t0 - head_start - 15)}
    server = server_factory(env=env)
    server.api_key  # noqa: B018 - made once, before the clients share it
    base = head_start + 30.0  # the clients' samples start inside the first window to be cut
    with IngestClients(server, "cut_fault", base, step_s=STEP_S, batch=BATCH) as clients:
        clients.wait_for(4 * BATCH)
        # Killed after writing the chunks, then halfway through deleting the WAL records: each start
        # makes the same cut (the one before rolled back) due a little after it.
        for point in ("cut:after_chunks", "cut:mid_truncate"):
            due = time.time() + DUE_AFTER_S
            server.env["RTPM_MAINTENANCE__LATE_GRACE_SECONDS"] = _grace_for(due, first_cut)
            server.kill()
            _run_until_fault(server, point, due)

        # A last start without a fault cuts every closed window while the clients go on.
        del server.env["RTPM_TEST_FAULT"]
        server.env["RTPM_MAINTENANCE__LATE_GRACE_SECONDS"] = "0"
        server.start()
        deadline = time.monotonic() + 30
        while not _cut_done(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _cut_done(server), f"the last start did not cut:\n{server.log()}"
        clients.wait_for(4 * BATCH)  # and the clients go on after it
    assert _compressed_samples(server) > 0, "no window was cut into chunks"

    clients.check(server)
    # and the restarts kept the clients' samples coming in, through the phases
    assert len(clients.acked) >= 4 * 2 * BATCH
