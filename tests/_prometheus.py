"""A real Prometheus in a subprocess, for the tests that feed it, scrape into it or compare with it
(Debian's `prometheus` package; scripts/test.sh installs it). One way to find the binary, start it on
a free port, wait until it is ready, and stop it, instead of one copy per test."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest

from tests._server import free_port

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def prometheus_binary() -> str:
    """The prometheus binary. Missing: the test skips locally and fails under CI=true."""
    found = shutil.which("prometheus") or ("/usr/bin/prometheus" if os.path.exists("/usr/bin/prometheus") else None)
    if found is None:
        if IN_CI:
            pytest.fail("prometheus is required under CI=true (apt-get install prometheus)")
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    return found


class Prometheus:
    """One Prometheus process with `config` (YAML text) written to `workdir`, its TSDB and log there
    too, listening on a free port of 127.0.0.1. `flags` are extra command-line flags
    (`--web.enable-remote-write-receiver`, `--enable-feature=...`). A context manager: started
    and ready on entry, stopped on exit."""

    def __init__(self, workdir: Path, config: str, *, flags: Sequence[str] = ()) -> None:
        self.binary = prometheus_binary()
        self.workdir = workdir
        self.config = config
        self.flags = list(flags)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, wait_ready: bool = True, timeout: float = 30) -> Prometheus:
        """Start the process; with `wait_ready` (the default) return once /-/ready answers 200."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "prometheus.yml"
        config_path.write_text(self.config)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={self.workdir / 'prom-data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    *self.flags,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        """Until /-/ready answers 200; RuntimeError with the log's tail if the process ends first
        or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.url + "/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc is None or self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prometheus did not become ready:\n{self.log_tail()}")
            time.sleep(0.1)

    def wait(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        """Poll `check` (an HTTP error counts as not yet) until it is true; AssertionError naming
        `what`, with the tail of Prometheus's log, after `timeout` seconds."""
        wait_until(what, check, timeout, detail=self.log_tail)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)
        self.proc = None

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextmanager
def scrape_target(render: Callable[[], bytes], content_type: str = "text/plain; version=0.0.4") -> Iterator[str]:
    """A scrape target on a free port (its host:port): every GET answers `render()`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            body = render()
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def wait_until(what: str, check: Callable[[], bool], timeout: float = 30, detail: Callable[[], str] = str) -> None:
    """Poll `check` (an HTTP error counts as not yet) until it is true; AssertionError naming `what`
    (and `detail()`, e.g. a peer's log tail) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}\n{detail()}")
