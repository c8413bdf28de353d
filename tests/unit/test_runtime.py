"""The allocator tuning every rtpm process applies (rtpm/runtime.py), in fresh interpreters."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CODE = "from rtpm.runtime import tune_allocator; print(tune_allocator(), tune_allocator())"


def run(env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_applied_once_per_process() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    assert run(env) == "True True"


def test_an_operators_malloc_setting_wins() -> None:
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "1048576"}
    assert run(env) == "False False"
