"""OTLP/HTTP metrics: the Prometheus mapping of COMPAT.md section 5, encodings, partial success."""

from __future__ import annotations

import gzip
import math
from typing import Any

import orjson
import pytest

from rtpm.errors import OverloadedError
from rtpm.ingest.otlp_naming import metadata_unit, metric_name
from rtpm.ingest.proto import ExportMetricsServiceRequest, ExportMetricsServiceResponse
from rtpm.model.samples import MetricType, WriteBatch
from tests._pusher import Pusher, now_ms

PROTO = {"Content-Type": "application/x-protobuf"}


def kv(target: Any, key: str, value: Any) -> None:
    a = target.add(key=key)
    if isinstance(value, bool):
        a.value.bool_value = value
    elif isinstance(value, int):
        a.value.int_value = value
    elif isinstance(value, float):
        a.value.double_value = value
    else:
        a.value.string_value = value


def new_request(resource: dict[str, Any] | None = None, scope: tuple[str, str] = ("", "")) -> tuple[Any, Any]:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    for k, v in (resource or {}).items():
        kv(rm.resource.attributes, k, v)
    sm = rm.scope_metrics.add()
    sm.scope.name, sm.scope.version = scope
    return req, sm.metrics


def post(pusher: Pusher, req: Any) -> Any:
    return pusher.client.post("/v1/metrics", content=req.SerializeToString(), headers=PROTO)


def partial(r: Any) -> Any:
    return ExportMetricsServiceResponse.FromString(r.content).partial_success


@pytest.mark.parametrize(
    ("name", "unit", "kind", "expected"),
    [
        ("http.server.duration", "ms", MetricType.HISTOGRAM, "http_server_duration_milliseconds"),
        ("system.cpu.utilization", "1", MetricType.GAUGE, "system_cpu_utilization_ratio"),
        ("http.requests", "{request}", MetricType.COUNTER, "http_requests_total"),
        ("net.io", "By/s", MetricType.GAUGE, "net_io_bytes_per_second"),
        ("requests_total", "", MetricType.COUNTER, "requests_total"),
        ("process.runtime.jvm.memory", "By", MetricType.GAUGE, "process_runtime_jvm_memory_bytes"),
        ("latency_seconds", "s", MetricType.GAUGE, "latency_seconds"),
        ("queue--depth..max", "", MetricType.GAUGE, "queue_depth_max"),
        ("temp", "Cel", MetricType.GAUGE, "temp_celsius"),
        ("2xx.count", "", MetricType.GAUGE, "_2xx_count"),
        # Prometheus's OTLP translation rules (UnderscoreEscapingWithSuffixes), case by case
        ("requests", "1/s", MetricType.GAUGE, "requests_per_second"),  # `1` is no unit: no _ratio
        ("requests", "1/s", MetricType.COUNTER, "requests_per_second_total"),
        ("items", "1", MetricType.COUNTER, "items_total"),  # _ratio is for gauges only
        ("cpu.ratio.usage", "1", MetricType.GAUGE, "cpu_usage_ratio"),  # the suffix token moves to the end
        ("requests.total.count", "", MetricType.COUNTER, "requests_count_total"),
        ("custom_metric", "{custom}", MetricType.GAUGE, "custom_metric"),
        ("custom_metric", "By/{custom}", MetricType.GAUGE, "custom_metric_bytes"),
        ("custom_metric", "{packet}s/s", MetricType.GAUGE, "custom_metric_per_second"),  # annotated: no main unit
        ("custom_metric", "unit@with#special/chars", MetricType.GAUGE, "custom_metric_unit_with_special_per_chars"),
        ("m__multiple__underscores", "unit__multiple", MetricType.GAUGE, "m_multiple_underscores_unit_multiple"),
        ("throughput.per.second", "By/s", MetricType.GAUGE, "throughput_per_second_bytes_per_second"),
        ("otelcol.process.cpu.seconds", "s", MetricType.COUNTER, "otelcol_process_cpu_seconds_total"),
        ("request.size", "By", MetricType.HISTOGRAM, "request_size_bytes"),
        ("uptime", "d", MetricType.GAUGE, "uptime_days"),
        ("@#$%", "", MetricType.GAUGE, ""),  # nothing left: refused
        ("@#$%", "s", MetricType.GAUGE, "seconds"),
    ],
)
def test_metric_names(name: str, unit: str, kind: MetricType, expected: str) -> None:
    assert metric_name(name, unit, kind) == expected


