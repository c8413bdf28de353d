"""The OpenTelemetry Python SDK (opentelemetry-sdk with its OTLP/HTTP protobuf exporter) exports
into a real `rtpm serve`, with the API key in the exporter's headers; the stored series are those
of the mapping the README documents ("OpenTelemetry naming"): names with unit and `_total`
suffixes, `job`/`instance` from service.namespace/service.name and service.instance.id, the other
resource attributes on `target_info`, the scope's name and version as labels, attributes as
labels; counters, up-down counters, observable gauges and explicit-bucket histograms with their
values; metadata types and units; cumulative exponential histograms as native histograms. Delta
temporality is refused through partial_success (counted in rtpm_ingest_samples_rejected_total),
while the rest of the same export is stored."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.version import __version__ as sdk_version
from prometheus_client.parser import text_string_to_metric_families

from tests._server import RtpmServer

pytestmark = pytest.mark.integration

RESOURCE = {
    "service.name": "checkout",
    "service.namespace": "shop",
    "service.instance.id": "i-1",
    "deployment.environment": "test",
    "host.name": "h1",
}
IDENTITY = {"job": "shop/checkout", "instance": "i-1"}
SCOPE = {"otel_scope_name": "rtpm.tests.otel", "otel_scope_version": "1.2.3"}


@pytest.fixture(scope="module")
def rtpm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtpmServer]:
    tmp = tmp_path_factory.mktemp("otel")
    server = RtpmServer(env={"RTPM_DATA_DIR": str(tmp / "rtpm")}, log_path=tmp / "rtpm.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _provider(rtpm: RtpmServer, resource: dict[str, str], **exporter: Any) -> tuple[MeterProvider, Any]:
    """A MeterProvider exporting to RTPM only at shutdown (the periodic interval is an hour)."""
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{rtpm.url}/v1/metrics", headers=rtpm.headers, timeout=10, **exporter),
        export_interval_millis=3_600_000,
    )
    views = [
        View(instrument_name="http.server.duration", aggregation=ExplicitBucketHistogramAggregation([10, 100])),
        View(instrument_name="payload.size", aggregation=ExponentialBucketHistogramAggregation()),
    ]
    provider = MeterProvider(resource=Resource.create(resource), metric_readers=[reader], views=views)
    return provider, provider.get_meter("rtpm.tests.otel", "1.2.3")


def _export(provider: MeterProvider) -> None:
    """One export of everything recorded: the reader's final collection at shutdown."""
    provider.shutdown(timeout_millis=10_000)


def _stored(rtpm: RtpmServer, selector: str) -> dict[frozenset[tuple[str, str]], float]:
    r = httpx.get(rtpm.url + "/api/v1/query", params={"query": selector}, headers=rtpm.headers, timeout=10)
    assert r.status_code == 200, r.text
    return {frozenset(s["metric"].items()): float(s["value"][1]) for s in r.json()["data"]["result"]}


def _series(name: str, **labels: str) -> frozenset[tuple[str, str]]:
    return frozenset({"__name__": name, **IDENTITY, **SCOPE, **labels}.items())


def _rejected(rtpm: RtpmServer) -> float:
    text = httpx.get(rtpm.url + "/metrics", headers=rtpm.headers, timeout=10).text
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "rtpm_ingest_samples_rejected_total" and s.labels.get("protocol") == "otlp"
    )


