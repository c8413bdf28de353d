"""create_app(settings): the FastAPI application. Its lifespan opens and closes the Services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from rtpm import __version__
from rtpm.api import errors
from rtpm.api.limits import BodyLimitMiddleware
from rtpm.api.responses import OrjsonResponse
from rtpm.api.routes import health, metrics, prometheus, promql_seed, write
from rtpm.bootstrap import Services, build_services
from rtpm.settings import Settings


def create_app(settings: Settings, services: Services | None = None) -> FastAPI:
    """Build the app. With `services` given they are used as they are (and not closed)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if services is not None:
            app.state.services = services
            yield
            return
        async with build_services(settings) as built:
            app.state.services = built
            yield

    app = FastAPI(
        title="RTPM",
        version=__version__,
        description="Real-time performance monitoring: ingest, query, alerts, live updates.",
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
    )
    app.state.settings = settings
    errors.install(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.limits.max_body_bytes)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(prometheus.router)
    app.include_router(promql_seed.router)
    app.include_router(write.router)
    return app