@pytest.mark.parametrize(
    ("unit", "expected"),
    [("ms", "milliseconds"), ("By/s", "bytes_per_second"), ("1/s", "per_second"), ("1", ""), ("{packet}", "")],
)
def test_metadata_units(unit: str, expected: str) -> None:
    assert metadata_unit(unit) == expected


def test_gauges_sums_and_resource_mapping(pusher: Pusher) -> None:
    t = now_ms()
    req, metrics = new_request(
        {"service.name": "api", "service.namespace": "shop", "service.instance.id": "pod-1", "host.name": "n1"},
        scope=("io.opentelemetry.http", "1.2.0"),
    )
    g = metrics.add(name="process.threads", unit="{thread}", description="Threads.")
    dp = g.gauge.data_points.add(time_unix_nano=t * 1_000_000, as_int=12)
    kv(dp.attributes, "process.state", "running")
    s = metrics.add(name="http.requests", unit="1")
    s.sum.aggregation_temporality = 2
    s.sum.is_monotonic = True
    s.sum.data_points.add(time_unix_nano=t * 1_000_000, as_double=7.0)
    u = metrics.add(name="queue.size")
    u.sum.aggregation_temporality = 2
    u.sum.data_points.add(time_unix_nano=t * 1_000_000, as_int=-3)
    r = post(pusher, req)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-protobuf"
    assert partial(r).rejected_data_points == 0
    common = (("instance", "pod-1"), ("job", "shop/api"))
    scope = (("otel_scope_name", "io.opentelemetry.http"), ("otel_scope_version", "1.2.0"))
    assert pusher.stored() == {
        (("__name__", "process_threads"), *common, *scope, ("process_state", "running")): [(t, 12.0)],
        (("__name__", "http_requests_total"), *common, *scope): [(t, 7.0)],
        (("__name__", "queue_size"), *common, *scope): [(t, -3.0)],
        (("__name__", "target_info"), ("host_name", "n1"), *common): [(t, 1.0)],
    }
    md = pusher.metadata()
    assert md["process_threads"].type == MetricType.GAUGE and md["process_threads"].help == "Threads."
    assert md["http_requests_total"].type == MetricType.COUNTER
    assert md["queue_size"].type == MetricType.GAUGE


def test_explicit_bucket_histogram_becomes_bucket_sum_count(pusher: Pusher) -> None:
    t = now_ms()
    req, metrics = new_request({"service.name": "api"})
    h = metrics.add(name="http.server.duration", unit="s")
    h.histogram.aggregation_temporality = 2
    dp = h.histogram.data_points.add(time_unix_nano=t * 1_000_000, count=10, sum=3.5)
    dp.explicit_bounds.extend([0.1, 1.0, 5.0])
    dp.bucket_counts.extend([2, 5, 3, 0])
    kv(dp.attributes, "http.method", "GET")
    assert post(pusher, req).status_code == 200
    base = "http_server_duration_seconds"
    labels = (("http_method", "GET"), ("job", "api"))
    stored = pusher.stored()
    buckets = {dict(k)["le"]: v[0][1] for k, v in stored.items() if dict(k)["__name__"] == base + "_bucket"}
    assert buckets == {"0.1": 2.0, "1": 7.0, "5": 10.0, "+Inf": 10.0}
    assert stored[(("__name__", base + "_count"), *labels)] == [(t, 10.0)]
    assert stored[(("__name__", base + "_sum"), *labels)] == [(t, 3.5)]
    assert pusher.metadata()[base].type == MetricType.HISTOGRAM


