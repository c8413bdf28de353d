"""Push endpoints of the protocols agents already speak: Prometheus remote write, Influx line
protocol (v1 and v2 paths, plus the `/query` probe Telegraf sends), OTLP/HTTP metrics and the
Prometheus text format. Each decodes (in place, or in a worker thread when the body is big),
validates with the shared Validator and hands one WriteBatch to the write buffer; it answers once
the samples are committed.

HTTP specifics live here: content types, encodings, status codes, the OTLP response body.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar
from urllib.parse import parse_qs

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from rtpm.api.auth import require
from rtpm.api.deps import ServicesDep, TenantDep
from rtpm.api.errors import status_for
from rtpm.api.responses import OrjsonResponse
from rtpm.app.services import Services
from rtpm.errors import BadDataError, OverloadedError, PartialWrite, RtpmError, UnsupportedMediaType
from rtpm.ingest import otlp, prom_text
from rtpm.ingest.batching import Refused
from rtpm.ingest.compression import decompress
from rtpm.ingest.influx import InfluxDecoder
from rtpm.ingest.otlp import OtlpDecoder
from rtpm.ingest.remote_write import RemoteWriteDecoder, varint
from rtpm.ingest.remote_write_v2 import CONTENT_TYPE_PROTO as REMOTE_WRITE_V2
from rtpm.ingest.remote_write_v2 import decode_v2

router = APIRouter(tags=["ingest"])
log = structlog.get_logger("rtpm.api.write")

T = TypeVar("T")

PROTOBUF = "application/x-protobuf"
REMOTE_WRITE_V1 = "prometheus.WriteRequest"
REMOTE_WRITE_VERSION = "0.1.0"


def _media_type(request: Request) -> tuple[str, dict[str, str]]:
    raw = request.headers.get("content-type", "")
    main, *params = raw.split(";")
    parsed: dict[str, str] = {}
    for p in params:
        k, _, v = p.strip().partition("=")
        parsed[k.strip().lower()] = v.strip().strip('"')
    return main.strip().lower(), parsed


def _extra_labels(request: Request) -> dict[str, str]:
    """`extra_label=name=value` query arguments (repeatable) add or override labels."""
    out: dict[str, str] = {}
    for item in request.query_params.getlist("extra_label"):
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise BadDataError(f"extra_label: expected name=value, got {item!r}")
        out[name] = value
    return out


_DECODE_IN_PLACE_BYTES = 1024 * 1024


async def _decoded(request: Request, services: Services, encoding: str | None, decode: Callable[[bytes], T]) -> T:
    """Read the body, decompress it (bounded by max_body_bytes) and decode it (big bodies off the
    event loop)."""
    raw = await request.body()
    limit = services.settings.limits.max_body_bytes

    def work() -> T:
        return decode(decompress(raw, encoding, max_bytes=limit))

    # A thread buys no parallelism here (decoding holds the GIL) and costs a handoff per request,
    # plus the GIL passing back and forth while the flusher runs: bodies of ordinary batches
    # (5,000 samples of OTLP or line protocol are ~600 KB) are decoded in place, as the JSON
    # endpoint does; only big ones go to a thread so that one request cannot hold the event
    # loop for long.
    if len(raw) < _DECODE_IN_PLACE_BYTES:
        return work()
    return await run_in_threadpool(work)


def _now_ms(services: Services) -> int:
    return int(services.clock() * 1000)


def _report_refused(services: Services, protocol: str, tenant: str, refused: Refused) -> None:
    """Count the samples an accepted request left out (rtpm_ingest_samples_rejected_total by
    reason) and log one line naming the first problem."""
    if not refused:
        return
    for reason, n in refused.samples.items():
        services.metrics.ingest.rejected(protocol, reason, n)
    log.warning(
        "ingest_partially_refused",
        protocol=protocol,
        tenant=tenant,
        refused_samples=refused.samples,
        problems=refused.problem_count,
        first=refused.message(),
    )


# ---- Prometheus remote write 1.0 -------------------------------------------------------------


D = TypeVar("D", RemoteWriteDecoder, InfluxDecoder, OtlpDecoder)


def _decoder(request: Request, services: Services, cls: type[D]) -> D:
    """One decoder of each kind per app: it remembers validated series between requests."""
    state = request.app.state
    attr = f"ingest_{cls.__name__}"
    decoder: D | None = getattr(state, attr, None)
    if decoder is None or decoder.validator is not services.validator:
        decoder = cls(services.validator)
        setattr(state, attr, decoder)
    return decoder


@router.post(
    "/api/v1/write", dependencies=[Depends(require("metrics:write"))], status_code=204, response_class=Response
)
async def remote_write(request: Request, services: ServicesDep, tenant: TenantDep) -> Response:
    """Prometheus remote write 1.0 and 2.0, by Content-Type (`proto=prometheus.WriteRequest`, the
    default, or `proto=io.prometheus.write.v2.Request`): snappy (block format) compressed protobuf.
    Remote write 1.0:
    204 once every acceptable sample is stored: series that can never be accepted (invalid
    labels, samples outside the accepted time window, native histograms) are left out, logged
    and counted in `rtpm_ingest_samples_rejected_total{protocol="remote_write",reason}`, as
    Prometheus's own receiver does, since a 4xx would make the sender drop the whole batch.
    400 only for a body that is not a WriteRequest; 503 with Retry-After while the write buffer
    is full (the sender retries)."""
    media, params = _media_type(request)
    if media not in ("", PROTOBUF):
        raise UnsupportedMediaType(f"remote write needs Content-Type {PROTOBUF}, got {media!r}")
    proto = params.get("proto", REMOTE_WRITE_V1)
    if proto not in (REMOTE_WRITE_V1, REMOTE_WRITE_V2):
        raise UnsupportedMediaType(
            f"remote write message {proto!r} is not supported; RTPM takes {REMOTE_WRITE_V1} (remote write 1.0) "
            f"and {REMOTE_WRITE_V2} (2.0)"
        )
    encoding = (request.headers.get("content-encoding") or "snappy").strip().lower()
    if encoding != "snappy":
        raise UnsupportedMediaType(f"remote write needs Content-Encoding snappy, got {encoding!r}")
    extra = _extra_labels(request)
    if proto == REMOTE_WRITE_V2:
        return await _remote_write_v2(request, services, tenant, extra)
    decoder = _decoder(request, services, RemoteWriteDecoder)
    with services.metrics.ingest.track("remote_write") as counted:
        batch, refused = await _decoded(
            request, services, "snappy", lambda data: decoder.decode_partial(data, tenant=tenant, extra_labels=extra)
        )
        counted.samples = len(batch)
        await services.buffer.submit(batch)
    _report_refused(services, "remote_write", tenant, refused)
    return Response(status_code=204, headers={"X-Prometheus-Remote-Write-Version": REMOTE_WRITE_VERSION})


async def _remote_write_v2(request: Request, services: Services, tenant: str, extra: dict[str, str]) -> Response:
    """Remote write 2.0: 204 with the written counts when everything was stored; a partial write
    (some series or samples refused) stores the rest and answers 400 with the counts and the first
    problem, as the 2.0 spec's partial write asks (the sender does not retry what was written).
    Samples storage refuses past a limit (the head engine's active series) are a partial write too."""
    limited: PartialWrite | None = None
    with services.metrics.ingest.track("remote_write") as counted:
        batch, refused, written = await _decoded(
            request,
            services,
            "snappy",
            lambda data: decode_v2(data, tenant=tenant, validator=services.validator, extra_labels=extra),
        )
        counted.samples = len(batch)
        try:
            await services.buffer.submit(batch)
        except PartialWrite as exc:
            limited = exc
            written = replace(written, samples=max(0, written.samples - exc.refused_samples))
    _report_refused(services, "remote_write", tenant, refused)
    headers = {"X-Prometheus-Remote-Write-Version": "2.0.0", **written.headers()}
    if refused or limited is not None:
        problems = [f"{refused.total} samples not written: {refused.message()}"] if refused else []
        if limited is not None:
            problems.append(f"{limited.refused_samples} samples not written: {limited.message}")
        return Response(
            f"partial write: {'; '.join(problems)}\n", status_code=400, headers=headers, media_type="text/plain"
        )
    return Response(status_code=204, headers=headers)


# ---- Influx line protocol --------------------------------------------------------------------


async def _influx(request: Request, services: Services, tenant: str, precision: str, db: str | None) -> Response:
    extra = _extra_labels(request)
    encoding = request.headers.get("content-encoding")
    now_ms = _now_ms(services)
    decoder = _decoder(request, services, InfluxDecoder)
    with services.metrics.ingest.track("influx") as counted:
        batch, refused = await _decoded(
            request,
            services,
            encoding,
            lambda data: decoder.decode_partial(
                data, tenant=tenant, now_ms=now_ms, precision=precision, db=db, extra_labels=extra
            ),
        )
        counted.samples = len(batch)
        await services.buffer.submit(batch)
    if refused:
        _report_refused(services, "influx", tenant, refused)
        return _influx_partial_write(refused)
    return Response(status_code=204)


def _influx_partial_write(refused: Refused) -> Response:
    """InfluxDB's answer to a write of which only some points could be stored (its
    PartialWriteError): 400, `partial write: <reason> dropped=<n>`, the acceptable points
    written. The text is both InfluxDB 1.x's `error` and 2.x's `code`/`message`, so either
    client finds it; Telegraf's influxdb output takes "partial write" as written, not retried."""
    text = f"partial write: {refused.message()} dropped={refused.total}"
    details = [p.as_dict() for p in refused.problems]
    return OrjsonResponse({"error": text, "code": "invalid", "message": text, "details": details}, status_code=400)


@router.post("/write", dependencies=[Depends(require("metrics:write"))], status_code=204, response_class=Response)
async def influx_write_v1(
    request: Request, services: ServicesDep, tenant: TenantDep, db: str | None = None, precision: str = "ns"
) -> Response:
    """InfluxDB 1.x write: line protocol (gzip allowed). Each field becomes `{measurement}_{field}`;
    `db` becomes a `db` label unless the line has a `db` tag. Lines that cannot be accepted do not
    cost the others: those are stored and the answer is InfluxDB's partial write (400, `partial
    write: line N: ... dropped=K`); 400 naming the bad line and column when no line parses."""
    return await _influx(request, services, tenant, precision, db)


@router.post(
    "/api/v2/write", dependencies=[Depends(require("metrics:write"))], status_code=204, response_class=Response
)
async def influx_write_v2(
    request: Request,
    services: ServicesDep,
    tenant: TenantDep,
    org: str | None = None,
    bucket: str | None = None,
    precision: str = "ns",
) -> Response:
    """InfluxDB 2.x write: like /write; `bucket` becomes the `db` label."""
    return await _influx(request, services, tenant, precision, bucket)


@router.api_route("/query", dependencies=[Depends(require("metrics:write"))], methods=["GET", "POST"])
async def influx_query(request: Request) -> OrjsonResponse:
    """Enough of InfluxQL for agents' start-up probes (`CREATE DATABASE`, `SHOW DATABASES`)."""
    q = request.query_params.get("q")
    if q is None and request.method == "POST":
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        qs = form.get("q")
        q = qs[0] if qs else None
    statement = (q or "").strip().upper()
    result: dict[str, Any] = {"statement_id": 0}
    if statement.startswith("SHOW DATABASES"):
        result["series"] = [{"name": "databases", "columns": ["name"], "values": []}]
    elif not statement.startswith(("CREATE DATABASE", "CREATE RETENTION POLICY", "SHOW RETENTION POLICIES")):
        result["error"] = "only CREATE DATABASE and SHOW DATABASES are answered; query with PromQL instead"
    return OrjsonResponse({"results": [result]})


# ---- OTLP/HTTP metrics -----------------------------------------------------------------------


def _otlp_error(exc: RtpmError, *, json: bool) -> Response:
    status, _ = status_for(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, OverloadedError):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_seconds)))
    elif status == 503:
        headers["Retry-After"] = "1"
    # google.rpc.Status {int32 code = 1; string message = 2}, code 3 = INVALID_ARGUMENT, 14 = UNAVAILABLE.
    code = 14 if status >= 500 else 3
    if json:
        return OrjsonResponse({"code": code, "message": exc.message}, status_code=status, headers=headers)
    message = exc.message.encode()
    body = b"\x08" + bytes([code]) + b"\x12" + varint(len(message)) + message
    return Response(body, status_code=status, media_type=PROTOBUF, headers=headers)


