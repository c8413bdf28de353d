"""Every ```sh block of README.md, run as written against a real `rtpm serve`, so the README cannot
drift from what RTPM does.

The blocks run in order, each in `bash` with `set -euo pipefail`, in one temporary directory;
variables set by one block (`TOKEN`, `AUTH`, `RTPM_TOKEN`, ...) carry to the next. The only changes
made to the README's text are these mechanical substitutions:

- `localhost:8000` and `127.0.0.1:8000` become the test server's address;
- `<printed on first start>` becomes the admin password the test server was started with;
- a date `2026-11-DD` becomes the date `28 - DD` days before today (UTC), so the example samples
  (stamped 2026-11-27) stay inside the accepted past and inside the example ranges whatever day
  the test runs;
- the environment has the server's settings (`RTPM_DATA_DIR`, ...: the README runs `rtpm keys
  create` "on the server's machine") and `RTPM_URL` pointing at it.

`curl` is a wrapper first on PATH: it runs the real curl, records the status and body of every
call, and fails (exit 22) on an answer that is not 2xx. Every recorded body must be non-empty
(unless 204) and not an error envelope.

Precondition: before the blocks, a rule that always fires is created over the API, so that the
README's manual resolves (`rtpm alerts resolve 1`, `POST /api/v1/alerts/resolve/$ALERT`) have an
active alert; a block that resolves one waits until an alert is active.

Blocks that are not run are listed in NOT_RUN with the reason; each must match exactly one block.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests._auth import TEST_ADMIN_PASSWORD
from tests._server import RtpmServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

README = Path(__file__).resolve().parents[2] / "README.md"

# A distinctive piece of each block that is not run -> why.
NOT_RUN = {
    "./scripts/start.sh": "starts the server on port 8000; the test starts `rtpm serve` itself (what start.sh runs)",
    "./scripts/test.sh": "runs this very test suite",
    "postgresql://rtpm@db.example": "a second server on an example PostgreSQL host (PostgreSQL is run by tests/e2e)",
    "docker compose up": "needs Docker (tests/unit/test_deploy.py checks the compose file)",
    "python bench/ingest.py": "starts servers of its own and a 2 M-sample benchmark",
}

CURL_WRAPPER = """#!/bin/bash
# README test: the real curl, with every answer's status and body recorded; non-2xx fails.
body=$(mktemp)
code=$(/usr/bin/curl "$@" -o "$body" -w '%{http_code}')
rc=$?
cat "$body"
python3 - "$code" "$body" "$*" >> "$CURL_LOG" <<'EOF'
import json, sys
code, path, args = sys.argv[1:]
print(json.dumps({"code": code, "args": args, "body": open(path, errors="replace").read()[:4000]}))
EOF
rm -f "$body"
if [ "$rc" -ne 0 ]; then exit "$rc"; fi
case "$code" in
  2??) exit 0 ;;
  *) echo "curl: HTTP $code from: $*" >&2; exit 22 ;;
esac
"""


def sh_blocks(text: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^```sh\n(.*?)^```", text, flags=re.S | re.M)]


def substitute(block: str, *, address: str, password: str, today: dt.date) -> str:
    block = block.replace("localhost:8000", address).replace("127.0.0.1:8000", address)
    block = block.replace("<printed on first start>", password)

    def shift(m: re.Match[str]) -> str:
        return (today - dt.timedelta(days=28 - int(m.group(1)))).isoformat()

    return re.sub(r"2026-11-(\d\d)", shift, block)


def test_every_sh_block_is_run_or_listed() -> None:
    blocks = sh_blocks(README.read_text())
    assert len(blocks) > 10
    for needle in NOT_RUN:
        assert sum(needle in b for b in blocks) == 1, f"NOT_RUN entry {needle!r} must match exactly one block"


def _wait_for_active_alert(server: RtpmServer, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(server.url + "/api/v1/alerts/active", headers=server.headers, timeout=10)
        if r.status_code == 200 and r.json():
            return
        time.sleep(0.3)
    raise AssertionError("no active alert to resolve")


def test_readme_commands_work_as_written(server_factory: Callable[..., RtpmServer], tmp_path: Path) -> None:
    server = server_factory()
    address = f"127.0.0.1:{server.port}"
    r = httpx.post(
        server.url + "/api/v1/alerts/rules",
        json={"name": "ReadmeAlwaysFiring", "expr": "vector(1) > 0", "evaluation_interval": "1s"},
        headers=server.headers,
        timeout=30,
    )
    assert r.status_code == 201, r.text
    _wait_for_active_alert(server)

    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "curl").write_text(CURL_WRAPPER)
    (bindir / "curl").chmod(0o755)
    workdir = tmp_path / "work"
    workdir.mkdir()
    curl_log = tmp_path / "curl.log"
    state = tmp_path / "state.sh"
    state.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTPM_")}
    env.update(server.env)
    env.update(
        {
            "RTPM_ENVIRONMENT": "test",
            "RTPM_URL": server.url,
            "CURL_LOG": str(curl_log),
            "PATH": f"{bindir}:{Path(sys.executable).parent}:{env.get('PATH', '')}",
        }
    )
    today = dt.datetime.now(dt.UTC).date()
    ran = 0
    for raw in sh_blocks(README.read_text()):
        if any(needle in raw for needle in NOT_RUN):
            continue
        block = substitute(raw, address=address, password=TEST_ADMIN_PASSWORD, today=today)
        if "alerts/resolve" in block or "alerts resolve" in block:
            _wait_for_active_alert(server)
        script = f"set -a\nsource {state}\nset -euo pipefail\n{block}\nexport -p > {state}.new\n"
        done = subprocess.run(
            ["bash", "-c", script], cwd=workdir, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, (
            f"README block failed (exit {done.returncode}):\n{block}\n--- stdout\n{done.stdout[-3000:]}\n"
            f"--- stderr\n{done.stderr[-3000:]}\n--- server log\n{server.log()[-3000:]}"
        )
        os.replace(f"{state}.new", state)
        ran += 1
    assert ran >= 10

    calls = [json.loads(line) for line in curl_log.read_text().splitlines()]
    assert len(calls) >= 25
    for call in calls:
        assert call["code"].startswith("2"), call
        if call["code"] == "204":
            continue
        assert call["body"].strip(), f"empty answer to curl {call['args']}"
        try:
            body = json.loads(call["body"])
        except ValueError:
            continue  # text answers: the rules file (YAML)
        assert not (isinstance(body, dict) and (body.get("status") == "error" or "error" in body)), call

    def answer(fragment: str) -> object:
        found = [c for c in calls if fragment in c["args"]]
        assert found, f"no curl call with {fragment!r}"
        return json.loads(found[-1]["body"])

    # a few answers checked for content, not only for 2xx
    latest = answer("metrics/latest/cpu_usage")
    assert isinstance(latest, dict) and latest["value"] in (42.5, 91.5)
    stats = answer("metrics/stats/cpu_usage")
    assert isinstance(stats, dict) and stats["count"] >= 1 and stats["min"] == 40
    query = answer("api/v1/metrics/query -H")
    assert isinstance(query, list) and query and query[0]["data_points"], query
    # the threshold form with aggregation and window compiles as the README says
    high_cpu = [b for c in calls if c["body"].startswith("{") and (b := json.loads(c["body"])).get("name") == "HighCPU"]
    assert high_cpu and high_cpu[0]["expr"] == 'avg_over_time(cpu_usage{host="web-1"}[5m]) > 75', high_cpu
