"""The head engine killed in the middle of a chunk cut, on both backends (issue 14, acceptance 2).

Four clients ingest without pause into one `rtpm serve` with the head engine while it is killed
three times, each time by SIGKILL at one step of the cut of a closed window into chunks
(RTPM_TEST_FAULT, storage/_faults.py): after writing the chunks, halfway through deleting the WAL
records they cover, and after the commit before the process's head knew. A last start cuts for
real. Then every sample answered 201 is there exactly once, and of every request never answered
either all samples or none.

The cut is made due at a chosen moment: a window of 60 s, and a late grace (which delays the cut
of a window past its end) chosen at each start so the next window closes a few seconds after the
server is up. The jobs run every second, their lease lasts 3 s (a dead leader's lease runs out
quickly)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from tests._server import RtpmServer

pytestmark = pytest.mark.integration

WINDOW_S = 60
DUE_AFTER_S = 8.0  # the cut becomes due this long after a start (a start takes 2-4 s here)
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


class _Clients:
    """Four writers, each its own series, values 0, 1, 2, ... at distinct timestamps; across
    restarts (a refused or unanswered request is noted and the next one sent)."""

    def __init__(self, server: RtpmServer, base: float) -> None:
        self.server = server
        self.base = base
        self.acked: set[tuple[int, int]] = set()
        self.unanswered: list[tuple[int, int]] = []  # (worker, first value) of a batch of BATCH
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(w,)) for w in range(4)]

    def __enter__(self) -> _Clients:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def _run(self, worker: int) -> None:
        seq = 0
        with httpx.Client(base_url=self.server.url, timeout=10, headers=self.server.headers) as c:
            while not self.stop.is_set():
                items = [
                    {
                        "name": "cut_fault",
                        "value": float(seq + i),
                        "labels": {"worker": str(worker)},
                        "timestamp": self.base + (seq + i) * STEP_S,
                    }
                    for i in range(BATCH)
                ]
                try:
                    status = c.post("/api/v1/metrics/batch", json={"metrics": items}).status_code
                except httpx.HTTPError:
                    status = 0
                with self.lock:
                    if status == 201:
                        self.acked.update((worker, seq + i) for i in range(BATCH))
                    else:
                        self.unanswered.append((worker, seq))
                seq += BATCH
                time.sleep(0.05 if status == 201 else 0.2)

    def count(self) -> int:
        with self.lock:
            return len(self.acked)


def _run_until_fault(server: RtpmServer, clients: _Clients | None, point: str, due_at: float) -> None:
    """Start `server` (armed at `point`), wait for it to kill itself there."""
    server.env["RTPM_TEST_FAULT"] = point
    marker = f"rtpm test fault {point}: SIGKILL"
    try:
        server.start()
    except RuntimeError:  # killed itself before it was ready (a slow start): still the point tested
        assert marker in server.log(), server.log()
        return
    before = clients.count() if clients is not None else 0
    assert server.proc is not None
    server.proc.wait(timeout=due_at - time.time() + 30)
    assert marker in server.log(), f"the server did not die at {point}:\n{server.log()}"
    if clients is not None:
        assert clients.count() > before, "nothing was acknowledged while the cut was due"


def _stored(server: RtpmServer, base: float) -> dict[tuple[int, int], int]:
    body = {"metric_name": "cut_fault", "start_time": base - 1, "end_time": base + 3600}
    stored: dict[tuple[int, int], int] = {}
    with httpx.Client(base_url=server.url, timeout=120, headers=server.headers) as c:
        for worker in range(4):
            r = c.post("/api/v1/metrics/query", json=body | {"labels": {"worker": str(worker)}})
            assert r.status_code == 200, r.text
            for series in r.json():
                for p in series["data_points"]:
                    key = (worker, int(p["value"]))
                    stored[key] = stored.get(key, 0) + 1
    return stored


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
    # The head starts at the window edge below now - grace; the first cut (to the next edge) is
    # due DUE_AFTER_S after the first start.
    t0 = time.time()
    due = t0 + DUE_AFTER_S
    first_cut = math.floor(due / WINDOW_S) * WINDOW_S - WINDOW_S  # the edge the first cut reaches
    head_start = first_cut - WINDOW_S
    env = backend_env | JOBS | {"RTPM_MAINTENANCE__LATE_GRACE_SECONDS": _grace_for(due, first_cut)}
    env["RTPM_TEST_FAULT"] = "cut:after_chunks"
    marker = "rtpm test fault cut:after_chunks: SIGKILL"
    try:
        server = server_factory(env=env)
    except RuntimeError as exc:  # a start slower than DUE_AFTER_S: the key cannot be made; retry later
        assert marker in str(exc), exc
        pytest.fail(f"the first start took longer than {DUE_AFTER_S}s")
    server.api_key  # noqa: B018 - made now, while the server is up: it is in the database
    base = head_start + 30.0  # the clients' samples start inside the first window to be cut
    with _Clients(server, base) as clients:
        assert server.proc is not None
        server.proc.wait(timeout=due - time.time() + 30)
        assert marker in server.log(), f"the server did not die at cut:after_chunks:\n{server.log()}"
        assert clients.count() > 0, "nothing was acknowledged before the cut"

        # Killed halfway through deleting the WAL records, then after the commit: each start
        # makes the same cut (the one before rolled back) due a few seconds after it.
        for point in ("cut:mid_truncate", "cut:after_commit"):
            due = time.time() + DUE_AFTER_S
            server.env["RTPM_MAINTENANCE__LATE_GRACE_SECONDS"] = _grace_for(due, first_cut)
            _run_until_fault(server, clients, point, due)

        # A last start without a fault cuts every closed window while the clients go on.
        del server.env["RTPM_TEST_FAULT"]
        server.env["RTPM_MAINTENANCE__LATE_GRACE_SECONDS"] = "0"
        server.start()
        deadline = time.monotonic() + 30
        while not _cut_done(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _cut_done(server), f"the last start did not cut:\n{server.log()}"
        settle = clients.count() + 4 * BATCH
        while clients.count() < settle and time.monotonic() < deadline:
            time.sleep(0.1)
    assert _compressed_samples(server) > 0, "no window was cut into chunks"

    stored = _stored(server, base)
    missing = clients.acked - stored.keys()
    assert not missing, f"{len(missing)} acknowledged samples lost, e.g. {sorted(missing)[:5]}"
    twice = [k for k, n in stored.items() if n != 1]
    assert not twice, f"{len(twice)} samples stored more than once, e.g. {twice[:5]}"
    for worker, first in clients.unanswered:
        present = sum((worker, first + i) in stored for i in range(BATCH))
        assert present in (0, BATCH), f"a request never answered is half applied: {present} of {BATCH} samples"
    # and the restarts kept the clients' samples coming in, through every phase
    assert len(clients.acked) >= 4 * 4 * BATCH
