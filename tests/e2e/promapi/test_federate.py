"""/federate: the latest sample per matching series within the lookback, in the text format that
`promtool check metrics` accepts and a real Prometheus scrapes."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rtpm.model.labels import make_labels
from rtpm.model.samples import STALE_NAN, MetricMetadata, MetricType, WriteBatch
from tests._app import App
from tests._prometheus import Prometheus, prometheus_binary
from tests._server import RtpmServer
from tests.conftest import IN_CI


def _data(tenant: str, now_ms: int) -> WriteBatch:
    b = WriteBatch(tenant)
    for i in range(3):
        b.add(make_labels("fed_requests_total", {"job": "api", "code": str(200 + i)}), now_ms - 20_000, float(i))
        b.add(make_labels("fed_requests_total", {"job": "api", "code": str(200 + i)}), now_ms - 10_000, 10.0 + i)
    b.add(make_labels("fed_temp", {"room": 'a "quoted" \\ room\nx'}), now_ms - 5_000, 21.5)
    b.add(make_labels("fed_old", {}), now_ms - 600_000, 1.0)  # outside the 5 m lookback
    b.add(make_labels("fed_gone", {}), now_ms - 30_000, 1.0)
    b.add(make_labels("fed_gone", {}), now_ms - 20_000, STALE_NAN)  # marked stale: left out
    b.add(make_labels("other", {}), now_ms - 1_000, 7.0)
    b.metadata.append(MetricMetadata("fed_requests_total", MetricType.COUNTER, "", "Requests\nserved."))
    return b


def _families(text: str) -> dict[str, list[tuple[dict[str, str], float, float | None]]]:
    out: dict[str, list[tuple[dict[str, str], float, float | None]]] = {}
    for fam in text_string_to_metric_families(text):
        out[fam.name] = [(s.labels, s.value, s.timestamp) for s in fam.samples]
    return out


def _promtool(text: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if IN_CI:
            pytest.fail("promtool is required under CI=true (Debian package prometheus)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    proc = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()


def test_federate_answers_the_latest_sample_per_series_in_the_text_format(app: App) -> None:
    now_ms = int(time.time() * 1000)
    app.write(_data(app.tenant, now_ms))
    r = app.client.get("/federate", params={"match[]": ['{__name__=~"fed_.*"}']})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    assert "# TYPE fed_requests_total untyped\n" in text
    assert "# HELP fed_requests_total Requests\\nserved.\n" in text
    fams = _families(text)
    assert set(fams) == {"fed_requests_total", "fed_temp"}
    assert sorted((s[0]["code"], s[1], s[2]) for s in fams["fed_requests_total"]) == [
        (str(200 + i), 10.0 + i, (now_ms - 10_000) / 1000) for i in range(3)
    ]
    assert fams["fed_temp"] == [({"room": 'a "quoted" \\ room\nx'}, 21.5, (now_ms - 5_000) / 1000)]
    _promtool(text)


def test_federate_several_selectors_and_errors(app: App) -> None:
    now_ms = int(time.time() * 1000)
    app.write(_data(app.tenant, now_ms))
    r = app.client.get("/federate", params={"match[]": ["fed_temp", 'other{job=""}']})
    assert set(_families(r.text)) == {"fed_temp", "other"}
    assert app.client.get("/federate", params={"match[]": ["nothing_here"]}).text == ""
    r = app.client.get("/federate")
    assert r.status_code == 400 and "match[]" in r.text
    assert app.client.get("/federate", params={"match[]": "sum(x)"}).status_code == 400
    assert app.client.get("/federate", params={"match[]": "x", "time": "soon"}).status_code == 400
    assert app.client.get("/federate", params={"match[]": "x"}, headers={"Authorization": ""}).status_code == 401


@pytest.mark.integration
def test_a_real_prometheus_scrapes_federate(tmp_path: Path, server_factory: Callable[..., RtpmServer]) -> None:
    prometheus_binary()  # skip (or fail under CI) before starting rtpm
    rtpm = server_factory()
    now = time.time()
    lines = "".join(f'fed_load{{host="h{i}"}} {i + 0.25} {int(now * 1000) - 2000}\n' for i in range(3))
    r = httpx.post(rtpm.url + "/api/v1/import/prometheus", content=lines, headers=rtpm.headers, timeout=10)
    assert r.status_code == 204, r.text
    config = f"""
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
scrape_configs:
  - job_name: rtpm_federate
    honor_labels: true
    metrics_path: /federate
    params:
      "match[]": ['{{__name__=~"fed_.*"}}']
    authorization:
      credentials: {rtpm.api_key}
    static_configs:
      - targets: ["127.0.0.1:{rtpm.port}"]
"""
    with Prometheus(tmp_path, config) as prometheus, httpx.Client(base_url=prometheus.url, timeout=5) as prom:
        deadline = time.monotonic() + 60
        got: dict[str, float] = {}
        up = None
        while time.monotonic() < deadline:
            try:
                r = prom.get("/api/v1/query", params={"query": "fed_load"})
                if r.status_code == 200:
                    got = {s["metric"]["host"]: float(s["value"][1]) for s in r.json()["data"]["result"]}
                r = prom.get("/api/v1/query", params={"query": 'up{job="rtpm_federate"}'})
                if r.status_code == 200 and r.json()["data"]["result"]:
                    up = float(r.json()["data"]["result"][0]["value"][1])
            except httpx.HTTPError:
                pass
            if len(got) == 3 and up == 1.0:
                break
            time.sleep(0.5)
        assert up == 1.0, prometheus.log_tail()
        assert got == {f"h{i}": i + 0.25 for i in range(3)}
