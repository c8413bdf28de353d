"""Helpers for the operations tests: scrape /metrics, environment for a server without login."""

from __future__ import annotations

import shutil
import subprocess

import httpx
from prometheus_client.parser import text_string_to_metric_families

# Authentication is tested by its own suite; these tests are about operations.
OPEN_ENV = {"RTPM_AUTH__ENABLED": "false"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> tuple[str, Samples]:
    r = httpx.get(url + "/metrics", timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return r.text, out


def value(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when there are none)."""
    want = set(labels.items())
    return sum(v for (n, lb), v in samples.items() if n == name and want <= lb)


def promtool_problems(text: str) -> str | None:
    """`promtool check metrics` output (empty: no problems), or None without promtool."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return None
    proc = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    return (proc.stdout + proc.stderr).decode().strip() + ("" if proc.returncode == 0 else f" (exit {proc.returncode})")
