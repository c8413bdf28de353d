"""The built-in web UI: `/` is the single page, `/ui/...` its scripts and styles (package data in
`rtpm/ui/static`). The page is public; every data call it makes carries the user's bearer token."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from importlib.abc import Traversable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from rtpm import __version__
from rtpm.api.auth import public
from rtpm.api.responses import OrjsonResponse
from rtpm.errors import NotFoundError

router = APIRouter(include_in_schema=False)
PUBLIC = [Depends(public())]

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Only our own files: scripts and styles from this origin, data calls and the WebSocket to it.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def _walk(node: Traversable, prefix: str, out: dict[str, Asset]) -> None:
    for entry in node.iterdir():
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            _walk(entry, name + "/", out)
            continue
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        media_type = _TYPES.get(suffix)
        if media_type is None:
            continue
        body = entry.read_bytes()
        out[name] = Asset(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


@lru_cache(maxsize=1)
def assets() -> dict[str, Asset]:
    """Every servable file of the UI by its path under `static/`, read once."""
    out: dict[str, Asset] = {}
    _walk(resources.files("rtpm.ui").joinpath("static"), "", out)
    return out


def _serve(request: Request, path: str) -> Response:
    asset = assets().get(path)
    if asset is None:
        raise NotFoundError(f"no UI file {path!r}")
    headers = {"ETag": asset.etag, "Cache-Control": "no-cache", "Content-Security-Policy": CSP}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


def wants_html(request: Request) -> bool:
    """A browser asks for `text/html` (or `application/xhtml+xml`) by name; API clients (curl,
    httpx, requests, the original RTPM API's test client) send `*/*`, `application/json` or nothing."""
    accept = request.headers.get("accept", "").lower()
    return "text/html" in accept or "application/xhtml+xml" in accept


def api_index() -> dict[str, Any]:
    """What the original RTPM API answered at `/`: its name, version and where things are."""
    return {
        "message": "RTPM Dashboard API",
        "version": __version__,
        "endpoints": {
            "health": "/health",
            "metrics": "/metrics",
            "api_docs": "/docs",
            "websocket": "/ws/metrics",
            "web_ui": "/",
            "prometheus_api": "/api/v1/query",
        },
    }


@router.api_route("/", methods=["GET", "HEAD"], dependencies=PUBLIC)
async def index(request: Request) -> Response:
    """The web UI for a browser (`Accept: text/html`), the API index as JSON for everyone else."""
    if wants_html(request):
        response = _serve(request, "index.html")
    else:
        response = OrjsonResponse(api_index())
    response.headers["Vary"] = "Accept"
    return response


@router.get("/ui", dependencies=PUBLIC)
async def ui_root() -> Response:
    return RedirectResponse("/", status_code=308)


@router.api_route("/ui/{path:path}", methods=["GET", "HEAD"], dependencies=PUBLIC)
async def ui_file(path: str, request: Request) -> Response:
    if path in ("", "index.html"):
        return _serve(request, "index.html")
    return _serve(request, path)
