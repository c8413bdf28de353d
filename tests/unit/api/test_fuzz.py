"""Acceptance 3: schemathesis-generated requests for every operation of the app's own OpenAPI
schema, and malformed bodies for the non-JSON ingest formats: never a 5xx, and the server stays
healthy. Bounded: a few thousand requests, derandomized (the same cases on every run)."""

from __future__ import annotations

import gzip
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import cramjam
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtpm.api.app import create_app
from rtpm.settings import AuthSettings, LimitsSettings, QuerySettings, RateLimitSettings, Settings
from tests._auth import create_key

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 60  # derandomized: the same cases each run; 150 cost two minutes of a 10-minute suite
EXAMPLES_PER_FORMAT = 150
FUZZ = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    unlimited = "1000000/minute"
    s = Settings(  # type: ignore[call-arg]
        _env_file=None,
        environment="test",
        data_dir=tmp_path_factory.mktemp("fuzz"),
        limits=LimitsSettings(max_body_bytes=256 * 1024, max_query_series=1000, max_query_samples=200_000),
        query=QuerySettings(timeout_seconds=5),
        auth=AuthSettings(
            rate_limit=RateLimitSettings(
                ingest=unlimited,
                query=unlimited,
                admin=unlimited,
                anonymous=unlimited,
                login_per_user=unlimited,
                login_per_ip=unlimited,
            )
        ),
    )
    with TestClient(create_app(s), raise_server_exceptions=False) as client:
        key = create_key(client)
        client.post(
            "/api/v1/metrics/batch",
            json={"metrics": [{"name": "fuzz_seed", "value": i, "labels": {"i": str(i)}} for i in range(20)]},
            headers={"Authorization": f"Bearer {key}"},
        )
        yield client, {"Authorization": f"Bearer {key}"}
        assert client.get("/health/ready").status_code == 200
        assert (
            client.get("/api/v1/metrics/latest/fuzz_seed", headers={"Authorization": f"Bearer {key}"}).status_code
            == 200
        )


