"""Structured logs: structlog for RTPM's own events, the standard library (uvicorn, Celery, asyncpg)
through the same processors, one line of JSON per event (or a console renderer in a terminal).

`configure_logging(settings)` runs once per process: `rtpm serve`, each `--workers` worker, the
Celery worker and beat. Context is bound, not repeated: the request middleware binds
`request_id`, Celery tasks bind `task_id` and `task` (`connect_celery_signals()`), and every line
logged while that context is active carries them.

Secrets never reach the output: values of keys that name a credential are replaced by `"***"`.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from rtpm.settings import Settings

LogFormat = Literal["auto", "json", "console"]

_SECRET_WORDS = ("password", "passwd", "secret", "token", "authorization", "api_key", "apikey", "cookie")
_REDACTED = "***"
_configured: dict[str, Any] = {}


def _redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Replace string values of keys naming a credential; drop uvicorn's ANSI `color_message`."""
    event_dict.pop("color_message", None)
    for key, value in event_dict.items():
        if isinstance(value, str | bytes) and any(word in key.lower() for word in _SECRET_WORDS):
            event_dict[key] = _REDACTED
    return event_dict


def _level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelName(level.upper())
    return number if isinstance(number, int) else logging.INFO


def _use_console(fmt: LogFormat, stream: Any) -> bool:
    if fmt == "auto":
        isatty = getattr(stream, "isatty", None)
        return bool(isatty and isatty())
    return fmt == "console"


def configure_logging(settings: Settings, *, stream: Any = None) -> None:
    """Send structlog and standard-library logging to `stream` (stderr) through one pipeline, at
    `settings.log_level`, as JSON (`settings.log_format`: json, console, or auto = console in a
    terminal). Idempotent for the same settings; a second call with others reconfigures."""
    configure(settings.log_level, settings.log_format, stream=stream)


def configure(level: str | int = "info", fmt: LogFormat = "auto", *, stream: Any = None) -> None:
    """configure_logging() from plain values."""
    stream = stream if stream is not None else sys.stderr
    key = {"level": _level_number(level), "fmt": fmt, "stream": id(stream)}
    if _configured == key:
        return
    number = key["level"]
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_secrets,
    ]
    renderer: Processor
    if _use_console(fmt, stream):
        renderer = structlog.dev.ConsoleRenderer()
    else:
        renderer = structlog.processors.JSONRenderer()

    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(number),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(number)
    # uvicorn and Celery bring their own handlers; route them through the root handler instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "celery.task", "celery.worker"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    # The access log is our `request_finished` event (with the request id); uvicorn's is redundant.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    _configured.clear()
    _configured.update(key)


def connect_celery_signals() -> None:
    """Celery: keep our logging (no root-logger hijack) and bind `task_id`/`task` per task.
    Call from `make_celery()` after `configure_logging()`."""
    from celery import signals

    def _keep_logging(**_: Any) -> None:
        return None  # connecting to setup_logging stops Celery from configuring logging itself

    def _bind(task_id: str | None = None, task: Any = None, **_: Any) -> None:
        structlog.contextvars.bind_contextvars(task_id=task_id, task=getattr(task, "name", None))

    def _clear(**_: Any) -> None:
        structlog.contextvars.unbind_contextvars("task_id", "task")

    signals.setup_logging.connect(_keep_logging, weak=False)
    signals.task_prerun.connect(_bind, weak=False)
    signals.task_postrun.connect(_clear, weak=False)