def test_summary(pusher: Pusher) -> None:
    t = now_ms()
    req, metrics = new_request()
    m = metrics.add(name="rpc.latency", unit="ms")
    dp = m.summary.data_points.add(time_unix_nano=t * 1_000_000, count=4, sum=10.0)
    dp.quantile_values.add(quantile=0.5, value=2.0)
    dp.quantile_values.add(quantile=0.99, value=4.0)
    assert post(pusher, req).status_code == 200
    stored = pusher.stored()
    assert stored[(("__name__", "rpc_latency_milliseconds"), ("quantile", "0.99"))] == [(t, 4.0)]
    assert stored[(("__name__", "rpc_latency_milliseconds_count"),)] == [(t, 4.0)]
    assert stored[(("__name__", "rpc_latency_milliseconds_sum"),)] == [(t, 10.0)]


def test_delta_points_are_refused_with_partial_success(pusher: Pusher) -> None:
    t = now_ms()
    req, metrics = new_request()
    d = metrics.add(name="delta.requests")
    d.sum.aggregation_temporality = 1
    d.sum.is_monotonic = True
    d.sum.data_points.add(time_unix_nano=t * 1_000_000, as_int=1)
    d.sum.data_points.add(time_unix_nano=t * 1_000_000, as_int=2)
    e = metrics.add(name="exp.latency")
    e.exponential_histogram.aggregation_temporality = 2
    e.exponential_histogram.data_points.add(time_unix_nano=t * 1_000_000, count=1)
    g = metrics.add(name="kept")
    g.gauge.data_points.add(time_unix_nano=t * 1_000_000, as_double=1.5)
    r = post(pusher, req)
    assert r.status_code == 200
    p = partial(r)
    assert p.rejected_data_points == 2  # the delta points; the exponential histogram is stored (native)
    assert "delta temporality is not supported" in p.error_message
    assert list(pusher.stored()) == [(("__name__", "kept"),)]


def test_no_recorded_value_becomes_a_stale_marker(pusher: Pusher) -> None:
    req, metrics = new_request()
    g = metrics.add(name="gone")
    g.gauge.data_points.add(time_unix_nano=now_ms() * 1_000_000, flags=1)
    assert post(pusher, req).status_code == 200
    [[(_, value)]] = pusher.stored().values()
    assert math.isnan(value)