def _operations(app: Any) -> list[Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate operation ids of GET+POST routes
        spec = app.openapi()
    schema = schemathesis.openapi.from_dict(spec)
    return [result.ok() for result in schema.get_all_operations()]


def _send(client: TestClient, headers: dict[str, str], case: Any) -> Any:
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    request_headers = {k: v for k, v in (kwargs.get("headers") or {}).items() if k.lower() != "authorization"}
    request_headers.update(headers)
    send: dict[str, Any] = {"headers": request_headers, "params": kwargs.get("params") or None}
    if "json" in kwargs:
        send["json"] = kwargs["json"]
    elif kwargs.get("data") is not None:
        data = kwargs["data"]
        send["content"] = data if isinstance(data, bytes | str) else str(data)
    return client.request(kwargs["method"], kwargs["url"], **send)


def _fuzz_operation(
    client: TestClient, headers: dict[str, str], op: Any, failures: list[str], counter: list[int]
) -> None:
    @FUZZ
    @given(case=op.as_strategy())
    def run(case: Any) -> None:
        r = _send(client, headers, case)
        counter[0] += 1
        if r.status_code >= 500:
            failures.append(
                f"{op.method.upper()} {op.path}: {r.status_code} {r.text[:200]} <- {case.as_curl_command()}"
            )

    run()


def test_schemathesis_every_operation_never_5xx(fuzz_client: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = fuzz_client
    operations = _operations(client.app)
    assert len(operations) > 30
    sent = 0
    failures: list[str] = []
    for op in operations:
        if op.path.startswith("/api/v1/auth/users") and op.method.upper() == "DELETE":
            continue  # could delete the admin other operations rely on; user deletion is tested elsewhere
        _fuzz_operation(client, headers, op, failures, counter := [0])
        sent += counter[0]
    assert failures == [], "\n".join(failures[:20])
    assert sent >= 10 * len(operations)  # the fuzzing really ran (at most 60 cases per operation)
    assert client.get("/health/ready").status_code == 200


# ---- malformed bodies for the non-JSON ingest formats -------------------------------------------

GOOD_LINES = b"cpu,host=a usage=1.5,idle=2i 1700000000000000000\nmem,host=a used=3\n"


def _remote_read_valid() -> bytes:
    """A ReadRequest: one query, `up{job=~"a|b"}`, both response types accepted."""
    from rtpm.ingest.proto import ReadRequest

    req = ReadRequest(accepted_response_types=[1, 0])
    q = req.queries.add(start_timestamp_ms=1000, end_timestamp_ms=2000)
    q.matchers.add(type=0, name="__name__", value="up")
    q.matchers.add(type=2, name="job", value="a|b")
    return bytes(req.SerializeToString())


GOOD_TEXT = b'# TYPE up gauge\nup{job="a"} 1\nhttp_requests_total{code="200"} 10 1700000000000\n'


def _mutations(good: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, and a valid payload with bytes flipped, cut or repeated."""

    def flip(data: tuple[int, int, int]) -> bytes:
        pos, value, cut = data
        b = bytearray(good)
        b[pos % len(b)] = value
        return bytes(b[: max(1, cut % (len(b) + 1))])

    return st.one_of(
        st.binary(max_size=2048),
        st.tuples(st.integers(0, 10_000), st.integers(0, 255), st.integers(0, 10_000)).map(flip),
        st.binary(max_size=64).map(lambda junk: good + junk),
        st.text(max_size=512).map(lambda t: t.encode("utf-8", "surrogatepass")),
    )


def _remote_write_valid() -> bytes:
    from rtpm.ingest.proto import WriteRequest

    w = WriteRequest()
    ts = w.timeseries.add()
    ts.labels.add(name="__name__", value="fuzz_rw")
    ts.samples.add(timestamp=1, value=1.0)
    return bytes(w.SerializeToString())


FORMATS: list[tuple[str, dict[str, str], Callable[[bytes], bytes], bytes]] = [
    (
        "/api/v1/write",
        {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"},
        lambda b: bytes(cramjam.snappy.compress_raw(b)),
        b"",
    ),
    ("/api/v1/write", {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}, lambda b: b, b""),
    (
        "/api/v1/read",
        {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"},
        lambda b: bytes(cramjam.snappy.compress_raw(b)),
        _remote_read_valid(),
    ),
    ("/write?db=fuzz", {}, lambda b: b, GOOD_LINES),
    ("/api/v2/write?bucket=fuzz", {"Content-Encoding": "gzip"}, gzip.compress, GOOD_LINES),
    ("/api/v2/write?bucket=fuzz", {"Content-Encoding": "gzip"}, lambda b: b, GOOD_LINES),
    ("/v1/metrics", {"Content-Type": "application/x-protobuf"}, lambda b: b, b"\x0a\x00"),
    ("/v1/metrics", {"Content-Type": "application/json"}, lambda b: b, b'{"resourceMetrics": []}'),
    ("/api/v1/import/prometheus", {"Content-Type": "text/plain"}, lambda b: b, GOOD_TEXT),
    (
        "/api/v1/import/prometheus",
        {"Content-Type": "application/openmetrics-text"},
        lambda b: b,
        GOOD_TEXT + b"# EOF\n",
    ),
]


@pytest.mark.parametrize(
    ("path", "content_headers", "encode", "good"), FORMATS, ids=[f[0] + str(i) for i, f in enumerate(FORMATS)]
)
def test_malformed_ingest_bodies_never_5xx(
    fuzz_client: tuple[TestClient, dict[str, str]],
    path: str,
    content_headers: dict[str, str],
    encode: Callable[[bytes], bytes],
    good: bytes,
) -> None:
    client, headers = fuzz_client
    base = good or _remote_write_valid()

    @settings(
        max_examples=EXAMPLES_PER_FORMAT,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(body=_mutations(base))
    def run(body: bytes) -> None:
        r = client.post(path, content=encode(body), headers={**headers, **content_headers})
        assert r.status_code < 500, (path, body[:80], r.status_code, r.text[:300])

    run()


def test_decompression_bombs_are_refused(fuzz_client: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = fuzz_client
    bomb = gzip.compress(b"cpu v=1\n" * (2 * 1024 * 1024))  # 16 MiB inflated, a few KiB sent
    r = client.post("/write?db=x", content=bomb, headers={**headers, "Content-Encoding": "gzip"})
    assert r.status_code == 413
    snappy_bomb = bytes(cramjam.snappy.compress_raw(b"\x00" * (8 * 1024 * 1024)))
    r = client.post(
        "/api/v1/write",
        content=snappy_bomb,
        headers={**headers, "Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"},
    )
    assert r.status_code in (400, 413)
    r = client.post("/write?db=x", content=b"x" * (300 * 1024), headers=headers)
    assert r.status_code == 413
    assert client.get("/health/ready").status_code == 200
