"""The `rtpm` command: serve, migrate."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
from collections.abc import Sequence

from rtpm import __version__
from rtpm.cli_auth import add_auth_commands, check_auth_settings, login_hint
from rtpm.cli_client import add_client_commands
from rtpm.cli_jobs import add_job_commands
from rtpm.runtime import tune_allocator
from rtpm.settings import Settings


def _exit_zero_on_sigterm() -> None:
    """uvicorn re-raises SIGTERM after its graceful shutdown; then exit 0 instead of dying of it."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))


def _serve_workers(settings: Settings, args: argparse.Namespace, host: str, port: int) -> int:
    """`--workers N`: uvicorn spawns N processes, each building the app from the environment
    (`app_from_env`); /metrics aggregates them through PROMETHEUS_MULTIPROC_DIR."""
    import uvicorn

    from rtpm.api.ws_server import uvicorn_ws_options
    from rtpm.metrics import MULTIPROC_ENV, prepare_multiprocess_dir

    _migrate(settings, args)  # once, before the workers race to it
    metrics_dir = os.environ.get(MULTIPROC_ENV) or str((settings.data_dir / "metrics-multiproc").resolve())
    os.environ[MULTIPROC_ENV] = metrics_dir
    os.environ["RTPM_HOST"] = host
    os.environ["RTPM_PORT"] = str(port)
    prepare_multiprocess_dir(metrics_dir)
    _exit_zero_on_sigterm()
    uvicorn.run(
        "rtpm.api.factory:app_from_env",
        factory=True,
        workers=args.workers,
        host=host,
        port=port,
        log_level=settings.log_level,
        log_config=None,
        timeout_graceful_shutdown=10,
        timeout_keep_alive=settings.keep_alive_seconds,
        access_log=False,
        **uvicorn_ws_options(settings.realtime),
    )
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from rtpm.logging import configure_logging

    configure_logging(settings)  # before the app's modules are imported
    import uvicorn

    from rtpm.api.ws_server import raise_fd_limit

    raise_fd_limit(settings.realtime.max_connections + 1024)  # one descriptor per WebSocket client

    from rtpm.api.app import create_app
    from rtpm.api.ws_server import GoingAwayServer, uvicorn_ws_options
    from rtpm.metrics import multiprocess_dir, prepare_multiprocess_dir

    problem = check_auth_settings(settings)
    if problem is not None:
        print(f"rtpm: {problem}", file=sys.stderr)
        return 2
    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    settings = settings.model_copy(update={"host": host, "port": port})
    from rtpm.app.auth import ensure_first_admin, first_start_text

    generated = asyncio.run(ensure_first_admin(settings))
    backend = "PostgreSQL" if settings.database_url else f"SQLite at {settings.sqlite_path.resolve()}"
    shown_host = f"[{host}]" if ":" in host else host
    banner = [
        f"RTPM {__version__} listening on http://{shown_host}:{port}",
        f"  web UI: http://{shown_host}:{port}/",
        f"  API docs: http://{shown_host}:{port}/docs",
        f"  storage: {backend}",
        login_hint(settings),
    ]
    if generated is not None:
        banner.append(first_start_text(settings, generated))
    print("\n".join(banner), flush=True)
    if args.workers > 1:
        print(f"  workers: {args.workers} (metrics aggregated across processes)", flush=True)
        return _serve_workers(settings, args, host, port)
    metrics_dir = multiprocess_dir()
    if metrics_dir is not None:  # set by scripts/start.sh: start from empty files
        prepare_multiprocess_dir(metrics_dir)
    app = create_app(settings)
    # Ingest allocates many short-lived containers; the default gen-0 threshold (700) makes the
    # cyclic GC walk the long-lived caches far too often. Freeze what start-up made, collect less.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    _exit_zero_on_sigterm()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level,
        log_config=None,
        timeout_graceful_shutdown=10,
        timeout_keep_alive=settings.keep_alive_seconds,
        access_log=False,
        **uvicorn_ws_options(settings.realtime),
    )
    GoingAwayServer(config).run()  # live clients are closed with 1001 on SIGTERM
    return 0


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from rtpm.app.storage import storage_session

    async def run() -> list[int]:
        async with storage_session(settings) as storage:
            return await storage.migrate()

    applied = asyncio.run(run())
    print(f"applied migrations: {applied}" if applied else "schema is up to date")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtpm", description="RTPM: real-time performance monitoring")
    parser.add_argument("--version", action="version", version=f"rtpm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP API (applies migrations first)")
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port to listen on (default 8000)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes (default 1); more than one is meant for PostgreSQL + Redis",
    )
    serve.set_defaults(func=_serve)
    migrate = sub.add_parser("migrate", help="apply pending schema migrations and exit")
    migrate.set_defaults(func=_migrate)
    add_auth_commands(sub)
    add_client_commands(sub)
    add_job_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except Exception as exc:  # pydantic ValidationError: tell the user which setting is wrong
        print(f"rtpm: invalid settings: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    tune_allocator()
    result: int = args.func(settings, args)
    return result
