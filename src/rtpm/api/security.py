"""Wires the security layer into the app: CORS from settings, security headers, the auth routes.
(The fail-closed `guard` is an app-wide dependency, given to FastAPI(...) in `app.py`.)"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from rtpm.api.routes import auth as auth_routes
from rtpm.api.security_headers import SecurityHeadersMiddleware
from rtpm.settings import Settings


def install_security(app: FastAPI, settings: Settings) -> None:
    app.add_middleware(SecurityHeadersMiddleware)
    origins = settings.auth.cors_origins
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_credentials=settings.auth.cors_allow_credentials and "*" not in origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Content-Encoding"],
            expose_headers=["Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"],
            max_age=600,
        )
    app.include_router(auth_routes.router)