def test_cumulative_instruments_are_stored_as_documented(rtpm: RtpmServer) -> None:
    provider, meter = _provider(rtpm, RESOURCE)
    requests = meter.create_counter("http.server.requests", unit="{request}", description="Requests served.")
    sent = meter.create_counter("network.sent", unit="By")
    depth = meter.create_up_down_counter("queue.depth", unit="{item}")
    duration = meter.create_histogram("http.server.duration", unit="ms", description="Time per request.")

    def utilization(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(0.25, {"cpu": "0"}), Observation(0.5, {"cpu": "1"})]

    def temperature(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(21.5)]

    meter.create_observable_gauge("system.cpu.utilization", [utilization], unit="1")
    meter.create_observable_gauge("room.temperature", [temperature], unit="Cel")
    requests.add(3, {"http.method": "GET"})
    requests.add(2, {"http.method": "POST"})
    requests.add(4, {"http.method": "GET"})
    sent.add(1500)
    depth.add(5, {"queue.name": "q-1"})
    depth.add(-2, {"queue.name": "q-1"})
    for ms in (3, 7, 50, 120):
        duration.record(ms, {"http.route": "/pay"})
    _export(provider)

    got = _stored(rtpm, '{job="shop/checkout"}')
    route = {"http_route": "/pay"}
    expected = {
        _series("http_server_requests_total", http_method="GET"): 7.0,
        _series("http_server_requests_total", http_method="POST"): 2.0,
        _series("network_sent_bytes_total"): 1500.0,
        _series("queue_depth", queue_name="q-1"): 3.0,  # up-down counter: a gauge, no suffix
        _series("system_cpu_utilization_ratio", cpu="0"): 0.25,
        _series("system_cpu_utilization_ratio", cpu="1"): 0.5,
        _series("room_temperature_celsius"): 21.5,
        _series("http_server_duration_milliseconds_bucket", le="10", **route): 2.0,
        _series("http_server_duration_milliseconds_bucket", le="100", **route): 3.0,
        _series("http_server_duration_milliseconds_bucket", le="+Inf", **route): 4.0,
        _series("http_server_duration_milliseconds_count", **route): 4.0,
        _series("http_server_duration_milliseconds_sum", **route): 180.0,
        frozenset(
            {
                "__name__": "target_info",
                **IDENTITY,
                "deployment_environment": "test",
                "host_name": "h1",
                "telemetry_sdk_language": "python",
                "telemetry_sdk_name": "opentelemetry",
                "telemetry_sdk_version": sdk_version,
            }.items()
        ): 1.0,
    }
    assert got == expected

    r = httpx.get(rtpm.url + "/api/v1/metadata", headers=rtpm.headers, timeout=10)
    meta = {name: entries[0] for name, entries in r.json()["data"].items()}
    assert meta["http_server_requests_total"] == {"type": "counter", "help": "Requests served.", "unit": ""}
    assert meta["http_server_duration_milliseconds"] == {
        "type": "histogram",
        "help": "Time per request.",
        "unit": "milliseconds",
    }
    assert meta["network_sent_bytes_total"]["unit"] == "bytes"
    assert meta["queue_depth"]["type"] == meta["room_temperature_celsius"]["type"] == "gauge"


def test_delta_temporality_is_refused_the_rest_stored(rtpm: RtpmServer) -> None:
    before = _rejected(rtpm)
    provider, meter = _provider(
        rtpm,
        {**RESOURCE, "service.instance.id": "i-delta"},
        preferred_temporality={Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA},
    )
    meter.create_counter("delta.requests").add(5, {"k": "v"})
    meter.create_histogram("http.server.duration", unit="ms").record(5)  # delta explicit histogram
    meter.create_histogram("payload.size", unit="By").record(512)  # exponential (the View), delta
    meter.create_up_down_counter("delta.depth").add(4)  # up-down counters stay cumulative
    _export(provider)
    got = _stored(rtpm, '{instance="i-delta"}')
    assert {dict(k)["__name__"] for k in got} == {"delta_depth", "target_info"}
    assert (
        got[frozenset({"__name__": "delta_depth", "job": "shop/checkout", "instance": "i-delta", **SCOPE}.items())] == 4
    )
    assert _rejected(rtpm) - before == 3  # one data point each: the delta counter, both histograms

    cumulative, meter = _provider(rtpm, {**RESOURCE, "service.instance.id": "i-exp"})
    meter.create_histogram("payload.size", unit="By").record(512)
    _export(cumulative)
    # a cumulative exponential histogram is stored as a native histogram (scale 20 reduced to 8)
    r = httpx.get(
        rtpm.url + "/api/v1/query",
        params={"query": 'payload_size_bytes{instance="i-exp"}'},
        headers=rtpm.headers,
        timeout=10,
    )
    (found,) = r.json()["data"]["result"]
    h = found["histogram"][1]
    assert (h["count"], h["sum"]) == ("1", "512")
    assert [b[2:] for b in h["buckets"]] == [["512", "1"]]  # the bucket (..., 512] holds the observation
    assert _rejected(rtpm) - before == 3