async def _otlp(request: Request, services: Services, tenant: str) -> Response:
    media, _ = _media_type(request)
    if media == PROTOBUF:
        json = False
    elif media == "application/json":
        json = True
    else:
        raise UnsupportedMediaType(f"OTLP needs Content-Type {PROTOBUF} or application/json, got {media!r}")
    try:
        extra = _extra_labels(request)
        now_ms = _now_ms(services)
        decoder = _decoder(request, services, OtlpDecoder)
        with services.metrics.ingest.track("otlp") as counted:
            result = await _decoded(
                request,
                services,
                request.headers.get("content-encoding"),
                lambda data: decoder.decode(data, json=json, tenant=tenant, now_ms=now_ms, extra_labels=extra),
            )
            counted.samples = len(result.batch)
            await services.buffer.submit(result.batch)
        refused = result.refused
        services.metrics.ingest.rejected(
            "otlp", "unsupported", result.rejected_points - (refused.items if refused is not None else 0)
        )
        if refused is not None:
            _report_refused(services, "otlp", tenant, refused)
    except RtpmError as exc:
        return _otlp_error(exc, json=json)
    return Response(
        otlp.encode_response(result, json=json),
        status_code=200,
        media_type="application/json" if json else PROTOBUF,
    )


@router.post("/v1/metrics", dependencies=[Depends(require("metrics:write"))], response_class=Response)
async def otlp_metrics(request: Request, services: ServicesDep, tenant: TenantDep) -> Response:
    """OTLP/HTTP metrics export (protobuf or JSON, gzip allowed). 200 with `partial_success` naming
    what was dropped and why (delta temporality, exponential histograms, data points whose series
    or timestamp can never be accepted); everything else of the request is stored."""
    return await _otlp(request, services, tenant)


