"""create_app(settings): the FastAPI application. Its lifespan opens and closes the Services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import Depends, FastAPI

from rtpm import __version__
from rtpm.api import errors
from rtpm.api.auth import guard
from rtpm.api.limits import BodyLimitMiddleware
from rtpm.api.middleware import RequestContextMiddleware
from rtpm.api.responses import OrjsonResponse
from rtpm.api.routes import (
    alerts,
    exposition,
    federate,
    health,
    metrics,
    original,
    prom_admin,
    prom_status,
    prometheus,
    promql_seed,
    remote_read,
    tsdb,
    write,
    ws,
)
from rtpm.api.routes.dashboards import router as dashboards_router
from rtpm.api.routes.ui import router as ui_router
from rtpm.api.security import install_security
from rtpm.app.services import Services, build_services
from rtpm.metrics import Metrics, mark_process_dead
from rtpm.settings import Settings

log = structlog.get_logger("rtpm.api")


def create_app(settings: Settings, services: Services | None = None) -> FastAPI:
    """Build the app. With `services` given they are used as they are (and not closed)."""
    own_metrics = services.metrics if services is not None else Metrics.create()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if services is not None:
            app.state.services = services
            yield
            return
        try:
            async with build_services(settings, metrics=own_metrics) as built:
                app.state.services = built
                log.info("started")
                yield
                log.info("shutting_down", pending_samples=built.buffer.pending_samples)
            log.info("stopped", samples_written=built.buffer.samples_written)
        finally:
            mark_process_dead()

    app = FastAPI(
        title="RTPM",
        version=__version__,
        description="Real-time performance monitoring: ingest, query, alerts, live updates.",
        lifespan=lifespan,
        dependencies=[Depends(guard)],  # fail closed: every route must declare its access rule
        default_response_class=OrjsonResponse,
    )
    app.state.settings = settings
    errors.install(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.limits.max_body_bytes)
    install_security(app, settings)
    app.add_middleware(RequestContextMiddleware, metrics=own_metrics.http)  # outermost: sees every status
    app.include_router(health.router)
    app.include_router(exposition.router)
    app.include_router(metrics.router)
    app.include_router(original.router)
    app.include_router(tsdb.router)
    app.include_router(prometheus.router)
    app.include_router(prom_status.router)
    app.include_router(prom_status.api)
    app.include_router(prom_admin.router)
    app.include_router(federate.router)
    app.include_router(remote_read.router)
    app.include_router(alerts.router)
    app.include_router(promql_seed.router)
    app.include_router(write.router)
    app.include_router(ws.router)
    app.include_router(dashboards_router)
    app.include_router(ui_router)  # the web UI at / and /ui/...
    return app
