"""The head engine's limit of active series over HTTP (issue 14): a request that brings new
series past RTPM_STORAGE_HEAD_MAX_SERIES is answered with a 4xx naming the limit, the way the push
protocols report a partial write (a sender does not retry it as is); its other samples are stored.
That requests are refused one by one, not the whole group commit, is tested on both backends in
tests/conformance/test_head.py."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import cramjam
import pytest
from fastapi.testclient import TestClient

from rtpm.api.app import create_app
from rtpm.ingest.proto import WriteRequest
from rtpm.settings import Settings
from tests._auth import grant
from tests._pusher import Pusher

RW_HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}
LIMIT = "the head is at its maximum of 2 active series (RTPM_STORAGE_HEAD_MAX_SERIES)"


@pytest.fixture
def pusher(settings_factory: Callable[..., Settings]) -> Iterator[Pusher]:
    settings = settings_factory(storage_engine="head", storage_head_max_series=2, storage_wal_poll_seconds=0)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        grant(client)
        yield Pusher(client)


def _remote_write(series: dict[str, float], ts_ms: int) -> bytes:
    w = WriteRequest()
    for host, value in series.items():
        ts = w.timeseries.add()
        ts.labels.add(name="__name__", value="head_limit")
        ts.labels.add(name="host", value=host)
        ts.samples.add(timestamp=ts_ms, value=value)
    return bytes(cramjam.snappy.compress_raw(w.SerializeToString()))


def _stored(pusher: Pusher) -> dict[str, list[float]]:
    return {dict(labels)["host"]: [v for _, v in samples] for labels, samples in pusher.stored("head_limit").items()}


def test_remote_write_past_the_limit_is_a_partial_write_naming_it(pusher: Pusher) -> None:
    now = int(time.time() * 1000)
    r = pusher.client.post(
        "/api/v1/write", content=_remote_write({"a": 1.0, "b": 1.0, "c": 1.0}, now), headers=RW_HEADERS
    )
    assert r.status_code == 400, r.text  # a 4xx: Prometheus drops the batch instead of retrying it
    message = r.json()["error"]["message"]
    assert "1 new series of this request refused (1 samples)" in message
    assert LIMIT in message and "other samples were stored" in message
    assert _stored(pusher) == {"a": [1.0], "b": [1.0]}  # the series that fit are stored

    # series in the head still take samples; new ones are still refused
    r = pusher.client.post("/api/v1/write", content=_remote_write({"a": 2.0, "b": 2.0}, now + 1000), headers=RW_HEADERS)
    assert r.status_code == 204, r.text
    r = pusher.client.post("/api/v1/write", content=_remote_write({"d": 1.0}, now + 1000), headers=RW_HEADERS)
    assert r.status_code == 400 and LIMIT in r.json()["error"]["message"]
    assert _stored(pusher) == {"a": [1.0, 2.0], "b": [1.0, 2.0]}


def test_json_batch_past_the_limit_names_it(pusher: Pusher) -> None:
    now = time.time()
    items = [{"name": "head_limit", "value": 1.0, "labels": {"host": h}, "timestamp": now} for h in ("a", "b")]
    assert pusher.client.post("/api/v1/metrics/batch", json={"metrics": items}).status_code == 201
    more = [
        {"name": "head_limit", "value": 2.0, "labels": {"host": "a"}, "timestamp": now + 1},
        {"name": "head_limit", "value": 1.0, "labels": {"host": "z"}, "timestamp": now + 1},
    ]
    r = pusher.client.post("/api/v1/metrics/batch", json={"metrics": more})
    assert r.status_code == 400, r.text
    assert LIMIT in r.json()["error"]["message"] and "'host': 'z'" in r.json()["error"]["message"]
    assert _stored(pusher) == {"a": [1.0, 2.0], "b": [1.0]}


def test_remote_write_2_past_the_limit_is_its_partial_write_with_the_written_counts(pusher: Pusher) -> None:
    from tests.unit.ingest.test_remote_write_v2 import HEADERS, V2

    now = int(time.time() * 1000)
    req = V2()
    for host in ("a", "b", "c"):
        req.series({"__name__": "head_limit", "host": host}, [(now, 1.0), (now + 1000, 2.0)])
    r = pusher.client.post("/api/v1/write", content=req.body(), headers=HEADERS)
    assert r.status_code == 400, r.text  # the 2.0 spec's partial write: the sender does not retry it
    assert r.text.startswith("partial write: 2 samples not written: 1 new series of this request refused")
    assert LIMIT in r.text
    assert r.headers["X-Prometheus-Remote-Write-Samples-Written"] == "4"  # a and b
    assert _stored(pusher) == {"a": [1.0, 2.0], "b": [1.0, 2.0]}
