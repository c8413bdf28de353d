"""Deployment files agree with the code: .env.example is what Settings generates, and the compose
file and Dockerfile name commands that exist and settings that are real. (Docker itself does not
run here: these tests read the files.)"""

from __future__ import annotations

import os
import re
import shlex
import subprocess

import yaml

from rtpm.cli import build_parser
from tests._repo import ROOT, gen_env_example, load_compose

_REF = re.compile(r"\$\{(RTPM_[A-Z0-9_]+)")


def test_env_example_is_generated_from_settings() -> None:
    gen = gen_env_example()
    assert (ROOT / ".env.example").read_text() == gen.render(), "run scripts/gen_env_example.py"
    documented = set(re.findall(r"^# (RTPM_[A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert documented and documented <= gen.env_names()
    assert {"RTPM_DATABASE_URL", "RTPM_REDIS_URL", "RTPM_LOG_FORMAT", "RTPM_WRITE_BUFFER__MAX_PENDING_SAMPLES"} <= (
        documented
    )


def test_compose_names_real_services_commands_and_settings() -> None:
    compose = load_compose()
    services = compose["services"]
    assert set(services) >= {"api", "worker", "beat", "flower", "postgres", "redis"}
    assert services["api"]["command"][:2] == ["rtpm", "serve"]
    assert services["worker"]["command"][:2] == ["rtpm", "worker"]
    assert services["beat"]["command"][:2] == ["rtpm", "beat"]
    flower = services["flower"]["command"]
    assert flower[0] == "celery" and "flower" in flower
    for name in ("api", "worker", "beat", "flower"):
        assert services[name]["image"] == "rtpm:latest"
        assert services[name]["build"] == {"context": "."}
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    for name in ("api", "worker", "beat", "flower", "postgres", "redis"):
        assert "healthcheck" in services[name], f"{name} has no health check"
    declared = set(compose["volumes"])
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            assert volume.split(":")[0] in declared, f"{name}: volume {volume} not declared"

    # Every rtpm command parses with the real CLI.
    parser = build_parser()
    for name in ("api", "worker", "beat"):
        parser.parse_args(services[name]["command"][1:])

    # Every RTPM_* variable set or referenced is a real setting.
    settings = gen_env_example().env_names()
    text = (ROOT / "docker-compose.yml").read_text()
    named: set[str] = set(_REF.findall(text))
    for svc in services.values():
        env = svc.get("environment") or {}
        named |= {k for k in env if k.startswith("RTPM_")}
    assert named, "the compose file sets no RTPM_* settings"
    assert named <= settings, f"not settings: {sorted(named - settings)}"


def test_dockerfile_is_multi_stage_non_root_and_runs_rtpm_serve() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and not users[-1].startswith(("root", "0"))
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert cmd is not None and yaml.safe_load(cmd.group(1))[:2] == ["rtpm", "serve"]
    env_names = set(re.findall(r"\b(RTPM_[A-Z0-9_]+)=", text))
    assert env_names <= gen_env_example().env_names(), (
        f"not settings: {sorted(env_names - gen_env_example().env_names())}"
    )


def test_start_script_is_valid_shell() -> None:
    script = ROOT / "scripts" / "start.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert "rtpm" in shlex.split(script.read_text().splitlines()[-1])[1]
