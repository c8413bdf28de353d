"""docker-compose.yml, the Dockerfile and .env.example as a new user meets them: `cp .env.example
.env`, replace the marked values, `docker compose up`. Docker does not run here; the files are
parsed, and what can run does: the health-check commands parse with the real CLI, the image's
HEALTHCHECK asks the port RTPM_PORT names, and `rtpm serve` refuses each placeholder of
.env.example in production."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from rtpm.cli import build_parser
from rtpm.settings import Settings, is_placeholder
from tests._repo import ROOT, gen_env_example, load_compose

RTPM_SERVICES = ("api", "worker", "beat", "flower")
_REQUIRED_REF = re.compile(r"\$\{([A-Z0-9_]+):\?")
STRONG = {
    "RTPM_ADMIN_PASSWORD": "a-real-admin-password-7f3k9q",
    "RTPM_AUTH__JWT_SECRET": "Zq8vN3xR1tL6yB0wK5mJ2hF9dS4gA7cE-uPoIiUy",
    "RTPM_FLOWER_BASIC_AUTH": "ops:a-real-flower-password-2j8d",
}


def _env_example() -> dict[str, str]:
    """The uncommented assignments of .env.example."""
    out = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            out[name] = value
    return out


def test_every_service_has_a_health_check_that_checks_what_it_says() -> None:
    services = load_compose()["services"]
    for name, svc in services.items():
        test = svc.get("healthcheck", {}).get("test")
        assert test, f"{name} has no health check"
        assert test[0] in ("CMD", "CMD-SHELL"), f"{name}: {test}"
    # worker and beat: RTPM's own check (alert rounds completing), not `celery inspect ping`.
    parser = build_parser()
    for name, role in (("worker", "worker"), ("beat", "beat")):
        test = services[name]["healthcheck"]["test"]
        assert test[1:] == ["rtpm", "jobs", "check", role], test
        assert parser.parse_args(test[2:]).func.__name__ == "_check"
        assert "ping" not in " ".join(test)
    # api asks /health/ready on the configured port, as the image does; flower its /healthcheck.
    api = " ".join(services["api"]["healthcheck"]["test"])
    assert "/health/ready" in api and "RTPM_PORT" in api and ":8000/" not in api
    assert "/healthcheck" in " ".join(services["flower"]["healthcheck"]["test"])


def test_rtpm_services_share_one_named_image_built_once() -> None:
    services = load_compose()["services"]
    images = {services[n]["image"] for n in RTPM_SERVICES}
    builds = {repr(services[n].get("build")) for n in RTPM_SERVICES}
    assert len(images) == 1 and images.pop().startswith("rtpm:")
    assert builds == {repr({"context": "."})}


def test_flower_needs_a_login_and_is_not_published_on_a_public_address() -> None:
    flower = load_compose()["services"]["flower"]
    env = flower["environment"]
    ref = _REQUIRED_REF.match(env["FLOWER_BASIC_AUTH"])
    assert ref is not None and ref.group(1) == "RTPM_FLOWER_BASIC_AUTH", "Flower's login must be a required setting"
    assert not any(k.startswith("FLOWER_UNAUTHENTICATED") for k in env)
    assert not any("unauthenticated" in part or "basic-auth=" in part for part in flower["command"])
    for port in flower.get("ports", []):
        spec = port if isinstance(port, str) else f"{port.get('host_ip', '')}:{port['published']}:{port['target']}"
        assert spec.startswith("127.0.0.1:"), f"Flower published beyond loopback: {port}"
    assert "flower" in flower["command"]


def test_every_required_variable_is_in_env_example_uncommented_with_a_placeholder() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    required = set(_REQUIRED_REF.findall(text))
    assert required == set(STRONG), required
    example = _env_example()
    assert set(gen_env_example().required_settings()) == required
    for name in required:
        assert name in example, f"{name} is required by docker-compose.yml but not set in .env.example"
        assert is_placeholder(example[name]), f"{name}={example[name]} is not a marked placeholder"
    # Everything else in .env.example stays commented: a copy changes nothing but the three values.
    assert set(example) == required


@pytest.mark.slow  # starts `rtpm serve` once per case: seconds each
def test_rtpm_serve_refuses_each_placeholder_in_production(tmp_path: Path) -> None:
    """One `rtpm serve` per required variable (side by side), that one left at its placeholder."""
    example = _env_example()
    base = {k: v for k, v in os.environ.items() if not k.startswith("RTPM_")}
    runs = {}
    for name in sorted(STRONG):
        env = {**base, **STRONG, name: example[name], "RTPM_ENVIRONMENT": "production"}
        env["RTPM_DATA_DIR"] = str(tmp_path / name / "data")
        (tmp_path / name).mkdir()
        runs[name] = subprocess.Popen(
            [sys.executable, "-m", "rtpm", "serve", "--port", "0"],
            env=env,
            cwd=tmp_path / name,  # no .env here
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    for name, proc in runs.items():
        _, stderr = proc.communicate(timeout=90)
        assert proc.returncode != 0, f"rtpm serve started with {name} at its placeholder"
        assert name in stderr, stderr[-2000:]
    # With the real values the settings are accepted.
    assert Settings(  # type: ignore[call-arg]
        _env_file=None,
        environment="production",
        admin_password=STRONG["RTPM_ADMIN_PASSWORD"],
        flower_basic_auth=STRONG["RTPM_FLOWER_BASIC_AUTH"],
    )


class _Ready(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.send_response(200 if self.path == "/health/ready" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def ready_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_the_image_health_check_asks_the_configured_port(ready_server: int) -> None:
    text = (ROOT / "Dockerfile").read_text()
    match = re.search(r"^HEALTHCHECK .*?CMD (\[[^\n]*\])$", text, re.M | re.S)
    assert match is not None
    cmd = yaml.safe_load(match.group(1))
    assert cmd[0] == "python"
    run = [sys.executable, *cmd[1:]]
    env = {k: v for k, v in os.environ.items() if k != "RTPM_PORT"}
    assert subprocess.run(run, env={**env, "RTPM_PORT": str(ready_server)}, timeout=30).returncode == 0
    # Another port: nothing listens there, the check fails.
    other = subprocess.run(run, env={**env, "RTPM_PORT": "1"}, capture_output=True, timeout=30)
    assert other.returncode != 0
