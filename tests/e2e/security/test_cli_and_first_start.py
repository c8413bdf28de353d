"""First start prints the admin password once; `rtpm users` and `rtpm keys` manage credentials."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests._server import RtpmServer

pytestmark = pytest.mark.integration


def _rtpm(data_dir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTPM_")} | {
        "RTPM_DATA_DIR": str(data_dir),
        "RTPM_ENVIRONMENT": "test",
    }
    return subprocess.run(
        [sys.executable, "-m", "rtpm", *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
    )


def test_first_start_prints_a_random_admin_password_once(
    server_factory: Callable[..., RtpmServer], tmp_path: Path
) -> None:
    data = tmp_path / "first"
    server = server_factory(env={"RTPM_DATA_DIR": str(data), "RTPM_ADMIN_PASSWORD": ""})
    found = re.findall(r"with password: (\S+)", server.log())
    assert len(found) == 1
    assert "POST /api/v1/auth/login" in server.log()
    r = httpx.post(server.url + "/api/v1/auth/login", json={"username": "admin", "password": found[0]}, timeout=30)
    assert r.status_code == 200
    server.terminate()
    server.start()
    assert len(re.findall(r"with password: ", server.log())) == 1  # not again on the next start


def test_cli_users_and_keys(server_factory: Callable[..., RtpmServer], tmp_path: Path) -> None:
    data = tmp_path / "cli"
    out = _rtpm(data, "users", "create", "carol", "--role", "editor", "--password-stdin", stdin="carol-password-1\n")
    assert out.returncode == 0, out.stderr
    out = _rtpm(data, "keys", "create", "--name", "telegraf", "--scope", "metrics:write", "--tenant", "acme")
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip().splitlines()[-1]
    assert key.startswith("rtpm_")
    listed = _rtpm(data, "keys", "list").stdout
    assert "telegraf" in listed and key not in listed
    server = server_factory(env={"RTPM_DATA_DIR": str(data)})
    r = httpx.post(
        server.url + "/api/v2/write?bucket=x", content=b"cpu v=1", headers={"Authorization": f"Token {key}"}, timeout=30
    )
    assert r.status_code == 204, r.text
    r = httpx.post(server.url + "/api/v1/auth/login", json={"username": "carol", "password": "carol-password-1"})
    assert r.status_code == 200
    key_id = key.split("_")[1]
    assert _rtpm(data, "keys", "revoke", key_id).returncode == 0
    assert "revoked" in _rtpm(data, "keys", "list").stdout
    out = _rtpm(data, "users", "create", "carol", "--generate")
    assert out.returncode == 1 and "exists already" in out.stderr