@router.post("/api/v1/otlp/v1/metrics", dependencies=[Depends(require("metrics:write"))], response_class=Response)
async def otlp_metrics_prometheus_path(request: Request, services: ServicesDep, tenant: TenantDep) -> Response:
    """The same OTLP receiver on the path Prometheus serves it."""
    return await _otlp(request, services, tenant)


# ---- Prometheus text exposition format -------------------------------------------------------

_TEXT_TYPES = ("", "text/plain", "application/x-www-form-urlencoded", "application/octet-stream")


@router.post(
    "/api/v1/import/prometheus",
    dependencies=[Depends(require("metrics:write"))],
    status_code=204,
    response_class=Response,
)
async def import_prometheus(request: Request, services: ServicesDep, tenant: TenantDep) -> Response:
    """Prometheus text exposition format (or OpenMetrics text), e.g. a script pushing its scrape.
    Samples without a timestamp get the server's time; `extra_label=name=value` adds labels.
    Lines that cannot be accepted do not cost the others: those are stored, and the answer is
    400 `partial_write` naming the first problem and how many samples were dropped."""
    media, _ = _media_type(request)
    if media == "application/openmetrics-text":
        openmetrics = True
    elif media in _TEXT_TYPES:
        openmetrics = False
    else:
        raise UnsupportedMediaType(
            f"expected the text exposition format (text/plain or application/openmetrics-text), got {media!r}"
        )
    extra = _extra_labels(request)
    now_ms = _now_ms(services)
    with services.metrics.ingest.track("prom_text") as counted:
        batch, refused = await _decoded(
            request,
            services,
            request.headers.get("content-encoding"),
            lambda data: prom_text.decode_text_partial(
                data,
                tenant=tenant,
                validator=services.validator,
                now_ms=now_ms,
                openmetrics=openmetrics,
                extra_labels=extra,
            ),
        )
        counted.samples = len(batch)
        await services.buffer.submit(batch)
    if refused:
        _report_refused(services, "prom_text", tenant, refused)
        text = f"partial write: {refused.message()} dropped={refused.total}; the other {len(batch)} samples were stored"
        details = [p.as_dict() for p in refused.problems]
        return OrjsonResponse(
            {"error": {"code": "partial_write", "message": text, "details": details}}, status_code=400
        )
    return Response(status_code=204)
