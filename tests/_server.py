"""A real `rtpm serve` in a subprocess, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests._auth import TEST_ADMIN_PASSWORD


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RtpmServer:
    def __init__(
        self,
        *,
        env: dict[str, str],
        log_path: Path,
        port: int | None = None,
        args: list[str] | None = None,
        startup_timeout_seconds: float = 60.0,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.log_path = log_path
        self.args = args or []
        self.startup_timeout = startup_timeout_seconds
        self.proc: subprocess.Popen[bytes] | None = None
        self._api_key: str | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RTPM_")}
        env.update(self.env)
        env.setdefault("RTPM_ENVIRONMENT", "test")
        env.setdefault("RTPM_ADMIN_PASSWORD", TEST_ADMIN_PASSWORD)
        # Generous budgets: tests that are not about rate limits must never meet one.
        for budget in ("INGEST", "QUERY", "ADMIN", "ANONYMOUS"):
            env.setdefault(f"RTPM_AUTH__RATE_LIMIT__{budget}", "1000000/minute")
        if getattr(self, "_log", None) is not None:
            self._log.close()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rtpm", "serve", "--port", str(self.port), *self.args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"rtpm serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"rtpm serve not ready after {self.startup_timeout}s:\n{self.log()}")

    def token(self, username: str = "admin", password: str = TEST_ADMIN_PASSWORD) -> str:
        """An access token of a user, by logging in."""
        r = httpx.post(self.url + "/api/v1/auth/login", json={"username": username, "password": password}, timeout=30)
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    @property
    def api_key(self) -> str:
        """An API key with every scope in the default tenant, made (once) by the admin over HTTP."""
        if self._api_key is None:
            r = httpx.post(
                self.url + "/api/v1/auth/keys",
                json={
                    "name": "tests",
                    "scopes": ["admin", "alerts:read", "alerts:write", "metrics:read", "metrics:write"],
                },
                headers={"Authorization": f"Bearer {self.token()}"},
                timeout=30,
            )
            assert r.status_code == 201, r.text
            self._api_key = str(r.json()["key"])
        return self._api_key

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks run."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        return int(self.proc.returncode)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None
