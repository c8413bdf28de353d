"""The Prometheus text format pushed to /api/v1/import/prometheus."""

from __future__ import annotations

import gzip

from rtpm.model.samples import MetricType
from tests._pusher import Pusher, now_ms

PATH = "/api/v1/import/prometheus"


def test_a_pushed_scrape_is_stored_with_metadata(pusher: Pusher) -> None:
    t = now_ms() - 5000
    body = (
        "# HELP job_duration_seconds How long the backup took.\n"
        "# TYPE job_duration_seconds gauge\n"
        f'job_duration_seconds{{job="backup",path="C:\\\\tmp \\"x\\"\\n"}} 12.5 {t}\n'
        "# TYPE job_runs_total counter\n"
        'job_runs_total{job="backup",} 3\n'
        "job_last_failure_timestamp NaN\n"
        "job_limit +Inf\n"
    )
    before = now_ms()
    r = pusher.client.post(PATH, content=body, headers={"Content-Type": "text/plain; version=0.0.4"})
    assert r.status_code == 204
    stored = pusher.stored()
    assert stored[(("__name__", "job_duration_seconds"), ("job", "backup"), ("path", 'C:\\tmp "x"\n'))] == [(t, 12.5)]
    [(ts, v)] = stored[(("__name__", "job_runs_total"), ("job", "backup"))]
    assert v == 3.0 and before <= ts <= now_ms()
    assert stored[(("__name__", "job_limit"),)][0][1] == float("inf")
    md = pusher.metadata()
    assert md["job_duration_seconds"].type == MetricType.GAUGE
    assert md["job_duration_seconds"].help == "How long the backup took."
    assert md["job_runs_total"].type == MetricType.COUNTER


def test_openmetrics_timestamps_are_seconds(pusher: Pusher) -> None:
    t = now_ms() // 1000
    body = f"# TYPE x gauge\nx 1 {t}.5\n# EOF\n"
    r = pusher.client.post(PATH, content=body, headers={"Content-Type": "application/openmetrics-text; version=1.0.0"})
    assert r.status_code == 204
    assert pusher.stored() == {(("__name__", "x"),): [(t * 1000 + 500, 1.0)]}


def test_a_bad_line_costs_only_itself(pusher: Pusher) -> None:
    r = pusher.client.post(PATH, content=f'ok 1\nbad{{a="1" 2\nlong{{v="{"x" * 65}"}} 3\nok2 4\n')
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "partial_write"
    assert error["message"].startswith("partial write: line 2: column 5: expected label=")
    assert error["message"].endswith("dropped=2; the other 2 samples were stored")
    assert {lb for lb in pusher.stored()} == {(("__name__", "ok"),), (("__name__", "ok2"),)}
    assert pusher.refused("prom_text", "parse_error") == 1
    assert pusher.refused("prom_text", "invalid_series") == 1


def test_a_body_of_only_bad_lines_is_400_naming_line_and_column(pusher: Pusher) -> None:
    r = pusher.client.post(PATH, content='bad{a="1" 2\n')
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith("line 1, column 5: expected label=")
    assert pusher.stored() == {}


def test_invalid_names_are_refused_not_sanitized(pusher: Pusher) -> None:
    r = pusher.client.post(PATH, content="my.metric 1\n")
    assert r.status_code == 400
    assert pusher.client.post(PATH, content='m{"a.b"="1"} 1\n').status_code == 400


def test_extra_label_gzip_and_empty_body(pusher: Pusher) -> None:
    r = pusher.client.post(
        PATH + "?extra_label=job=cron&extra_label=instance=h1",
        content=gzip.compress(b"done 1\n"),
        headers={"Content-Encoding": "gzip"},
    )
    assert r.status_code == 204
    assert list(pusher.stored()) == [(("__name__", "done"), ("instance", "h1"), ("job", "cron"))]
    assert pusher.client.post(PATH, content=b"").status_code == 204
    assert pusher.client.post(PATH + "?extra_label=oops", content=b"x 1").status_code == 400


def test_wrong_content_type_is_415(pusher: Pusher) -> None:
    r = pusher.client.post(PATH, content=b"\x00", headers={"Content-Type": "application/vnd.google.protobuf"})
    assert r.status_code == 415
    assert pusher.client.post(PATH, content=b"{}", headers={"Content-Type": "application/json"}).status_code == 415
