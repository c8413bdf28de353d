"""Test doubles that are real servers: a local webhook receiver (HTTP, in a thread) and a real
Alertmanager process."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests._server import free_port

ALERTMANAGER_BIN = "/usr/bin/prometheus-alertmanager"


def wait_for(what: str, fn: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll `fn` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


class WebhookReceiver:
    """Records every POST: (path, headers, raw body, parsed JSON). `fail_first` answers 503 first."""

    def __init__(self, fail_first: int = 0) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes, Any]] = []
        self.fail_first = fail_first
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer._lock:
                    if outer.fail_first > 0:
                        outer.fail_first -= 1
                        self.send_response(503)
                        self.end_headers()
                        return
                    outer.requests.append((self.path, dict(self.headers.items()), body, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def payloads(self, status: str | None = None) -> list[Any]:
        with self._lock:
            return [p for _, _, _, p in self.requests if status is None or p["status"] == status]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Alertmanager:
    def __init__(self, workdir: Path) -> None:
        if not Path(ALERTMANAGER_BIN).exists() and shutil.which("prometheus-alertmanager") is None:
            raise RuntimeError("prometheus-alertmanager is not installed (apt-get install prometheus-alertmanager)")
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "alertmanager.yml"
        config.write_text(
            "route:\n  receiver: blackhole\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n"
            "receivers:\n  - name: blackhole\n"
        )
        self._log = open(workdir / "alertmanager.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                ALERTMANAGER_BIN,
                f"--config.file={config}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_for("alertmanager ready", self._ready, timeout=30)

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"alertmanager exited with {self.proc.returncode}")
        try:
            return httpx.get(self.url + "/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def alerts(self) -> list[Any]:
        r = httpx.get(self.url + "/api/v2/alerts", timeout=5)
        r.raise_for_status()
        return list(r.json())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
