"""Issue 16: the start banner (web UI address, first-start password inside it) and
`rtpm query --output table|json|csv` against a real `rtpm serve`."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from rtpm.cli_output import render, rows
from tests._server import RtpmServer

pytestmark = pytest.mark.integration

_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d", re.M)


def test_banner_shows_web_ui_and_first_start_password_inside_it(
    server_factory: Callable[..., RtpmServer], tmp_path: Path
) -> None:
    server = server_factory(env={"RTPM_DATA_DIR": str(tmp_path / "first"), "RTPM_ADMIN_PASSWORD": ""})
    log = server.log()
    start = log.index("listening on")
    banner_end = log.index("it is shown only this once")
    banner = log[start:banner_end]
    assert f"web UI: http://127.0.0.1:{server.port}/" in banner
    assert f"API docs: http://127.0.0.1:{server.port}/docs" in banner
    assert not _LOG_LINE.search(banner), f"log lines inside the banner:\n{banner}"
    found = re.findall(r"with password: (\S+)", log)
    assert len(found) == 1 and found[0] in banner
    r = httpx.post(server.url + "/api/v1/auth/login", json={"username": "admin", "password": found[0]}, timeout=30)
    assert r.status_code == 200
    server.terminate()
    server.start()
    assert len(re.findall(r"with password: ", server.log())) == 1  # never again


def _rtpm(server: RtpmServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTPM_")}
    env.update({"RTPM_URL": server.url, "RTPM_TOKEN": server.api_key})
    done = subprocess.run(
        [sys.executable, "-m", "rtpm", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done


def test_query_output_formats(server_factory: Callable[..., RtpmServer]) -> None:
    server = server_factory()
    for host, value in (("web-1", "91.5"), ("web-2", "12")):
        _rtpm(server, "push", "cpu_usage", value, "-l", f"host={host}")
    # not a terminal: JSON by default (documented), the same as --output json
    default = _rtpm(server, "query", "cpu_usage")
    assert json.loads(default.stdout)["resultType"] == "vector"
    as_json = json.loads(_rtpm(server, "query", "cpu_usage", "--output", "json").stdout)
    assert {s["metric"]["host"]: s["value"][1] for s in as_json["result"]} == {"web-1": "91.5", "web-2": "12"}

    table = _rtpm(server, "query", "cpu_usage", "--output", "table").stdout.splitlines()
    assert table[0].split() == ["series", "timestamp", "value"]
    assert len(table) == 3
    assert any(line.startswith('cpu_usage{host="web-1"}') and line.endswith("91.5") for line in table)

    ranged = _rtpm(server, "query", "cpu_usage", "--start", "now-5m", "--step", "60s", "-o", "csv").stdout
    parsed = list(csv.reader(io.StringIO(ranged)))
    assert parsed[0] == ["series", "timestamp", "value"]
    assert {r[0] for r in parsed[1:]} == {'cpu_usage{host="web-1"}', 'cpu_usage{host="web-2"}'}
    assert all(r[1].endswith("Z") for r in parsed[1:])

    seed = _rtpm(server, "query", "--metric", "cpu_usage", "--start", "now-5m", "--step", "1m", "-o", "csv").stdout
    seed_rows = list(csv.reader(io.StringIO(seed)))
    assert seed_rows[0] == ["series", "timestamp", "value"]
    assert 'cpu_usage{host="web-1"}' in {r[0] for r in seed_rows[1:]}


def test_render_shapes() -> None:
    scalar = {"resultType": "scalar", "result": [1700000000, "2"]}
    assert rows(scalar) == [("", "2023-11-14T22:13:20.000Z", "2")]
    assert render({"not": "a query"}, "table").startswith("{")  # other answers stay JSON
    matrix = {"resultType": "matrix", "result": [{"metric": {"__name__": "up"}, "values": [[1, "1"], [2, "0"]]}]}
    assert render(matrix, "table").splitlines()[1].split() == ["up", "1970-01-01T00:00:01.000Z", "1"]
