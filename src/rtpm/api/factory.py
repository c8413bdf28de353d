"""`app_from_env()`: the application factory for `uvicorn --factory rtpm.api.factory:app_from_env`
(each `rtpm serve --workers N` worker). This module imports nothing of the app at import time, so
logging is configured before any module creates its logger."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rtpm.logging import configure_logging
from rtpm.runtime import tune_allocator
from rtpm.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI


def app_from_env() -> FastAPI:
    """Settings from the environment, logging configured in this process, then the app."""
    settings = Settings()
    configure_logging(settings)
    tune_allocator()
    from rtpm.api.app import create_app

    return create_app(settings)