def test_json_encoding_with_string_ints_enums_as_ints_and_hex_exemplars(pusher: Pusher) -> None:
    t_ns = now_ms() * 1_000_000
    doc = {
        "resourceMetrics": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]},
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "hits",
                                "sum": {
                                    "aggregationTemporality": 2,
                                    "isMonotonic": True,
                                    "dataPoints": [
                                        {
                                            "timeUnixNano": str(t_ns),
                                            "asInt": "42",
                                            "attributes": [{"key": "code", "value": {"intValue": "200"}}],
                                            "exemplars": [
                                                {"traceId": "5b8efff798038103d269b633813fc60c", "asInt": "1"}
                                            ],
                                        }
                                    ],
                                },
                                "someFutureField": 1,
                            }
                        ]
                    }
                ],
            }
        ]
    }
    r = pusher.client.post(
        "/api/v1/otlp/v1/metrics", content=orjson.dumps(doc), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {}
    assert pusher.stored() == {(("__name__", "hits_total"), ("code", "200"), ("job", "web")): [(t_ns // 10**6, 42.0)]}


def test_gzip_protobuf(pusher: Pusher) -> None:
    req, metrics = new_request()
    metrics.add(name="g").gauge.data_points.add(time_unix_nano=now_ms() * 1_000_000, as_double=1)
    body = gzip.compress(req.SerializeToString())
    r = pusher.client.post("/v1/metrics", content=body, headers={**PROTO, "Content-Encoding": "gzip"})
    assert r.status_code == 200
    assert len(pusher.stored()) == 1


def test_empty_protobuf_body_is_an_empty_success(pusher: Pusher) -> None:
    r = pusher.client.post("/v1/metrics", content=b"", headers=PROTO)
    assert r.status_code == 200
    assert r.content == b""


def test_empty_json_body_is_400(pusher: Pusher) -> None:
    r = pusher.client.post("/v1/metrics", content=b"", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert "JSON" in r.json()["message"]


def test_wrong_content_type_is_415(pusher: Pusher) -> None:
    assert pusher.client.post("/v1/metrics", content=b"x", headers={"Content-Type": "text/plain"}).status_code == 415


def test_truncated_protobuf_is_400_with_a_status_body(pusher: Pusher) -> None:
    req, metrics = new_request({"service.name": "api"})
    metrics.add(name="g").gauge.data_points.add(time_unix_nano=now_ms() * 1_000_000, as_double=1)
    r = pusher.client.post("/v1/metrics", content=req.SerializeToString()[:-3], headers=PROTO)
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/x-protobuf"
    assert r.content[:2] == b"\x08\x03"  # google.rpc.Status code INVALID_ARGUMENT
    assert b"ExportMetricsServiceRequest" in r.content
    assert pusher.stored() == {}


def test_a_point_out_of_the_time_window_costs_only_itself(pusher: Pusher) -> None:
    t = now_ms()
    req, metrics = new_request()
    metrics.add(name="ok").gauge.data_points.add(time_unix_nano=t * 1_000_000, as_double=1)
    metrics.add(name="old").gauge.data_points.add(time_unix_nano=1_000_000_000, as_double=1)
    r = post(pusher, req)
    assert r.status_code == 200
    p = partial(r)
    assert p.rejected_data_points == 1
    assert "too far in the past" in p.error_message
    assert pusher.stored() == {(("__name__", "ok"),): [(t, 1.0)]}
    assert pusher.refused("otlp", "too_old") == 1


def test_a_data_point_with_an_invalid_series_costs_only_itself(pusher: Pusher) -> None:
    t = now_ms()
    req, metrics = new_request()
    g = metrics.add(name="temp")
    for value in ("fine", "x" * 65, "fine2"):  # the limit on label values is 64 here
        dp = g.gauge.data_points.add(time_unix_nano=t * 1_000_000, as_double=2.5)
        kv(dp.attributes, "room", value)
    h = metrics.add(name="lat", unit="s")
    h.histogram.aggregation_temporality = 2
    hp = h.histogram.data_points.add(time_unix_nano=t * 1_000_000, count=3, sum=1.0)
    hp.explicit_bounds.extend([0.1])
    hp.bucket_counts.extend([1, 2])
    kv(hp.attributes, "room", "y" * 65)
    for _ in (1, 2):  # the second time the series are found in the decoder's caches
        r = post(pusher, req)
        assert r.status_code == 200
        p = partial(r)
        assert p.rejected_data_points == 2
        assert "value longer than 64" in p.error_message
        assert set(pusher.stored()) == {
            (("__name__", "temp"), ("room", "fine")),
            (("__name__", "temp"), ("room", "fine2")),
        }
    assert pusher.refused("otlp", "invalid_series") == 2 * (1 + 4)  # the gauge point, 2 buckets + count + sum


def test_json_partial_success(pusher: Pusher) -> None:
    t = now_ms()
    body = {
        "resourceMetrics": [
            {
                "scopeMetrics": [
                    {
                        "metrics": [
                            {"name": "ok", "gauge": {"dataPoints": [{"timeUnixNano": str(t * 10**6), "asDouble": 1}]}},
                            {"name": "old", "gauge": {"dataPoints": [{"timeUnixNano": "1000000000", "asDouble": 1}]}},
                        ]
                    }
                ]
            }
        ]
    }
    r = pusher.client.post("/v1/metrics", content=orjson.dumps(body), headers={"Content-Type": "application/json"})
    assert r.status_code == 200
    assert r.json()["partialSuccess"]["rejectedDataPoints"] == "1"
    assert "too far in the past" in r.json()["partialSuccess"]["errorMessage"]
    assert list(pusher.stored()) == [(("__name__", "ok"),)]


def test_gzip_bomb_is_413(pusher: Pusher) -> None:
    bomb = gzip.compress(b"\x00" * (2 * 1024 * 1024))
    r = pusher.client.post("/v1/metrics", content=bomb, headers={**PROTO, "Content-Encoding": "gzip"})
    assert r.status_code == 413


def test_a_full_write_buffer_answers_503_with_retry_after(pusher: Pusher, monkeypatch: pytest.MonkeyPatch) -> None:
    async def full(batch: WriteBatch) -> int:
        raise OverloadedError("write buffer full", retry_after_seconds=1)

    monkeypatch.setattr(pusher.services.buffer, "submit", full)
    req, metrics = new_request()
    metrics.add(name="g").gauge.data_points.add(time_unix_nano=now_ms() * 1_000_000, as_double=1)
    r = post(pusher, req)
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "1"
    assert r.content[:2] == b"\x08\x0e"  # UNAVAILABLE


def test_attribute_names_colliding_after_sanitizing_are_joined(pusher: Pusher) -> None:
    req, metrics = new_request()
    dp = metrics.add(name="g").gauge.data_points.add(time_unix_nano=now_ms() * 1_000_000, as_double=1)
    kv(dp.attributes, "a.b", "1")
    kv(dp.attributes, "a-b", "2")
    kv(dp.attributes, "flag", True)
    assert post(pusher, req).status_code == 200
    assert list(pusher.stored()) == [(("__name__", "g"), ("a_b", "1;2"), ("flag", "true"))]


# ---- the decoder reads number data points from their bytes; results are the same -----------


def _decoder() -> Any:
    from rtpm.ingest.otlp import OtlpDecoder
    from rtpm.ingest.validate import Validator
    from rtpm.settings import LimitsSettings

    return OtlpDecoder(Validator(LimitsSettings()))


def _columns(decoder: Any, data: bytes, now: int) -> Any:
    r = decoder.decode(data, json=False, tenant="t", now_ms=now)
    b = r.batch
    return b.series, b.refs, b.ts_ms, [repr(v) for v in b.values], r.rejected_points


def test_point_layouts_and_the_series_cache_agree() -> None:
    """Points with and without start time, as_int, flags and exemplars give the same samples the
    first time (decoded field by field) and later (read in place from known attribute bytes)."""
    t = now_ms() * 1_000_000
    req, metrics = new_request({"service.name": "api"})
    g = metrics.add(name="temp").gauge.data_points
    for i, extra in enumerate(["", "start", "int", "flags", "exemplar", "zero-time"]):
        dp = g.add(time_unix_nano=0 if extra == "zero-time" else t + i * 1_000_000)
        if extra == "int":
            dp.as_int = -7
        else:
            dp.as_double = 1.5 + i
        if extra == "start":
            dp.start_time_unix_nano = t - 10**9
        if extra == "flags":
            dp.flags = 1
        if extra == "exemplar":
            dp.exemplars.add(as_double=1.0, time_unix_nano=t)
        kv(dp.attributes, "k", "v" if extra in ("", "flags") else extra)
    decoder, now = _decoder(), now_ms() - 1000
    first = _columns(decoder, req.SerializeToString(), now)
    again = _columns(decoder, req.SerializeToString(), now)
    fresh = _columns(_decoder(), req.SerializeToString(), now)
    assert first == again == fresh
    series, refs, ts, values, _ = first
    assert refs == [0, 1, 2, 0, 3, 4]  # the stale marker (flags) is the first point's series
    assert values[2] == "-7.0" and values[3] == "nan"
    assert ts[-1] == now and len(set(ts)) == 6


def test_invalid_attribute_bytes_fail_like_the_full_parse() -> None:
    """A KeyValue that does not parse is found even when the rest of the point looks known."""
    from rtpm.errors import BadDataError

    t = now_ms() * 1_000_000
    req, metrics = new_request()
    dp = metrics.add(name="temp").gauge.data_points.add(time_unix_nano=t, as_double=1.0)
    kv(dp.attributes, "k", "v")
    decoder = _decoder()
    good = req.SerializeToString()
    decoder.decode(good, json=False, tenant="t", now_ms=now_ms())
    bad = good.replace(b"\x0a\x01k", b"\x0a\x01\xff")  # invalid UTF-8 in the attribute's key
    assert bad != good
    with pytest.raises(BadDataError) as caught:
        decoder.decode(bad, json=False, tenant="t", now_ms=now_ms())
    with pytest.raises(Exception) as full:
        ExportMetricsServiceRequest.FromString(bad)
    assert str(caught.value) == f"body is not a valid OTLP ExportMetricsServiceRequest protobuf: {full.value}"
