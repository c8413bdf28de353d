"""Clients that ingest without pause through restarts and outages, and the check that follows:
every sample answered 201 is stored exactly once, and of every request never answered (or
refused) either all samples are stored or none."""

from __future__ import annotations

import threading
import time

import httpx

from tests._server import RtpmServer


class IngestClients:
    """`workers` writers, each its own series (`worker` label) with values 0, 1, 2, ... at
    distinct timestamps `base + value * step_s`; a request that fails or is refused is noted and
    the next one sent (the same server address across restarts)."""

    def __init__(
        self, server: RtpmServer, metric: str, base: float, *, step_s: float, batch: int = 100, workers: int = 4
    ) -> None:
        self.server = server
        self.metric = metric
        self.base = base
        self.step_s = step_s
        self.batch = batch
        self.acked: set[tuple[int, int]] = set()
        self.unanswered: list[tuple[int, int]] = []  # (worker, first value) of a batch
        self.statuses: dict[int, int] = {}  # answers by status code (0: no answer)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(w,)) for w in range(workers)]

    def __enter__(self) -> IngestClients:
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
                        "name": self.metric,
                        "value": float(seq + i),
                        "labels": {"worker": str(worker)},
                        "timestamp": self.base + (seq + i) * self.step_s,
                    }
                    for i in range(self.batch)
                ]
                try:
                    status = c.post("/api/v1/metrics/batch", json={"metrics": items}).status_code
                except httpx.HTTPError:
                    status = 0
                with self.lock:
                    self.statuses[status] = self.statuses.get(status, 0) + 1
                    if status == 201:
                        self.acked.update((worker, seq + i) for i in range(self.batch))
                    else:
                        self.unanswered.append((worker, seq))
                seq += self.batch
                time.sleep(0.05 if status == 201 else 0.2)

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def wait_for(self, more: int, timeout: float = 30) -> None:
        """Until `more` samples more than now are acknowledged."""
        target = self.count() + more
        deadline = time.monotonic() + timeout
        while self.count() < target:
            assert time.monotonic() < deadline, f"clients got fewer than {more} samples acknowledged: {self.statuses}"
            time.sleep(0.05)

    def check(self, server: RtpmServer) -> None:
        """Every acknowledged sample stored exactly once, every unanswered request all or nothing."""
        body = {"metric_name": self.metric, "start_time": self.base - 1, "end_time": self.base + 3600}
        stored: dict[tuple[int, int], int] = {}
        with httpx.Client(base_url=server.url, timeout=120, headers=server.headers) as c:
            for worker in range(len(self.threads)):
                r = c.post("/api/v1/metrics/query", json=body | {"labels": {"worker": str(worker)}})
                assert r.status_code == 200, r.text
                for series in r.json():
                    for p in series["data_points"]:
                        key = (worker, int(p["value"]))
                        stored[key] = stored.get(key, 0) + 1
        missing = self.acked - stored.keys()
        assert not missing, f"{len(missing)} acknowledged samples lost, e.g. {sorted(missing)[:5]}"
        twice = [k for k, n in stored.items() if n != 1]
        assert not twice, f"{len(twice)} samples stored more than once, e.g. {twice[:5]}"
        for worker, first in self.unanswered:
            present = sum((worker, first + i) in stored for i in range(self.batch))
            assert present in (0, self.batch), (
                f"a request never answered is half applied: {present} of {self.batch} samples"
            )
