"""`POST /api/v1/read`: Prometheus remote read, so that a Prometheus with `remote_read:` (or any
remote-read client) reads the caller's tenant from RTPM. The protocol is in
`rtpm.query.remote_read`; here: the content encoding, the response types' HTTP headers.
"""

from __future__ import annotations

import cramjam
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from rtpm.api.auth import require
from rtpm.api.deps import ServicesDep, TenantDep
from rtpm.errors import UnsupportedMediaType
from rtpm.ingest.compression import decompress
from rtpm.query import remote_read as rr

router = APIRouter(tags=["prometheus"])

# Encoding takes ~1.5 s per million samples: past this many, off the event loop.
_ENCODE_IN_PLACE_SAMPLES = 100_000


@router.post("/api/v1/read", dependencies=[Depends(require("metrics:read"))], response_class=Response)
async def remote_read(request: Request, services: ServicesDep, tenant: TenantDep) -> Response:
    """A snappy-compressed (block format) `prometheus.ReadRequest`. Answers a snappy-compressed
    `ReadResponse` (SAMPLES) or a stream of `ChunkedReadResponse` frames (STREAMED_XOR_CHUNKS),
    whichever comes first in `accepted_response_types`. Matchers as in PromQL (regular
    expressions anchored), hints ignored. 400 for a malformed request, or when the request
    would read more than `limits.max_query_samples` samples."""
    encoding = (request.headers.get("content-encoding") or "snappy").strip().lower()
    if encoding != "snappy":
        raise UnsupportedMediaType(f"remote read needs Content-Encoding snappy, got {encoding!r}")
    body = decompress(await request.body(), "snappy", max_bytes=services.settings.limits.max_body_bytes)
    queries, response_type = rr.parse_read_request(body)
    results = await rr.read(services.storage, tenant, queries, max_samples=services.settings.limits.max_query_samples)
    if response_type is rr.ResponseType.STREAMED_XOR_CHUNKS:
        # a plain iterator: Starlette runs it in a worker thread, frame by frame
        return StreamingResponse(rr.stream_frames(results), media_type=rr.STREAMED_CONTENT_TYPE)

    def encode() -> bytes:
        return bytes(cramjam.snappy.compress_raw(rr.encode_read_response(results)))

    samples = sum(len(s.ts_ms) for series in results for s in series)
    data = encode() if samples < _ENCODE_IN_PLACE_SAMPLES else await run_in_threadpool(encode)
    return Response(data, media_type=rr.SAMPLES_CONTENT_TYPE, headers={"Content-Encoding": "snappy"})
